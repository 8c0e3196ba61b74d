"""The IR document decoded in slices (tsinspect.ir.stream) gives what json.loads and Extraction.ir give; the
TUI's extraction in a process of its own (tsinspect.tui.irfetch) gives the IR extract_ir gives, and ends."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsinspect.archive.reader import open_archive
from tsinspect.ir.run import Extraction, Options, extract_ir
from tsinspect.ir.stream import decode_document, ir_from_text
from tsinspect.tui import irfetch


@pytest.fixture(scope="module")
def inlined(sample_archives) -> Extraction:
    """A real child's document, with the inlined graphs (blocks nested in loops and ifs)."""
    with open_archive(str(sample_archives["gate_scripted"])) as archive:
        return extract_ir(archive, Options(inline=True))


def text_of(extraction: Extraction) -> str:
    out = io.StringIO()
    extraction.write_json(out)  # the child's text as graph --json relays it
    return out.getvalue()


def test_a_real_document_decodes_as_json_loads_does(inlined):
    text = text_of(inlined)
    assert decode_document(text) == json.loads(text)
    assert decode_document(text.encode("ascii")) == json.loads(text)
    spaced = json.dumps(json.loads(text), indent=1)  # any whitespace between tokens
    assert decode_document(spaced) == json.loads(text)


def test_the_ir_is_the_one_extraction_ir_builds(inlined):
    ours = ir_from_text(text_of(inlined))
    assert ours.to_json() == inlined.ir.to_json()
    assert any(m.inlined for module in ours.modules for m in module.methods)
    assert any(m.inlined for module in ours.modules for m in module.methods)


def test_the_decoder_and_the_index_step_aside_every_so_many_nodes(inlined, monkeypatch):
    """The pause hooks a UI's workers give (tsinspect.tui.priority): called while decoding and indexing, and
    nothing decoded differs."""
    import tsinspect.ir.stream as stream
    from tsinspect.ir.views import GraphView

    monkeypatch.setattr(stream, "PAUSE_EVERY", 1)
    text = text_of(inlined)
    calls = []
    assert decode_document(text, lambda: calls.append(1)) == json.loads(text)
    nodes = sum(len(m["inlined"][2]) for t in json.loads(text)["types"].values() for m in t.get("methods", [])
                if m.get("inlined"))
    assert len(calls) >= nodes > 0
    graph = next(m.inlined for module in inlined.ir.modules for m in module.methods if m.inlined)
    steps = []
    view = GraphView(graph, lambda: steps.append(1))
    assert steps and view.defs == GraphView(graph).defs and view.uses == GraphView(graph).uses


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
graphs = st.lists(json_values, min_size=3, max_size=3).map(lambda parts: parts[:2] + [parts[2:] or []])
methods = st.fixed_dictionaries({"name": st.text(), "graph": graphs | st.none()},
                                optional={"inlined": graphs, "error": json_values})


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"schema": st.text(), "types": st.dictionaries(st.text(), st.fixed_dictionaries(
    {"methods": st.lists(methods, max_size=3)})), "functions": st.dictionaries(st.text(), methods, max_size=2)},
    optional={"strings": st.lists(st.text()), "other": json_values,
              "sources": st.lists(json_values | st.fixed_dictionaries({"file": json_values},
                                                                      optional={"stack": st.lists(st.text())}))}))
def test_any_document_of_the_shape_decodes_as_json_loads_does(document):
    for text in (json.dumps(document), json.dumps(document, indent=2, ensure_ascii=False)):
        assert decode_document(text) == json.loads(text)


def test_the_source_table_is_decoded_an_entry_at_a_time_with_each_frame_kept_once(monkeypatch):
    """A traced archive's table repeats the same call stacks in thousands of entries (46 MB on a traced conv
    net): decoded an entry at a time (the UI's worker steps aside between) and each frame kept once."""
    import tsinspect.ir.stream as stream

    monkeypatch.setattr(stream, "PAUSE_EVERY", 1)
    stack = ["/torch/nn/functional.py:1771", "/model.py:5", "/model.py:10"]
    document = {"schema": "s", "sources": [None, {"code_file": "code/a.py", "code_line": 3, "file": "/model.py",
                                                  "line": 5, "stack": list(stack)}] * 50 + [{"stack": [1, "x"]}]}
    text = json.dumps(document)
    calls = []
    decoded = decode_document(text, lambda: calls.append(1))
    assert decoded == json.loads(text) and len(calls) >= 100
    stacks = [entry["stack"] for entry in decoded["sources"] if entry and "stack" in entry][:-1]
    assert all(a is b for s in stacks[1:] for a, b in zip(s, stacks[0]))


@pytest.mark.parametrize("text", ['{"types":{"T":{"methods":[{"graph":[[],[],[1,2]]}]}}} x', '{"types":{', "",
                                  '{"types":{"T":{"methods":[{"graph":[[],[],[1 2]]}]}}}', '{"a":1,}'])
def test_what_json_loads_refuses_is_refused(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        decode_document(text)


def test_the_tui_fetch_gives_the_ir_extract_ir_gives(sample_archives):
    path = str(sample_archives["gate_scripted"])
    fetched = irfetch.fetch(path, trust=False, inline=True, cancelled=lambda: False, index=lambda: None)
    with open_archive(path) as archive:
        theirs = extract_ir(archive, Options(inline=True)).ir
    assert fetched.ir.load == theirs.load == "meta"
    assert {k: v for k, v in fetched.ir.to_json().items() if k != "timings"} == \
        {k: v for k, v in theirs.to_json().items() if k != "timings"}


def test_a_refused_archive_comes_back_refused_with_the_ast_view(setstate_file_writer_archive):
    from tsinspect.archive.code import index_code

    path = str(setstate_file_writer_archive)
    with open_archive(path) as archive:
        fetched = irfetch.fetch(path, trust=False, inline=False, cancelled=lambda: False,
                                index=lambda: index_code(archive))
    assert fetched.ir.load == "refused" and "__setstate__" in fetched.ir.error.message
    assert fetched.index.classes  # the code index the ast view is read from


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_cancelled_fetch_ends_graph_and_its_torch_child(sample_archives):
    running = irfetch.Running(str(sample_archives["gate_scripted"]), trust=False, inline=True)
    seen: list[int] = []
    deadline = time.monotonic() + 120

    def cancelled() -> bool:  # once graph has started its torch child (or it is about to end anyway)
        seen.extend(pid for pid in _children(running.proc.pid) if pid not in seen)
        return bool(seen) or time.monotonic() > deadline

    with pytest.raises(irfetch.Cancelled):
        running.result(cancelled=cancelled, index=lambda: None)
    assert seen, "graph never started its torch child"
    assert running.proc.poll() is not None
    time.sleep(0.5)
    assert not [pid for pid in seen if _alive(pid)]
    assert not Path(running.folder.name).exists()


def test_no_document_is_graphs_error_line(tmp_path):
    png = tmp_path / "image.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(irfetch.FetchError) as caught:
        irfetch.fetch(str(png), trust=False, inline=False, cancelled=lambda: False, index=lambda: None)
    message = str(caught.value)
    assert message and "\n" not in message and not message.startswith("tsinspect: error:")


def test_a_truncated_document_is_refused():
    with pytest.raises(ValueError):
        ir_from_text('{"schema":"tsinspect.ir/2","types":{"T":')
