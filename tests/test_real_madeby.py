"""The traced/scripted guess (tsinspect.archive.madeby) on real third-party archives (tests/real/SOURCES.md).

``info`` guesses from code/ alone; ``diff`` adds the debug info (call stacks in a trace's records, the
original source in a script's). DeepAR (DJL) was traced by a torch that wrote no traced_inputs.pkl; the
silero-vad models and tch-rs's test modules were scripted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO

from tsinspect.archive.code import index_code
from tsinspect.archive.madeby import MIXED, SCRIPTED, TRACED, UNKNOWN, made_by
from tsinspect.archive.reader import open_archive
from tsinspect.diff.run import load_side

REAL = REPO / "tests" / "real"


def _guesses(path: Path):
    with open_archive(str(path)) as archive:
        code = index_code(archive)
        traced_inputs = "traced_inputs.pkl" in archive.by_name
        return made_by(code, traced_inputs), made_by(code, traced_inputs, archive)


@pytest.mark.parametrize("name, info_kind, diff_kind", [
    ("djl_deepar.pt", TRACED, TRACED),
    ("silero_vad_v3_2021.jit", SCRIPTED, SCRIPTED),
    ("silero_vad_micro_2021.jit", SCRIPTED, SCRIPTED),
    ("tch_foo5_2019-12-08.pt", SCRIPTED, SCRIPTED),
    ("tch_foo4_2019-12-07.pt", UNKNOWN, SCRIPTED),  # straight-line code: only the debug info tells
])
def test_guess_on_real_archives(name, info_kind, diff_kind):
    info, diff = _guesses(REAL / name)
    assert (info.kind, diff.leaning) == (info_kind, diff_kind), (info.evidence, diff.evidence)
    assert diff.kind in (diff_kind, MIXED)
    assert any("debug info" in e for e in diff.evidence) and not any("debug info" in e for e in info.evidence)
    # the diff takes each archive for what the shared guess leans to
    assert load_side(str(REAL / name)).kind == diff_kind


def test_debug_info_counts_what_the_archive_records():
    """DeepAR's records are Python call stacks, silero's the scripted source: counted per op call."""
    _, traced = _guesses(REAL / "djl_deepar.pt")
    _, scripted = _guesses(REAL / "silero_vad_v6.jit")
    assert any(e.startswith("the debug info holds Python call stacks") for e in traced.evidence)
    assert any(e.startswith("the debug info holds the original source") for e in scripted.evidence)
