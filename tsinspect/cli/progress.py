"""Progress for long work: one status line on stderr, redrawn in place, only when stderr is a terminal.

Every command uses the same mechanism: ``with Progress("extracting the IR"):`` shows the label and the time
spent (a background thread redraws it); ``Progress("scanning", total=n)`` with ``advance()`` counts items and
their rate; ``stage(text)`` renames the work in progress. ``--quiet``, ``TERM=dumb`` and a stderr that is not a
terminal turn it off: then nothing is written at all. ``print_above`` prints a line without garbling the
status line. The line is cleared when the work ends, so it never remains in the terminal's scrollback.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_state = {"enabled": False}
_active: list["Progress"] = []
_lock = threading.Lock()
_SPIN = "|/-\\"


def configure(quiet: bool) -> None:
    """Called once by the CLI's main with the global ``--quiet``."""
    _state["enabled"] = (not quiet and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
                         and os.environ.get("TERM") != "dumb")


def enabled() -> bool:
    return _state["enabled"]


class Progress:
    def __init__(self, label: str, total: int | None = None, unit: str = "files", interval: float = 0.2):
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.done = 0
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = 0

    def __enter__(self) -> "Progress":
        if enabled():
            _active.append(self)
            self._thread = threading.Thread(target=self._run, name="tsinspect-progress", daemon=True)
            self._draw()  # at once: work shorter than one interval still says what it was
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            with _lock:
                _active.remove(self)
                _clear()

    def stage(self, label: str) -> None:
        self.label = label
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.done += n

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total is None:
            return f"tsinspect: {self.label} {_SPIN[self._ticks % len(_SPIN)]} {elapsed:.1f} s"
        rate = f", {self.done / elapsed:.0f} {self.unit}/s" if elapsed > 0.5 and self.done else ""
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        return f"tsinspect: {self.label} {self.done}/{self.total} {self.unit}{pct}{rate}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._ticks += 1
            self._draw()

    def _draw(self) -> None:
        if self._thread is None:
            return
        with _lock:
            width = _width()
            sys.stderr.write("\r\x1b[2K" + self.line()[:width - 1])
            sys.stderr.flush()


def print_above(text: str, stream=None) -> None:
    """Print a line (to stdout by default) while a status line may be showing on the same terminal."""
    stream = stream or sys.stdout
    with _lock:
        if _active:
            _clear()
        print(text, file=stream, flush=bool(_active))


def _clear() -> None:
    sys.stderr.write("\r\x1b[2K")
    sys.stderr.flush()


def _width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 80
