"""``tsinspect diff --verify`` (tsinspect.verify): verdicts on the zoo pairs, checked against torch itself,
the safety gate before any child, and archives torch cannot load keeping the static result."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest

import diff_zoo as zoo_mod
from helpers import run_cli
from test_sandbox import opaque_payload_archive
from tsinspect.diff.run import diff_archives
from tsinspect.safety import sandbox
from tsinspect.verify import run as verify_run
from tsinspect.verify.plan import Input, build_plan, finding_keys


def verified(pair: tuple[Path, Path], **kwargs):
    result = diff_archives(str(pair[0]), str(pair[1]), ir="never")
    return verify_run.verify(result, **kwargs)


def by_tag(result) -> dict[str, dict]:
    out = {}
    for f in result.findings:
        tags = [t for t in zoo_mod.SOURCE.splitlines()[f.line - 1].split("# ")[1:]] if f.line else []
        out[tags[0].split(":")[0] if tags else f.kind] = f.verdict
    return out


def _run_both(pair, x, train=False):
    import torch

    outs = []
    for path in pair:  # the test's own archives, built by the zoo fixture
        model = torch.jit.load(str(path))
        model.train(train)
        try:
            outs.append(model(x.clone()))
        except Exception as exc:  # noqa: BLE001
            outs.append(exc)
    return outs


def test_a_value_branch_is_confirmed_with_the_input_that_breaks_it_and_torch_agrees(zoo):
    import torch

    result = verified(zoo["DataIf"])
    verdict = by_tag(result)["data-cond"]
    assert verdict["verdict"] == "confirmed" and verdict["variant"] == "negative values", verdict
    assert verdict["max_abs"] > 0.1
    # ground truth from torch: the traced model (traced on positive values) is wrong on negative ones
    traced, scripted = _run_both(zoo["DataIf"], -(torch.rand(2, 4) + 0.5))
    assert not torch.allclose(traced, scripted)
    assert result.verification["status"] == "ran" and not result.verification["unexplained"]


def test_a_finding_no_input_reaches_is_not_reproduced(zoo):
    # pick(torch.abs(x) + 1.0): the mean is always positive, the dropped side unreachable
    result = verified(zoo["HelperIf"])
    verdict = by_tag(result)["helper-cond"]
    assert verdict["verdict"] == "not reproduced" and verdict["tried"] >= 4, verdict


@pytest.mark.parametrize("model, tag, expect", [
    ("ShapeIf", "shape-cond", "x.size(0) = "),  # the condition's threshold: 2 -> 3
    ("TrainOnly", "train-cond", "train()"),
    ("OptionalTraced", "opt-given-cond", "the traced model raised"),
    ("ListShape", "list-reshape", "the traced model raised"),
    ("RuntimeLoop", "loop-head", "x.size(0) = "),
])
def test_shape_mode_and_none_findings_are_confirmed(zoo, model, tag, expect):
    verdict = by_tag(verified(zoo[model]))[tag]
    assert verdict["verdict"] == "confirmed" and expect in verdict["text"], verdict


def test_a_baked_value_is_confirmed_and_one_that_cannot_vary_is_refuted(zoo):
    import torch

    # ListShape: n // 2 (list-reshape) is baked and breaks the trace; float(len(shape)) (list-use) is baked
    # too, but a list of three is three long for every input: the diff's false positive
    verdicts = by_tag(verified(zoo["ListShape"]))
    assert verdicts["list-reshape"]["verdict"] == "confirmed", verdicts["list-reshape"]
    assert verdicts["list-use"]["verdict"] == "not reproduced", verdicts["list-use"]
    assert verdicts["list-use"]["reached"] == 0 and "no input took its other side" in verdicts["list-use"]["text"]
    traced, scripted = _run_both(zoo["ListShape"], torch.rand(3, 8))
    assert isinstance(traced, Exception) and not isinstance(scripted, Exception)
    for shape in ((1, 4), (5, 4), (7, 4)):  # ground truth for list-use: the trace agrees wherever it runs
        traced, scripted = _run_both(zoo["ListShape"], torch.rand(*shape))
        assert torch.allclose(traced, scripted)


def test_threshold_variants_come_from_the_condition(zoo):
    result = diff_archives(*map(str, zoo["ShapeIf"]), ir="never")
    plan = build_plan([Input("x", "float32", [2, 4])], result.findings, ["x"], "test")
    labels = [v.label for v in plan.variants]
    assert "x.size(0) = 3 (traced with 2)" in labels  # 2 is the threshold: one more takes the other side
    assert finding_keys(result.findings[0], ["x"], [2]) == {"shape:0:0"}


def test_the_plan_is_bounded_and_says_what_it_left_out(zoo):
    result = diff_archives(*map(str, zoo["RuntimeLoop"]), ir="never")
    small = build_plan([Input("x", "float32", [3, 4])], result.findings, ["x"], "test", max_variants=5)
    assert len(small.variants) == 5 and any("over the limit of 5 variants" in s for s in small.skipped)
    full = build_plan([Input("x", "float32", [3, 4])], result.findings, ["x"], "test")
    assert max(math.prod(v.inputs[0].shape) for v in full.variants) <= 4 * 12
    huge = build_plan([Input("x", "float32", [1 << 20, 1 << 10])], result.findings, ["x"], "test")
    assert not huge.variants and "over" in huge.skipped[0]


def test_a_missing_method_is_not_tested_and_the_text_puts_confirmed_first(zoo, tmp_path):
    verdict = by_tag(verified(zoo["Exported"]))["exported-def"]
    assert verdict["verdict"] == "not tested" and "no such method" in verdict["text"]
    proc = run_cli("diff", *zoo["RuntimeLoop"], "--ir", "never", "--verify", check=1)
    lines = proc.stdout.splitlines()
    confirmed = [n for n, line in enumerate(lines) if line.strip().startswith("confirmed:")]
    assert len(confirmed) == 2 and "verify: " in proc.stdout
    doc = json.loads(run_cli("diff", *zoo["RuntimeLoop"], "--ir", "never", "--verify", "--json", check=1).stdout)
    assert [f["verdict"]["verdict"] for f in doc["findings"]] == ["confirmed", "confirmed"]
    assert doc["verification"]["status"] == "ran" and doc["verification"]["variants"]


def test_divergences_no_finding_explains_stay_visible(zoo):
    # GuardsAndDtype: the scripted model raises on 1-D input, the traced one (no check) returns a value
    result = verified(zoo["GuardsAndDtype"])
    assert not result.findings
    assert any("unbatched" in line and "no finding explains it" in line for line in result.verification["unexplained"])


def saving_scripted(scripted: Path, out: Path, marker: Path) -> Path:
    """``scripted`` whose forward also runs ``torch.save(y, marker)``: the gate calls that file I/O."""
    with zipfile.ZipFile(scripted) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".py") and b"    return y" in data:
                data = data.replace(b"    return y", f"    torch.save(y, {str(marker)!r})\n    return y".encode())
            zout.writestr(info, data)
    return out


def test_a_hostile_archive_is_refused_before_anything_runs(zoo, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    traced, scripted = zoo["DataIf"]
    evil = saving_scripted(scripted, tmp_path / "evil_scripted.pt", marker)
    started = []
    monkeypatch.setattr(verify_run, "run_confined_child", lambda *a, **k: started.append(a) or (b"", None))
    result = verified((traced, evil))
    assert result.verification["status"] == "refused" and "torch.save" in result.verification["message"]
    assert not started and not marker.exists()
    assert result.findings and all(f.verdict["verdict"] == "not tested" for f in result.findings)
    # through the CLI, in its own process: the refusal said, the static findings kept, no marker
    doc = json.loads(run_cli("diff", traced, evil, "--verify", "--json", check=1).stdout)
    assert doc["verification"]["status"] == "refused" and doc["findings"][0]["kind"] == "dropped_branch"
    assert not marker.exists()


@pytest.mark.skipif(sandbox.support().state != "on", reason="no OS sandbox on this machine")
@pytest.mark.parametrize("payload", ["forward", "load"])
def test_with_trust_the_archive_runs_confined(zoo, tmp_path, payload):
    marker = tmp_path / "ran"
    traced, scripted = zoo["DataIf"]
    if payload == "forward":  # runs when the variants call forward
        scripted = saving_scripted(scripted, tmp_path / "evil_scripted.pt", marker)
    else:  # runs inside torch.jit.load (an OpaqueObject's pickled state)
        traced = opaque_payload_archive(traced, tmp_path / "evil_traced.pt", f"open({str(marker)!r}, 'w').write('x')")
    args = ("diff", traced, scripted, "--ir", "never", "--verify", "--trust", "--json")
    doc = json.loads(run_cli(*args, check=1).stdout)
    assert not marker.exists()
    assert doc["verification"]["status"] in ("ran", "failed")
    run_cli(*args, check=1, env={"TSINSPECT_SANDBOX": "off"})  # control: unconfined, the payload acts
    assert marker.exists()


def test_an_archive_torch_cannot_load_keeps_the_static_result(zoo, tmp_path):
    traced, scripted = zoo["DataIf"]
    broken = tmp_path / "DataIf_scripted_missing_op.pt"
    with zipfile.ZipFile(scripted) as zin, zipfile.ZipFile(broken, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".py") and b"torch.tanh(x)" in data:
                data = data.replace(b"torch.tanh(x)", b"ops.tsinspect_nowhere.tanh(x)")
            zout.writestr(info, data)
    result = verified((traced, broken), trust=True)
    assert result.verification["status"] == "failed"
    assert "scripted archive cannot be loaded" in result.verification["message"]
    assert "tsinspect_nowhere" in result.verification["message"]
    assert [f.kind for f in result.findings] == ["dropped_branch"]
    assert result.findings[0].verdict["verdict"] == "not tested"


def test_the_tui_verifies_in_a_worker_and_shows_a_verdict_per_finding(zoo):
    from tui_driver import run, started, text_of, until

    traced, scripted = zoo["RuntimeLoop"]

    async def body():
        async with started(traced, other=str(scripted), diff_ir="never") as (app, pilot):
            view = app.query_one("DiffView")
            await until(app, pilot, lambda: view.state == "loaded", "the diff")
            tree = app.query_one("#diff-findings")
            first = tree.cursor_line
            await pilot.press("v")
            assert view.verifying and "verifying: " in text_of(app, "#diff-status")
            await pilot.press("down")  # the worker runs in a thread; the UI keeps answering
            assert view.verifying and tree.cursor_line == first + 1
            await until(app, pilot, lambda: not view.verifying, "the verification")
            assert all(f.verdict and f.verdict["verdict"] == "confirmed" for f in view.findings)
            assert "verify: " in text_of(app, "#diff-status")
            assert "confirmed" in text_of(app, "#diff-detail")
            labels = [leaf.label.plain for group in app.query_one("#diff-findings").root.children
                      for leaf in group.children]
            assert labels and all(label.endswith("confirmed") for label in labels)

    run(body())


def test_the_child_skips_a_variant_whose_inputs_torch_cannot_draw(zoo, tmp_path):
    import shutil
    import subprocess
    import sys

    traced, scripted = zoo["DataIf"]
    shutil.copy(traced, tmp_path / "t.pt")
    shutil.copy(scripted, tmp_path / "s.pt")
    variant = {"keys": [], "values": "positive", "train": False, "grad": True}
    plan = {"variants": [{**variant, "id": 0, "label": "q", "inputs": [{"name": "x", "dtype": "quint8", "shape": [2, 4]}]},
                         {**variant, "id": 1, "label": "ok", "inputs": [{"name": "x", "dtype": "float32", "shape": [2, 4]}]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    proc = subprocess.run([sys.executable, "-m", "tsinspect.verify.child", "--plan", str(tmp_path / "plan.json"),
                           "--traced", str(tmp_path / "t.pt"), "--scripted", str(tmp_path / "s.pt")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    doc = json.loads(proc.stdout)
    assert doc["error"] is None and [r["outcome"] for r in doc["results"]] == ["skipped", "same"]
    assert "cannot build its inputs" in doc["results"][0]["why"]
