"""The IR view's extractions. Textual-free.

The first one (``Early``) is the torch child started before the app, gated by the app's own reading of the
archive: no second scan, and the child loads the copy written from the very Archive object judged. Later
ones (``i``, the inlined graphs; ``t``, after the user confirmed) run ``tsinspect graph --json`` in a
process of its own (``Running``): the parent's side of such an extraction (code index, safety scan, meta
copy: tsinspect.ir.run) would otherwise share the interpreter lock with the UI. Its document comes back as
``graph --json`` relays it (the child's text, not decoded and encoded again). Both are decoded here in
slices (tsinspect.ir.stream). A quit while an extraction runs ends it at once: the ``graph`` process is
interrupted (it then kills its torch child), the early child killed, rather than waited for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import tsinspect  # nothing heavier before the process starts: tsinspect.tui.run starts it first thing


@dataclass
class Fetched:
    """What the IR view shows, as tsinspect.ir.run.Extraction offers it: ``ir`` (tsinspect.ir.model.IR), and
    ``index`` (code/'s tsinspect.archive.code.CodeIndex, for the ``ast`` view when torch did not load it)."""

    ir: Any
    index: Any


class FetchError(Exception):
    """``graph`` gave no document; the message is its error line."""


class Cancelled(Exception):
    pass


class Running:
    """A ``tsinspect graph --json`` process started for (path, trust, inline); its output goes to files of a
    private temporary folder (removed by ``result`` or ``stop``)."""

    def __init__(self, path: str, trust: bool, inline: bool):
        self.key = (str(path), trust, inline)
        cmd = [sys.executable, "-m", "tsinspect", "graph", "--json", "--color", "never"]
        cmd += ["--trust"] * trust + ["--inline"] * inline + ["--", str(path)]  # a path may start with "-"
        env = dict(os.environ)  # the very tsinspect of this process, whatever put it on sys.path
        env["PYTHONPATH"] = os.pathsep.join([str(Path(tsinspect.__file__).resolve().parent.parent),
                                             *filter(None, [os.environ.get("PYTHONPATH")])])
        self.folder = tempfile.TemporaryDirectory(prefix="tsinspect-tui-")
        self.out_path, self.err_path = Path(self.folder.name) / "out.json", Path(self.folder.name) / "err.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                         start_new_session=True)

    def result(self, cancelled: Callable[[], bool], index: Callable[[], Any]) -> Fetched:
        """Wait for it, polling ``cancelled`` (True: stop it and raise Cancelled); ``index()`` gives the code
        index when the IR is not loaded (refused, failed: the ``ast`` view)."""
        from tsinspect.archive.code import CodeIndex
        from tsinspect.ir.stream import ir_from_text
        from tsinspect.tui.priority import ui_priority

        try:
            while not self._ended(0.01):
                if cancelled():
                    raise Cancelled
            text = self.out_path.read_bytes()
            errors = self.err_path.read_bytes().decode("utf-8", "replace")
        finally:
            self.stop()
        if not text.strip():
            lines = [line for line in errors.splitlines() if line.strip()]
            message = lines[-1] if lines else f"tsinspect graph exited with status {self.proc.returncode}"
            raise FetchError(message.removeprefix("tsinspect: error: "))
        try:
            ir = ir_from_text(text, pause=ui_priority.pause)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise FetchError(f"tsinspect graph wrote unreadable output ({exc})") from None
        return Fetched(ir, CodeIndex() if ir.load in ("meta", "full", "pt2") else index())

    def _ended(self, wait: float) -> bool:
        try:
            self.proc.wait(timeout=wait)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        """End the process if it still runs (SIGINT first: ``graph`` then kills its torch child's process
        group on the way out), and remove its folder."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.folder.cleanup()


class Early:
    """The first extraction's torch child, started before the app (tsinspect.ir.run.EarlyChild: it confines
    itself and imports torch meanwhile). The app's own reading of the archive, which its first screen needs
    anyway, is the gate: ``result`` judges the app's scan of that very Archive object and copies from it, so
    the bytes the child loads are the bytes judged, with no second process scanning the archive again on the
    2 cores the child's import of torch needs (``Running`` does that for later requests: ``i``, ``t``)."""

    def __init__(self, path: str, trust: bool):
        from tsinspect.ir.run import EarlyChild, Options

        self.key = (str(path), trust, False)
        self.child = EarlyChild(path, Options(trust=trust)) if os.path.isfile(path) else None
        self._stopping = threading.Lock()  # the worker's stop and the app's at a quit

    def result(self, read: Callable[[], Any], cancelled: Callable[[], bool]) -> Fetched | None:
        """Wait for ``read()``, the app's tsinspect.tui.state.Loaded of this path (None until it is read, False
        when it could not be: the archive view says why, and this raises Cancelled), and for its safety scan's
        verdict, polling ``cancelled``; then gate and load. None for an archive with no IR."""
        from tsinspect.archive import records as rk
        from tsinspect.ir.run import extract_ir
        from tsinspect.ir.stream import decode_extraction
        from tsinspect.tui.priority import ui_priority

        try:
            while (state := read()) is None:
                if cancelled():
                    raise Cancelled
                time.sleep(0.01)
            if state is False or self.child is None:
                raise Cancelled
            archive = state.archive
            if archive.format not in rk.IR_FORMATS:
                return None
            if archive.format in (rk.TORCHSCRIPT, rk.LITE):  # the lock only while the archive is read
                scan = state.verdict(cancelled)  # the gate's: nothing is loaded before it
                if scan is None:
                    if cancelled():
                        raise Cancelled
                    raise FetchError(state.scan_error or "the safety scan gave no verdict")
                extraction = extract_ir(archive, early=self.child, scanned=(state.summary.code, scan),
                                        reading=state.read_lock)
            else:  # read without torch, at once (pt2's graph, model.json's refusal)
                with state.read_lock:
                    extraction = extract_ir(archive, early=self.child)
        finally:
            self.stop()
        decode_extraction(extraction, ui_priority.pause)
        return Fetched(extraction.ir, extraction.index)

    def stop(self) -> None:
        """Stop the child if it still runs (a quit while it loads), remove its folder."""
        with self._stopping:
            if self.child is not None:
                self.child.close()


def fetch(path: str, *, trust: bool, inline: bool, cancelled: Callable[[], bool], index: Callable[[], Any],
          started: Running | None = None) -> Fetched:
    """The IR of ``path`` from ``graph --json``: from ``started`` when it was started for the same request
    (``tsinspect.tui.run`` starts one before Textual is even imported), else from a new process."""
    running = started if started is not None and started.key == (str(path), trust, inline) else None
    if started is not None and running is None:
        started.stop()
    return (running or Running(path, trust, inline)).result(cancelled, index)
