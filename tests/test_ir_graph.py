"""``tsinspect graph`` and ``ops`` run as a user runs them, on scripted, traced, lite, quantized, real,
custom-op and hostile archives. torch runs only in the extraction child."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import run_cli, sample_line
from tsinspect.safety.sandbox import support


def graph_json(*args, check: int = 0) -> dict:
    """The document, its compact graphs read back through tsinspect.ir.model as one dict per node."""
    return expand(json.loads(run_cli("graph", *map(str, args), "--json", check=check).stdout))


def expand(doc: dict) -> dict:
    from tsinspect.ir.model import IR

    if doc.get("load") not in ("meta", "full"):
        return doc
    ir = IR.from_json(doc)

    def values(items):
        return [{"name": v.name, "type": v.type} for v in items]

    def graph(g):
        if g is None:
            return None
        out = {"inputs": values(g.inputs), "outputs": g.outputs, "nodes": []}
        todo = [(g.nodes, out["nodes"])]
        while todo:
            nodes, dest = todo.pop()
            for n in nodes:
                item = {"id": n.id, "kind": n.kind, "inputs": n.inputs, "outputs": values(n.outputs),
                        "attributes": n.attributes, "source": n.source.to_json() if n.source else None,
                        "scope": n.scope, "schema": n.schema, "blocks": []}
                for b in n.blocks:
                    item["blocks"].append({"inputs": values(b.inputs), "outputs": b.outputs, "nodes": []})
                    todo.append((b.nodes, item["blocks"][-1]["nodes"]))
                dest.append(item)
        return out

    def method(m):
        out = {"name": m.name, "schema": m.schema, "error": m.error, "graph": graph(m.graph)}
        if m.inlined:
            out["inlined"] = graph(m.inlined)
        return out

    return dict(doc, types={name: {"methods": [method(m) for m in ms]} for name, ms in ir.types.items()},
                functions={name: method(m) for name, m in ir.functions.items()})


def walk(nodes):
    """JSON nodes in pre-order (a node, then its blocks' nodes)."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        for block in reversed(node["blocks"]):
            stack.extend(reversed(block["nodes"]))


def methods(doc: dict, path: str) -> list[dict]:
    module = next(m for m in doc["modules"] if m["path"] == path)
    return doc["types"][module["type"]]["methods"]


def method(doc: dict, path: str, name: str) -> dict:
    return next(m for m in methods(doc, path) if m["name"] == name)


@pytest.fixture(scope="module")
def scripted_doc(sample_archives):
    return graph_json(sample_archives["gate_scripted"])


def test_scripted_graph_json_keeps_control_flow_with_sources(scripted_doc):
    doc = scripted_doc
    assert doc["schema"] == "tsinspect.ir/2" and doc["load"] == "meta" and doc["error"] is None
    assert "Tensor" in doc["strings"] and doc["sources"]  # the compact document's tables
    assert [m["path"] for m in doc["modules"]] == ["", "proj", "drop"]
    forward = method(doc, "", "forward")
    graph = forward["graph"]
    assert [v["type"] for v in graph["inputs"]] == ["__torch__.models.Gate", "Tensor"]
    nodes = list(walk(graph["nodes"]))
    for node in nodes:
        assert {"kind", "inputs", "outputs", "blocks", "source", "attributes", "id", "scope"} <= node.keys()
    ifs = [n for n in graph["nodes"] if n["kind"] == "prim::If"]
    assert len(ifs) == 2 and all(len(n["blocks"]) == 2 for n in ifs)
    first_if = ifs[0]
    assert first_if["source"]["line"] == sample_line("if-cond")
    assert first_if["source"]["file"].endswith("models.py")
    assert first_if["source"]["code_file"] == "code/__torch__/models.py"
    relu = first_if["blocks"][0]["nodes"][0]
    assert relu["kind"] == "aten::relu" and relu["source"]["line"] == sample_line("if-then")
    loop = next(n for n in graph["nodes"] if n["kind"] == "prim::Loop")
    assert loop["source"]["line"] == sample_line("loop")
    assert [n["kind"] for n in loop["blocks"][0]["nodes"]] == ["aten::Float", "aten::add"]
    assert [n["id"] for n in nodes] == list(range(len(nodes)))  # ids number nodes in pre-order
    call = next(n for n in nodes if n["kind"] == "prim::CallMethod")
    assert call["attributes"] == {"name": "forward"}
    assert call["source"]["line"] == sample_line("proj")


def test_graph_json_has_the_free_functions_methods_call(scripted_doc):
    """Dropout.forward calls torch.nn.functional.dropout (prim::CallFunction): its graph is in "functions"."""
    (name,) = scripted_doc["functions"]
    assert name == "__torch__.torch.nn.functional.dropout"
    function = scripted_doc["functions"][name]
    assert function["error"] is None and function["schema"].startswith("dropout(")
    nodes = list(walk(function["graph"]["nodes"]))
    assert "prim::RaiseException" in {n["kind"] for n in nodes}
    assert all(n["source"]["file"].endswith("functional.py") for n in nodes if n["kind"] == "aten::dropout")


def test_scripted_graph_text_nests_blocks_with_source_lines(sample_archives):
    out = run_cli("graph", sample_archives["gate_scripted"], "--module", "").stdout
    lines = out.splitlines()
    assert lines[0].startswith("# load: meta")
    if_line = next(i for i, line in enumerate(lines) if "= prim::If(" in line)
    assert f"models.py:{sample_line('if-cond')}" in lines[if_line]
    indent = len(lines[if_line]) - len(lines[if_line].lstrip())
    block = lines[if_line + 1]
    assert block.strip() == "block0():" and len(block) - len(block.lstrip()) == indent + 2
    relu = lines[if_line + 2]
    assert "aten::relu" in relu and len(relu) - len(relu.lstrip()) == indent + 4
    assert f"models.py:{sample_line('if-then')}" in relu
    assert "module proj" not in out  # --module '' is the root only


def test_traced_graph_has_no_branch_and_keeps_constant_values(sample_archives):
    doc = graph_json(sample_archives["gate_traced"], "--module", "")
    assert doc["load"] == "meta"
    nodes = list(walk(method(doc, "", "forward")["graph"]["nodes"]))
    kinds = [n["kind"] for n in nodes]
    assert "prim::If" not in kinds and "prim::Loop" not in kinds
    assert kinds.count("aten::add") == 2  # the loop, unrolled for the example input
    tensor_constants = [n["attributes"]["value"]["tensor"] for n in nodes
                        if n["kind"] == "prim::Constant" and isinstance(n["attributes"].get("value"), dict)]
    assert sorted(t["value"] for t in tensor_constants) == [-1.0, 0.0, 1.0]
    tanh = next(n for n in nodes if n["kind"] == "aten::tanh")
    assert tanh["source"]["line"] == sample_line("else-body")
    assert tanh["source"]["stack"][0].endswith(f"models.py:{sample_line('else-body')}")


def test_inline_expands_submodule_calls(sample_archives):
    doc = graph_json(sample_archives["plain_scripted"], "--module", "", "--inline")
    fwd = method(doc, "", "forward")
    assert "prim::CallMethod" in {n["kind"] for n in walk(fwd["graph"]["nodes"])}
    inlined = {n["kind"] for n in walk(fwd["inlined"]["nodes"])}
    assert "aten::linear" in inlined and "prim::CallMethod" not in inlined
    text = run_cli("graph", sample_archives["plain_scripted"], "--module", "", "--inline").stdout
    assert "aten::linear" in text and "prim::CallMethod" not in text


def test_lite_archive_graph(sample_archives):
    doc = graph_json(sample_archives["gate_lite"], "--method", "forward")
    assert doc["load"] == "meta"
    assert "prim::If" in {n["kind"] for n in walk(method(doc, "", "forward")["graph"]["nodes"])}


def test_quantized_takes_the_full_load_and_notes_benign_setstate(quantized_archive):
    proc = run_cli("graph", quantized_archive, "--json")
    doc = expand(json.loads(proc.stdout))
    assert doc["load"] == "full"
    assert any("quantized tensors have no meta kernels; loaded a full copy" in n for n in doc["notes"])
    names = [m["name"] for m in methods(doc, "conv")]
    assert "forward" in names and "__setstate__" in names
    kinds = {n["kind"] for n in walk(method(doc, "conv", "forward")["graph"]["nodes"])}
    assert "quantized::conv2d" in kinds
    assert "tsinspect: note:" in proc.stderr and "Conv2d.__setstate__" in proc.stderr
    assert [f["verdict"] for f in doc["gate"]["findings"] if f["kind"] == "setstate"] == ["benign"]


def test_silero_vad_every_method_of_every_module(silero_vad_archive):
    doc = graph_json(silero_vad_archive)
    assert doc["load"] == "meta" and doc["error"] is None
    assert doc["modules"][0]["path"] == ""
    assert {"forward", "audio_forward", "reset_states", "_validate_input"} <= {m["name"] for m in methods(doc, "")}
    assert {"_model", "_model_8k"} <= {m["path"] for m in doc["modules"]}
    assert {m["type"] for m in doc["modules"]} == set(doc["types"])
    assert all(m["graph"] is not None for t in doc["types"].values() for m in t["methods"])
    ops = json.loads(run_cli("ops", silero_vad_archive, "--json").stdout)
    counts = {row["op"]: row["count"] for row in ops["ops"]}
    assert counts["aten::conv1d"] >= 1 and counts["aten::lstm_cell"] >= 1


def test_missing_custom_op_names_it_and_shows_ast_view(custom_op_archive):
    proc = run_cli("graph", custom_op_archive, check=1)  # torch could not load it: exit 1, like a refused load
    assert "torch has no operator torchvision::nms" in proc.stderr and "--library PATH.so" in proc.stderr
    assert "torchvision::nms" in proc.stdout and "Detect.forward" in proc.stdout
    doc = graph_json(custom_op_archive, check=1)
    assert doc["load"] == "failed"
    assert doc["error"]["kind"] == "missing_op" and doc["error"]["missing"] == "torchvision::nms"
    (fwd,) = [m for m in doc["fallback"]["methods"] if m["name"] == "forward"]
    assert "torchvision::nms" in [u["op"] for u in fwd["ops"]]
    ops = json.loads(run_cli("ops", custom_op_archive, "--json", check=1).stdout)
    assert ops["from"] == "ast" and {"torchvision::nms", "aten::index"} <= {r["op"] for r in ops["ops"]}


def test_missing_library_file_is_reported(custom_op_archive, tmp_path):
    proc = run_cli("graph", custom_op_archive, "--library", tmp_path / "nope.so", check=2)
    assert "cannot load library" in proc.stderr


def _rewrite(src: Path, dest: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info)))
    return dest


def test_missing_custom_class_and_newer_format(sample_archives, tmp_path):
    def add_class(name, data):
        if name.endswith("code/__torch__/models.py"):
            return data.replace(b"  training : bool\n",
                                b"  training : bool\n  ctx : __torch__.torch.classes.xnnpack_x.LinearOpContext\n", 1)
        return data

    path = _rewrite(sample_archives["gate_scripted"], tmp_path / "missing_class.pt", add_class)
    doc = graph_json(path, check=1)
    assert doc["error"]["kind"] == "missing_class"
    assert doc["error"]["missing"] == "__torch__.torch.classes.xnnpack_x.LinearOpContext"
    assert "--library" in doc["error"]["hint"]

    newer = _rewrite(sample_archives["gate_scripted"], tmp_path / "newer.pt",
                     lambda name, data: b"99\n" if name.endswith("/version") else data)
    proc = run_cli("graph", newer, check=1)
    assert "archive format version 99 is newer than this torch reads (at most" in proc.stderr
    older = _rewrite(sample_archives["gate_scripted"], tmp_path / "older.pt",
                     lambda name, data: b"0\n" if name.endswith("/version") else data)
    doc = graph_json(older, check=1)
    assert doc["error"]["kind"] == "unsupported_version" and "older" in doc["error"]["message"]


def test_hostile_setstate_is_refused_and_writes_nothing(setstate_file_writer_archive, setstate_marker):
    proc = run_cli("graph", setstate_file_writer_archive, check=1)
    assert not setstate_marker.exists()
    assert "tsinspect: refused:" in proc.stderr and "Writer.__setstate__" in proc.stderr
    assert "torch.save" in proc.stderr and "--trust" in proc.stderr
    assert "aten::save" in proc.stdout  # the ast view still shows what the code does
    doc = graph_json(setstate_file_writer_archive, check=1)
    assert doc["load"] == "refused" and doc["gate"]["safe_to_load"] is False
    run_cli("ops", setstate_file_writer_archive, check=1)
    assert not setstate_marker.exists()


@pytest.mark.skipif("seccomp" not in support().layers, reason=support().message)
def test_trust_loads_the_hostile_archive_inside_the_sandbox(setstate_file_writer_archive, setstate_marker):
    # --trust overrides the gate; the sandbox still keeps the file from being written
    doc = graph_json(setstate_file_writer_archive, "--trust")
    assert doc["load"] in ("meta", "full") and doc["sandbox"]["state"] == "on"
    assert not setstate_marker.exists()
    # proves it is the gate and the sandbox, not luck, that kept the file from being written
    proc = run_cli("graph", setstate_file_writer_archive, "--trust", "--json", env={"TSINSPECT_SANDBOX": "off"})
    assert json.loads(proc.stdout)["sandbox"]["state"] == "off"
    assert setstate_marker.exists()


def test_parent_never_imports_torch(sample_archives):
    code = ("import sys, io, contextlib\nfrom tsinspect.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    rc = main(['graph', {str(sample_archives['gate_scripted'])!r}, '--json'])\n"
            "assert rc == 0 and 'prim::If' in buf.getvalue(), rc\n"
            "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_timeout_and_bad_selection_are_one_line_errors(sample_archives):
    proc = run_cli("graph", sample_archives["gate_scripted"], "--timeout", "0.01", check=2)
    assert "did not finish loading" in proc.stderr
    proc = run_cli("graph", sample_archives["gate_scripted"], "--module", "nope", check=2)
    assert "no submodule 'nope'" in proc.stderr
    proc = run_cli("graph", sample_archives["gate_state_dict"], check=2)
    assert "no TorchScript code" in proc.stderr


def test_ops_inventory_counts_and_sites(sample_archives):
    out = run_cli("ops", sample_archives["gate_scripted"]).stdout
    row = next(line for line in out.splitlines() if " aten::size " in line)
    assert row.split()[0] == "2" and "Gate.forward code/__torch__/models.py:" in row
    doc = json.loads(run_cli("ops", sample_archives["gate_scripted"], "--json").stdout)
    assert doc["schema"] == "tsinspect.ops/1" and doc["from"] == "ir"
    linear = next(r for r in doc["ops"] if r["op"] == "aten::linear")
    assert linear["count"] == 1 and linear["uses"][0]["module_paths"] == ["proj"]
    assert linear["uses"][0]["source"].endswith(".py:134") or linear["uses"][0]["source"]


def test_memory_limit_reaches_the_child(sample_archives):
    # 300 MiB of address space is too little to even import torch: the limit is really applied
    proc = run_cli("graph", sample_archives["plain_scripted"], "--memory-limit", "300", check=2)
    assert "out of memory" in proc.stderr and "--memory-limit" in proc.stderr
    assert "Linear.forward" in proc.stdout  # the ast view still comes


def test_an_archive_torchs_zip_reader_refuses_is_not_loaded_from_a_copy(tmp_path):
    """A zip64 locator pointing past the end: torch refuses the file, so the IR child must not load
    tsinspect's (well-formed) copy of it; graph says torch's reason and exits 1."""
    import hostile

    case = next(c for c in hostile.CASES if c.id == "zip64_locator_points_nowhere")
    path = tmp_path / "locator.pt"
    path.write_bytes(case.build(str(tmp_path / "marker")))
    proc = subprocess.run([sys.executable, "-c", "import torch, sys; torch.jit.load(sys.argv[1])", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0  # the ground truth: torch itself refuses it
    proc = run_cli("graph", path, check=1)
    assert "torch's zip reader refuses this file" in proc.stdout + proc.stderr
