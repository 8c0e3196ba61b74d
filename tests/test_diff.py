"""tsinspect diff: the trace-vs-script zoo in both argument orders and through both analyses (torch-free
``--ir never`` and the IR), the Gate samples, falling back from the IR, structural diffs."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import run_cli, sample_line
from tsinspect.diff.irread import extract_path, programs_from_ir
from tsinspect.diff.run import diff_archives, load_side
from tsinspect.ir.model import IR, LoadError
from tsinspect.ir.run import Extraction

_spec = importlib.util.spec_from_file_location("tsinspect_diff_zoo", Path(__file__).with_name("diff_zoo.py"))
zoo_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo_mod)


@pytest.fixture(scope="session")
def ir_extract():
    """``extract_path`` with a cache: each archive's IR is extracted once per session (a child that imports
    torch costs a second or two), whatever the number of tests and argument orders that diff it."""
    cache: dict = {}
    lock = threading.Lock()

    def extract(path, options):
        key = (str(path), repr(options))
        with lock:
            event = cache.get(key)
            if event is None:
                cache[key] = event = [threading.Event(), None]
                mine = True
            else:
                mine = False
        if mine:
            event[1] = extract_path(path, options)
            event[0].set()
        event[0].wait()
        return event[1]

    return extract


def diff_json(a, b, *extra, check=None) -> tuple[int, dict]:
    proc = run_cli("diff", a, b, "--format", "json", "--ir", "never", *extra, check=check)
    return proc.returncode, json.loads(proc.stdout)


def diff_doc(a, b, analysis, extract, trust=False) -> tuple[int, dict]:
    """The diff as JSON: torch-free through the CLI, or through the IR in this process (so that the IR of each
    archive is extracted once per session; the CLI's IR path has its own tests below)."""
    if analysis == "never":
        return diff_json(a, b)
    result = diff_archives(str(a), str(b), ir="always", trust=trust, extract=extract)
    return (1 if result.findings else 0), json.loads(json.dumps(result.to_json()))


@pytest.mark.parametrize("analysis", ["never", "ir"])
@pytest.mark.parametrize("order", ["traced_first", "scripted_first"])
@pytest.mark.parametrize("model", list(zoo_mod.EXPECTED))
def test_zoo_findings_exact_lines(zoo, ir_extract, model, order, analysis):
    traced, scripted = zoo[model]
    a, b = (traced, scripted) if order == "traced_first" else (scripted, traced)
    status, doc = diff_doc(a, b, analysis, ir_extract, trust=model in zoo_mod.GATED)
    assert doc["analysis"] == ("ast" if analysis == "never" else "ir")
    findings = zoo_mod.EXPECTED_IR.get(model, zoo_mod.EXPECTED[model]) if analysis == "ir" else zoo_mod.EXPECTED[model]
    expected = sorted((kind, zoo_mod.line_of(tag)) for kind, tag in findings)
    assert sorted((f["kind"], f["line"]) for f in doc["findings"]) == expected
    assert status == (1 if expected else 0)
    assert doc["schema"] == "tsinspect.diff/1"
    assert doc["traced"] == str(traced) and doc["scripted"] == str(scripted)
    for finding in doc["findings"]:
        assert {"kind", "method", "file", "line", "message", "origin", "severity", "fix"} <= finding.keys()
        assert finding["file"].endswith("zoo_models.py") and finding["message"] and finding["fix"]
        assert finding["origin"] == "user" and "9223372036854775807" not in finding["message"]
        lines = finding["details"].get("kept_lines", []) + finding["details"].get("dropped_lines", [])
        assert all(finding["line"] < n <= finding["line"] + 10 for n in lines)  # the if's own lines only
    assert len({(f["kind"], f["line"]) for f in doc["findings"]}) == len(doc["findings"])


@pytest.mark.parametrize("analysis", ["never", "ir"])
def test_zoo_details(zoo, ir_extract, analysis):
    def diff_json(traced, scripted):
        return diff_doc(traced, scripted, analysis, ir_extract)

    _, doc = diff_json(*zoo["RuntimeLoop"])
    loop = next(f for f in doc["findings"] if f["kind"] == "unrolled_loop")
    assert loop["details"]["count"] == 3
    assert loop["details"]["example_input"] == {"name": "forward[0]", "dtype": "float32", "shape": [3, 4], "dim": 0}
    assert loop["method"] == "zoo_models.RuntimeLoop.forward"
    baked = next(f for f in doc["findings"] if f["kind"] == "baked_constant")
    assert baked["details"]["values"] == [{"script": "torch.sqrt(torch.size(x, 1))", "trace": "2.0"}]
    assert baked["fix"].startswith("keep sizes as tensor values")  # the fix names what was baked: a size
    _, doc = diff_json(*zoo["DataIf"])
    (drop,) = doc["findings"]
    assert drop["details"]["kept"] == "then" and drop["details"]["dropped_lines"] == [zoo_mod.line_of("data-else")]
    assert drop["code"].strip().startswith("if x.sum() > 0:")
    marks = {e["line"]: e["mark"] for e in drop["excerpt"]}
    assert marks[zoo_mod.line_of("data-else")] == "dropped" and marks[zoo_mod.line_of("data-then")] == "kept"
    _, doc = diff_json(*zoo["HelperIf"])
    assert doc["findings"][0]["method"] == "zoo_models.pick"
    _, doc = diff_json(*zoo["UsesClass"])
    assert doc["findings"][0]["method"] == "zoo_models.Clipper.apply"
    assert doc["findings"][0]["details"]["dropped_lines"] == [zoo_mod.line_of("class-then")]
    _, doc = diff_json(*zoo["EarlyReturn"])
    assert "early return" in doc["findings"][0]["message"]
    _, doc = diff_json(*zoo["DropPath"])  # a training flag passed in: mode only, whatever else the if tests
    assert [(f["severity"], "model.eval()" in f["fix"]) for f in doc["findings"]] == [("mode", True)]
    _, doc = diff_json(*zoo["OptionalTraced"])  # traced with a mask: None makes the traced model raise
    assert [f["severity"] for f in doc["findings"]] == ["raises"]


@pytest.mark.parametrize("ir", ["never", "auto", "always"])
def test_gate_samples_both_orders(sample_archives, ir):
    traced, scripted = sample_archives["gate_traced"], sample_archives["gate_scripted"]
    want = sorted([("dropped_branch", sample_line("if-cond")), ("dropped_branch", sample_line("train-cond")),
                   ("unrolled_loop", sample_line("loop"))])
    # the IR modes run the CLI once (each run extracts both archives), in the order not covered by the other
    orders = [(traced, scripted), (scripted, traced)]
    for a, b in orders if ir == "never" else orders[ir == "always":][:1]:
        proc = run_cli("diff", a, b, "--format", "json", "--ir", ir, check=1)
        doc = json.loads(proc.stdout)
        assert sorted((f["kind"], f["line"]) for f in doc["findings"]) == want
        assert doc["analysis"] == ("ast" if ir == "never" else "ir")
        loop = next(f for f in doc["findings"] if f["kind"] == "unrolled_loop")
        assert loop["details"]["count"] == 2 and loop["details"]["baked_values"] == ["0.0", "1.0"]
        if ir != "never":
            assert doc["analysis_note"].startswith("IR: both archives loaded by torch in a child process")


def test_ir_falls_back_when_the_gate_refuses(zoo):
    traced, scripted = zoo["RawMemory"]
    want = [("dropped_branch", zoo_mod.line_of("raw-cond"))]
    status, doc = diff_json(traced, scripted, "--ir", "auto")
    assert status == 1 and [(f["kind"], f["line"]) for f in doc["findings"]] == want
    assert doc["analysis"] == "ast"
    note = doc["analysis_note"]
    assert note.startswith("torch-free: code/ and debug info; the IR could not be had:")
    assert str(traced) in note and str(scripted) in note and "as_strided" in note and "--trust" in note
    text = run_cli("diff", traced, scripted, "--ir", "auto", check=1).stdout
    assert "analysis: torch-free: code/ and debug info; the IR could not be had:" in text
    proc = run_cli("diff", traced, scripted, "--ir", "always", check=2)
    assert proc.stdout == "" and "the IR is not available" in proc.stderr and "--trust" in proc.stderr
    status, doc = diff_json(traced, scripted, "--ir", "always", "--trust")
    assert doc["analysis"] == "ir" and [(f["kind"], f["line"]) for f in doc["findings"]] == want


@pytest.mark.parametrize("error", [
    LoadError("missing_op", "torch has no operator torchvision::nms (used at code/__torch__/m.py:9)",
              "torchvision::nms", "load the library that defines torchvision::* ops"),
    LoadError("timeout", "torch did not finish loading the archive within 120 s", hint="raise the limit"),
])
def test_ir_falls_back_when_torch_cannot_load(zoo, ir_extract, error):
    traced, scripted = load_side(str(zoo["DataIf"][0])), load_side(str(zoo["DataIf"][1]))

    def extract(path, options):  # the scripted archive fails to load, the traced one loads
        if path == scripted.path:
            got = ir_extract(path, options)
            return Extraction(IR("failed", error=error).to_json(), got.scan, got.index)
        return ir_extract(path, options)

    programs, note = programs_from_ir(traced, scripted, False, extract)
    assert programs is None
    assert note == (f"torch-free: code/ and debug info; the IR could not be had: {scripted.path}: "
                    f"{error.message}; {error.hint}")


def test_ir_names_graphs_torch_could_not_give(zoo, ir_extract):
    """A method whose graph the extractor could not read is left out, and the analysis line says so."""
    traced, scripted = load_side(str(zoo["Exported"][0])), load_side(str(zoo["Exported"][1]))

    def extract(path, options):
        got = ir_extract(path, options)
        if path != scripted.path:
            return got
        document = copy.deepcopy(got.document)
        (method,) = [m for t in document["types"].values() for m in t["methods"] if m["name"] == "extra"]
        method["graph"], method["error"] = None, "RuntimeError: no graph"
        return Extraction(document, got.scan, got.index)

    (t_prog, s_prog), note = programs_from_ir(traced, scripted, False, extract)
    assert note.endswith(f"; left out, torch gave no graph: {scripted.path}: extra")
    assert {fn.name for fn in s_prog.functions} == {"forward"} and all(fn.body for fn in s_prog.functions)


def test_text_report_and_quiet(sample_archives):
    traced, scripted = sample_archives["gate_traced"], sample_archives["gate_scripted"]
    out = run_cli("diff", scripted, traced, "--ir", "never", check=1).stdout
    assert "models.Gate.forward" in out and "dropped_branch" in out
    assert f"-    {sample_line('if-then')} |" in out and f"+    {sample_line('else-body')} |" in out
    assert "3 findings" in out and "\x1b[" not in out
    coloured = run_cli("--color", "always", "diff", scripted, traced, "--ir", "never", check=1).stdout
    assert "\x1b[31m" in coloured
    assert run_cli("diff", scripted, traced, "--quiet", "--ir", "never", check=1).stdout == ""
    assert run_cli("diff", sample_archives["plain_traced"], sample_archives["plain_scripted"], "--quiet",
                   "--ir", "never", check=0).stdout == ""


def test_not_the_same_model(sample_archives):
    proc = run_cli("diff", sample_archives["plain_traced"], sample_archives["gate_scripted"], "--ir", "never",
                   check=2)
    assert "not variants of the same model" in proc.stderr and proc.stdout == ""


def test_not_a_torchscript_archive(sample_archives):
    proc = run_cli("diff", sample_archives["gate_state_dict"], sample_archives["gate_scripted"], check=2)
    assert "not a TorchScript archive" in proc.stderr


def test_structural_same_kind(sample_archives):
    status, doc = diff_json(sample_archives["gate_scripted"], sample_archives["gate_extra"], check=1)
    # the same model; only the extra files differ, and the diff says so
    assert (status, doc["mode"]) == (1, "structural")
    assert [(f["kind"], f["message"].split(" ")[0]) for f in doc["findings"]] == [
        ("extra_file_added", "extra/meta.json"), ("extra_file_added", "extra/notes/readme.txt")]
    status, doc = diff_json(sample_archives["gate_scripted"], sample_archives["plain_scripted"])
    assert status == 1 and doc["mode"] == "structural"
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"module_removed", "module_type_changed", "code_changed", "ops_changed"} <= kinds


def test_diff_layer_imports_neither_torch_nor_textual():
    code = ("import sys; import tsinspect.cli.diff_cmd, tsinspect.diff.run, tsinspect.diff.text, "
            "tsinspect.diff.structural, tsinspect.diff.irread, tsinspect.diff.irprogram; "
            "assert 'torch' not in sys.modules and 'textual' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


RNN_SOURCE = '''\
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 8, num_layers=2, dropout=0.2, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(x)
        if out.size(1) > 3:  # long-cond:
            out = out[:, -3:]
        return out
'''


@pytest.fixture(scope="module")
def rnn_pair(tmp_path_factory):
    """A user's module around nn.LSTM: a shape branch in the user's file, and the training flag that LSTM passes
    into the fused _VF.lstm op (torch's file), frozen by an eval-mode trace."""
    import warnings

    import torch

    out = tmp_path_factory.mktemp("diff_rnn")
    (out / "rnn_models.py").write_text(RNN_SOURCE)
    spec = importlib.util.spec_from_file_location("rnn_models", out / "rnn_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Tagger().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(2, 5, 4)), str(out / "traced.pt"))
        torch.jit.save(torch.jit.script(model), str(out / "scripted.pt"))
    return out / "traced.pt", out / "scripted.pt"


@pytest.mark.parametrize("analysis", ["never", "ir"])
def test_ranked_with_origin_severity_and_fix(rnn_pair, ir_extract, analysis):
    traced, scripted = rnn_pair
    _, doc = diff_doc(scripted, traced, analysis, ir_extract)
    line = next(n for n, t in enumerate(RNN_SOURCE.splitlines(), 1) if "# long-cond:" in t)
    first, *rest = doc["findings"]
    assert (first["kind"], first["line"], first["origin"], first["package"], first["severity"]) == (
        "dropped_branch", line, "user", None, "silent")
    assert first["fix"].startswith("script the function holding this if")
    lstm = [f for f in rest if f["file"].endswith("torch/nn/modules/rnn.py") and f["kind"] == "baked_constant"]
    assert lstm and all(f["origin"] == "torch" and f["package"] == "torch" for f in lstm)
    assert any(v["script"].endswith("training") and v["trace"] == "False" for v in lstm[0]["details"]["values"])
    assert lstm[0]["severity"] == "mode" and "model.eval()" in lstm[0]["fix"]
    assert all(f["origin"] != "user" for f in rest)  # the user's own file first
    assert doc["library"] == {"torch": len(rest)}
    assert doc["accepts"] == {"forward": {"traced": ["x"], "scripted": ["x"]}}
    assert "the traced forward(x) accepts every argument of the scripted one" in doc["notes"]


def test_baked_fix_names_what_was_baked(tmp_path, ir_extract):
    """nn.TransformerEncoder traced vs scripted: attention's baked values are masks, flags and dropout's
    probability, not sizes, and all of them are in torch's code, which the user does not edit: the fix says
    what to do instead, not "keep sizes as tensor values". In the user's own code the fix follows what was
    baked (a size, the training flag, another value)."""
    from tsinspect.diff.align import _baked_fix

    import warnings

    import torch
    from torch import nn

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    model = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(2, 3, 8), check_trace=False), str(tmp_path / "t.pt"))
        torch.jit.save(torch.jit.script(model), str(tmp_path / "s.pt"))
    _, doc = diff_doc(tmp_path / "t.pt", tmp_path / "s.pt", "ir", ir_extract)
    baked = [f for f in doc["findings"] if f["kind"] == "baked_constant" and f["severity"] != "mode"]
    assert any(not f["message"].startswith("a shape") for f in baked)
    assert all(not f["fix"].startswith("keep sizes") for f in baked)
    library = [f for f in doc["findings"] if f["origin"] == "torch" and f["severity"] != "mode"]
    assert library and all(f["fix"].startswith("this is torch's code, not yours: script the model") for f in library)
    assert _baked_fix("a shape", False).startswith("keep sizes")
    assert _baked_fix("a Python value", False).startswith("script this function, or trace a separate model")
    assert "model.eval()" in _baked_fix("the training flag", True)


def test_text_counts_library_findings_unless_all(rnn_pair):
    traced, scripted = rnn_pair
    _, doc = diff_json(traced, scripted)
    n = len(doc["findings"]) - 1
    out = run_cli("diff", traced, scripted, "--ir", "never", check=1).stdout
    assert "rnn_models.Tagger.forward" in out and "fix: script the function holding this if" in out
    assert "rnn.py" not in out and f"library code: {n} in torch (--all shows them)" in out
    full = run_cli("diff", traced, scripted, "--ir", "never", "--all", check=1).stdout
    assert "-- library code: torch --" in full and "rnn.py:" in full and "(--all shows them)" not in full
    assert full.index("rnn_models.Tagger.forward") < full.index("-- library code: torch --")


UP_SOURCE = '''\
import torch
import torch.nn.functional as F
from torch import nn


class Up(nn.Module):
    def forward(self, x):
        return F.interpolate(x, size=int(x.size(-1) * 1.5), mode="nearest")  # up-call:
'''


@pytest.mark.parametrize("analysis", ["never", "ir"])
def test_a_library_argument_frozen_from_user_code_is_reported_at_the_call(tmp_path, ir_extract, analysis):
    """int(x.size(-1) * 1.5) froze inside F.interpolate: the user's line says so, naming the library line."""
    import warnings

    import torch

    (tmp_path / "up_models.py").write_text(UP_SOURCE)
    spec = importlib.util.spec_from_file_location("up_models", tmp_path / "up_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Up().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(1, 2, 4)), str(tmp_path / "traced.pt"))
        torch.jit.save(torch.jit.script(model), str(tmp_path / "scripted.pt"))
    _, doc = diff_doc(tmp_path / "traced.pt", tmp_path / "scripted.pt", analysis, ir_extract)
    first = doc["findings"][0]
    line = next(n for n, t in enumerate(UP_SOURCE.splitlines(), 1) if "# up-call:" in t)
    assert (first["kind"], first["file"].endswith("up_models.py"), first["line"], first["origin"]) == (
        "baked_constant", True, line, "user")
    assert "inside torch.nn.functional.interpolate (functional.py:" in first["message"]
    assert any(v["trace"] == "[6]" for v in first["details"]["values"])  # the output size, 4 * 1.5
