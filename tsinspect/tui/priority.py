"""Worker threads step aside while the event loop is busy.

Python's threads share one interpreter lock, handed over every 5 ms (``sys.getswitchinterval``) to a thread
that asks for it: while a worker searches or indexes 200k IR nodes, 40 ms of the UI's own work (a key,
a screen refresh) takes 80 ms and more, on a loaded machine more still. ``UIPriority`` watches the event
loop's selector: outside ``select()`` the loop is busy. Workers call ``pause()`` between slices of their
work; while the loop is busy it sleeps (the lock free) until the loop waits again, at most ``LIMIT``
seconds, so a worker still advances when the UI is busy for long. Textual-free.
"""

from __future__ import annotations

import asyncio
import threading
import time

LIMIT = 0.05  # seconds a worker waits at most for the loop to be idle, per pause
STEP = 0.001


class UIPriority:
    def __init__(self) -> None:
        self.busy = False
        self._selector = None
        self._select = None
        self._loop_thread: int | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow ``loop`` (a selector loop; any other: pause never waits)."""
        selector = getattr(loop, "_selector", None)
        if selector is None or self._selector is not None:
            return
        select = selector.select

        def watched(timeout=None):
            self.busy = False
            try:
                return select(timeout)
            finally:
                self.busy = True

        self._selector, self._select = selector, select
        self._loop_thread = threading.get_ident()
        selector.select = watched
        self.busy = True

    def unwatch(self) -> None:
        if self._selector is not None:
            self._selector.select = self._select
            self._selector = self._select = self._loop_thread = None
        self.busy = False

    def pause(self) -> None:
        """From a worker, between slices of its work: let a busy event loop finish first (on the loop's own
        thread: nothing, it is the one busy)."""
        if not self.busy or threading.get_ident() == self._loop_thread:
            return
        deadline = time.perf_counter() + LIMIT
        while self.busy and time.perf_counter() < deadline:
            time.sleep(STEP)


ui_priority = UIPriority()


def paced(items, every: int = 500):
    """``items``, with ``ui_priority.pause()`` every ``every`` of them (for a worker's loops)."""
    pause = ui_priority.pause
    for i, item in enumerate(items):
        if i % every == 0:
            pause()
        yield item
