"""Where each value of a graph is defined and used: two dicts, built in one walk without networkx.

The UI needs only these lookups for its links; ``tsinspect.ir.views.GraphView`` adds a networkx graph
(reachability) that costs seconds at 50k nodes and that the UI never asks for. Same conventions as
GraphView: "input" for graph parameters, "return" for the graph's outputs, a block's parameters defined
by the node owning the block and a block's returned values used by it.
"""

from __future__ import annotations

from tsinspect.ir.model import Graph, Node

INPUT, RETURN = "input", "return"


class DefUse:
    def __init__(self, graph: Graph):
        self.defs: dict[str, Node | str] = {v.name: INPUT for v in graph.inputs}
        self.uses: dict[str, list[Node | str]] = {}
        owners: list[tuple[Node, list[str]]] = []
        nodes: list[Node] = []
        for node, _ in graph.walk():
            nodes.append(node)
            for value in node.outputs:
                self.defs[value.name] = node
            for block in node.blocks:
                for value in block.inputs:
                    self.defs[value.name] = node
                owners.append((node, block.outputs))
        self.count = len(nodes)
        for node in nodes:
            for name in node.inputs:
                self._use(name, node)
        for owner, names in owners:
            for name in names:
                self._use(name, owner)
        for name in graph.outputs:
            self._use(name, RETURN)

    def _use(self, name: str, user: Node | str) -> None:
        users = self.uses.setdefault(name, [])
        if not users or users[-1] is not user:  # a node using one value twice is listed once
            users.append(user)

    def where_defined(self, value: str) -> Node | str | None:
        return self.defs.get(value)

    def where_used(self, value: str) -> list[Node | str]:
        users = self.uses.get(value, [])
        return list({id(u): u for u in users}.values()) if len(users) > 1 else list(users)


def index_graphs(ir) -> dict[int, tuple[int, DefUse]]:
    """``id(graph) -> (node count, DefUse)`` for every method graph (saved and inlined) of ``ir``: built in the
    worker that received the IR, so that moving the cursor in the UI only looks things up."""
    out: dict[int, tuple[int, DefUse]] = {}
    for module in ir.modules:
        for method in module.methods:
            for graph in (method.graph, method.inlined):
                if graph is not None and id(graph) not in out:
                    index = DefUse(graph)
                    out[id(graph)] = (index.count, index)
    return out
