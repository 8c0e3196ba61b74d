"""A 50k-node graph stays responsive: children are added on expand, long lists as range folders."""

from __future__ import annotations

from helpers import SAMPLES
from tsinspect.archive.code import CodeIndex
from tsinspect.safety.codescan import ScanResult
from tsinspect.ir.model import IR, Graph, Method, Module, Node, Value
from tsinspect.ir.run import Extraction
from tui_driver import cursor_label, run, settle, started

COUNT = 50_000


def big_extraction() -> Extraction:
    nodes = [Node(0, "prim::Constant", [], [Value("c", "int")], {"value": 1})]
    nodes += [Node(i, "aten::add", [f"v{i - 1}" if i > 1 else "x", "c"], [Value(f"v{i}", "Tensor")])
              for i in range(1, COUNT)]
    graph = Graph([Value("self", "__torch__.Big"), Value("x", "Tensor")], [f"v{COUNT - 1}"], nodes)
    ir = IR("meta", [Module("", "__torch__.Big", [Method("forward", "forward(Tensor x) -> Tensor", graph)])],
            "2.13.0")
    return Extraction(ir.to_json(), ScanResult(), CodeIndex())


def test_fifty_thousand_nodes_open_in_range_folders_and_jumps_reach_any_node():
    async def body():
        async with started(SAMPLES / "gate_state_dict.pt") as (app, pilot):
            view = app.query_one("IRView")
            view.show_ir(big_extraction())
            await settle(app, pilot)
            tree = app.query_one("#ir-tree")
            method = tree.root.children[0].children[0]
            assert method.is_expanded and len(method.children) == 51  # 1000 lines a folder
            assert method.children[0].label.plain == "1-1000"
            assert tree.virtual_size.height < 100  # nothing else was built
            app.show_node(("", "forward", 42_123))
            await settle(app, pilot)
            assert cursor_label(app, "#ir-tree").startswith("%v42123 : Tensor = aten::add(%v42122, %c)")
            assert tree.virtual_size.height < 1200
            uses = [o.prompt.plain for o in app.query_one("#ir-links").options]
            assert any("defined by %v42122" in u for u in uses) and any("aten::add(%v42123" in u for u in uses)
            assert len(view.search("v49999")) == 1
    run(body())
