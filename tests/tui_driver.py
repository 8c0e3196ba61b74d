"""Driving the TUI in tests: run the app headless, wait on its workers (never sleep), read what it shows."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path

from textual.widgets import Input

from tsinspect.tui.app import InspectorApp

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SIZE = (140, 40)


def run(coro):
    """Run an async test body (no pytest-asyncio needed)."""
    return asyncio.run(coro)


async def settle(app, pilot, rounds: int = 3) -> None:
    """Wait until no worker runs and the screen has caught up (jumps start workers from handlers)."""
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def until(app, pilot, condition, what: str, limit: int = 2000) -> None:
    """Process events until ``condition()`` holds (each round waits on the workers, then the screen)."""
    for _ in range(limit):
        if condition():
            return
        await app.workers.wait_for_complete()
        await pilot.pause()
    raise AssertionError(f"timed out waiting for: {what}")


@asynccontextmanager
async def started(path, size=SIZE, ir: bool = True, **kwargs):
    """The app on ``path``, with the archive read and (unless ``ir`` is False) the IR worker finished."""
    Input._toggle_cursor = lambda self: None  # no blinking cursor: stable snapshots
    app = InspectorApp(str(path), **kwargs)
    async with app.run_test(size=size) as pilot:
        await until(app, pilot, lambda: app.loaded is not None or "cannot open" in status(app), "the archive")
        if ir and app.loaded is not None and app.loaded.summary.format in ("torchscript", "lite"):
            await until(app, pilot, lambda: app.query_one("IRView").state not in ("waiting", "loading"), "the IR")
        await settle(app, pilot)
        yield app, pilot


async def press(app, pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(app, pilot)


async def typed(app, pilot, text: str, *then: str) -> None:
    """Type ``text`` (then press the keys ``then``), waiting once at the end."""
    await pilot.press(*text)
    await settle(app, pilot)
    await press(app, pilot, *then)


def status(app) -> str:
    return str(app.query_one("#status").render())


def text_of(app, selector: str) -> str:
    """The plain text a Static shows."""
    widget = app.query_one(selector)
    visual = widget.visual if hasattr(widget, "visual") else widget.render()
    return getattr(visual, "plain", str(visual))


def cursor_label(app, selector: str) -> str:
    node = app.query_one(selector).cursor_node
    return node.label.plain if node is not None else ""


def check_snapshot(app, name: str) -> None:
    """Compare the screen with tests/snapshots/NAME.svg; TSINSPECT_UPDATE_SNAPSHOTS=1 rewrites it."""
    svg = app.export_screenshot(title="tsinspect")
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("TSINSPECT_UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        if not os.environ.get("TSINSPECT_UPDATE_SNAPSHOTS"):
            raise AssertionError(f"new snapshot {path.name} written; look at it, then rerun")
        return
    if path.read_text(encoding="utf-8") != svg:
        actual = path.with_suffix(".actual.svg")
        actual.write_text(svg, encoding="utf-8")
        raise AssertionError(f"screen differs from {path.name}; see {actual.name} "
                             "(rerun with TSINSPECT_UPDATE_SNAPSHOTS=1 to accept)")
