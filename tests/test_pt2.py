"""torch.export archives (.pt2) read torch-free: info, ls, graph, ops and scan, checked against torch.export.load.

The archives and torch's own view of them come from tests/pt2_build.py, run once in a child process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from helpers import REPO, cli_json, run_cli

BUILD = REPO / "tests" / "pt2_build.py"


@pytest.fixture(scope="module")
def pt2(tmp_path_factory) -> tuple[dict[str, Path], dict]:
    out = tmp_path_factory.mktemp("pt2")
    subprocess.run([sys.executable, str(BUILD), str(out)], check=True, capture_output=True, timeout=600)
    truth = json.loads((out / "truth.json").read_text())
    return {name: out / f"{name}.pt2" for name in truth}, truth


def _line(tag: str) -> int:
    lines = BUILD.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if f"# pt2: {tag}" in text)


def _rewrite(src: Path, dest: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> Path:
    """A copy of a pt2 zip with some records (names under the top folder) replaced or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        top = zin.namelist()[0].split("/", 1)[0] + "/"
        for info in zin.infolist():
            name = info.filename[len(top):]
            zout.writestr(info.filename, replace.get(name, zin.read(info)))
        for name, data in (add or {}).items():
            zout.writestr(top + name, data)
    return dest


MODELS = ["cond", "loops", "dims", "transformer", "lstm", "convnet"]  # the last three: torch.nn's own code


@pytest.mark.parametrize("name", MODELS)
def test_info_json_is_what_torch_loads(pt2, name):
    paths, truth = pt2
    doc = cli_json("info", paths[name])
    assert doc["format"] == "pt2"
    program, = doc["pt2"]["programs"]
    want = truth[name]
    assert [[e["name"], e["kind"], e["target"]] for e in program["inputs"]] == want["inputs"]
    assert [[e["name"], e["kind"], e["target"]] for e in program["outputs"]] == want["outputs"]
    got = {t["name"]: {"dtype": t["dtype"], "shape": t["shape"]} for t in program["weights"] + program["constants"]}
    assert got == want["tensors"]
    assert {t["name"]: t["nbytes"] for t in program["weights"] + program["constants"]} == want["nbytes"]
    assert {k: [v["min"], v["max"]] for k, v in program["range_constraints"].items()} == want["ranges"]
    assert program["schema_version"] == "8.20" and program["unknown_fields"] == []
    assert program["sample_inputs"] == "data/sample_inputs/model.pt"
    assert doc["problems"] == []
    # the payloads are the tensors of the summary, as for every other format
    assert {t["name"] for t in doc["tensors"] + doc["constants"]} == set(want["tensors"])


@pytest.mark.parametrize("name", MODELS + ["legacy"])
def test_ops_are_what_torch_loads(pt2, name):
    paths, truth = pt2
    doc = cli_json("ops", paths[name])
    assert doc["load"] == "pt2"
    got = Counter({row["op"]: row["count"] for row in doc["ops"]})
    assert got == Counter(truth[name]["ops"])


def test_earlier_export_zip_layout(pt2):
    """serialized_exported_program.json & co at the zip's root, no top folder: torch.export.load reads it."""
    paths, truth = pt2
    doc = cli_json("info", paths["legacy"])
    assert doc["format"] == "pt2" and doc["pt2"]["layout"] == "legacy" and doc["problems"] == []
    program, = doc["pt2"]["programs"]
    assert [[e["name"], e["kind"], e["target"]] for e in program["inputs"]] == truth["legacy"]["inputs"]
    assert [(t["name"], t["record"], t["pickled"]) for t in program["weights"] + program["constants"]] == [
        ("(state dict)", "serialized_state_dict.pt", True), ("(constants)", "serialized_constants.pt", True)]
    assert program["sample_inputs"] == "serialized_example_inputs.pt"
    scan = cli_json("scan", paths["legacy"])["files"][0]
    assert scan["verdict"] == "clean" and scan["pickles_scanned"] == 3  # the three nested torch.save pickles


def test_graph_nests_cond_branches_with_source_lines(pt2):
    paths, _ = pt2
    text = run_cli("graph", paths["cond"]).stdout.splitlines()
    cond = next(i for i, line in enumerate(text) if "higher_order::cond" in line)
    assert f"pt2_build.py:{_line('cond line')}" in text[cond]
    assert "(%gt, %add)" in text[cond]  # the predicate and the operand list are its inputs
    indent = len(text[cond]) - len(text[cond].lstrip())
    body = text[cond + 1:cond + 7]
    assert body[0].strip().startswith("block0(") and "aten::sin.default" in body[1]
    assert body[3].strip().startswith("block1(") and "aten::cos.default" in body[4]
    assert all(len(line) - len(line.lstrip()) > indent for line in body)
    linear = next(line for line in text if "aten::linear.default" in line)
    assert f"pt2_build.py:{_line('sub line')} in sub.lin" in linear
    assert "f32[s77, 4]" in text[3]  # the dynamic batch dimension in the signature


def test_graph_json_is_ir_with_blocks(pt2):
    from tsinspect.ir.model import IR

    paths, truth = pt2
    doc = cli_json("graph", paths["loops"])
    ir = IR.from_json(doc)
    graph = ir.modules[0].methods[0].graph
    kinds = [n.kind for n, _ in graph.walk()]
    assert sorted(kinds) == truth["loops"]["ops"]
    loop = next(n for n, _ in graph.walk() if n.kind == "higher_order::while_loop")
    assert [len(b.nodes) for b in loop.blocks] == [1, 2]  # cond graph, body graph
    assert [v.name for v in graph.inputs] == ["c_lifted_tensor_0", "xs", "y"]


def test_symbolic_ints_are_values_and_torch_passes_no_user_line(pt2):
    """sym_size outputs are SymInt values named as torch names them; a view's size list mixing one with ints
    is an attribute; the nodes torch's runtime-assert pass adds (stack_trace ``torch/fx/passes/...``, the
    placeholder nn_module_stack) have no user line and no module."""
    from tsinspect.ir.model import IR

    paths, _ = pt2
    graph = IR.from_json(cli_json("graph", paths["transformer"])).modules[0].methods[0].graph
    nodes = [n for n, _ in graph.walk()]
    sizes = [n for n in nodes if n.kind == "aten::sym_size.int"]
    assert sizes and all(n.outputs[0].type == "SymInt" and n.outputs[0].name.startswith("sym_size_int")
                         for n in sizes)
    assert all(n.source is None or n.source.file is None for n in sizes) and all(not n.scope for n in sizes)
    views = [n for n in nodes if n.kind == "aten::view.default" and isinstance(n.attributes.get("size"), list)]
    assert any(f"%{sizes[0].outputs[0].name}" in v.attributes["size"] for v in views)
    assert not any(o.name.startswith("{") or o.name.startswith('"') for n in nodes for o in n.outputs)


def test_symbolic_sizes_read_as_math(pt2):
    paths, _ = pt2
    doc = cli_json("info", paths["dims"])
    out = doc["pt2"]["programs"][0]["outputs"][0]
    assert out["type"] == "f32[s77, s17]"


def test_pt2_views_never_import_torch(pt2):
    paths, _ = pt2
    code = ("import sys, io, contextlib\nfrom tsinspect.cli import main\n"
            "for cmd in ('info', 'graph', 'ops', 'scan'):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            f"        main([cmd, {str(paths['cond'])!r}])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_scan_clean_then_hostile_sample_inputs(pt2, tmp_path):
    paths, _ = pt2
    assert cli_json("scan", paths["cond"])["files"][0]["verdict"] == "clean"
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as z:  # a torch.save zip whose pickle calls os.system
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo owned'\ntR.")
        z.writestr("archive/version", b"3\n")
    bad = _rewrite(paths["cond"], tmp_path / "bad.pt2", {"data/sample_inputs/model.pt": nested.getvalue()})
    doc = cli_json("scan", bad, check=1)["files"][0]
    assert doc["verdict"] == "unsafe"
    hits = [f for f in doc["findings"] if f["severity"] == "unsafe"]
    assert any("data/sample_inputs/model.pt!archive/data.pkl" in (f["member"] or "") for f in hits), hits


def test_aotinductor_shared_library_is_unsafe_and_listed(pt2, tmp_path):
    paths, _ = pt2
    so = _rewrite(paths["cond"], tmp_path / "aoti.pt2", {},
                  {"data/aotinductor/model/model.wrapper.so": b"\x7fELF\x02\x01\x01" + bytes(64)})
    doc = cli_json("scan", so, check=1)["files"][0]
    assert doc["verdict"] == "unsafe"
    assert [f["kind"] for f in doc["findings"] if f["severity"] == "unsafe"] == ["native_code"]
    ls = cli_json("ls", so)
    assert {r["name"]: r["kind"] for r in ls["records"]}["data/aotinductor/model/model.wrapper.so"] == "native_code"
    info = cli_json("info", so)
    assert info["pt2"]["native_libraries"] == ["data/aotinductor/model/model.wrapper.so"]
    assert "never loaded" in run_cli("info", so).stdout


def test_newer_schema_says_what_is_skipped(pt2, tmp_path):
    paths, _ = pt2
    with zipfile.ZipFile(paths["cond"]) as z:
        doc = json.loads(z.read("cond/models/model.json"))
    doc["schema_version"] = {"major": 9, "minor": 1}
    doc["graph_module"]["graph"]["new_values"] = {}
    doc["graph_module"]["graph"]["nodes"][0]["new_meta"] = 1
    newer = _rewrite(paths["cond"], tmp_path / "newer.pt2", {"models/model.json": json.dumps(doc).encode()})
    info = run_cli("info", newer)
    assert "pt2_schema_newer" in info.stderr and "Graph.new_values" in info.stderr and "Node.new_meta" in info.stderr
    program = cli_json("info", newer)["pt2"]["programs"][0]
    assert program["schema_version"] == "9.1" and program["unknown_fields"] == ["Graph.new_values", "Node.new_meta"]
    assert "higher_order::cond" in run_cli("graph", newer).stdout  # what is known is still shown


def test_bad_program_json(pt2, tmp_path):
    paths, _ = pt2
    bad = _rewrite(paths["cond"], tmp_path / "badjson.pt2", {"models/model.json": b"{not json"})
    info = cli_json("info", bad)
    assert [p["kind"] for p in info["problems"]] == ["bad_json"]
    assert info["pt2"]["programs"] == []
    proc = run_cli("graph", bad, check=2)
    assert proc.stderr.startswith("tsinspect: error:") and len(proc.stderr.splitlines()) == 1


def test_older_schema_read_where_torch_refuses(pt2, tmp_path):
    paths, truth = pt2
    with zipfile.ZipFile(paths["cond"]) as z:
        doc = json.loads(z.read("cond/models/model.json"))
    doc["schema_version"] = {"major": 7, "minor": 3}
    del doc["torch_version"]  # fields later schemas added: torch's defaults apply
    for node in doc["graph_module"]["graph"]["nodes"]:
        del node["name"]
    older = _rewrite(paths["cond"], tmp_path / "older.pt2", {"models/model.json": json.dumps(doc).encode()})
    loaded = subprocess.run([sys.executable, "-c", f"import torch; torch.export.load({str(older)!r})"],
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode != 0 and "does not match our current schema version" in loaded.stderr
    info = cli_json("info", older)
    assert [p["kind"] for p in info["problems"]] == ["pt2_schema_older"]
    program = info["pt2"]["programs"][0]
    assert program["torch_version"] == "<=2.4" and program["schema_version"] == "7.3"
    ops = Counter({row["op"]: row["count"] for row in cli_json("ops", older)["ops"]})
    assert ops == Counter(truth["cond"]["ops"])


def test_report_shows_the_exported_graph(pt2, tmp_path):
    paths, truth = pt2
    out = tmp_path / "r.json"
    run_cli("report", paths["cond"], "-o", out)
    doc = json.loads(out.read_text())
    assert doc["ir"]["load"] == "pt2" and doc["ops"]["from"] == "ir"
    assert Counter({o["op"]: o["count"] for o in doc["ops"]["ops"]}) == Counter(truth["cond"]["ops"])
    assert doc["info"]["pt2"]["programs"][0]["range_constraints"] == {"s77": {"min": 2, "max": 64}}
    md = tmp_path / "r.md"
    run_cli("report", paths["cond"], "-o", md)
    text = md.read_text()
    assert "| **dynamic** | s77 in \\[2, 64\\] |" in text
    assert "without torch" in text and "in a child process" not in text
    assert "block0(%add : f32[s77, 3]):" in text


def test_tui_shows_the_exported_graph_with_cond_blocks(pt2):
    from tui_driver import cursor_label, press, run, settle, started, text_of, typed, until

    paths, _ = pt2

    async def body():
        async with started(paths["cond"], ir=False) as (app, pilot):
            view = app.query_one("IRView")
            await until(app, pilot, lambda: view.state not in ("waiting", "loading"), "the IR")
            assert view.state == "loaded" and "read without torch" in str(view._loaded_status())
            overview = text_of(app, "#overview-body")
            assert "dynamic       s77 in [2, 64]" in overview and "program       model: schema 8.20" in overview
            await press(app, pilot, "g")
            app.show_node(("model", "forward", None))
            await settle(app, pilot)
            await press(app, pilot, "slash")
            await typed(app, pilot, "higher_order::cond", "enter")
            assert "= higher_order::cond" in cursor_label(app, "#ir-tree")
            node = app.query_one("#ir-tree").cursor_node
            node.expand()
            await settle(app, pilot)
            assert [c.label.plain.split("(")[0] for c in node.children] == ["block0", "block1"]
    run(body())


def test_diff_torchscript_against_its_export_names_what_the_export_fixed(pt2):
    paths, _ = pt2
    scripted, exported = paths["cond"].parent / "flow_scripted.pt", paths["cond"].parent / "flow.pt2"
    doc = cli_json("diff", exported, scripted, check=1)  # either order
    assert doc["mode"] == "export" and doc["a"] == str(scripted) and doc["b"] == str(exported)
    got = [(f["kind"], f["line"]) for f in doc["findings"]]
    assert got == [("specialised_branch", _line("flow if")), ("unrolled_loop", _line("flow loop")),
                   ("fixed_shapes", None)]
    assert "kept the if side" in doc["findings"][0]["message"]  # the example's batch of 5 is over 4
    assert "(4 copies)" in doc["findings"][1]["message"]  # range(x.shape[1]) with 4 columns
    text = run_cli("diff", scripted, exported, check=1).stdout
    assert "proves neither equivalence nor a difference" in text


def test_diff_of_torch_nn_code_counts_library_findings_apart(pt2):
    """nn.LSTM scripted against its export: both sides' lines are torch.nn's (rnn.py), so what the export decided
    there (input checks, batched or not) is library code, counted unless --all; the static export fixed the
    shapes the scripted LSTM reads, the one with a dynamic batch did not."""
    paths, _ = pt2
    folder = paths["cond"].parent
    static = cli_json("diff", folder / "lstm_scripted.pt", folder / "lstm_static.pt2", check=1)
    user = [f["kind"] for f in static["findings"] if f["origin"] == "user"]
    library = [f for f in static["findings"] if f["origin"] != "user"]
    assert user == ["fixed_shapes"]
    assert library and all(f["package"] == "torch" and f["file"].endswith("rnn.py") for f in library)
    assert "specialised_branch" in {f["kind"] for f in library}
    text = run_cli("diff", folder / "lstm_scripted.pt", folder / "lstm_static.pt2", check=1).stdout
    assert f"library code: {len(library)} in torch (--all shows them)" in text and "rnn.py" not in text
    dynamic = cli_json("diff", folder / "lstm_scripted.pt", paths["lstm"], check=1)
    assert "fixed_shapes" not in {f["kind"] for f in dynamic["findings"]}


@pytest.mark.parametrize("name", ["transformer", "convnet"])
def test_diff_of_a_trace_against_its_export_aligns_ops_inside_torch_functions(pt2, name):
    """A trace and an export of the same eval-mode model both specialise every branch; the trace records
    dropout's, layer norm's and attention's ops inside torch's functions, the export at the module line that
    called them: aligned, nothing is one-sided (torch's code in the transformer, the user's in the convnet)."""
    paths, _ = pt2
    doc = cli_json("diff", paths[name].parent / f"{name}_traced.pt", paths[name], "--all")
    assert doc["findings"] == []


def test_diff_of_an_export_against_itself_is_refused_as_two_pt2(pt2):
    paths, _ = pt2
    proc = run_cli("diff", paths["cond"], paths["dims"], check=2)
    assert proc.stderr.startswith("tsinspect: error:") and "pt2" in proc.stderr


def test_report_with_the_export_diff(pt2, tmp_path):
    paths, _ = pt2
    out = tmp_path / "d.md"
    run_cli("report", paths["cond"].parent / "flow.pt2", "--diff", paths["cond"].parent / "flow_scripted.pt",
            "-o", out, check=1)
    text = out.read_text()
    assert "## TorchScript vs export" in text and "Structural diff" not in text
    assert "**specialised_branch**" in text and "**unrolled_loop**" in text


def test_native_code_is_told_by_name_or_magic_in_the_aotinductor_folder_only(pt2, tmp_path):
    paths, _ = pt2
    elf = b"\x7fELF\x02\x01\x01" + bytes(64)
    hidden = _rewrite(paths["cond"], tmp_path / "hidden.pt2", {}, {"data/aotinductor/model/kernel.bin": elf})
    assert cli_json("scan", hidden, check=1)["files"][0]["verdict"] == "unsafe"
    weight = _rewrite(paths["cond"], tmp_path / "weight.pt2", {"data/weights/weight_0": elf[:48]})
    assert cli_json("scan", weight)["files"][0]["verdict"] == "clean"  # a weight whose bytes start like ELF


# ------------------------------------------------------------------ modules, several programs, older schemas


def _module_rows(program) -> Counter:
    from tsinspect.archive.pt2tree import module_tree

    return Counter((m.path, n.kind) for m in module_tree(program).walk() for n in m.nodes)


def _torch_modules(rows: list) -> Counter:
    """torch's (innermost module path, op) rows, its placeholder stack for nodes its passes add read as none."""
    from tsinspect.archive.pt2 import EMPTY_STACK

    return Counter(("" if path == EMPTY_STACK else path, op) for path, op in rows)


@pytest.mark.parametrize("name", MODELS + ["legacy"])
def test_module_tree_is_torchs_nn_module_stack(pt2, name):
    """Each node sits under the innermost module of its nn_module_stack, as torch.export.load gives it."""
    from tsinspect.archive.pt2 import read_pt2
    from tsinspect.archive.reader import open_archive

    paths, truth = pt2
    with open_archive(paths[name]) as archive:
        program, = read_pt2(archive).programs
    assert _module_rows(program) == _torch_modules(truth[name]["modules"])


def test_several_programs_in_one_package(pt2):
    from tsinspect.archive.pt2 import read_pt2
    from tsinspect.archive.reader import open_archive

    paths, _ = pt2
    multi = paths["cond"].parent / "multi.pt2"
    truth = json.loads((paths["cond"].parent / "multi_truth.json").read_text())
    with open_archive(multi) as archive:
        programs = {p.name: p for p in read_pt2(archive).programs}
    assert set(programs) == set(truth) == {"forward", "encode"}
    for name, program in programs.items():
        assert [[e.name, e.kind, e.target] for e in program.inputs] == truth[name]["inputs"]
        assert _module_rows(program) == _torch_modules(truth[name]["modules"])
    ops = cli_json("ops", multi)
    assert ops["load"] == "pt2" and "higher_order::cond" in {row["op"] for row in ops["ops"]}


def _node(target: str, inputs: list, output: str, line: int, module: str = "") -> dict:
    stack = "L__self__,,M" + (f";L__self__{module},{module},torch.nn.modules.linear.Linear" if module else "")
    return {"target": target, "inputs": inputs, "outputs": [{"as_tensor": {"name": output}}],
            "metadata": {"stack_trace": f'File "/src/model.py", line {line}, in forward\n    y = f(x)',
                         "nn_module_stack": stack}}


def _meta(dtype: int, sizes: list) -> dict:
    def sym(s):
        return {"as_int": s} if isinstance(s, int) else {"as_expr": {"expr_str": f"Symbol('{s}', integer=True)"}}
    strides, step = [], 1
    for s in reversed(sizes):
        strides.insert(0, {"as_int": step})
        step *= s if isinstance(s, int) else 1
    return {"dtype": dtype, "sizes": [sym(s) for s in sizes], "requires_grad": False,
            "device": {"type": "cpu", "index": None}, "strides": strides, "storage_offset": 0, "layout": 7}


def _old_zip(path: Path, program: dict, version: str, state_dict_name: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("serialized_exported_program.json", json.dumps(program).replace("1e999", "Infinity"))
        z.writestr(state_dict_name, b"not read: torch.save bytes in a real archive")
        z.writestr("version", version)
    return path


def test_schema_1_of_torch_2_1(tmp_path):
    """torch 2.1 (schema 1, from its torch/_export/serde/schema.py): schema_version an int, the signature as name
    mappings, tensor_values wrapped in {"meta": ...}, call_spec and equality_constraints, an unbounded range as
    Infinity (json.dumps of math.inf), and serialized_state_dict.json holding the torch.save bytes."""
    linear = _node("torch.ops.aten.linear.default",
                   [{"name": "input", "arg": {"as_tensor": {"name": "x"}}},
                    {"name": "weight", "arg": {"as_tensor": {"name": "arg0_1"}}},
                    {"name": "bias", "arg": {"as_none": []}}], "linear", 7, "lin")
    index = _node("torch.ops.aten.index.Tensor",  # schema 1: an optional tensor is {"as_tensor": NAME}
                  [{"name": "self", "arg": {"as_tensor": {"name": "linear"}}},
                   {"name": "indices", "arg": {"as_optional_tensors": [{"as_none": []}, {"as_tensor": "x"}]}}],
                  "index", 8)
    graph = {"inputs": [{"as_tensor": {"name": "arg0_1"}}, {"as_tensor": {"name": "x"}}],
             "outputs": [{"as_tensor": {"name": "linear"}}], "nodes": [linear, index],
             "tensor_values": {"arg0_1": {"meta": _meta(7, [3, 4])}, "x": {"meta": _meta(7, ["s0", 4])},
                               "linear": {"meta": _meta(7, ["s0", 3])}},
             "sym_int_values": {}, "sym_bool_values": {}}
    program = {"graph_module": {"graph": graph, "signature": {
        "inputs_to_parameters": {"arg0_1": "lin.weight"}, "inputs_to_buffers": {}, "user_inputs": ["x"],
        "user_outputs": ["linear"], "buffers_to_mutate": {}, "backward_signature": None},
        "call_spec": {"in_spec": "", "out_spec": ""}, "module_call_graph": [{"fqn": "", "signature": None}]},
        "opset_version": {"aten": 10}, "range_constraints": {"s0": {"min_val": 2, "max_val": 1e999}},
        "equality_constraints": [], "schema_version": 1}
    path = _old_zip(tmp_path / "torch21.pt2", program, "1", "serialized_state_dict.json")
    info = cli_json("info", path)
    assert [p["kind"] for p in info["problems"]] == ["pt2_schema_older"]
    p, = info["pt2"]["programs"]
    assert p["schema_version"] == "1.0" and p["unknown_fields"] == [] and p["torch_version"] == "<=2.4"
    assert [[e["name"], e["kind"], e["target"], e["type"]] for e in p["inputs"]] == [
        ["arg0_1", "parameter", "lin.weight", "f32[3, 4]"], ["x", "user_input", None, "f32[s0, 4]"]]
    assert [[e["name"], e["kind"]] for e in p["outputs"]] == [["linear", "user_output"]]
    assert p["range_constraints"] == {"s0": {"min": 2, "max": None}}
    assert p["weights"][0]["record"] == "serialized_state_dict.json" and p["weights"][0]["pickled"]
    graph_text = run_cli("graph", path).stdout
    assert "aten::linear.default" in graph_text and "model.py:7" in graph_text
    assert "indices=[None, '%x']" in graph_text  # the optional tensor list: None and the value x


def test_schema_5_with_dialect(tmp_path):
    """Schema 5.x (torch 2.3's era): input_specs/output_specs, TensorMeta directly in tensor_values, the verifier
    named by ``dialect``, no torch_version, no Node.name; the state dict as serialized_state_dict.pt."""
    relu = _node("torch.ops.aten.relu.default", [{"name": "self", "arg": {"as_tensor": {"name": "x"}}}], "relu", 3)
    graph = {"inputs": [{"as_tensor": {"name": "b_buf"}}, {"as_tensor": {"name": "x"}}],
             "outputs": [{"as_tensor": {"name": "relu"}}], "nodes": [relu],
             "tensor_values": {"b_buf": _meta(5, [2]), "x": _meta(7, [2, 2]), "relu": _meta(7, [2, 2])},
             "sym_int_values": {}, "sym_bool_values": {}, "is_single_tensor_return": False, "custom_obj_values": {}}
    signature = {"input_specs": [
        {"buffer": {"arg": {"name": "b_buf"}, "buffer_name": "buf", "persistent": True}},
        {"user_input": {"arg": {"as_tensor": {"name": "x"}}}}],
        "output_specs": [{"user_output": {"arg": {"as_tensor": {"name": "relu"}}}}]}
    program = {"graph_module": {"graph": graph, "signature": signature, "module_call_graph": []},
               "opset_version": {"aten": 10}, "range_constraints": {},
               "schema_version": {"major": 5, "minor": 3}, "dialect": "ATEN"}
    path = _old_zip(tmp_path / "torch23.pt2", program, "5.3", "serialized_state_dict.pt")
    info = cli_json("info", path)
    p, = info["pt2"]["programs"]
    assert [x["kind"] for x in info["problems"]] == ["pt2_schema_older"]
    assert p["verifiers"] == ["ATEN"] and p["unknown_fields"] == [] and p["schema_version"] == "5.3"
    assert [[e["name"], e["kind"], e["target"], e["type"]] for e in p["inputs"]] == [
        ["b_buf", "buffer", "buf", "i64[2]"], ["x", "user_input", None, "f32[2, 2]"]]
    assert {row["op"]: row["count"] for row in cli_json("ops", path)["ops"]} == {"aten::relu.default": 1}


# ------------------------------------------------------------------ the TUI: export view, export diff


def test_tui_export_view_modules_tensors_shapes(pt2):
    from tui_driver import cursor_label, press, run, settle, started, text_of, typed, until

    paths, _ = pt2

    async def body():
        async with started(paths["cond"], size=(80, 24), ir=False) as (app, pilot):
            await press(app, pilot, "e")
            assert app.query_one("#views").active == "export"
            tree = app.query_one("#export-tree")
            assert [c.label.plain.split("  ")[0] for c in tree.root.children] == [
                "modules", "tensors", "dynamic shapes", "signature"]
            await press(app, pilot, "slash")
            await typed(app, pilot, "sub.lin", "enter")
            await settle(app, pilot)
            assert cursor_label(app, "#export-tree").startswith("lin  Linear  1 nodes, 2 tensors")
            detail = text_of(app, "#export-detail")
            assert "torch.nn.modules.linear.Linear" in detail and "weight" in detail and "48 B" in detail
            node = tree.cursor_node
            node.expand()
            await settle(app, pilot)
            leaf = node.children[0]
            assert leaf.label.plain.startswith("#0 aten::linear.default  pt2_build.py:")
            tree.move_cursor(leaf)
            await settle(app, pilot)
            assert f"pt2_build.py:{_line('sub line')}" in text_of(app, "#export-detail")
            await press(app, pilot, "enter")  # the node in the IR view
            await until(app, pilot, lambda: "aten::linear.default" in cursor_label(app, "#ir-tree"), "the IR node")
            assert app.query_one("#views").active == "ir"
            await press(app, pilot, "i")  # nothing to inline in an exported graph: said, no second load
            assert app.query_one("IRView").state == "loaded" and not app.query_one("IRView").inlined
            await press(app, pilot, "e", "slash")
            await typed(app, pilot, "s77", "enter")
            await settle(app, pilot)
            assert cursor_label(app, "#export-tree") == "s77  in [2, 64]"
            assert "x dim 0 (s77)" in text_of(app, "#export-detail")
    run(body())


def test_tui_export_diff_shows_both_sides(pt2):
    from tui_driver import press, run, settle, started, text_of, until

    paths, _ = pt2
    scripted, exported = paths["cond"].parent / "flow_scripted.pt", paths["cond"].parent / "flow.pt2"

    async def body():
        async with started(scripted, ir=False, other=str(exported)) as (app, pilot):
            view = app.query_one("DiffView")
            await until(app, pilot, lambda: view.state in ("loaded", "failed"), "the diff")
            await settle(app, pilot)
            header = text_of(app, "#diff-status")
            assert "TorchScript flow_scripted.pt  exported flow.pt2" in header and "specialised_branch" in header
            assert app.query_one("#diff-trace-pane").display
            assert f"pt2_build.py:{_line('flow then')}  #" in text_of(app, "#diff-trace")
            assert "aten::relu.default" in text_of(app, "#diff-trace")  # the side the export kept
            await press(app, pilot, "e")  # the browsed archive is the TorchScript one: no export view
            assert app.query_one("#views").active == "diff"
    run(body())


# ------------------------------------------------------------------ a third-party archive (tests/real/SOURCES.md)

HADES = ("KladovValentin/hades-pid", "3f7fcb36756dedaa31cab4758be61f5ad8f9d528")  # exported_program.pt2


def _from_mirror(repo: str, blob: str, dest: Path) -> Path:
    """A blob of a local git snapshot (no licence to redistribute, so not stored here); skip when absent."""
    import os

    git_dir = Path(os.environ.get("TSINSPECT_MIRROR", "/work/.mirror")) / repo.replace("/", "+") / "repo"
    proc = subprocess.run(["git", "-C", str(git_dir), "cat-file", "blob", blob], capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"no local snapshot of {repo}")
    dest.write_bytes(proc.stdout)
    return dest


def test_third_party_export_of_torch_2_2(tmp_path):
    """A DANN classifier exported and committed in 2024 (schema 2, the earlier zip layout, unions written with
    every member and the others null, ``dialect``): its parameters and buffers are the state dict torch.load
    finds in serialized_state_dict.json (weights_only, in a child), by name, dtype and shape."""
    path = _from_mirror(*HADES, tmp_path / "exported_program.pt2")
    code = ("import io, json, sys, zipfile, torch\nz = zipfile.ZipFile(sys.argv[1])\n"
            "sd = torch.load(io.BytesIO(z.read('serialized_state_dict.json')), weights_only=True)\n"
            "print(json.dumps({k: [str(v.dtype).removeprefix('torch.'), list(v.shape)] for k, v in sd.items()}))")
    truth = json.loads(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                      check=True, timeout=300).stdout)
    info = cli_json("info", path)
    assert [p["kind"] for p in info["problems"]] == ["pt2_schema_older"]
    program, = info["pt2"]["programs"]
    assert program["schema_version"] == "2.0" and program["verifiers"] == ["ATEN"]
    assert program["unknown_fields"] == [] and program["nodes"] == 34
    short = {"float32": "f32", "int64": "i64"}
    got = {e["target"]: e["type"] for e in program["inputs"] if e["kind"] in ("parameter", "buffer")}
    assert got == {k: f"{short[d]}[{', '.join(map(str, s))}]" for k, (d, s) in truth.items()}
    assert [e["type"] for e in program["inputs"] if e["kind"] == "user_input"] == ["f32[2, 10]"]
    # the export view's tensors and module tree: from the signature, the payloads being one pickle
    from tsinspect.archive.pt2 import read_pt2
    from tsinspect.archive.pt2tree import module_tree, program_tensors
    from tsinspect.archive.reader import open_archive

    with open_archive(path) as archive:
        read, = read_pt2(archive).programs
    tensors = program_tensors(read)
    assert {t.name: [t.dtype, t.shape] for t in tensors} == truth
    assert all(t.pickled and t.record == "serialized_state_dict.json" for t in tensors)
    linear = next(m for m in module_tree(read).walk() if m.path == "feature.0")
    assert [t.name for t in linear.tensors] == ["feature.0.weight", "feature.0.bias"]
    text = run_cli("graph", path).stdout
    assert "aten::addmm.default" in text and "model.py:97 in feature.0" in text
    assert "CLEAN" in run_cli("scan", path).stdout  # its two nested torch.save zips hold tensors only


def test_module_tree_of_a_hostile_stack(pt2, tmp_path):
    """A module path 200,000 levels deep (cut to 64 levels: whole, its prefixes alone would take 40 GB), commas
    in a path, an empty stack."""
    from tsinspect.archive.pt2 import read_pt2
    from tsinspect.archive.pt2tree import module_tree
    from tsinspect.archive.reader import open_archive

    paths, _ = pt2
    with zipfile.ZipFile(paths["cond"]) as z:
        doc = json.loads(z.read("cond/models/model.json"))
    nodes = doc["graph_module"]["graph"]["nodes"]
    deep = ".".join(["m"] * 200_000)
    nodes[0]["metadata"]["nn_module_stack"] = f"k,{deep},T"
    nodes[1]["metadata"]["nn_module_stack"] = "k,L['self'].layers[0],a,b,T2"
    nodes[2]["metadata"]["nn_module_stack"] = ""
    hostile = _rewrite(paths["cond"], tmp_path / "deep.pt2", {"models/model.json": json.dumps(doc).encode()})
    with open_archive(hostile) as archive:
        program, = read_pt2(archive).programs
    root = module_tree(program)
    modules = {m.path: m for m in root.walk()}
    kept = ".".join(["m"] * 64)
    assert modules[kept].type == "T" and len(modules[kept].nodes) == 1 and root.cut == 1
    assert not any(path.startswith(kept + ".") for path in modules)
    assert modules["layers.0,a,b"].type == "T2"
    assert "layers.0,a,b" in modules and modules[""].nodes[0].id == 2
