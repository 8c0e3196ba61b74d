"""Views of an IR graph: the def/use index (where a value comes from, where it is used), reachability, op
counts, and the op inventory.

The index is plain dictionaries built in one pass over the graph (a 200k-node graph in well under a second:
networkx added nothing to a lookup but a second of building). Vertices are node ids plus two pseudo-vertices,
"input" (the graph's parameters) and "return" (its outputs); an edge u -> v means v uses a value u defines.
A value a block returns counts as used by the node that owns the block (``prim::If``/``prim::Loop``), and
block parameters as defined by it. ``GraphView.digraph`` gives the same edges as a ``networkx.MultiDiGraph``
for the algorithms networkx has (paths, cycles, dominators), built on first use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from tsinspect.ir.model import IR, Graph, Node

INPUT, RETURN = "input", "return"

Vertex = int | str  # a node id, INPUT or RETURN


class GraphView:
    def __init__(self, graph: Graph, pause: Callable[[], None] | None = None):
        """``pause``: called every few thousand nodes (a UI's worker steps aside there: tsinspect.tui.priority)."""
        self.graph = graph
        self.nodes: dict[int, Node] = {}
        self.defs: dict[str, Vertex] = {v.name: INPUT for v in graph.inputs}
        self.uses: dict[str, list[Vertex]] = {}
        owner_of_block_outputs: list[tuple[int, list[str]]] = []
        for node, _depth in graph.walk():
            if pause is not None and len(self.nodes) % 2000 == 0:
                pause()
            self.nodes[node.id] = node
            for value in node.outputs:
                self.defs[value.name] = node.id
            for block in node.blocks:
                for value in block.inputs:
                    self.defs[value.name] = node.id
                owner_of_block_outputs.append((node.id, block.outputs))
        uses = self.uses
        for node_id, node in self.nodes.items():
            for name in node.inputs:
                uses.setdefault(name, []).append(node_id)
        for owner, names in owner_of_block_outputs:
            for name in names:
                uses.setdefault(name, []).append(owner)
        for name in graph.outputs:
            uses.setdefault(name, []).append(RETURN)

    def where_defined(self, value: str) -> Node | str | None:
        """The node defining a value, "input" for graph parameters, None if unknown."""
        source = self.defs.get(value)
        return self.nodes.get(source, source) if isinstance(source, int) else source

    def where_used(self, value: str) -> list[Node | str]:
        return [self.nodes.get(u, u) if isinstance(u, int) else u for u in dict.fromkeys(self.uses.get(value, []))]

    def edges(self) -> list[tuple[Vertex, Vertex, str]]:
        """(definer, user, value) for every use of a value defined in the graph (a node using its own value
        is no edge)."""
        out = []
        for name, users in self.uses.items():
            source = self.defs.get(name)
            if source is not None:
                out += [(source, user, name) for user in users if user != source]
        return out

    @cached_property
    def _adjacent(self) -> tuple[dict[Vertex, set], dict[Vertex, set]]:
        successors: dict[Vertex, set] = {}
        predecessors: dict[Vertex, set] = {}
        for source, user, _ in self.edges():
            successors.setdefault(source, set()).add(user)
            predecessors.setdefault(user, set()).add(source)
        return successors, predecessors

    def downstream(self, node_id: Vertex) -> set:
        """Node ids whose inputs depend on this node's outputs (transitively)."""
        return self._reach(node_id, self._adjacent[0])

    def upstream(self, node_id: Vertex) -> set:
        """Node ids this node depends on (transitively)."""
        return self._reach(node_id, self._adjacent[1])

    def _reach(self, start: Vertex, adjacent: dict[Vertex, set]) -> set:
        if start not in self.nodes and start not in (INPUT, RETURN):
            raise KeyError(f"no node {start!r} in this graph")
        seen: set = set()
        todo = [start]
        while todo:
            for other in adjacent.get(todo.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        seen.discard(start)
        return seen

    def op_counts(self) -> Counter:
        return Counter(n.kind for n in self.nodes.values())

    @cached_property
    def digraph(self):
        """The def/use edges as a ``networkx.MultiDiGraph`` (an edge carries its ``value``)."""
        import networkx as nx

        digraph = nx.MultiDiGraph()
        digraph.add_nodes_from([INPUT, RETURN])
        digraph.add_nodes_from((node_id, {"kind": node.kind}) for node_id, node in self.nodes.items())
        digraph.add_edges_from((source, user, {"value": name}) for source, user, name in self.edges())
        return digraph


@dataclass
class OpUseSite:
    module_type: str
    module_paths: list[str]
    method: str
    node_id: int
    code: str | None  # "code/__torch__/models.py:12"
    source: str | None  # "/abs/models.py:23"

    def to_json(self) -> dict:
        return {"module_type": self.module_type, "module_paths": self.module_paths, "method": self.method,
                "node": self.node_id, "code": self.code, "source": self.source}


@dataclass
class OpEntry:
    kind: str
    count: int = 0
    uses: list[OpUseSite] = field(default_factory=list)


def op_inventory(ir: IR, inlined: bool = False) -> list[OpEntry]:
    """Every op kind with its count and where it is used; each module type's methods are counted once."""
    paths: dict[str, list[str]] = {}
    for module in ir.modules:
        paths.setdefault(module.type, []).append(module.path)
    entries: dict[str, OpEntry] = {}
    for type_name, methods in ir.types.items():
        for method in methods:
            graph = method.inlined if inlined and method.inlined else method.graph
            if graph is None:
                continue
            for node, _ in graph.walk():
                entry = entries.setdefault(node.kind, OpEntry(node.kind))
                entry.count += 1
                src = node.source
                entry.uses.append(OpUseSite(type_name, paths[type_name], method.name, node.id,
                                            src.code_where if src else None, src.where if src else None))
    return sorted(entries.values(), key=lambda e: (-e.count, e.kind))
