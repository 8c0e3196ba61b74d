"""Driving the TUI in tests: run the app headless, wait on its workers (never sleep), read what it shows."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path

from textual.widgets import Input

from tsinspect.tui import start_ir
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
    if not kwargs.get("other") and "started_ir" not in kwargs:  # as tsinspect.tui.run starts the app
        kwargs["started_ir"] = start_ir(str(path), kwargs.get("trust", False))
    app = InspectorApp(str(path), **kwargs)
    try:
        async with app.run_test(size=size) as pilot:
            await until(app, pilot, lambda: app.loaded is not None or "cannot open" in status(app), "the archive")
            if app.loaded is not None:  # the scan's verdict follows the first screen
                await until(app, pilot, lambda: "scanning code/" not in text_of(app, "#overview-body"), "the scan")
            if ir and app.loaded is not None and app.loaded.summary.format in ("torchscript", "lite"):
                await until(app, pilot, lambda: app.query_one("IRView").state not in ("waiting", "loading"), "the IR")
            await settle(app, pilot)
            yield app, pilot
    finally:
        if kwargs.get("started_ir") is not None:
            kwargs["started_ir"].stop()


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
    if hasattr(widget, "plain"):  # a line-based view (the code pane)
        return widget.plain
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


# ----- the keyboard walk (tests/test_tui_walk.py)

STEP_LIMIT = 60.0  # seconds a key may take to settle before the screen counts as frozen
VIEW_OF_KEY = {"a": "archive", "m": "modules", "g": "ir", "s": "safety", "d": "diff"}


def alive(app) -> None:
    """Fail when the app crashed (an exception in a handler or worker) or exited."""
    if app._exception is not None:
        raise AssertionError(f"the app crashed: {type(app._exception).__name__}: {app._exception}") \
            from app._exception
    assert app.is_running, "the app exited"


async def step(app, pilot, *keys: str) -> None:
    """Press the keys, then wait for the app to settle; fails on a crash or a screen that never settles."""
    try:
        await asyncio.wait_for(_press_and_settle(app, pilot, keys), STEP_LIMIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"frozen: {keys!r} did not settle within {STEP_LIMIT:g} s") from None
    alive(app)


async def _press_and_settle(app, pilot, keys) -> None:
    for key in keys:
        await pilot.press(key)
        alive(app)
    for _ in range(5):  # jumps start workers from handlers: wait until none is left
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in app.workers):
            break


def _every_pair(symbols: str) -> str:
    """A sequence holding every ordered pair of ``symbols`` as neighbours (a de Bruijn sequence, order 2)."""
    k, out, a = len(symbols), [], [0] * 3

    def db(t: int, p: int) -> None:
        if t > 2:
            if 2 % p == 0:
                out.extend(a[1:p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, k):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    return "".join(symbols[i] for i in out) + symbols[out[0]]


async def walk_views(app, pilot) -> None:
    """Every view key pressed from every view: each shows its view and leaves the focus inside it."""
    for key in _every_pair("amgsd"):
        await step(app, pilot, key)
        assert app.current_view() == VIEW_OF_KEY[key], (key, app.current_view())
        focused = app.focused
        pane = app.query_one(f"#{VIEW_OF_KEY[key]}")
        assert focused is None or pane in focused.ancestors_with_self, (key, focused)


async def walk_ir_method(app, pilot, target: tuple, limit: int) -> None:
    """Show a method in the IR view, then move the cursor down over its lines (expanding every block and
    range folder on the way, up to ``limit`` lines), and tab to the links and follow the first one."""
    await step(app, pilot, "g")
    app.show_node((*target, None))
    await step(app, pilot)
    tree = app.query_one("#ir-tree")
    tree.focus()
    seen = 0
    while seen < limit:
        node = tree.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            await step(app, pilot, "space")  # children are added by a worker
        before = tree.cursor_line
        await pilot.press("down")  # the detail and links of each line are built as the cursor arrives
        alive(app)
        seen += 1
        if tree.cursor_line == before:
            break
    await step(app, pilot, "up", "tab")
    links = app.query_one("#ir-links")
    assert app.focused is links, app.focused  # one tab from the tree
    if any(links.targets):
        assert links.highlighted is not None and links.targets[links.highlighted] is not None, (
            links.highlighted, links.targets, [str(o.prompt) for o in links.options], tree.cursor_node.label)
        await step(app, pilot, "enter")
    await step(app, pilot, "g")
