"""The IR read from torch's printer (tsinspect.ir.printed, with code/ positions mapped back by
tsinspect.ir.origins) against a walk through torch's Python API node by node on a copy that keeps its debug
records (``Node.sourceRange()`` then names the original source itself): every node's kind, inputs, outputs,
types, attributes, blocks, source, scope and schema must be the same, so the reader cannot drift silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tsinspect.archive.reader import open_archive
from tsinspect.ir.extract import PRINTED_ONLY_ENV, Walked, encode
from tsinspect.ir.metacopy import write_full_copy, write_meta_copy
from tsinspect.ir.printed import GraphReader, Unsupported
from tsinspect.ir.run import Options, _decode, _holds_quantized_tensors, extract_ir, read_output, run_confined_child

REAL = Path(__file__).parent / "real"

# Everything the reader has to get right: nested blocks, loops, several outputs, a free function, a method of
# a submodule, a TorchScript class, strings that look like the printer's own syntax, non-ASCII text before the
# code (byte offsets), optional and container types, a tensor constant.
MODEL = '''
import torch
from typing import Dict, List, Optional, Tuple

def helper(x: torch.Tensor, k: int) -> torch.Tensor:
    # ünïcödé before the code moves byte offsets away from character offsets: ✓✓✓
    return x * k + 1.0000000000000001e-05

@torch.jit.script
class Box:
    def __init__(self, w: float):
        self.w = w

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w

class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor, n: int) -> Tuple[torch.Tensor, List[int]]:
        sizes: List[int] = []
        for i in range(n):
            if i % 2 == 0:
                x = self.lin(x)
            else:
                x = torch.relu(x)
            sizes.append(i)
        return x, sizes

class Outer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()
        self.table = {"a": 1}
        self.register_buffer("scale", torch.tensor([2.0, 3.0, 4.0]))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        note = "a ]( # fake.py:1:2 {} <Tensor> \\"quoted\\" ü"
        y, sizes = self.inner(x, len(note) % 3 + 2)
        if mask is not None:
            y = y.masked_fill(mask, 0.5)
        a, b = y.chunk(2, 0)
        out = {"y": helper(y, len(sizes)) * self.scale, "a": a, "b": b}
        out["box"] = Box(0.25).scale(y)
        return out

torch.jit.script(Outer()).save(__import__("sys").argv[1])
'''

TRACED = '''
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 4, 3)
        self.norm = torch.nn.LayerNorm(4)
    def forward(self, x):
        y = self.conv(x).transpose(1, 2)
        return self.norm(y) + torch.arange(4.0)
torch.jit.trace(M().eval(), torch.randn(1, 2, 8)).save(__import__("sys").argv[1])
'''


# Copies of one layer in an inlined forward, read from one template per distinct top-level node
# (tsinspect.ir.printed): copies that print alike but for value names, a string holding `%name` that differs
# per copy, a print with no output, and one layer whose constant (so type and attribute) differs.
LAYERS = '''
import torch
from typing import Final, List

class Layer(torch.nn.Module):
    k: Final[int] = 2

    def __init__(self, i: int):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.tag = "%x." + str(i)  # an attribute: the same GetAttr in every copy

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        print(self.tag, "%y")
        for i in range(n):
            if i % self.k == 0:
                x = self.lin(x)
        return x * self.k

class Other(Layer):
    k: Final[int] = 3

class Stack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([Layer(0), Layer(1), Layer(2), Other(3), Layer(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, 2)
        return x

torch.jit.script(Stack()).save(__import__("sys").argv[1])
'''


# Units that differ only in their code/ positions, within a graph and across graphs (the same forward in
# each traced Linear's class and file), and strings holding what a position looks like (` # file:1:2`).
POSITIONS = '''
import torch

class Tags(torch.nn.Module):
    def forward(self, s: str) -> str:
        s = s + "a # b.py:1:2"
        s = s + "a # b.py:1:2"
        s = s + "c"
        s = s + "c"
        return s + " # "

class Top(torch.nn.Module):
    def __init__(self):
        super().__init__()
        linears = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)])
        self.seq = torch.jit.trace(linears, torch.randn(1, 2))
        self.tags = Tags()

    def forward(self, x: torch.Tensor, s: str):
        return self.seq(x), self.tags(s)

torch.jit.script(Top()).save(__import__("sys").argv[1])
'''


def _build(tmp_path: Path, name: str, source: str) -> Path:
    script, target = tmp_path / f"{name}.py", tmp_path / f"{name}.pt"
    script.write_text(source, encoding="utf-8")
    subprocess.run([sys.executable, str(script), str(target)], check=True, cwd=tmp_path, capture_output=True)
    return target


def resolved(doc: dict) -> dict:
    """The document with every string and source index replaced by what it points to."""
    strings, sources = doc["strings"], doc["sources"]

    def graph(g):
        inputs, outputs, nodes = g
        return [[[name, strings[t]] for name, t in inputs], outputs, [node(n) for n in nodes]]

    def node(n):
        kind, inputs, outputs, attributes, blocks, source, scope, schema = n
        return [strings[kind], inputs, [[name, strings[t]] for name, t in outputs], attributes,
                [graph(b) for b in blocks] if blocks else None, sources[source] if source is not None else None,
                strings[scope] if scope is not None else None, strings[schema] if schema is not None else None]

    def method(m):
        return dict(m, **{k: graph(m[k]) for k in ("graph", "inlined") if m.get(k) is not None})

    return {"load": doc["load"], "error": doc["error"], "modules": doc["modules"],
            "types": {t: [method(m) for m in v["methods"]] for t, v in doc["types"].items()},
            "functions": {f: method(m) for f, m in doc["functions"].items()}}


def walked_through_torch(archive, tmp_path: Path) -> dict:
    """The extraction child walking every graph with torch's Python API, on a copy with its debug records."""
    copies, cwd = tmp_path / "walk", tmp_path / "walk-cwd"
    copies.mkdir()
    cwd.mkdir()
    copy = copies / "copy.pt"
    if _holds_quantized_tensors(archive):
        write_full_copy(archive, copy, 1 << 33)
        flags = ["--full"]
    else:
        flags = ["--rewritten"] if write_meta_copy(archive, copy).rewritten else []
    stdout, error = run_confined_child("tsinspect.ir.extract", ["--archive", str(copy), *flags, "--inline"], cwd,
                                       8 << 30, 300)
    assert error is None, error
    return _decode(read_output(stdout).body)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("printed")
    return {"scripted": _build(tmp, "scripted", MODEL), "traced": _build(tmp, "traced", TRACED),
            "layers": _build(tmp, "layers", LAYERS), "positions": _build(tmp, "positions", POSITIONS)}


def _same_as_the_walk(path: Path, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.setenv(PRINTED_ONLY_ENV, "1")  # a graph the reader cannot read fails the test, not walked
    archive = open_archive(str(path))
    printed = extract_ir(archive, Options(inline=True)).document
    assert printed["load"] in ("meta", "full"), printed["error"]
    expected = resolved(walked_through_torch(archive, tmp_path))
    got = resolved(printed)
    assert got == expected
    return got


@pytest.mark.parametrize("name", ["scripted", "traced", "layers"])
def test_printed_graphs_are_the_walked_graphs(built, name, tmp_path, monkeypatch):
    got = _same_as_the_walk(built[name], tmp_path, monkeypatch)
    nodes = [n for t in got["types"].values() for m in t for n in m["inlined"][2]]
    assert len(nodes) > 20
    assert any(n[5] and n[5]["file"] and n[5]["code_file"] for n in nodes)  # mapped back to the user's file
    if name == "scripted":
        kinds = {n[0] for n in nodes}
        assert {"prim::If", "prim::Loop", "prim::TupleUnpack", "prim::DictConstruct"} <= kinds
        assert got["functions"]  # helper and Box.scale
    elif name == "traced":
        assert any(n[5] and n[5].get("stack") for n in nodes)  # traced: the recorded call stack
    else:
        stack = got["types"]["__torch__.Stack"][0]["inlined"][2]
        assert len([n for n in stack if n[0] == "prim::Print" and not n[2]]) == 5
        assert [n[3] for n in stack if n[0] == "prim::Constant" and n[3] and n[3].get("value") == "%y"]


def test_units_that_differ_only_in_positions_share_templates_across_graphs(built, tmp_path, monkeypatch):
    import torch

    from tsinspect.ir.extract import NO_BLOCKS, Tables, _attributes, _dumps

    got = _same_as_the_walk(built["positions"], tmp_path, monkeypatch)
    tags = got["types"]["__torch__.Tags"][0]["graph"][2]
    assert sorted(n[3]["value"] for n in tags if n[0] == "prim::Constant") == [" # ", "a # b.py:1:2", "c"]
    assert len({n[5]["line"] for n in tags if n[0] == "aten::add"}) == 5  # its own line each
    module = torch.jit.load(str(built["positions"]))
    graphs = [module.tags.graph] + [getattr(module.seq, str(i)).graph for i in range(4)]
    units = sum(len(list(g.nodes())) + 1 for g in graphs)  # the return too
    read = []
    unit = GraphReader._unit
    monkeypatch.setattr(GraphReader, "_unit", lambda self, *a: read.append(1) or unit(self, *a))
    reader = GraphReader(Tables(True), _attributes, _dumps, NO_BLOCKS)
    for graph in graphs:
        reader.read(graph)
    assert len(read) < units - 6  # the third and fourth Linear's units (3 each) from templates


# Units that print alike once value names are cut out but differ: the types of values from earlier units
# (eq.int against eq.float_int), a value used in the unit that is defined there in some copies and not in
# others, strings holding `%name`; and copies with blocks and block parameters.
COPIES = """graph(%a : int, %b : float, %n : int):
  %one : int = prim::Constant[value=1]()
  %true : bool = prim::Constant[value=1]()
  %e1 : bool = aten::eq(%a, %one)
  %e2 : bool = aten::eq(%a, %one)
  %e3 : bool = aten::eq(%a, %one)
  %e4 : bool = aten::eq(%b, %one)
  %e5 : bool = aten::eq(%b, %one)
  %s1 : str = prim::Constant[value="%a and %one"]()
  %s2 : str = prim::Constant[value="%b and %one"]()
  %s3 : str = prim::Constant[value="%n and %one"]()
""" + "".join(f"""  %r{i} : bool = prim::If(%e1)
    block0():
      %q{i} : int = aten::add(%a, %one)
      %z{i} : bool = aten::eq({"%b" if i == 3 else f"%q{i}"}, %one)
      -> (%z{i})
    block1():
      -> (%e2)
  %l{i} : int = prim::Loop(%n, %true, %a)
    block0(%i{i} : int, %acc{i} : int):
      %next{i} : int = aten::add(%acc{i}, %i{i})
      -> (%true, %next{i})
  %u{i} : int, %v{i} : int = prim::TupleUnpack(%t)
""" for i in range(4)).replace("prim::TupleUnpack(%t)", "prim::TupleUnpack(%t0)").replace(
    "  %r0 :", "  %t0 : (int, int) = prim::TupleConstruct(%a, %one)\n  %r0 :", 1) + """  return (%r0, %r3, %l3, %s3)
"""


@pytest.mark.parametrize("chunk", [None, 40])  # 40 characters: cut at every top-level node
def test_copies_that_differ_are_read_as_the_walk_reads_them(monkeypatch, chunk):
    import json

    import torch

    from tsinspect.ir.extract import NO_BLOCKS, Tables, _attributes, _dumps, walk_graph

    graph = torch._C.parse_ir(COPIES)

    def resolved_graph(walked, tables):
        strings = list(tables.strings)

        def one(g):
            return [[[name, strings[t]] for name, t in g[0]], g[1], [node(n) for n in g[2]]]

        def node(n):
            return [strings[n[0]], n[1], [[name, strings[t]] for name, t in n[2]], n[3],
                    [one(b) for b in n[4]] if n[4] else None, n[5], n[6], strings[n[7]] if n[7] is not None else None]

        return one(json.loads("".join(walked.pieces())))

    if chunk is not None:
        monkeypatch.setattr("tsinspect.ir.printed.CHUNK", chunk)
    built = []
    unit = GraphReader._unit
    monkeypatch.setattr(GraphReader, "_unit", lambda self, *a: built.append(1) or unit(self, *a))
    tables = Tables()
    got = resolved_graph(Walked(*GraphReader(tables, _attributes, _dumps, NO_BLOCKS).read(graph)), tables)
    expected_tables = Tables()
    assert got == resolved_graph(walk_graph(graph, expected_tables), expected_tables)
    assert len(built) < len(got[2])  # some copies were written from templates
    schemas = [n[7] for n in got[2] if n[0] == "aten::eq"]
    assert schemas[0].startswith("aten::eq.int") and schemas[-1].startswith("aten::eq.float_int")


# the iterators torch's Python API offers on graphs, blocks and nodes: pybind ends each by throwing a C++ exception
ITERATORS = [("Graph", "nodes"), ("Graph", "inputs"), ("Graph", "outputs"), ("Block", "nodes"), ("Block", "inputs"),
             ("Block", "outputs"), ("Node", "blocks"), ("Node", "inputs"), ("Node", "outputs")]


def test_the_reader_runs_no_torch_iterator_to_its_end(built, tmp_path, monkeypatch):
    """Unwinding the C++ exception that ends a pybind iterator reads libtorch's exception tables: 0.75 MiB of
    pages the child touched (and kept) that torch's own print never does. The reader's answers stay the walk's."""
    import json

    import torch

    from tsinspect.ir.extract import NO_BLOCKS, Tables, _attributes, _dumps, walk_graph

    copy = tmp_path / "copy.pt"  # as the child loads it: without debug records, code/ positions printed
    write_meta_copy(open_archive(str(built["scripted"])), copy, debug_info=False)
    module = torch.jit.load(str(copy), map_location="meta")
    graphs = [torch._C.parse_ir(COPIES), module.graph, module.inlined_graph]
    graphs += [getattr(module, name).graph for name in module._c._method_names()]
    ended: list[str] = []
    for owner, name in ITERATORS:
        cls = getattr(torch._C, owner)

        def counted(self, _original=getattr(cls, name), _name=f"{owner}.{name}"):
            yield from _original(self)
            ended.append(_name)

        monkeypatch.setattr(cls, name, counted)
    tables = Tables(positions=True)
    reader = GraphReader(tables, _attributes, _dumps, NO_BLOCKS)
    read = [json.loads("".join(Walked(*reader.read(g)).pieces())) for g in graphs]
    assert ended == []
    monkeypatch.undo()
    assert read == [json.loads("".join(walk_graph(g, tables).pieces())) for g in graphs]  # the same tables
    assert any(k in tables.strings for k in ("prim::If", "prim::Loop"))


@pytest.mark.parametrize("name", ["silero_vad_v6.jit", "silero_vad_micro_2021.jit", "tch_foo7.pt"])
def test_printed_graphs_of_real_archives_are_the_walked_graphs(name, tmp_path, monkeypatch):
    """silero-vad (v6 scripted; micro 2021 quantized, so loaded from the full copy) and tch-rs's test
    model: see tests/real/SOURCES.md."""
    _same_as_the_walk(REAL / name, tmp_path, monkeypatch)


class _Printed:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def nodes(self):
        return iter(())

    def return_node(self):  # of a graph without nodes: the node before it is the graph's param node
        return _ParamNode()


class _ParamNode:
    def prev(self):
        return self

    def kind(self) -> str:
        return "prim::Param"


@pytest.mark.parametrize("text", [
    # a fusion group prints its subgraph after the graph
    "graph(%x : Tensor):\n  %y : Tensor = prim::FusionGroup_0(%x)\n  return (%y)\nwith prim::FusionGroup_0 = "
    "graph(%a : Tensor):\n  return (%a)\n",
    "graph(%x : Tensor):\n  %y : Tensor = aten::relu(%x)\n",  # no return
    "graph(%x : Tensor):\n  -> (%x)\n  return (%x)\n",  # a block end outside a block
    "graph(%x : Tensor):\n  block0():\n  return (%x)\n",  # a block without its node
    "graph(%x : Tensor):\n  %y : Tensor = aten::relu(%z)\n  return (%y)\n",  # an input never defined
    "graph(%x : Tensor)\n  return (%x)\n",  # a header cut short
    # an If of one block (torch builds two: the node walk takes them without running the iterator to its end)
    "graph(%x : Tensor):\n  %y : Tensor = prim::If(%x)\n    block0():\n      -> (%x)\n  return (%y)\n",
    "",
])
def test_text_the_reader_cannot_read_exactly_is_unsupported(text):
    from tsinspect.ir.extract import NO_BLOCKS, Tables, _attributes, _dumps

    tables = Tables()
    reader = GraphReader(tables, _attributes, _dumps, NO_BLOCKS)
    reader.types["Tensor"] = tables.string("Tensor")
    with pytest.raises(Unsupported):
        reader.read(_Printed(text))


def test_encode_writes_graph_pieces_in_place_of_their_placeholders():
    import json

    graph = Walked('[[["x",0]],["y"],', ['[0,["x"],[["y",0]],null,null,null,null,null]'] * 2, [])
    doc = {"schema": "s", "timings": {}, "types": {"T": {"methods": [{"name": "f", "graph": graph}]}},
           "functions": {}, "strings": ["Tensor"], "sources": [], "note": '"0123456789abcdef:0"'}
    header, body = "".join(encode(doc)).split("\n", 1)
    assert json.loads(header)["method_names"] == {"T": ["f"]}
    decoded = json.loads(body)
    assert decoded["types"]["T"]["methods"][0]["graph"][2][1][0] == 0
    assert decoded["note"] == '"0123456789abcdef:0"'


def test_the_parent_places_the_positions_the_child_sends_and_refuses_malformed_ones():
    """The child sends code/ positions in its header and leaves ``sources`` empty; the parent maps them
    (tsinspect.ir.origins) into the body it relays. A position table that is not [file, line, column]
    triples, or a body that does not end with the empty table, is unreadable output, not a crash."""
    import json

    from tsinspect.ir.origins import CodeSources
    from tsinspect.ir.run import Transport, _placed

    code = b"def forward(self):\n  return 1\n"
    sources = CodeSources({"code/__torch__/m.py": code}.get, ["code/__torch__/m.py"])
    body = b'{"schema":"tsinspect.ir/2","strings":[],"sources":[]}'
    header = {"schema": "tsinspect.ir/2", "positions": [["code/__torch__/m.py", 2, 2], ["code/__torch__/x.py", 1, 0]]}
    placed = _placed(Transport(header, body), sources)
    assert "positions" not in placed
    # no debug records: torch names the code position itself as the node's place
    assert json.loads(placed.body)["sources"] == [
        {"code_file": None, "code_line": None, "file": "code/__torch__/m.py", "line": 2},
        {"code_file": None, "code_line": None, "file": "code/__torch__/x.py", "line": 1}]
    for bad_positions, bad_body in [([["code/m.py", "2", 2]], body), ([["code/m.py", True, 2]], body),
                                    ([["code/m.py", 2]], body), ({"a": 1}, body),
                                    ([["code/m.py", 2, 2]], body.replace(b'"sources":[]', b'"sources":[1]')),
                                    ([["code/m.py", 2, 2]], body.replace(b'"sources":[]}', b'"sources":[],"x":1}'))]:
        failed = _placed(Transport({"schema": "tsinspect.ir/2", "positions": bad_positions}, bad_body), sources)
        assert failed["load"] == "failed" and "unreadable output" in failed["error"]["message"]


def test_a_method_that_calls_nothing_does_not_free_the_kept_inlined_forward():
    """Inlined graphs are kept alive to spare torch's slow free; a root's second method that calls nothing
    inlines to itself and must not count as large as the forward (which was then freed: 0.56 s at 205k
    nodes)."""
    import torch

    from tsinspect.ir.extract import KeptGraphs, Tables, walk_modules

    class Leaf(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    class Root(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Leaf(), Leaf()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

        @torch.jit.export
        def small(self, n: int) -> int:
            return n * 2

    kept = KeptGraphs()
    _, types, _ = walk_modules(torch.jit.script(Root())._c, None, None, True, Tables(), kept)
    root = next(t for name, t in types.items() if name.endswith("Root"))
    assert [m["name"] for m in root["methods"]] == ["forward", "small"]
    assert kept.largest == 3 and len(kept.graphs) == 3  # Root.forward, Root.small and Leaf.forward, all kept


@pytest.mark.parametrize("path", sorted([*(Path(__file__).parent.parent / "samples").glob("*.pt*"),
                                         *REAL.glob("*.p*"), *REAL.glob("*.jit")]), ids=lambda p: p.name)
def test_the_source_table_written_per_record_is_the_table_of_parsed_sources(path):
    """``CodeSources.table`` writes each debug record's part of an entry once: the same JSON as the entries
    parsed one by one, at every line start and a few columns of every code file, and at odd positions."""
    import json

    from tsinspect.archive.problems import ArchiveError
    from tsinspect.ir.run import _code_sources

    try:
        archive = open_archive(str(path))
    except ArchiveError:
        pytest.skip("not an archive")
    sources = _code_sources(archive)
    positions = [["", 1, 0], ['code/"quoted".py', 1, 0], ["code/none.py", 3, 2]]
    for name in sources._code_files:
        lines = sources._read(name).count(b"\n") + 1
        positions += [[name, line, col] for line in range(-1, lines + 2) for col in (0, 4, 9)]
    assert sources.table(positions) == json.dumps(sources.sources(positions), separators=(",", ":")).encode()


def test_the_child_imports_only_what_it_uses():
    """The extraction child's own modules, before it imports torch: not the parent's dataclasses (``model``:
    169 KiB at the child's peak for one string, the schema name)."""
    code = "import sys, tsinspect.ir.extract; print(' '.join(sorted(sys.modules)))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = set(listed.split())
    assert "tsinspect.ir.extract" in modules
    assert not {"torch", "tsinspect.ir.model", "tsinspect.ir.run", "tsinspect.archive"} & modules


def test_freeing_the_kept_graphs_gives_their_heap_back(monkeypatch):
    """Python's objects never reuse the heap torch's freed graphs leave (they come from arenas of their own)."""
    from tsinspect.ir import extract

    released = []
    monkeypatch.setattr(extract, "_release_free_heap", lambda: released.append(1))
    kept = extract.KeptGraphs()
    kept.make_room(10)  # nothing kept: nothing freed
    kept.keep(object(), 10)
    kept.make_room(1)  # small beside the kept one: kept
    assert released == [] and len(kept.graphs) == 1
    kept.make_room(10)
    assert released == [1] and kept.graphs == []
