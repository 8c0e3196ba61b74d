"""The IR as plain dataclasses, read from the extractor's JSON (schema ``tsinspect.ir/2``, docs/ir.md).

Graph -> Node (kind, inputs, outputs, attributes, source, scope, blocks) -> Block -> Node. Value names are
the graph's debug names (``h.1``), unique within a graph; node ``id`` s number a graph's nodes in
pre-order. The JSON is compact: nodes are arrays, and strings that repeat (kinds, types, scopes, schemas)
and source locations are document-wide tables referred to by index; the dataclasses share those strings
and ``Source`` objects. Conversion from and to JSON is iterative, so deeply nested blocks cost no Python
recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from tsinspect.ir import SCHEMA
from tsinspect.safety.sandbox import Confinement


@dataclass(slots=True)
class Value:
    name: str
    type: str

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type}


@dataclass(slots=True)
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


@dataclass(slots=True)
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


@dataclass(slots=True)
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

    kind: str  # missing_op, missing_class, unsupported_version, torch_refuses_zip, out_of_memory, timeout, crashed, load_failed
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
    _by_path: tuple = field(default=(-1, None), repr=False, compare=False)  # module(): (len(modules), path -> module)

    def module(self, path: str) -> Module | None:
        """By path, from a map made once per length of ``modules`` (a traced model has a module per submodule
        instance: thousands, each looked up)."""
        count, by_path = self._by_path
        if count != len(self.modules):
            by_path = {}
            for m in reversed(self.modules):  # the first of a path wins, as a linear search found it
                by_path[m.path] = m
            self._by_path = (len(self.modules), by_path)
        return by_path.get(path)

    @property
    def types(self) -> dict[str, list[Method]]:
        """Methods by module type, in the order types first appear."""
        out: dict[str, list[Method]] = {}
        for module in self.modules:
            out.setdefault(module.type, module.methods)
        return out

    # -- JSON ---------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        tables = _Tables()
        types = {name: {"methods": [method_to_json(m, tables) for m in methods]}
                 for name, methods in self.types.items()}
        functions = {name: method_to_json(m, tables) for name, m in self.functions.items()}
        return {"schema": SCHEMA, "load": self.load, "torch_version": self.torch_version,
                "notes": list(self.notes), "error": self.error.to_json() if self.error else None,
                "timings": dict(self.timings),
                "modules": [{"path": m.path, "type": m.type} for m in self.modules],
                "types": types, "functions": functions,
                "strings": list(tables.strings), "sources": [s.to_json() for s in tables.sources],
                "sandbox": self.sandbox.to_json() if self.sandbox else None}

    @classmethod
    def from_json(cls, data: dict) -> "IR":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema {data.get('schema')!r})")
        error = LoadError.from_json(data["error"]) if data.get("error") else None
        strings = list(data.get("strings") or [])
        sources = [Source.from_json(s) for s in data.get("sources") or []]
        types = {name: [method_from_json(m, strings, sources) for m in entry.get("methods", [])]
                 for name, entry in (data.get("types") or {}).items()}
        modules = [Module(m["path"], m["type"], types.setdefault(m["type"], [])) for m in data.get("modules", [])]
        functions = {name: method_from_json(m, strings, sources) for name, m in (data.get("functions") or {}).items()}
        return cls(data.get("load", "failed"), modules, data.get("torch_version"), list(data.get("notes", [])),
                   error, dict(data.get("timings", {})), functions, ir_sandbox(data))


def ir_sandbox(document: dict) -> Confinement | None:
    """The ``sandbox`` object of an IR document (None when no child ran or it wrote none)."""
    return Confinement.from_json(document.get("sandbox"))


class _Tables:
    """Strings and sources already written, by value (the inverse of a document's two tables)."""

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.source_index: dict[tuple, int] = {}
        self.sources: list[Source] = []

    def string(self, text: str | None) -> int | None:
        if text is None:
            return None
        index = self.strings.get(text)
        if index is None:
            index = self.strings[text] = len(self.strings)
        return index

    def source(self, source: Source | None) -> int | None:
        if source is None:
            return None
        key = (source.code_file, source.code_line, source.file, source.line, tuple(source.stack))
        index = self.source_index.get(key)
        if index is None:
            index = self.source_index[key] = len(self.sources)
            self.sources.append(source)
        return index


def method_to_json(m: Method, tables: _Tables) -> dict:
    out = {"name": m.name, "schema": m.schema, "error": m.error,
           "graph": graph_to_json(m.graph, tables) if m.graph else None}
    if m.inlined:
        out["inlined"] = graph_to_json(m.inlined, tables)
    return out


def method_from_json(m: dict, strings: list[str], sources: list[Source | None]) -> Method:
    graph, inlined = m.get("graph"), m.get("inlined")
    return Method(m["name"], m.get("schema"), graph_from_json(graph, strings, sources) if graph else None,
                  graph_from_json(inlined, strings, sources) if inlined else None, m.get("error"))


def graph_from_json(data: list, strings: list[str], sources: list[Source | None]) -> Graph:
    """A compact GRAPH ``[inputs, outputs, nodes]``; node ids are given here, in pre-order."""
    inputs, outputs, nodes = data
    graph = Graph([Value(name, strings[t]) for name, t in inputs], outputs)
    counter = 0
    todo: list[tuple[Iterator[list], list[Node]]] = [(iter(nodes), graph.nodes)]
    while todo:
        items, dest = todo[-1]
        item = next(items, None)
        if item is None:
            todo.pop()
            continue
        kind, ins, outs, attributes, blocks, source, scope, schema = item
        node = Node(counter, strings[kind], ins, [Value(name, strings[t]) for name, t in outs],
                    attributes if attributes is not None else {}, [],
                    sources[source] if source is not None else None,
                    strings[scope] if scope is not None else "", strings[schema] if schema is not None else None)
        counter += 1
        dest.append(node)
        if blocks:
            pending = []
            for block_inputs, block_outputs, block_nodes in blocks:
                block = Block([Value(name, strings[t]) for name, t in block_inputs], block_outputs)
                node.blocks.append(block)
                pending.append((iter(block_nodes), block.nodes))
            todo.extend(reversed(pending))  # a node's blocks come right after it, block 0 first
    return graph


def graph_to_json(graph: Graph, tables: _Tables) -> list:
    string, source = tables.string, tables.source

    def values(items: list[Value]) -> list:
        return [[v.name, string(v.type)] for v in items]

    out = [values(graph.inputs), list(graph.outputs), []]
    todo: list[tuple[list[Node], list]] = [(graph.nodes, out[2])]
    while todo:
        nodes, dest = todo.pop()
        for node in nodes:
            item = [string(node.kind), list(node.inputs), values(node.outputs),
                    dict(node.attributes) if node.attributes else None, None, source(node.source),
                    string(node.scope) if node.scope else None, string(node.schema)]
            if node.blocks:
                item[4] = []
                for block in node.blocks:
                    b = [values(block.inputs), list(block.outputs), []]
                    item[4].append(b)
                    todo.append((block.nodes, b[2]))
            dest.append(item)
    return out
