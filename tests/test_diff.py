"""tsinspect diff: the trace-vs-script zoo in both argument orders, the Gate samples, structural diffs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli, sample_line

_spec = importlib.util.spec_from_file_location("tsinspect_diff_zoo", Path(__file__).with_name("diff_zoo.py"))
zoo_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo_mod)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return zoo_mod.build_zoo(tmp_path_factory.mktemp("diff_zoo"))


def diff_json(a, b, *extra, check=None) -> tuple[int, dict]:
    proc = run_cli("diff", a, b, "--format", "json", "--ir", "never", *extra, check=check)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("order", ["traced_first", "scripted_first"])
@pytest.mark.parametrize("model", list(zoo_mod.EXPECTED))
def test_zoo_findings_exact_lines(zoo, model, order):
    traced, scripted = zoo[model]
    a, b = (traced, scripted) if order == "traced_first" else (scripted, traced)
    status, doc = diff_json(a, b)
    expected = sorted((kind, zoo_mod.line_of(tag)) for kind, tag in zoo_mod.EXPECTED[model])
    assert sorted((f["kind"], f["line"]) for f in doc["findings"]) == expected
    assert status == (1 if expected else 0)
    assert doc["schema"] == "tsinspect.diff/1"
    assert doc["traced"] == str(traced) and doc["scripted"] == str(scripted)
    for finding in doc["findings"]:
        assert {"kind", "method", "file", "line", "message"} <= finding.keys()
        assert finding["file"].endswith("zoo_models.py") and finding["message"]


def test_zoo_details(zoo):
    _, doc = diff_json(*zoo["RuntimeLoop"])
    loop = next(f for f in doc["findings"] if f["kind"] == "unrolled_loop")
    assert loop["details"]["count"] == 3
    assert loop["details"]["example_input"] == {"name": "forward[0]", "dtype": "float32", "shape": [3, 4], "dim": 0}
    assert loop["method"] == "zoo_models.RuntimeLoop.forward"
    baked = next(f for f in doc["findings"] if f["kind"] == "baked_constant")
    assert baked["details"]["values"] == [{"script": "torch.sqrt(torch.size(x, 1))", "trace": "2.0"}]
    _, doc = diff_json(*zoo["DataIf"])
    (drop,) = doc["findings"]
    assert drop["details"]["kept"] == "then" and drop["details"]["dropped_lines"] == [zoo_mod.line_of("data-else")]
    assert drop["code"].strip().startswith("if x.sum() > 0:")
    marks = {e["line"]: e["mark"] for e in drop["excerpt"]}
    assert marks[zoo_mod.line_of("data-else")] == "dropped" and marks[zoo_mod.line_of("data-then")] == "kept"
    _, doc = diff_json(*zoo["HelperIf"])
    assert doc["findings"][0]["method"] == "zoo_models.pick"
    _, doc = diff_json(*zoo["EarlyReturn"])
    assert "early return" in doc["findings"][0]["message"]


def test_gate_samples_both_orders(sample_archives):
    traced, scripted = sample_archives["gate_traced"], sample_archives["gate_scripted"]
    want = sorted([("dropped_branch", sample_line("if-cond")), ("dropped_branch", sample_line("train-cond")),
                   ("unrolled_loop", sample_line("loop"))])
    for a, b in ((traced, scripted), (scripted, traced)):
        status, doc = diff_json(a, b)
        assert status == 1
        assert sorted((f["kind"], f["line"]) for f in doc["findings"]) == want
        assert doc["analysis"] == "ast"


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
    status, doc = diff_json(sample_archives["gate_scripted"], sample_archives["gate_extra"])
    assert (status, doc["mode"], doc["findings"]) == (0, "structural", [])
    status, doc = diff_json(sample_archives["gate_scripted"], sample_archives["plain_scripted"])
    assert status == 1 and doc["mode"] == "structural"
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"module_removed", "module_type_changed", "code_changed", "ops_changed"} <= kinds


def test_diff_layer_imports_neither_torch_nor_textual():
    code = ("import sys; import tsinspect.cli.diff_cmd, tsinspect.diff.run, tsinspect.diff.text, "
            "tsinspect.diff.structural; assert 'torch' not in sys.modules and 'textual' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
