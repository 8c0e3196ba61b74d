"""Terminal UI (Textual): ``tsinspect FILE`` browses the archive and explores the IR.

The UI renders the result objects of the lower layers (``archive``, ``ir``, ``diff``); it never imports
torch (the IR comes from the extraction child) and never computes what those layers already know.
Only this package imports Textual.
"""

from __future__ import annotations

import os
import sys


def run(path: str, *, trust: bool = False, other: str | None = None, diff_ir: str = "auto") -> int:
    """Run the app on ``path`` (and ``other``, to diff against: the app then opens on the diff view and
    browses the scripted one of the two); the process then ends with its exit status (_leave)."""
    # the IR's torch child starts before Textual is imported: it takes longer than the app's own start-up
    started = None if other else start_ir(path, trust)
    try:
        from tsinspect.tui.app import InspectorApp

        app = InspectorApp(path, trust=trust, other=other, diff_ir=diff_ir, started_ir=started)
        app.run()  # returns once every worker has ended (each stops its child process and folder)
    finally:
        if started is not None:
            started.stop()  # never used (not an archive with an IR), or the app ended first
    _leave(app.return_code or 0)


def _leave(code: int) -> None:
    """End the process now, as a quit asks: not after Python has freed the archive's objects one by one (0.9 s
    for a traced model of 8,000 submodules) nor after a safety scan still running in its daemon thread (it ran
    on through the interpreter's shutdown: 4 s). Nothing is left to clean up: the workers have ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start_ir(path: str, trust: bool):
    """The first extraction's torch child, started now (tsinspect.tui.irfetch.Early), for InspectorApp's
    ``started_ir``; stop() it when the app did not use it."""
    from tsinspect.tui.irfetch import Early

    return Early(path, trust)
