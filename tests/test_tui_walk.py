"""A keyboard walk over real archives of several kinds: every view from every view, the cursor over every IR
line of a method (blocks expanded), tab and enter on the links, search, the inlined toggle and compare.

It drives the real app with keys only and fails on any exception in the app or a step that never settles
(a frozen screen). Archives: a scripted model with control flow and helper calls built here (a node using
one value twice, a string constant full of markup and escapes), the committed traced and lite samples, an
archive torch cannot load (a custom op namespace), silero-vad from PyPI, a synthetic IR with a 50,000-node
graph and one with a 5,000-input node and hostile value names.
"""

from __future__ import annotations

import pytest

from helpers import SAMPLES
from test_tui_large import big_extraction
from tsinspect.archive.code import CodeIndex
from tsinspect.ir.model import IR, Graph, Method, Module, Node, Value
from tsinspect.ir.run import Extraction
from tsinspect.safety.codescan import ScanResult
from tui_driver import alive, run, started, step, until, walk_ir_method, walk_views

HOSTILE_TEXT = "[bold red]boom[/] \x1b[2J\x07 [link=x]"


@pytest.fixture(scope="module")
def helper_calls_archive(tmp_path_factory):
    """Scripted: forward calls a helper method that branches and concatenates; ``torch.add(x, x)`` uses one
    value twice (the DuplicateID crash of issue 12); an assert message full of markup and escapes."""
    import torch
    from torch import nn

    class Helpers(nn.Module):
        __constants__ = ["message"]

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.message = HOSTILE_TEXT

        def helper(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if bool(x.sum() > 0):
                return self.lin(x) + y
            for _ in range(x.size(0)):
                y = torch.cat([y, x], 0)
            return y

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dim() > 0, self.message
            return self.helper(x, x) + torch.add(x, x)

    path = tmp_path_factory.mktemp("helpers") / "helpers.pt"
    torch.jit.save(torch.jit.script(Helpers()), str(path), _extra_files={"[red]x\x1b[2J.txt": HOSTILE_TEXT})
    return path


def hostile_extraction() -> Extraction:
    """A node with 5,000 inputs (one value repeated) and value names holding markup and control characters."""
    odd = "[b]v\x1b]0;x\x07"
    nodes = [Node(0, "prim::Constant", [], [Value(odd, "Tensor")], {"value": HOSTILE_TEXT}),
             Node(1, "prim::ListConstruct", [odd] * 5000, [Value("list[x]", "Tensor[]")]),
             Node(2, "aten::cat", ["list[x]", odd], [Value("out", "Tensor")])]
    graph = Graph([Value("self", "__torch__.[Odd]"), Value("x", "Tensor")], ["out", "out"], nodes)
    ir = IR("meta", [Module("", "__torch__.[Odd]", [Method("forward\x1b", "forward()", graph)])], "2.13.0")
    return Extraction(ir.to_json(), ScanResult(), CodeIndex())


async def full_walk(app, pilot, other: str | None = None, ir_lines: int = 50) -> None:
    await walk_views(app, pilot)
    await step(app, pilot, "a")
    for _ in range(12):  # the record list, opening each record on the right
        await pilot.press("down")
        alive(app)
    await step(app, pilot, "tab", "tab", "shift+tab", "shift+tab")
    view = app.query_one("IRView")
    if view.state == "loaded":
        for module, lines in zip(view.extraction.ir.modules, (ir_lines, 10)):  # the root and its first child
            if module.methods:
                await walk_ir_method(app, pilot, (module.path, module.methods[0].name), lines)
        await step(app, pilot, "slash", *"aten", "enter", "n", "n", "N")
        await step(app, pilot, "i")
        await until(app, pilot, lambda: view.state in ("loaded", "failed"), "the inlined graphs")
        first = view.extraction.ir.modules[0]
        if first.methods:
            await walk_ir_method(app, pilot, (first.path, first.methods[0].name), 10)
        await step(app, pilot, "i")
    elif view.state in ("failed", "refused"):
        await step(app, pilot, "g")
        for _ in range(8):
            await step(app, pilot, "down", "space")
        await step(app, pilot, "tab", "enter")
    await step(app, pilot, "m", "down", "down", "c", "s", "enter", "slash", *"x", "enter")
    if other is not None:
        await step(app, pilot, "ctrl+o")
        app.screen.query_one("#compare-path").value = other
        await step(app, pilot, "enter")
        await until(app, pilot, lambda: app.query_one("DiffView").state in ("loaded", "failed"), "the diff")
        assert app.current_view() == "diff"
        await step(app, pilot, "down", "down", "enter", "d", "tab", "right", "tab")
    await step(app, pilot, "a", "g")


def walk(path, other=None, **kwargs) -> None:
    async def body():
        async with started(path, **kwargs) as (app, pilot):
            await full_walk(app, pilot, other)
    run(body())


def test_walk_scripted_with_helper_calls(helper_calls_archive):
    walk(helper_calls_archive)


def test_walk_traced_and_compare_with_scripted():
    walk(SAMPLES / "gate_traced.pt", other=str(SAMPLES / "gate_scripted.pt"), diff_ir="never")


def test_walk_lite():
    walk(SAMPLES / "gate_lite.ptl")


def test_walk_archive_torch_cannot_load(custom_op_archive):
    walk(custom_op_archive)


def test_walk_silero_vad_at_80x24(silero_vad_archive):
    walk(silero_vad_archive, size=(80, 24))


@pytest.mark.parametrize("extraction", [big_extraction, hostile_extraction], ids=["50k-nodes", "hostile-names"])
def test_walk_synthetic_graphs(extraction):
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            app.query_one("IRView").show_ir(extraction())
            await step(app, pilot)
            await walk_ir_method(app, pilot, ("", app.query_one("IRView").extraction.ir.modules[0].methods[0].name),
                                 100)
            await step(app, pilot, "slash", *"v4", "enter", "n", "tab", "enter", "shift+tab")
    run(body())


@pytest.mark.parametrize("kind", ["pt2", "legacy", "torch.package", "flatbuffer", "whole_module"])
def test_walk_other_formats(format_zoo, kind):
    """Every view from every view and a few keys in the IR view on the formats that are not TorchScript (pt2
    is read without torch; the others have no IR)."""
    async def body():
        async with started(format_zoo[kind]) as (app, pilot):
            await walk_views(app, pilot)
            await step(app, pilot, "g", "down", "down", "tab", "enter", "slash", *"a", "enter", "a", "down", "enter")
    run(body())
