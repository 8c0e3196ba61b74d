"""Shared fixtures: TorchScript archives built with torch into temporary folders.

The builders live in tests/archives.py (imported by path, like samples/build.py,
so neither tests/ nor samples/ has to be a package). torch is imported only when
a fixture that needs it runs. Every `*_archive` fixture yields a pathlib.Path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_archives():
    name = "tsinspect_test_archives"
    mod = sys.modules.get(name)
    if mod is None:
        path = Path(__file__).resolve().parent / "archives.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


archives = _load_archives()


@pytest.fixture(scope="session")
def sample_archives(tmp_path_factory) -> dict[str, Path]:
    """Every sample of samples/ built afresh by samples/build.py: {stem: path}.

    Stems: gate_scripted, gate_traced, gate_extra, gate_lite (.ptl),
    gate_state_dict, plain_scripted, plain_traced. Built in this process, so the
    `___torch_mangle_N` numbers and the order of Final constants in code/ may differ
    from the committed copies in samples/, and the traced archives' debug info also
    holds the call stack through pytest, conftest.py and tests/archives.py (absolute
    paths); the line numbers of samples/models.py (models.line_of(tag)) are the same.
    """
    return archives.build_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The diff zoo's pairs (tests/diff_zoo.py), {model: (traced, scripted)}, built once per session: a
    second build in the same process reuses the TorchScript class compiled by the first, whose debug info
    names the first build's source file, so the pairs of the second build no longer align."""
    import diff_zoo

    return diff_zoo.build_zoo(tmp_path_factory.mktemp("diff_zoo"))


@pytest.fixture(scope="session")
def samples_dir(sample_archives) -> Path:
    """Folder holding every sample archive, built afresh (see sample_archives)."""
    return next(iter(sample_archives.values())).parent


@pytest.fixture(scope="session")
def quantized_archive(tmp_path_factory) -> Path:
    """Statically quantized scripted Conv2d + Linear; code/ has a benign Conv2d.__setstate__
    that reaches ops.quantized.conv2d_prepack. Full-loads, fails to meta-load.
    See archives.build_quantized."""
    return archives.build_quantized(tmp_path_factory.mktemp("quantized"))


@pytest.fixture(scope="session")
def custom_op_archive(tmp_path_factory) -> Path:
    """Scripted archive calling ops.torchvision.nms; torch.jit.load fails with
    "Unknown builtin op: torchvision::nms.". See archives.build_custom_op."""
    return archives.build_custom_op(tmp_path_factory.mktemp("custom_op"))


@pytest.fixture(scope="session")
def _setstate_writer(tmp_path_factory) -> tuple[Path, Path]:
    return archives.build_setstate_file_writer(tmp_path_factory.mktemp("setstate"))


@pytest.fixture(scope="session")
def setstate_file_writer_archive(_setstate_writer) -> Path:
    """Scripted module whose __setstate__ runs torch.save(<str>, <absolute marker path>):
    torch.jit.load writes the file `setstate_marker` names (meta loading too).
    See archives.build_setstate_file_writer."""
    return _setstate_writer[0]


@pytest.fixture
def setstate_marker(_setstate_writer):
    """Path that loading setstate_file_writer_archive writes: absent when the test
    starts, removed after it. Assert `not setstate_marker.exists()` to prove nothing
    loaded the archive."""
    marker = _setstate_writer[1]
    marker.unlink(missing_ok=True)
    yield marker
    marker.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def silero_vad_archive(tmp_path_factory) -> Path:
    """silero_vad.jit (2.27 MB, a real scripted model) from the silero-vad wheel on
    PyPI, fetched with pip; skips the test when the download fails."""
    try:
        return archives.fetch_silero_vad(tmp_path_factory.mktemp("silero_vad"))
    except archives.DownloadFailed as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def format_zoo(tmp_path_factory) -> dict[str, Path]:
    """legacy, pt2, torch.package, flatbuffer and whole-module torch.save files: see archives.build_format_zoo."""
    return archives.build_format_zoo(tmp_path_factory.mktemp("formats"))
