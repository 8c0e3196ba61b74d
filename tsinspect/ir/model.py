"""The IR as plain dataclasses, read from the extractor's JSON (schema ``tsinspect.ir/1``, docs/ir.md).

Graph -> Node (kind, inputs, outputs, attributes, source, scope, blocks) -> Block -> Node. Value names are
the graph's debug names (``h.1``), unique within a graph; node ``id`` s number a graph's nodes in
pre-order. Conversion from and to JSON is iterative, so deeply nested blocks cost no Python recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from tsinspect.safety.sandbox import Confinement

SCHEMA = "tsinspect.ir/1"


@dataclass
class Value:
    name: str
    type: str

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type}


@dataclass
class Source:
    """Where a node came from: the generated code line and the user's original file:line."""

    code_file: str | None = None  # record name, "code/__torch__/models.py"
    code_line: int | None = None
    file: str | None = None  # original source (absolute path as recorded)
    line: int | None = None
    stack: list[str] = field(default_factory=list)  # traced nodes: "file:line" frames, innermost first

    def to_json(self) -> dict:
        out: dict[str, Any] = {"code_file": self.code_file, "code_line": self.code_line,
                               "file": self.file, "line": self.line}
        if self.stack:
            out["stack"] = list(self.stack)
        return out

    @classmethod
    def from_json(cls, data: dict | None) -> "Source | None":
        if not data:
            return None
        return cls(data.get("code_file"), data.get("code_line"), data.get("file"), data.get("line"),
                   list(data.get("stack") or []))

    @property
    def code_where(self) -> str | None:
        return f"{self.code_file}:{self.code_line}" if self.code_file else None

    @property
    def where(self) -> str | None:
        return f"{self.file}:{self.line}" if self.file else None


@dataclass
class Node:
    id: int
    kind: str
    inputs: list[str]
    outputs: list[Value]
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)
    source: Source | None = None
    scope: str = ""
    schema: str | None = None


@dataclass
class Block:
    inputs: list[Value]
    outputs: list[str]
    nodes: list[Node] = field(default_factory=list)


@dataclass
class Graph:
    inputs: list[Value]
    outputs: list[str]
    nodes: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[Node, int]]:
        """Every node with its block depth, in pre-order (blocks right after their owner)."""
        stack: list[tuple[Iterator[Node], int]] = [(iter(self.nodes), 0)]
        while stack:
            nodes, depth = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                continue
            yield node, depth
            for block in reversed(node.blocks):
                stack.append((iter(block.nodes), depth + 1))

    def node(self, node_id: int) -> Node | None:
        return next((n for n, _ in self.walk() if n.id == node_id), None)


@dataclass
class Method:
    name: str
    schema: str | None
    graph: Graph | None
    inlined: Graph | None = None
    error: str | None = None  # the graph could not be read (left None)


@dataclass
class Module:
    """A module instance. ``methods`` is shared by every instance of the same type (IR.types)."""

    path: str  # "" for the root, "encoder.layers.0" for a submodule
    type: str  # qualified class name
    methods: list[Method] = field(default_factory=list)

    def method(self, name: str) -> Method | None:
        return next((m for m in self.methods if m.name == name), None)


@dataclass
class LoadError:
    """Why torch could not load the archive, and what the user can do about it."""

    kind: str  # missing_op, missing_class, unsupported_version, out_of_memory, timeout, crashed, load_failed
    message: str
    missing: str | None = None
    hint: str | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "missing": self.missing, "hint": self.hint}

    @classmethod
    def from_json(cls, data: dict) -> "LoadError":
        return cls(data.get("kind", "load_failed"), data.get("message", ""), data.get("missing"), data.get("hint"))


@dataclass
class IR:
    load: str  # "meta", "full", "failed", "refused"
    modules: list[Module] = field(default_factory=list)
    torch_version: str | None = None
    notes: list[str] = field(default_factory=list)
    error: LoadError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    functions: dict[str, Method] = field(default_factory=dict)  # free functions the methods call, by qualname
    sandbox: Confinement | None = None  # how the child that loaded it was confined (None: no child ran)

    def module(self, path: str) -> Module | None:
        return next((m for m in self.modules if m.path == path), None)

    @property
    def types(self) -> dict[str, list[Method]]:
        """Methods by module type, in the order types first appear."""
        out: dict[str, list[Method]] = {}
        for module in self.modules:
            out.setdefault(module.type, module.methods)
        return out

    # -- JSON ---------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"schema": SCHEMA, "load": self.load, "torch_version": self.torch_version,
                "notes": list(self.notes), "error": self.error.to_json() if self.error else None,
                "timings": dict(self.timings),
                "modules": [{"path": m.path, "type": m.type} for m in self.modules],
                "types": {name: {"methods": [method_to_json(m) for m in methods]}
                          for name, methods in self.types.items()},
                "functions": {name: method_to_json(m) for name, m in self.functions.items()},
                "sandbox": self.sandbox.to_json() if self.sandbox else None}

    @classmethod
    def from_json(cls, data: dict) -> "IR":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema {data.get('schema')!r})")
        error = LoadError.from_json(data["error"]) if data.get("error") else None
        types = {name: [method_from_json(m) for m in entry.get("methods", [])]
                 for name, entry in (data.get("types") or {}).items()}
        modules = [Module(m["path"], m["type"], types.setdefault(m["type"], [])) for m in data.get("modules", [])]
        functions = {name: method_from_json(m) for name, m in (data.get("functions") or {}).items()}
        return cls(data.get("load", "failed"), modules, data.get("torch_version"), list(data.get("notes", [])),
                   error, dict(data.get("timings", {})), functions, ir_sandbox(data))


def ir_sandbox(document: dict) -> Confinement | None:
    """The ``sandbox`` object of an IR document (None when no child ran or it wrote none)."""
    return Confinement.from_json(document.get("sandbox"))


def method_to_json(m: Method) -> dict:
    out = {"name": m.name, "schema": m.schema, "error": m.error,
           "graph": graph_to_json(m.graph) if m.graph else None}
    if m.inlined:
        out["inlined"] = graph_to_json(m.inlined)
    return out


def method_from_json(m: dict) -> Method:
    return Method(m["name"], m.get("schema"), graph_from_json(m["graph"]) if m.get("graph") else None,
                  graph_from_json(m["inlined"]) if m.get("inlined") else None, m.get("error"))


def _values(items: list) -> list[Value]:
    return [Value(v["name"], v["type"]) for v in items]


def graph_from_json(data: dict) -> Graph:
    graph = Graph(_values(data["inputs"]), list(data["outputs"]))
    # (json node list, destination list) pairs still to convert
    todo: list[tuple[list, list]] = [(data["nodes"], graph.nodes)]
    while todo:
        items, dest = todo.pop()
        for item in items:
            node = Node(item["id"], item["kind"], list(item["inputs"]), _values(item["outputs"]),
                        dict(item.get("attributes") or {}), [], Source.from_json(item.get("source")),
                        item.get("scope") or "", item.get("schema"))
            for b in item.get("blocks") or []:
                block = Block(_values(b["inputs"]), list(b["outputs"]))
                node.blocks.append(block)
                todo.append((b["nodes"], block.nodes))
            dest.append(node)
    return graph


def graph_to_json(graph: Graph) -> dict:
    out = {"inputs": [v.to_json() for v in graph.inputs], "outputs": list(graph.outputs), "nodes": []}
    todo: list[tuple[list[Node], list]] = [(graph.nodes, out["nodes"])]
    while todo:
        nodes, dest = todo.pop()
        for node in nodes:
            item = {"id": node.id, "kind": node.kind, "inputs": list(node.inputs),
                    "outputs": [v.to_json() for v in node.outputs], "attributes": dict(node.attributes),
                    "blocks": [], "source": node.source.to_json() if node.source else None,
                    "scope": node.scope, "schema": node.schema}
            for block in node.blocks:
                b = {"inputs": [v.to_json() for v in block.inputs], "outputs": list(block.outputs), "nodes": []}
                item["blocks"].append(b)
                todo.append((block.nodes, b["nodes"]))
            dest.append(item)
    return out
