"""networkx views of an IR graph: def-use navigation, reachability, op counts and the op inventory.

A graph becomes a ``networkx.MultiDiGraph`` whose vertices are node ids plus two pseudo-vertices, "input"
(the graph's parameters) and "return" (its outputs); an edge u -> v with ``value=name`` means v uses a
value u defines. A value a block returns counts as used by the node that owns the block
(``prim::If``/``prim::Loop``), and block parameters as defined by it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import networkx as nx

from tsinspect.ir.model import IR, Graph, Node

INPUT, RETURN = "input", "return"


class GraphView:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: dict[int, Node] = {}
        self.defs: dict[str, int | str] = {v.name: INPUT for v in graph.inputs}
        self.uses: dict[str, list[int | str]] = {}
        self.digraph = nx.MultiDiGraph()
        self.digraph.add_node(INPUT)
        self.digraph.add_node(RETURN)
        owner_of_block_outputs: list[tuple[int, list[str]]] = []
        for node, _depth in graph.walk():
            self.nodes[node.id] = node
            self.digraph.add_node(node.id, kind=node.kind)
            for value in node.outputs:
                self.defs[value.name] = node.id
            for block in node.blocks:
                for value in block.inputs:
                    self.defs[value.name] = node.id
                owner_of_block_outputs.append((node.id, block.outputs))
        for node_id, node in self.nodes.items():
            for name in node.inputs:
                self._use(name, node_id)
        for owner, names in owner_of_block_outputs:
            for name in names:
                self._use(name, owner)
        for name in graph.outputs:
            self._use(name, RETURN)

    def _use(self, name: str, user: int | str) -> None:
        self.uses.setdefault(name, []).append(user)
        source = self.defs.get(name)
        if source is not None and source != user:
            self.digraph.add_edge(source, user, value=name)

    def where_defined(self, value: str) -> Node | str | None:
        """The node defining a value, "input" for graph parameters, None if unknown."""
        source = self.defs.get(value)
        return self.nodes.get(source, source) if isinstance(source, int) else source

    def where_used(self, value: str) -> list[Node | str]:
        return [self.nodes.get(u, u) if isinstance(u, int) else u for u in dict.fromkeys(self.uses.get(value, []))]

    def downstream(self, node_id: int | str) -> set:
        """Node ids whose inputs depend on this node's outputs (transitively)."""
        return nx.descendants(self.digraph, node_id)

    def upstream(self, node_id: int | str) -> set:
        """Node ids this node depends on (transitively)."""
        return nx.ancestors(self.digraph, node_id)

    def op_counts(self) -> Counter:
        return Counter(n.kind for n in self.nodes.values())


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
