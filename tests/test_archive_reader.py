"""The torch-free archive layer on real archives: formats, records, tensors, modules, methods, debug info."""

from __future__ import annotations

import pytest

from helpers import SAMPLES, sample_line
from tsinspect.archive.debuginfo import load_source_map
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import summarize

FORMATS = {
    "gate_scripted.pt": "torchscript", "gate_traced.pt": "torchscript", "gate_extra.pt": "torchscript",
    "gate_lite.ptl": "lite", "gate_state_dict.pt": "torch.save", "plain_scripted.pt": "torchscript",
}


@pytest.mark.parametrize("name,fmt", FORMATS.items())
def test_format_and_top_folder(name, fmt):
    with open_archive(SAMPLES / name) as archive:
        assert archive.format == fmt
        assert archive.prefix == name.rsplit(".", 1)[0] + "/"
        assert archive.problems == []


def test_top_folder_is_taken_from_the_entries_not_assumed(tmp_path):
    # torch names the folder after the file; a renamed file keeps the old folder name
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes((SAMPLES / "gate_scripted.pt").read_bytes())
    with open_archive(renamed) as archive:
        assert archive.prefix == "gate_scripted/"
        assert {r.kind for r in archive.records} >= {"code", "debug_info", "pickle", "tensor_data", "version"}


def test_scripted_summary():
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        s = summarize(archive)
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in s.tensors] == [
        ("proj.weight", "float32", [4, 4], 64), ("proj.bias", "float32", [4], 16)]
    assert s.tensor_kinds == {"proj.weight": "parameter", "proj.bias": "parameter"}
    assert [t.record for t in s.tensors] == ["data/0", "data/1"]
    assert [m.path for m in s.modules.walk()] == ["", "proj", "drop"]
    assert s.modules.type == "__torch__.models.Gate"
    assert s.modules.training is False
    assert ("__torch__.models.Gate", "forward") in {(m.owner, m.name) for m in s.methods}
    assert s.versions["file_format"] == 3
    assert s.constants == [] and s.traced_inputs == []


def test_traced_summary_has_constants_and_example_inputs():
    with open_archive(SAMPLES / "gate_traced.pt") as archive:
        s = summarize(archive)
    # the unrolled loop's float(i) and the -1.0 became tensor constants
    assert [t.name for t in s.constants] == ["c0", "c1", "c2"]
    assert [(t.name, t.dtype, t.shape) for t in s.traced_inputs] == [("forward[0]", "float32", [2, 4])]
    assert "___torch_mangle" in s.modules.type


def test_lite_archive_has_bytecode_version():
    with open_archive(SAMPLES / "gate_lite.ptl") as archive:
        s = summarize(archive)
    assert s.versions["bytecode"] == 8
    assert {"bytecode.pkl", "mobile_debug_handles.pkl", "callstack_debug_map.pkl"} <= set(archive.by_name)


def test_state_dict_tensors_named_by_key():
    with open_archive(SAMPLES / "gate_state_dict.pt") as archive:
        s = summarize(archive)
    assert [t.name for t in s.tensors] == ["proj.weight", "proj.bias"]
    assert s.modules is None and s.code_files == []


def test_extra_files_listed_with_nested_names():
    with open_archive(SAMPLES / "gate_extra.pt") as archive:
        s = summarize(archive)
    assert sorted(r.name for r in s.extra_files) == ["extra/meta.json", "extra/notes/readme.txt"]


def test_scripted_debug_info_maps_code_lines_to_model_source():
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        code = archive.read("code/__torch__/models.py", 1 << 20)
        source_map = load_source_map(archive, "code/__torch__/models.py")
    assert source_map.layout == "string_table"
    by_text = {}
    for line, origin in zip(code.decode().splitlines(), source_map.line_origins(code)):
        if origin:
            by_text.setdefault(line.strip(), origin)
    relu = by_text["h0 = torch.relu(h)"]
    assert relu.file.endswith("models.py") and relu.line == sample_line("if-then")
    assert relu.text.startswith("h = torch.relu(h)")
    assert by_text["if bool(torch.gt(torch.sum(h), 0)):"].line == sample_line("if-cond")
    assert by_text["for i in range(torch.size(x, 0)):"].line == sample_line("loop")


def test_traced_debug_info_carries_the_call_stack():
    with open_archive(SAMPLES / "gate_traced.pt") as archive:
        [code_name] = [r.name for r in archive.records_of("code") if "models" in r.name]
        code = archive.read(code_name, 1 << 20)
        origins = [o for o in load_source_map(archive, code_name).line_origins(code) if o]
    tanh = [o for o in origins if o.line == sample_line("else-body")]
    assert tanh, "the traced else branch should map back to its source line"
    assert tanh[0].stack and tanh[0].stack[0][2] == "forward"
    assert not [o for o in origins if o.line == sample_line("if-then")], "the trace never ran the relu line"


def test_records_are_not_read_until_asked(tmp_path):
    # a storage record with a bad CRC is not noticed by info (it never reads weights)
    data = bytearray((SAMPLES / "gate_scripted.pt").read_bytes())
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        entry = archive.find("data/0").entry
    data[entry.data_offset] ^= 0xFF
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with open_archive(path) as archive:
        summarize(archive)
        assert not [p for p in archive.problems if p.kind == "crc_mismatch"]
        archive.read("data/0", 1 << 20)
        assert [p.member for p in archive.problems if p.kind == "crc_mismatch"] == ["gate_scripted/data/0"]


def test_fixture_quantized_archive_tensors(quantized_archive):
    with open_archive(quantized_archive) as archive:
        s = summarize(archive)
    assert s.format == "torchscript"
    assert any(t.dtype in ("qint8", "quint8") and t.quantization for t in s.tensors + s.constants)
    assert any(m.name == "__setstate__" for m in s.methods)


@pytest.mark.parametrize("name,fmt,container", [
    ("legacy", "legacy", "pickle"), ("pt2", "pt2", "zip"), ("torch.package", "torch.package", "zip"),
    ("flatbuffer", "lite", "flatbuffer"), ("whole_module", "torch.save", "zip")])
def test_other_formats_are_told_apart(format_zoo, name, fmt, container):
    with open_archive(format_zoo[name]) as archive:
        s = summarize(archive)
    assert (s.format, s.container) == (fmt, container)
    assert s.problems == []


def test_torch_package_code_is_indexed_under_its_module(format_zoo):
    with open_archive(format_zoo["torch.package"]) as archive:
        s = summarize(archive)
    assert any(m.owner == "__torch__.torch.nn.modules.container.Sequential" for m in s.methods), \
        [m.qualname for m in s.methods]
    assert s.versions["file_format"] == 6


def test_flatbuffer_is_named_not_browsed(format_zoo):
    from helpers import run_cli

    assert "FlatBuffer" in run_cli("info", format_zoo["flatbuffer"]).stdout
    proc = run_cli("ls", format_zoo["flatbuffer"], check=2)
    assert "FlatBuffer mobile model" in proc.stderr


def test_legacy_debug_info_layout_is_read(tmp_path):
    """The string-table-free layout torch still writes on request: (offset, (text, file, line), tag)."""
    import subprocess
    import sys

    script = (
        "import torch, warnings; warnings.simplefilter('ignore')\n"
        "torch._C._set_should_use_format_with_string_table(False)\n"
        "def f(x: torch.Tensor) -> torch.Tensor:\n"
        "    if x.sum() > 0:\n"
        "        x = torch.relu(x)\n"
        "    return x\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return f(x)\n"
        f"torch.jit.script(M()).save({str(tmp_path / 'legacy_dbg.pt')!r})\n")
    (tmp_path / "make.py").write_text(script)
    subprocess.run([sys.executable, str(tmp_path / "make.py")], check=True, capture_output=True)
    with open_archive(tmp_path / "legacy_dbg.pt") as archive:
        [name] = [r.name for r in archive.records_of("code") if r.name.endswith("__torch__.py")]
        code = archive.read(name, 1 << 20)
        source_map = load_source_map(archive, name)
    assert source_map.layout == "legacy"
    origins = {o.line: o.text for o in source_map.line_origins(code) if o}
    assert origins.get(5) == "x = torch.relu(x)", origins


def test_oldest_debug_info_layout_is_read():
    """2-tuples without a tag, as archives from before tags were added have them."""
    from tsinspect.archive.debuginfo import parse_source_map
    from tsinspect.archive.pickles import PTuple

    source = PTuple(["def f(x):\n    return x + 1\n", "/src/old.py", 10])
    records = PTuple([PTuple([0, PTuple([source, 0, 0])]), PTuple([7, PTuple([source, 14, 26])])])
    source_map = parse_source_map(records)
    origin = source_map.origin_at(9)
    assert (origin.file, origin.line, origin.text) == ("/src/old.py", 11, "return x + 1")


# ----- the zip torch reads: lookup, end record, zip64, top folder (ground truth: torch's own reader)

_TORCH_LOOKUP = r"""
import json, sys
import torch
out = []
for path, names in json.loads(sys.argv[1]):
    reader = torch._C.PyTorchFileReader(path)
    out.append([reader.get_record(n).decode() if reader.has_record(n) else None for n in names])
print(json.dumps(out))
"""


def test_lookup_lands_where_torch_does_on_case_twins(tmp_path):
    """Random archives full of names that differ only in case: for every name, the entry tsinspect's lookup
    resolves is the one torch's reader returns (miniz's heap sort and binary search decide, not the order)."""
    import json
    import random
    import subprocess
    import sys

    import hostile

    rng = random.Random(11)
    jobs, expected = [], []
    for trial in range(25):
        names = []
        for _ in range(rng.randint(2, 40)):
            base = rng.choice(["data.pkl", "code/a.py", "constants.pkl", f"x{rng.randint(0, 4)}", "bytecode.pkl"])
            names.append("".join(c.upper() if rng.random() < 0.4 else c for c in base))
        members = [hostile.Member(b"arch/" + n.encode(), f"#{i}".encode()) for i, n in enumerate(names)]
        members.insert(rng.randint(0, len(members)), hostile.Member(b"arch/version", b"3"))
        path = tmp_path / f"{trial}.pt"
        path.write_bytes(hostile.build_zip(members))
        queries = sorted({n.lower() for n in names}) + ["DATA.PKL", "absent"]
        jobs.append((str(path), queries))
        with open_archive(path) as archive:
            expected.append([None if (r := archive.lookup(q)) is None else archive.read(r, 100).decode()
                             for q in queries])
    proc = subprocess.run([sys.executable, "-c", _TORCH_LOOKUP, json.dumps(jobs)], capture_output=True,
                          text=True, timeout=300)
    assert json.loads(proc.stdout) == expected, proc.stderr[-2000:]


def test_shadowed_records_are_marked_and_views_show_torchs_pick(tmp_path):
    import hostile

    members = hostile.sample_members("gate_state_dict.pt")
    top = hostile.top("gate_state_dict.pt")
    path = tmp_path / "twin.pt"
    path.write_bytes(hostile.build_zip(members + [hostile.Member(top + b"DATA.PKL", b"\x80\x02N.")]))
    with open_archive(path) as archive:
        chosen = archive.lookup("data.pkl")
        assert archive.by_name["Data.Pkl"] is chosen and archive.find("DATA.PKL") is chosen
        others = [r for r in archive.records if r.name.lower() == "data.pkl" and r is not chosen]
        assert len(others) == 1 and others[0].shadowed_by is chosen and not others[0].torch_reads
        assert [r.name for r in archive.torch_records()].count(chosen.name) == 1
        assert {p.kind for p in archive.problems} >= {"case_shadowed_name"}
        assert archive.pickle("data.pkl") is archive.pickle(chosen.name)  # one cache entry per entry read


def test_entries_past_the_declared_count_are_not_torchs(tmp_path):
    import hostile

    members = hostile.sample_members("gate_state_dict.pt")
    extra = hostile.Member(hostile.top("gate_state_dict.pt") + b"extra/past.txt", b"x")
    path = tmp_path / "count.pt"
    path.write_bytes(hostile.build_zip(members + [extra], count=len(members)))
    with open_archive(path) as archive:
        past = archive.records[-1]
        assert past.hidden and not past.torch_reads and archive.lookup("extra/past.txt") is None
        assert archive.zip.torch_error is None


def test_end_record_and_zip64_as_torch_picks_them(tmp_path):
    """The last end record even when its comment runs past the end; zip64 through the locator's offset."""
    import evil_cases

    for case_id, kind in (("two_end_records", "several_end_records"), ("zip64_locator_elsewhere",
                                                                       "zip64_record_moved")):
        path = tmp_path / f"{case_id}.pt"
        path.write_bytes(evil_cases.BY_ID[case_id].build(str(tmp_path / "marker")))
        with open_archive(path) as archive:
            assert kind in {p.kind for p in archive.problems}
            assert b"system" in archive.read(archive.lookup("data.pkl"), 1 << 20)  # the payload's directory


def test_shared_tensors_are_shown_once_then_referenced(tmp_path):
    """Issue 18 item 8: a tensor the memo hands out twice (an LSTM's _flat_weights) is one tensor, printed
    once with an anchor and then as a reference, in text and in JSON."""
    import json

    import hostile
    from helpers import run_cli

    path = tmp_path / "shared.pt"
    path.write_bytes(hostile.shared_deep_tensors(tensors=3, depth=2, refs=3))
    text = run_cli("pickle", path).stdout
    assert text.count("Tensor float32[4x4]") == 3, text
    assert text.count("*1 (shown above)") == 2 and "&3" in text, text
    value = json.loads(run_cli("pickle", path, "--json").stdout)["value"]
    inner = value[0]
    assert [item.get("$ref") for item in inner[3:]] == [1, 2, 3, 1, 2, 3]
    assert all("$tensor" in item["value"] for item in inner[:3])


def test_pickle_json_is_bounded_by_values_and_string_length():
    """A long string the memo hands out many times is written once ($id, then $ref) and cut ($str); past
    max_values the rest of the tree is one $truncated marker, and what is written is still JSON."""
    import json
    import pickle

    from tsinspect.archive.pickles import walk
    from tsinspect.archive.pickletree import MAX_JSON_STR, to_json

    big = "s" * (MAX_JSON_STR * 3)
    value = walk(pickle.dumps([big] * 50 + list(range(100)), protocol=2)).value
    out = to_json(value)
    assert out[0] == {"$id": 1, "value": {"$str": big[:MAX_JSON_STR], "length": len(big)}}
    assert out[1:50] == [{"$ref": 1}] * 49 and len(json.dumps(out)) < 2 * MAX_JSON_STR
    cut = to_json(value, max_values=20)
    assert cut[-1] == {"$truncated": "output stopped after 20 values"} and json.dumps(cut)


def _walked_control_flow(method) -> bool:
    import ast

    return any(isinstance(n, (ast.If, ast.For, ast.While)) for n in ast.walk(method.node))


def test_control_flow_word_search_agrees_with_the_tree(tmp_path):
    """``has_control_flow`` skips the tree walk when the method's lines hold none of if/for/while; it must
    answer as the walk does, on every method of the samples and real archives and on awkward spellings."""
    from pathlib import Path

    from tsinspect.archive.code import index_code

    real = Path(__file__).resolve().parent / "real"
    paths = sorted(SAMPLES.glob("*.pt*")) + sorted(p for p in real.iterdir() if p.suffix in (".pt", ".jit", ".pth"))
    code = ("class M(Module):\n  def a(self):\n    if(self.x):\n      pass\n    return 1\n"
            "  def b(self):\n    return [i for i in range(3)]\n"
            "  def c(self):\n    return 1 if self.x else 2\n"
            "  def d(self, elif_, for_):\n    x = 'if for while'\n    return x\n"
            "  def e(self):\n    for(a, b)in self.x:\n      pass\n    return 1\n"
            "  def f(self):\r\n    while\\\n  self.x:\r\n      pass\r\n    return 1\r\n"
            "  def g(self):\n    return 1\n"
            "  def h(self):\n    x = 1\n    for i in self.x: x = i\n\n  # a comment\n"
            "  def i(self):\r    x = 1; y = 2\r    if self.x:\r      pass\r    return x\r"
            "  def j(self):\n    x = (1,\n      2) if self.x else 3\n    return [y\n      for y in x]\n")
    made = tmp_path / "m.pt"
    import zipfile

    with zipfile.ZipFile(made, "w") as zf:
        zf.writestr("m/code/__torch__/m.py", code)
        zf.writestr("m/data.pkl", b"\x80\x02N.")
    checked = 0
    for path in [*paths, made]:
        with open_archive(str(path)) as archive:
            index = index_code(archive)
            for method in index.methods:
                assert index.has_control_flow(method) == _walked_control_flow(method), (path.name, method.qualname)
                checked += 1
    with open_archive(str(made)) as archive:
        index = index_code(archive)
        found = {m.name: index.has_control_flow(m) for m in index.methods}
    assert found == {"a": True, "b": False, "c": False, "d": False, "e": True, "f": True, "g": False, "h": True,
                     "i": True, "j": False}
    assert checked > 100


def test_each_pickle_record_is_read_once_by_the_summary_the_scan_and_the_ir_source_map() -> None:
    """The summary reads data.pkl without walking it; the safety scan (which walks every pickle) and the
    parent's source map (tsinspect.ir.run, the .debug_pkl records) take the bytes already read instead of
    reading (and charging to the inflate budget) the record again."""
    from tsinspect.archive import records as rk
    from tsinspect.archive.code import index_code
    from tsinspect.ir.run import _code_sources, _holds_quantized_tensors
    from tsinspect.safety.codescan import scan_archive

    archive = open_archive(str(SAMPLES / "gate_scripted.pt"))
    reads: dict[str, int] = {}
    read = archive.read

    def counted(record, limit):
        reads[record.name] = reads.get(record.name, 0) + 1
        return read(record, limit)

    archive.read = counted
    summarize(archive)
    scan_archive(archive, index_code(archive, outlined=False))
    sources = _code_sources(archive)
    sources.prefetch()
    pickles = [r.name for r in archive.records if r.name.endswith((".pkl", ".debug_pkl"))]
    assert any(r.kind == rk.DEBUG_INFO for r in archive.records)
    _holds_quantized_tensors(archive)
    assert {name: reads.get(name) for name in pickles} == {name: 1 for name in pickles}
