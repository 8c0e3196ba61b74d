"""Builders of TorchScript archives for tests (used by tests/conftest.py).

Each builder writes one small archive with torch into a directory it is given and
returns its path. They import torch lazily, so importing this module is cheap.
What each archive holds, and how torch.jit.load treats it, was checked with
torch 2.13.0+cpu; the docstrings quote it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Tuple

REPO = Path(__file__).resolve().parent.parent
SAMPLES_BUILD = REPO / "samples" / "build.py"

# Name of the file the setstate archive's __setstate__ writes, next to the archive.
SETSTATE_MARKER_NAME = "setstate_marker.pt"
SETSTATE_MARKER_TEXT = "written by __setstate__"

# silero-vad release whose wheel ships silero_vad/data/silero_vad.jit (2.27 MB,
# top folder `VADr_v6_10_25_noths_re/`, 126 records, methods forward,
# audio_forward, reset_states, _validate_input; submodules _model and _model_8k).
SILERO_VAD_REQUIREMENT = "silero-vad==6.2.3"
SILERO_VAD_MEMBER = "silero_vad/data/silero_vad.jit"


def _Quiet():
    """samples/build.py's context that silences torch's deprecation and tracer warnings while building."""
    return load_samples_build()._Quiet()


def _torch():
    return load_samples_build().torch  # build.py imports torch with its import-time warning silenced


def load_samples_build():
    """samples/build.py as a module, imported by path (samples/ is not a package)."""
    name = "tsinspect_samples_build"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, SAMPLES_BUILD)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
    return mod


def build_samples(outdir: Path) -> dict[str, Path]:
    """Every archive of samples/ built afresh into outdir: {stem: path}."""
    return load_samples_build().build_all(outdir)


def build_quantized(outdir: Path) -> Path:
    """Statically quantized (eager mode, QuantStub/DeQuantStub) Conv2d + Linear, scripted.

    Writes `quantized.pt` (about 16 KB). The top module is
    `__torch__.tsinspect_test_archives.QuantNet` (quant, conv, fc, dequant). code/ holds
    `code/__torch__/torch/ao/nn/quantized/modules/conv.py` whose `class Conv2d` has
    `__getstate__` and::

        def __setstate__(self: __torch__.torch.ao.nn.quantized.modules.conv.Conv2d,
          state: Tuple[int, int, Tuple[int, int], ...]) -> NoneType:
          self.in_channels = (state)[0]
          ...
          _7 = (self).set_weight_bias((state)[10], (state)[11], )
          self.scale = (state)[12]
          ...

    and `set_weight_bias` calls `ops.quantized.conv2d_prepack(w, b, ...)`: the common,
    benign `__setstate__`. The quantized Linear (`modules/linear.py`) has no
    `__setstate__` in code/ (its packed params are the custom class
    `__torch__.torch.classes.quantized.LinearPackedParamsBase`, whose code file
    `code/__torch__/torch/classes/quantized.py` is empty); neither has a dynamically
    quantized model, which is why this one is static.
    torch.jit.load works; torch.jit.load(..., map_location="meta") fails with
    NotImplementedError (no QuantizedMeta kernel). Loading prints a C++ deprecation
    warning for quantized tensor creation on stderr.
    """
    torch = _torch()
    nn = torch.nn
    with _Quiet():
        # observer / quantize_per_channel deprecation notices
        warnings.simplefilter("ignore", UserWarning)
        import torch.ao.quantization as tq

        class QuantNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.quant = tq.QuantStub()
                self.conv = nn.Conv2d(1, 2, 3)
                self.fc = nn.Linear(8, 2)
                self.dequant = tq.DeQuantStub()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = self.quant(x)
                x = torch.relu(self.conv(x))
                x = self.fc(x.flatten(1))
                return self.dequant(x)

        torch.manual_seed(0)
        model = QuantNet().eval()
        model.qconfig = tq.get_default_qconfig(torch.backends.quantized.engine)
        prepared = tq.prepare(model)
        prepared(torch.randn(2, 1, 4, 4))  # calibrate the observers
        quantized = tq.convert(prepared)
        path = Path(outdir) / "quantized.pt"
        torch.jit.save(torch.jit.script(quantized), str(path))
    return path


def build_custom_op(outdir: Path) -> Path:
    """A scripted module whose forward calls `torchvision::nms`, an op this torch lacks.

    Writes `custom_op.pt` (about 2 KB). The op is defined only while building, with
    `torch.library.Library("torchvision", "DEF")` and a stand-in CPU kernel, then
    deregistered (`Library._destroy()`), so the archive is exactly what torch writes
    (debug info consistent with the code) and no trace of the op stays in this
    process. The classes built here live in module `tsinspect_test_archives`, so the
    code is in code/__torch__/tsinspect_test_archives.py::

        class Detect(Module):
          ...
          thresh : float
          def forward(self: __torch__.tsinspect_test_archives.Detect,
            boxes: Tensor,
            scores: Tensor) -> Tensor:
            thresh = self.thresh
            keep = ops.torchvision.nms(boxes, scores, thresh)
            _0 = annotate(List[Optional[Tensor]], [keep])
            return torch.index(boxes, _0)

    torch.jit.load raises RuntimeError (here and in a fresh process) whose message
    starts with "Unknown builtin op: torchvision::nms." followed by "Could not find any
    similar ops to torchvision::nms. This op may not exist or may not be currently
    supported in TorchScript.", then ':' and an excerpt that starts
    `File "code/__torch__/tsinspect_test_archives.py", line 11` and points `~~~ <--- HERE`
    under `ops.torchvision.nms`.
    """
    torch = _torch()
    nn = torch.nn
    lib = torch.library.Library("torchvision", "DEF")
    try:
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

        def nms_stand_in(dets, scores, iou_threshold):
            return torch.argsort(scores, descending=True)

        lib.impl("nms", nms_stand_in, "CPU")

        class Detect(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.thresh = 0.5

            def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                keep = torch.ops.torchvision.nms(boxes, scores, self.thresh)
                return boxes[keep]

        path = Path(outdir) / "custom_op.pt"
        with _Quiet():
            torch.jit.save(torch.jit.script(Detect()), str(path))
    finally:
        lib._destroy()
    return path


def build_setstate_file_writer(outdir: Path) -> Tuple[Path, Path]:
    """A scripted module whose `__setstate__` writes a file with `torch.save`.

    Writes `setstate_writer.pt` (about 2 KB) and returns (archive, marker): the
    marker is `<outdir>/setstate_marker.pt`, an absolute path stored in the archive
    as the module's `marker` attribute; it is not created by building.
    code/__torch__/tsinspect_test_archives.py::

        class Writer(Module):
          ...
          marker : str
          weight : Tensor
          def forward(...)
          def __getstate__(self: __torch__.tsinspect_test_archives.Writer) -> Tuple[str, Tensor, bool]: ...
          def __setstate__(self: __torch__.tsinspect_test_archives.Writer,
            state: Tuple[str, Tensor, bool]) -> NoneType:
            self.marker = (state)[0]
            self.weight = (state)[1]
            self.training = (state)[2]
            marker = self.marker
            torch.save("written by __setstate__", marker)
            return None

    (`torch.save` is the IR op `aten::save`.) Checked in a fresh process:
    torch.jit.load(archive) writes the marker (a torch.save zip holding the string
    "written by __setstate__"), and so does torch.jit.load(archive,
    map_location="meta") — the payload is a string, so meta loading is no sandbox.
    torch.load(archive) with the default weights_only=True refuses TorchScript
    archives and writes nothing; torch.load(archive, weights_only=False) hands it to
    torch.jit.load and writes the marker.
    """
    torch = _torch()
    nn = torch.nn
    outdir = Path(outdir)
    marker = (outdir / SETSTATE_MARKER_NAME).resolve()

    class Writer(nn.Module):
        def __init__(self, marker: str) -> None:
            super().__init__()
            self.marker = marker
            self.weight = torch.ones(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.weight

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
            return (self.marker, self.weight, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
            self.marker = state[0]
            self.weight = state[1]
            self.training = state[2]
            torch.save("written by __setstate__", self.marker)

    path = outdir / "setstate_writer.pt"
    with _Quiet():
        torch.jit.save(torch.jit.script(Writer(str(marker))), str(path))
    return path, marker


class DownloadFailed(Exception):
    """pip could not fetch the silero-vad wheel (registry unreachable, ...)."""


def fetch_silero_vad(cachedir: Path, timeout: float = 120.0) -> Path:
    """silero_vad.jit extracted from the silero-vad wheel downloaded with pip.

    The wheel (11.3 MB; pip download took under 1 s here, less from pip's cache)
    also ships silero_vad/data/*.onnx and a .safetensors file; only the .jit is
    TorchScript. Reuses an earlier extraction in cachedir. Raises DownloadFailed
    with pip's last output line when the download fails.
    """
    cachedir = Path(cachedir)
    target = cachedir / "silero_vad.jit"
    if target.is_file():
        return target
    wheels = cachedir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", SILERO_VAD_REQUIREMENT,
        "--no-deps", "--no-binary", ":none:", "--only-binary", ":all:",
        "--disable-pip-version-check", "--no-input", "--timeout", "20", "--retries", "1",
        "-d", str(wheels),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadFailed(f"pip download {SILERO_VAD_REQUIREMENT} failed: {exc}") from exc
    found = sorted(wheels.glob("silero_vad-*.whl"))
    if proc.returncode != 0 or not found:
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise DownloadFailed(
            f"pip download {SILERO_VAD_REQUIREMENT} failed after {time.monotonic() - started:.1f} s: {last}"
        )
    with zipfile.ZipFile(found[-1]) as wheel:
        data = wheel.read(SILERO_VAD_MEMBER)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def build_format_zoo(outdir: Path) -> dict[str, Path]:
    """One small file per container/format tsinspect tells apart besides TorchScript:
    legacy (pre-zip torch.save stream), pt2 (torch.export.save), torch.package holding a ScriptModule
    (the unified format under .data/ts_code), flatbuffer (lite with _use_flatbuffer), and a torch.save
    of a whole nn.Module (pickles __main__-style classes). {name: path}."""
    torch = _torch()
    from torch import nn

    out: dict[str, Path] = {}
    with _Quiet():
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        out["legacy"] = outdir / "legacy.pt"
        torch.save(model.state_dict(), out["legacy"], _use_new_zipfile_serialization=False)
        out["pt2"] = outdir / "model.pt2"
        torch.export.save(torch.export.export(model, (torch.ones(2, 4),)), out["pt2"])
        import torch.package.package_exporter as exporter

        scripted = torch.jit.script(model)
        gate, exporter._gate_torchscript_serialization = exporter._gate_torchscript_serialization, False
        try:
            out["torch.package"] = outdir / "package.pt"
            with exporter.PackageExporter(out["torch.package"]) as pe:
                pe.save_pickle("model", "model.pkl", scripted)
        finally:
            exporter._gate_torchscript_serialization = gate
        out["flatbuffer"] = outdir / "flat.ptl"
        scripted._save_for_lite_interpreter(str(out["flatbuffer"]), _use_flatbuffer=True)
        out["whole_module"] = outdir / "whole.pt"
        torch.save(model, out["whole_module"])
    return out
