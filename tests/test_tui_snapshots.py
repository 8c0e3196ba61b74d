"""SVG snapshots of the main screens, on the committed samples (fixed bytes, fixed terminal size).

The screens show paths relative to the repository (the test runs from there) and the paths baked into
the samples' debug info, never the machine's. Accept a changed screen, after looking at the
``.actual.svg`` next to the snapshot, with ``TSINSPECT_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import pytest

from helpers import REPO
from tui_driver import SIZE, check_snapshot, press, run, settle, started, until

SAMPLE = "samples/gate_scripted.pt"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("NO_COLOR", raising=False)


def snapshot(name: str, *keys: str, jump=None, size=SIZE) -> None:
    async def body():
        async with started(SAMPLE, size=size) as (app, pilot):
            if jump is not None:
                jump(app)
                await settle(app, pilot)
            await press(app, pilot, *keys)
            check_snapshot(app, name)
    run(body())


def test_archive_overview():
    snapshot("archive_overview")


def test_code_with_blame():
    snapshot("archive_code", jump=lambda app: app.show_code("code/__torch__/models.py", 12))


def test_tensor_table():
    snapshot("archive_tensors", "enter", jump=lambda app: app.show_record(("tensor", "proj.weight")))


def test_modules():
    snapshot("modules", "m", "down")


def test_ir_node():
    snapshot("ir_node", jump=lambda app: app.show_node(("", "forward", 13)))


def test_safety():
    snapshot("safety", "s")


def test_help():
    snapshot("help", "f1")


def diff_snapshot(name: str, size=SIZE) -> None:
    """``tsinspect diff samples/gate_traced.pt samples/gate_scripted.pt --tui --ir never``: the first finding."""
    async def body():
        async with started("samples/gate_traced.pt", other="samples/gate_scripted.pt", diff_ir="never",
                           size=size) as (app, pilot):
            await until(app, pilot, lambda: app.query_one("DiffView").state == "loaded", "the diff")
            await settle(app, pilot)
            check_snapshot(app, name)
    run(body())


def test_diff_view():
    diff_snapshot("diff")


# ----- the smallest common terminal (80x24): the footer keeps F1 and q, code scrolls sideways, names are cut
# in the middle; and a large one (200x60): panes sized to their content

SMALL, LARGE = (80, 24), (200, 60)


def test_80x24_archive_code():
    snapshot("80x24_archive_code", jump=lambda app: app.show_code("code/__torch__/models.py", 12), size=SMALL)


def test_80x24_ir_links_focused():
    snapshot("80x24_ir_links", "tab", jump=lambda app: app.show_node(("", "forward", 13)), size=SMALL)


def test_80x24_diff():
    diff_snapshot("80x24_diff", SMALL)


def test_200x60_ir_node():
    snapshot("200x60_ir_node", jump=lambda app: app.show_node(("", "forward", 13)), size=LARGE)


def test_200x60_tensors():
    snapshot("200x60_tensors", "enter", jump=lambda app: app.show_record(("tensor", "proj.weight")), size=LARGE)


def test_200x60_diff():
    diff_snapshot("200x60_diff", LARGE)
