"""``diff --verify`` ties each verdict to its own finding: a variant that breaks the trace confirms only the
findings whose code the scripted model really ran the other way, and whose freezing (the traced way) changes
its output. Ground truth from torch: both archives run here on the inputs the verdicts name."""

from __future__ import annotations

import importlib.util
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from tsinspect.diff.run import diff_archives
from tsinspect.verify import run as verify_run

SOURCE = '''\
import math

import torch
import torch.nn.functional as F
from torch import nn


class TwoFlags(nn.Module):
    """Both ifs flip on 2-D input; only the first one changes the result (y * 2 == y + y)."""

    def forward(self, x):
        if x.dim() == 3:  # matters
            y = x.sum(0)
        else:
            y = x
        if x.dim() == 3:  # harmless
            z = y * 2.0
        else:
            z = y + y
        return z


class PadToChunk(nn.Module):
    """Pads the time axis to a multiple of 4 (benchmarks/diff_real's ChunkPad, smaller)."""

    def forward(self, x):
        t = x.size(1)
        pad = math.ceil(t / 4) * 4 - t  # pad-amount
        if pad > 0:  # pad-if
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(x.size(0), -1, 4, x.size(2)).mean(2)


class Alternate(nn.Module):
    """Both sides of the if run in the trace, one per iteration (a per-iteration branch)."""

    def forward(self, x):
        h = x
        for i in range(x.size(0)):
            if i % 2 == 0:  # alternate-if
                h = torch.cos(h)
            else:
                h = torch.sin(h)
        return h
'''


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    import torch

    out = tmp_path_factory.mktemp("verify_causes")
    (out / "causes_models.py").write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("causes_models", out / "causes_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["causes_models"] = module
    spec.loader.exec_module(module)
    built = {}
    for name, example in (("TwoFlags", (2, 3, 4)), ("PadToChunk", (2, 6, 3)), ("Alternate", (3, 4))):
        model = getattr(module, name)().eval()
        traced, scripted = out / f"{name}_traced.pt", out / f"{name}_scripted.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, torch.rand(*example) + 0.5, check_trace=False), str(traced))
            torch.jit.save(torch.jit.script(model), str(scripted))
        built[name] = traced, scripted
    return built


@pytest.fixture(scope="module")
def two_flags(pairs) -> tuple[Path, Path]:
    return pairs["TwoFlags"]


def _line(marker: str) -> int:
    return next(n for n, text in enumerate(SOURCE.splitlines(), 1) if f"# {marker}" in text)


def test_one_breaking_input_confirms_only_the_finding_that_causes_the_difference(two_flags):
    import torch

    result = verify_run.verify(diff_archives(*map(str, two_flags), ir="never"))
    verdicts = {f.line: f.verdict for f in result.findings}
    assert set(verdicts) == {_line("matters"), _line("harmless")}
    matters, harmless = verdicts[_line("matters")], verdicts[_line("harmless")]
    assert matters["verdict"] == "confirmed" and matters["variant"].startswith("unbatched"), matters
    # the same unbatched input takes the harmless if's other side too, but freezing it changes nothing
    assert harmless["verdict"] == "not reproduced" and harmless["reached"] >= 1, harmless
    assert "does not change" in harmless["text"]
    # torch agrees: on 2-D input the traced model differs, and both sides of the second if are equal
    traced, scripted = (torch.jit.load(str(p)) for p in two_flags)
    x = torch.rand(3, 4) + 0.5
    assert traced(x).shape != scripted(x).shape
    assert torch.equal(x * 2.0, x + x)


def test_without_traced_inputs_nothing_runs_and_every_finding_says_why(two_flags, tmp_path, monkeypatch):
    traced, scripted = two_flags
    bare = tmp_path / "TwoFlags_traced_bare.pt"
    with zipfile.ZipFile(traced) as zin, zipfile.ZipFile(bare, "w") as zout:
        for info in zin.infolist():
            if "/traced_inputs" not in info.filename:
                zout.writestr(info, zin.read(info))
    started = []
    result = diff_archives(str(bare), str(scripted), ir="never")
    assert result.traced == str(bare) and result.findings  # still told apart and diffed without it
    monkeypatch.setattr(verify_run, "run_confined_child", lambda *a, **k: started.append(a) or (b"", None))
    verify_run.verify(result)
    assert not started and result.verification["status"] == "not_run"
    assert "traced_inputs.pkl" in result.verification["message"]
    assert all(f.verdict["verdict"] == "not tested" and "traced_inputs.pkl" in f.verdict["text"]
               for f in result.findings)


def test_findings_that_change_the_result_only_together_are_frozen_together(pairs):
    import torch

    # traced at length 6: the trace pads by 8 - t. At length 12 the script pads by 0 and skips the if; the
    # trace "pads" by -4 (a crop): freezing the baked 8 alone gives pad -4 and skips the if, freezing the if
    # alone pads by 0: only both together give the traced result
    result = verify_run.verify(diff_archives(*map(str, pairs["PadToChunk"]), ir="never"))
    lines = result.verification["together"]
    assert any("x.size(1) = 12" in line and f":{_line('pad-amount')}" in line and f":{_line('pad-if')}" in line
               for line in lines), lines
    assert not any("x.size(1) = 12" in line for line in result.verification["unexplained"])
    traced, scripted = (torch.jit.load(str(p)) for p in pairs["PadToChunk"])
    x = torch.rand(2, 12, 3)
    assert traced(x).shape != scripted(x).shape  # torch: the two differ there


def test_a_per_iteration_branch_is_replayed_step_by_step(pairs):
    import torch

    from tsinspect.verify.instrument import Instrumented

    result = verify_run.verify(diff_archives(*map(str, pairs["Alternate"]), ir="never"))
    verdict = next(f.verdict for f in result.findings if f.kind == "per_iteration_branch")
    # i % 2 decides the same at every step the trace had, whatever the input: never reached
    assert verdict["verdict"] == "not reproduced" and verdict["reached"] == 0, verdict
    # the frozen copy replays recorded decisions step by step, then decides on its own (torch computes it)
    scripted = torch.jit.load(str(pairs["Alternate"][1]))
    site = {"kind": "if", "file": str(pairs["Alternate"][1].parent / "causes_models.py"),
            "line": _line("alternate-if"), "kept": None}
    graph = Instrumented(torch, scripted.forward, [site])
    assert [len(items) for items in graph.instances] == [1]
    frozen = graph.frozen([(0, {**site, "sequences": {0: [False, True]}}, {})])
    x = torch.rand(4, 3)
    assert torch.allclose(frozen(scripted._c, x), torch.sin(torch.cos(torch.cos(torch.sin(x)))))
    assert torch.allclose(scripted(x), torch.sin(torch.cos(torch.sin(torch.cos(x)))))
