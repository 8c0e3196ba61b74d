"""tsinspect's torch-free view of real third-party archives (tests/real/, SOURCES.md) against torch itself.

The truth comes from benchmarks/fidelity_truth.py in a child process (torch's zip reader and rebuild
functions, torch.jit.load, node source ranges, torch.load for legacy files); benchmarks/fidelity.py compares.
The full run (also the archives only a local mirror has, and IR node counts) is `python benchmarks/fidelity.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

spec = importlib.util.spec_from_file_location("tsinspect_fidelity", REPO / "benchmarks" / "fidelity.py")
fidelity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fidelity)

REAL = fidelity.real_archives()


@pytest.fixture(scope="module")
def truths() -> dict[str, dict]:
    return fidelity.run_truth(REAL)


def test_enough_real_archives_of_every_kind():
    sources = (REPO / "tests" / "real" / "SOURCES.md").read_text()
    assert len(REAL) >= 41
    for path in REAL:
        assert f"`{path.name}`" in sources, f"{path.name} has no entry in SOURCES.md"


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_view_matches_torch(path: Path, truths):
    truth = truths[str(path)]
    result = fidelity.compare(truth, fidelity.view(path))
    diffs = {k: v[:10] for k, v in result["diffs"].items() if k != "not_verified"}
    assert not diffs, json.dumps(diffs, indent=1)
    # something was compared: every archive has tensors or code lines torch places
    assert sum(result["checked"].values()) > 0 or path.name == "djl_identity.pt"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tsinspect", *args], capture_output=True, text=True, timeout=120)


def test_blame_of_the_readme_sample():
    """README: code/__torch__/models.py line 25 (b = torch.size(x, 0)) comes from models.py:31."""
    proc = _cli("cat", "--blame", "--json", str(REPO / "samples" / "gate_scripted.pt"), "code/__torch__/models.py")
    lines = json.loads(proc.stdout)["lines"]
    assert lines[24]["text"].strip() == "b = torch.size(x, 0)"
    assert (lines[24]["origin"]["file"].rsplit("/", 1)[-1], lines[24]["origin"]["line"]) == ("models.py", 31)


def test_legacy_stream_parts(tmp_path):
    path = REPO / "tests" / "real" / "facenet_pnet.pt"
    ls = json.loads(_cli("ls", "--json", str(path)).stdout)
    names = [r["name"] for r in ls["records"]]
    assert names[:5] == ["magic_number.pkl", "protocol_version.pkl", "sys_info.pkl", "data.pkl", "storage_keys.pkl"]
    assert len(names) == 5 + 13
    info = json.loads(_cli("info", "--json", str(path)).stdout)
    assert info["format"] == "legacy" and info["versions"]["legacy_protocol"] == 1001
    assert len(info["tensors"]) == 13 and not info["problems"]
    sys_info = json.loads(_cli("pickle", "--json", str(path), "sys_info.pkl").stdout)
    assert "little_endian" in json.dumps(sys_info)
    proc = _cli("extract", str(path), str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    storage = next((tmp_path / "out" / "data").iterdir())
    assert storage.stat().st_size in {t["storage"]["nbytes"] for t in info["tensors"]}


def test_truncated_legacy_stream_keeps_its_parts(tmp_path):
    data = (REPO / "tests" / "real" / "lpips_v0.1_alex.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:len(data) - 100])  # the last storage is cut short
    info = json.loads(_cli("info", "--json", str(cut)).stdout)
    assert [p["kind"] for p in info["problems"]].count("legacy_stream") == 1
    assert len(info["tensors"]) == 5  # the pickle still names them; the missing storage is reported
    assert any(p["kind"] == "missing_storage" for p in info["problems"])


# torch 2.13's message for android-demo-app's 2019 quantized MobileNet (file format 1), abridged to its
# first variant: the schema names a custom class, which is not what is missing.
_SIGNATURE_MISMATCH = """
Arguments for call are not valid.
The following variants are available:
  
  quantized::conv2d_relu.new(Tensor qx, __torch__.torch.classes.quantized.Conv2dPackedParamsBase packed_weight, float output_scale, int output_zero_point) -> Tensor:
  Expected a value of type '__torch__.torch.classes.quantized.Conv2dPackedParamsBase (of Python compilation unit at: 0)' for argument 'packed_weight' but instead found type 'Tensor'.

The original call is:
  File "code/__torch__/torch/nn/_intrinsic/quantized/modules/conv_relu.py", line 37
    _16 = ops.quantized.conv2d_relu(input, _1, _10, _13, [_14, _15], _5, _6, _7)
          ~~~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE
"""


def test_signature_mismatch_is_no_missing_class():
    from tsinspect.ir.extract import classify_error

    error = classify_error(RuntimeError(_SIGNATURE_MISMATCH))
    assert error["kind"] == "load_failed" and error["missing"] is None
    assert "quantized::conv2d_relu.new" in error["message"] and "'packed_weight'" in error["message"]
    assert "conv_relu.py:37" in error["message"]
    missing = classify_error(RuntimeError("Unknown type name '__torch__.torch.classes.xnnpack.LinearOpContext':"))
    assert missing["kind"] == "missing_class"


def test_tui_previews_a_legacy_stream_tensor():
    from textual.widgets import DataTable
    from tui_driver import press, run, settle, started, text_of

    async def body():
        async with started(REPO / "tests" / "real" / "facenet_pnet.pt") as (app, pilot):
            app.show_record(("tensor", "conv1.bias"))
            await settle(app, pilot)
            table = app.query_one("#tensor-table", DataTable)
            assert table.row_count == 13
            table.focus()
            await press(app, pilot, "enter")
            assert "first 10 of 10 values" in text_of(app, "#tensor-preview")
    run(body())
