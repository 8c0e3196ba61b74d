"""IR model round trip, networkx views, and the meta copy's pickle rewrite (torch-free parts)."""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile

import pytest

from tsinspect.archive.reader import open_archive
from tsinspect.ir.metacopy import rewrite_storage_device, write_meta_copy
from tsinspect.ir.model import IR, Block, Graph, Node, Source, Value
from tsinspect.ir.run import extract_ir
from tsinspect.ir.views import INPUT, RETURN, GraphView, op_inventory


@pytest.fixture(scope="module")
def gate_ir(sample_archives) -> IR:
    with open_archive(str(sample_archives["gate_scripted"])) as archive:
        return extract_ir(archive).ir


def test_json_round_trip(gate_ir):
    doc = gate_ir.to_json()
    again = IR.from_json(doc)
    assert again == gate_ir
    assert again.to_json() == doc


def test_deep_nesting_round_trips_without_recursion():
    # 3000 nested blocks: far past Python's recursion limit
    graph = Graph([Value("x", "Tensor")], ["x"])
    nodes = graph.nodes
    for i in range(3000):
        node = Node(i, "prim::If", ["c"], [], blocks=[Block([], [], [])])
        nodes.append(node)
        nodes = node.blocks[0].nodes
    ir = IR("meta")
    from tsinspect.ir.model import Method, Module

    ir.modules.append(Module("", "T", [Method("forward", None, graph)]))
    again = IR.from_json(ir.to_json()).modules[0].methods[0].graph
    flat = [(n.id, n.kind, d) for n, d in graph.walk()]  # (dataclass == would itself recurse)
    assert [(n.id, n.kind, d) for n, d in again.walk()] == flat
    assert flat[-1][2] == 2999
    assert len(list(op_inventory(ir))) == 1


def test_def_use_reachability_and_counts(gate_ir):
    graph = gate_ir.module("").method("forward").graph
    view = GraphView(graph)
    assert view.where_defined("x.1") == INPUT
    users = {n.kind for n in view.where_used("x.1") if isinstance(n, Node)}
    assert {"prim::CallMethod", "aten::size"} <= users
    first_if = next(n for n in graph.nodes if n.kind == "prim::If")
    relu = first_if.blocks[0].nodes[0]
    assert view.where_defined(relu.outputs[0].name) is relu
    # a value returned by a block is used by the prim::If that owns it
    assert first_if in view.where_used(relu.outputs[0].name)
    view_node = next(n for n in graph.nodes if n.kind == "aten::view")
    assert view_node.id in view.downstream(first_if.id)
    assert RETURN in view.downstream(first_if.id)
    assert first_if.id in view.upstream(view_node.id)
    counts = view.op_counts()
    assert counts["prim::If"] == 2 and counts["prim::Loop"] == 1 and counts["aten::size"] == 2


def test_def_use_index_agrees_with_networkx(gate_ir):
    import networkx as nx

    for methods in gate_ir.types.values():
        for method in methods:
            view = GraphView(method.graph)
            assert set(view.nodes) == {n.id for n, _ in method.graph.walk()}
            for vertex in [*view.nodes, "input", "return"]:
                assert view.downstream(vertex) == nx.descendants(view.digraph, vertex)
                assert view.upstream(vertex) == nx.ancestors(view.digraph, vertex)
    with pytest.raises(KeyError):
        view.downstream(10**9)


def test_views_need_no_networkx_until_digraph_is_asked():
    import subprocess
    import sys

    code = ("import sys; from tsinspect.ir.views import GraphView; from tsinspect.ir.model import Graph, Value; "
            "GraphView(Graph([Value('x', 'Tensor')], ['x'])).downstream('input'); print('networkx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_source_properties():
    src = Source("code/__torch__.py", 12, "/a/models.py", 23)
    assert src.code_where == "code/__torch__.py:12" and src.where == "/a/models.py:23"
    assert Source.from_json(src.to_json()) == src and Source.from_json(None) is None


def _persid_pickle(shared_device_elsewhere: bool) -> bytes:
    """A protocol-2 pickle shaped like TorchScript's: two storages, the device string memoised."""
    out = bytearray(b"\x80\x02")

    def uni(text: str) -> bytes:
        raw = text.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    out += b"("  # MARK for the outer tuple
    out += b"(" + uni("storage") + b"q\x00" + b"ctorch\nFloatStorage\nq\x01" + uni("0") + uni("cpu") + b"q\x02"
    out += b"K\x04" + b"tQ"  # TUPLE, BINPERSID
    out += b"(" + b"h\x00" + b"h\x01" + uni("1") + b"h\x02" + b"K\x04" + b"tQ"
    if shared_device_elsewhere:
        out += b"h\x02"  # the same "cpu" string used as a plain value
    out += b"t."
    return bytes(out)


def _persids_and_strings(data: bytes):
    strings = []
    memo = {}
    ops = list(pickletools.genops(data))
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "BINPUT" and ops[i - 1][0].name == "BINUNICODE":
            memo[arg] = ops[i - 1][1]
        if op.name in ("BINUNICODE", "BINGET"):
            strings.append(arg if op.name == "BINUNICODE" else memo.get(arg))
    return strings


def test_rewrite_storage_device_keeps_other_uses_of_a_shared_string():
    original = _persid_pickle(shared_device_elsewhere=True)
    rewritten = rewrite_storage_device(original)
    assert rewritten is not None
    strings = _persids_and_strings(rewritten)
    # both storages now say meta; the plain use of "cpu" at the end still reads "cpu"
    assert strings.count("meta") == 2 and strings[-1] == "cpu"


def test_rewrite_refuses_what_it_does_not_understand():
    assert rewrite_storage_device(b"not a pickle") is None
    odd = b"\x80\x02(X\x03\x00\x00\x00abcK\x01tQ."  # a persistent id that is not a storage tuple
    assert rewrite_storage_device(odd) is None


def test_meta_copy_empties_parameters_and_keeps_small_constants(sample_archives, tmp_path):
    target = tmp_path / "copy.pt"
    with open_archive(str(sample_archives["gate_traced"])) as archive:
        info = write_meta_copy(archive, target)
        names = [r.entry.name for r in archive.records if not r.entry.is_dir]
    assert info.rewritten and info.constants_kept
    with zipfile.ZipFile(target) as z:
        assert z.namelist() == names  # same names, same order, same top folder
        sizes = {i.filename.split("/", 1)[1]: i.file_size for i in z.infolist()}
        pickled = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    assert all(sizes[n] == 0 for n in sizes if n.startswith("data/"))
    assert any(sizes[n] > 0 for n in sizes if n.startswith("constants/"))
    assert b"meta" in pickled and b"X\x03\x00\x00\x00cpu" not in pickled
    # the rewritten pickle is still a well-formed pickle
    assert list(pickletools.genops(io.BytesIO(pickled)))[-1][0].name == "STOP"


def test_child_deaths_become_one_line_errors():
    import signal

    from tsinspect.ir.run import _crash_error

    segv = _crash_error(-signal.SIGSEGV, b"")
    assert segv.kind == "crashed" and "SIGSEGV" in segv.message
    assert _crash_error(-signal.SIGKILL, b"").kind == "out_of_memory"
    assert _crash_error(-signal.SIGXCPU, b"").kind == "timeout"
    failed = _crash_error(1, b"Traceback...\nRuntimeError: boom\n")
    assert failed.kind == "crashed" and "RuntimeError: boom" in failed.message and "\n" not in failed.message
