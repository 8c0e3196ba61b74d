"""Build tsinspect's sample archives from samples/models.py.

    python samples/build.py [OUTDIR]      # OUTDIR defaults to this folder

Every builder is deterministic in content (torch.manual_seed(0), eval mode, example
input torch.ones(2, 4)). Run as a script, it pins PYTHONHASHSEED=0 so that the
archives are byte-identical from run to run (the order TorchScript prints a class's
Final constants in follows string hashing); imported, the bytes may differ in that
order and in the .data/serialization_id derived from them. Tests import this file by path (see tests/conftest.py), so
keep the builders importable: no work at import time besides loading models.py.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

with warnings.catch_warnings():
    # torch 2.13 CPU wheels warn at import when numpy is absent; irrelevant here.
    warnings.filterwarnings("ignore", message=".*NumPy.*")
    import torch

HERE = Path(__file__).resolve().parent
MODELS_FILE = HERE / "models.py"

# Module name the model classes live under; it becomes the qualified name in the
# archives (`__torch__.models.Gate`, `code/__torch__/models.py`).
MODELS_MODULE = "models"

EXTRA_FILES = {
    "meta.json": '{"author": "tsinspect samples"}',
    "notes/readme.txt": "hello",
}


def load_models():
    """Import samples/models.py by path as module `models` (samples is not a package)."""
    mod = sys.modules.get(MODELS_MODULE)
    if mod is not None:
        if Path(getattr(mod, "__file__", "") or "").resolve() != MODELS_FILE:
            raise RuntimeError(f"sys.modules[{MODELS_MODULE!r}] is {mod!r}, not {MODELS_FILE}")
        return mod
    spec = importlib.util.spec_from_file_location(MODELS_MODULE, MODELS_FILE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[MODELS_MODULE] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[MODELS_MODULE]
        raise
    return mod


def example_input() -> torch.Tensor:
    """The trace input: batch 2, so the loop unrolls 2x."""
    return torch.ones(2, 4)


class _Quiet:
    """Silence torch's DeprecationWarnings (TorchScript, lite interpreter) and TracerWarnings."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def make_gate() -> torch.nn.Module:
    torch.manual_seed(0)
    return load_models().Gate().eval()


def make_plain() -> torch.nn.Module:
    torch.manual_seed(0)
    return load_models().Plain().eval()


def _out(outdir: Path | str, name: str) -> Path:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir / name


def build_gate_scripted(outdir: Path | str) -> Path:
    path = _out(outdir, "gate_scripted.pt")
    with _Quiet():
        torch.jit.save(torch.jit.script(make_gate()), str(path))
    return path


def build_gate_traced(outdir: Path | str) -> Path:
    path = _out(outdir, "gate_traced.pt")
    with _Quiet():
        torch.jit.save(torch.jit.trace(make_gate(), example_input()), str(path))
    return path


def build_gate_extra(outdir: Path | str) -> Path:
    path = _out(outdir, "gate_extra.pt")
    with _Quiet():
        torch.jit.save(torch.jit.script(make_gate()), str(path), _extra_files=dict(EXTRA_FILES))
    return path


def build_gate_lite(outdir: Path | str) -> Path:
    path = _out(outdir, "gate_lite.ptl")
    with _Quiet():
        torch.jit.script(make_gate())._save_for_lite_interpreter(str(path), _save_mobile_debug_info=True)
    return path


def build_gate_state_dict(outdir: Path | str) -> Path:
    path = _out(outdir, "gate_state_dict.pt")
    with _Quiet():
        torch.save(make_gate().state_dict(), str(path))
    return path


def build_plain_scripted(outdir: Path | str) -> Path:
    path = _out(outdir, "plain_scripted.pt")
    with _Quiet():
        torch.jit.save(torch.jit.script(make_plain()), str(path))
    return path


def build_plain_traced(outdir: Path | str) -> Path:
    path = _out(outdir, "plain_traced.pt")
    with _Quiet():
        torch.jit.save(torch.jit.trace(make_plain(), example_input()), str(path))
    return path


# Stem of each sample -> its builder, in build order.
BUILDERS: dict[str, Callable[[Path | str], Path]] = {
    "gate_scripted": build_gate_scripted,
    "gate_traced": build_gate_traced,
    "gate_extra": build_gate_extra,
    "gate_lite": build_gate_lite,
    "gate_state_dict": build_gate_state_dict,
    "plain_scripted": build_plain_scripted,
    "plain_traced": build_plain_traced,
}


def build_all(outdir: Path | str = HERE, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Build every sample into outdir; returns {stem: path}."""
    built = {}
    for name, builder in BUILDERS.items():
        path = builder(outdir)
        built[name] = path
        if log is not None:
            log(f"wrote {path} ({path.stat().st_size} bytes)")
    return built


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python samples/build.py [OUTDIR]", file=sys.stderr)
        return 2
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript prints a class's Final constants in set order, which follows
        # string hashing: pin it so the committed archives rebuild byte for byte.
        env = dict(os.environ, PYTHONHASHSEED="0")
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *args], env)
    build_all(Path(args[0]) if args else HERE, log=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
