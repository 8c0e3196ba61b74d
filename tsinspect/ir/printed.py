"""A torch graph read from torch's own printer (``str(graph)``) into the GRAPH array of docs/ir.md.

Walking a graph node by node through torch's Python API costs about 25 us a node (a dozen pybind calls,
``Node.sourceRange()`` alone 11 us); torch prints the same graph in C++ at about 1 us a node. So the child
prints each graph and reads the text: kinds, value names and their order, blocks, and each node's ``code/``
file:line:col (the copy has no debug records, so torch prints ``code/`` positions; tsinspect.ir.origins
maps them to the original source). What the text does not say exactly is asked of torch once per distinct
case, on one representative node (the same pre-order as the text: see ``_Nodes``): the
Python spelling of each printed type (``int[]`` is ``List[int]``), the attributes of each distinct printed
attribute text (tensor constants, whose print is lossy, node by node), and the schema of each kind for each
tuple of input types (the overload torch picks depends on nothing else).

Anything the reader does not recognise raises ``Unsupported``, and the caller walks that graph instead.
"""

from __future__ import annotations

import itertools
import re
from typing import Callable

# one output (or none), attributes without nested lists, inputs, and the code/ position: most lines; value
# names of ASCII word characters and dots only, which JSON writes as they are
_SIMPLE = re.compile(r' *(?:%([\w.]+) : ([^=%]*?) )?= ([^\[\(\s]+)(\[(?:[^"\[\]]|"(?:[^"\\]|\\.)*")*\])?'
                     r'\(((?:%[\w.]+(?:, %[\w.]+)*)?)\)(?: # (.*))?$', re.ASCII)
_KIND = re.compile(r"[^\[\(\s]+")
_TAIL = re.compile(r"(?:, scope: (.*?))?(?: # (.*))?")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_TENSORISH = re.compile(r"[{<]")
_BLOCK = re.compile(r"block\d+\((.*)\):")
CALLS = ("prim::CallFunction", "prim::CallMethod")
_NO_BLOCKS_PREFIX = "aten::"


class Unsupported(ValueError):
    """The printed text has a form this reader does not read exactly: walk the graph instead."""


class _Nodes:
    """A graph's torch nodes by kind, in pre-order. Walked from the start only as far as a representative is
    asked for (the first occurrence of a printed case is mostly near the start); a case first seen further
    on than ``AHEAD`` nodes past the walk takes all nodes of its kind from torch at once (``findAllNodes``, in
    C++). ``no_blocks``: kinds that own no blocks; ``parsed``: nodes read so far (set by the reader)."""

    AHEAD = 512
    __slots__ = ("graph", "todo", "by_kind", "whole", "no_blocks", "previous", "walked", "parsed")

    def __init__(self, graph, no_blocks: frozenset):
        self.graph = graph
        self.todo = [iter(graph.nodes())]
        self.by_kind: dict[str, list] = {}
        self.whole: set[str] = set()  # kinds fetched whole
        self.no_blocks = no_blocks
        self.previous = None
        self.walked = self.parsed = 0

    def get(self, kind: str, occurrence: int, outputs: list[str]):
        """The ``occurrence``-th node of ``kind``; Unsupported unless it has the printed ``outputs``."""
        found = self.by_kind.get(kind)
        while found is None or len(found) <= occurrence:
            if kind in self.whole:
                raise Unsupported(f"fewer {kind} nodes than printed")
            if self.parsed - self.walked > self.AHEAD:
                self.whole.add(kind)
                found = self.by_kind[kind] = self.graph.findAllNodes(kind, True)
                continue
            self._next()
            found = self.by_kind.get(kind)
        node = found[occurrence]
        if [node.outputsAt(i).debugName() for i in range(node.outputsSize())] != outputs:
            raise Unsupported(f"the printed {kind} #{occurrence} is not torch's")
        return node

    def _next(self) -> None:
        previous = self.previous
        if previous is not None:
            kind = previous.kind()
            if kind not in self.no_blocks and not kind.startswith(_NO_BLOCKS_PREFIX):
                blocks = list(previous.blocks())
                if blocks:  # pre-order: a node, then its blocks' nodes, block 0 first
                    self.todo.append(itertools.chain.from_iterable(b.nodes() for b in blocks))
        while self.todo:
            node = next(self.todo[-1], None)
            if node is not None:
                self.previous = node
                self.walked += 1
                kind = node.kind()
                if kind not in self.whole:
                    self.by_kind.setdefault(kind, []).append(node)
                return
            self.todo.pop()
        raise Unsupported("fewer nodes than printed")


class GraphReader:
    """Reads printed graphs into GRAPH arrays; the per-case answers of torch are shared by all graphs.

    ``tables``: tsinspect.ir.extract.Tables (strings, and sources by ``code/`` position); ``attributes``:
    a torch node's attribute dict as the walk makes it; ``dumps``: the JSON encoder of the document;
    ``no_blocks``: kinds that own no blocks.
    """

    def __init__(self, tables, attributes: Callable, dumps: Callable, no_blocks: frozenset = frozenset()):
        self.tables, self.attributes, self.dumps, self.no_blocks = tables, attributes, dumps, no_blocks
        self.types: dict[str, int] = {}  # printed type -> string index of str(type)
        self.type_names: dict[str, str] = {}  # printed type -> str(type)
        self.attrs: dict[tuple[str, str], dict] = {}  # (kind, printed attributes) -> attributes
        self.schemas: dict[tuple, int | None] = {}  # (kind, printed input types) -> schema string index
        self.positions: dict[str, int | None] = {}  # printed "file:line:col" -> source index
        self.kinds: dict[str, tuple] = {}  # kind -> (string index, prim::, a call, owns no blocks)

    def read(self, graph):
        """(head, top-level nodes in comma-joined chunks, calls): the pieces of tsinspect.ir.extract.Walked.

        Each node's JSON is written straight from its line (names checked to need no escaping by _SIMPLE),
        without building it as lists first; a node that can own blocks waits (``pending``) until its blocks
        are read, since a block's outputs are printed after its nodes but written before them."""
        nodes = _Nodes(graph, self.no_blocks)
        lines = _lines(str(graph))
        counts: dict[str, int] = {}
        vtype: dict[str, str] = {}  # value name -> printed type
        per_value: dict[str, str] = {}  # value name -> str(type), for types whose print is ambiguous
        dumps, types, attrs, schemas, positions, kinds = (self.dumps, self.types, self.attrs, self.schemas,
                                                          self.positions, self.kinds)
        simple, vget = _SIMPLE.match, vtype.__getitem__
        inputs = self._header(lines, graph, vtype, per_value)
        texts: list[str] = []  # top-level nodes, joined a thousand at a time into chunks
        chunks: list[str] = []
        calls: list[tuple[str, str | None]] = []
        current = texts  # the JSON texts of the nodes of the graph or of the open block
        frames: list = []  # per open block: (its owner, the enclosing node texts, its parameters' JSON)
        pending = None  # [prefix, suffix, block texts, kind, occurrence, output names] of a node that may own blocks
        outputs = None
        for line in lines:
            match = simple(line)
            if match is not None:
                name, ptype, kind, attr_text, names, where = match.groups()
                occurrence = counts.get(kind, 0)
                counts[kind] = occurrence + 1
                scope = None
                if name:
                    vtype[name] = ptype
                    out_names = [name]
                    index = types.get(ptype)
                    if index is None:
                        index = self._type(ptype, lambda: nodes.get(kind, occurrence, out_names).outputsAt(0),
                                           name, per_value)
                    outs_json = f'[["{name}",{index}]]'
                else:
                    out_names, outs_json = [], "[]"
                ins_json = f'["{names[1:].replace(", %", _QUOTED_COMMA)}"]' if names else "[]"
                ins = None
            else:
                s = line.lstrip()
                if s.startswith("%") or s.startswith("= "):
                    outs, kind, attr_text, names, scope, where = _node_line(s)
                    occurrence = counts.get(kind, 0)
                    counts[kind] = occurrence + 1
                    out_names, out_items = [v for v, _ in outs], []
                    for j, (name, ptype) in enumerate(outs):
                        vtype[name] = ptype
                        index = types.get(ptype)
                        if index is None:
                            index = self._type(ptype, lambda: nodes.get(kind, occurrence, out_names).outputsAt(j),
                                               name, per_value)
                        out_items.append([name, index])
                    outs_json = dumps(out_items)
                    ins = _names(names)
                    ins_json = dumps(ins)
                elif s.startswith("-> ("):
                    if not frames or not s.endswith(")"):
                        raise Unsupported(line)
                    if pending is not None:
                        current.append(_joined(pending))
                    owner, outer, params_json = frames.pop()
                    owner[2].append(f"[{params_json},{dumps(_names(s[4:-1]))},[{','.join(current)}]]")
                    current, pending = outer, owner
                    continue
                elif s.startswith("block"):
                    match = _BLOCK.fullmatch(s)
                    if match is None or pending is None:
                        raise Unsupported(line)
                    owner = pending
                    b, params = len(owner[2]), []
                    for j, (name, ptype) in enumerate(_split_typed(match.group(1))):
                        vtype[name] = ptype
                        index = types.get(ptype)
                        if index is None:
                            index = self._type(ptype, lambda: _block_param(nodes.get(*owner[3:]), b, j), name,
                                               per_value)
                        params.append([name, index])
                    frames.append((owner, current, dumps(params)))
                    current, pending = [], None
                    continue
                elif s.startswith("return (") and not frames and s.endswith(")"):
                    outputs = _names(s[8:-1])
                    break
                else:
                    raise Unsupported(line)
            if pending is not None:
                current.append(_joined(pending))
                pending = None
            nodes.parsed += 1
            attributes = None
            attributes_json = "null"
            if attr_text is not None:
                key = (kind, attr_text)
                found = attrs.get(key)
                if found is None:
                    attributes = self.attributes(nodes.get(kind, occurrence, out_names))
                    attributes_json = dumps(attributes)
                    # a tensor prints as `{...}` or `<Tensor>` whatever its dtype and shape: those node by node
                    if not _TENSORISH.search(_STRINGS.sub("", attr_text)):
                        attrs[key] = (attributes, attributes_json)
                else:
                    attributes, attributes_json = found
            known = kinds.get(kind)
            if known is None:
                known = kinds[kind] = (self.tables.string(kind), kind.startswith("prim::"), kind in CALLS,
                                       kind in self.no_blocks or kind.startswith(_NO_BLOCKS_PREFIX))
            schema = None
            if not known[1]:
                if ins is None:
                    ins = names[1:].split(", %") if names else []
                try:
                    key = (kind, tuple(map(vget, ins)))
                except KeyError:
                    raise Unsupported(f"an input of {line} is not defined before it") from None
                schema = schemas.get(key, -1)
                if schema == -1:
                    schema = schemas[key] = self._schema(nodes.get(kind, occurrence, out_names))
            elif known[2] and names:
                method = (attributes or {}).get("name") if kind == "prim::CallMethod" else None
                callee = names[1:].split(", %", 1)[0]
                calls.append((per_value.get(callee) or self.type_names[vtype[callee]], method))
            source = None
            if where is not None:
                source = positions.get(where, -1)
                if source == -1:
                    source = positions[where] = self._position(where)
            prefix = f"[{known[0]},{ins_json},{outs_json},{attributes_json},"
            suffix = (f",{_null(source)},{_null(self.tables.string(scope) if scope else None)},"
                      f"{_null(schema)}]")
            if known[3]:
                current.append(f"{prefix}null{suffix}")
                if len(current) > 1023 and current is texts:  # 50 bytes an object less for the most nodes
                    chunks.append(",".join(texts))
                    texts.clear()
            else:
                pending = [prefix, suffix, [], kind, occurrence, out_names]
        if outputs is None or any(line.strip() for line in lines):
            raise Unsupported("no return, or text after it (a subgraph)")
        if pending is not None:
            current.append(_joined(pending))
        if texts:
            chunks.append(",".join(texts))
        return f"[{dumps(inputs)},{dumps(outputs)},", chunks, calls

    def _position(self, where: str) -> int | None:
        file, sep, rest = where.rpartition(":")
        file, sep2, line = file.rpartition(":")
        if not (sep and sep2 and line.isdigit() and rest.isdigit()):
            raise Unsupported(where)
        return self.tables.position(file, int(line), int(rest))

    def _header(self, lines, graph, vtype: dict, per_value: dict) -> list:
        """The graph's inputs, printed one a line: ``graph(%a : T,`` ... ``%z : U):``."""
        first = next(lines, "")
        if not first.startswith("graph("):
            raise Unsupported(first)
        if first == "graph():":
            return []
        inputs, part = [], first[6:]
        while True:
            done = part.endswith("):")
            if not done and not part.endswith(","):
                raise Unsupported(part)
            name, sep, ptype = part[:-2 if done else -1].partition(" : ")
            if not sep or not name.startswith("%"):
                raise Unsupported(part)
            vtype[name[1:]] = ptype
            index = self.types.get(ptype)
            if index is None:
                j = len(inputs)
                index = self._type(ptype, lambda: list(graph.inputs())[j], name[1:], per_value)
            inputs.append([name[1:], index])
            if done:
                return inputs
            part = next(lines, "").lstrip()

    def _type(self, printed: str, value: Callable, name: str, per_value: dict) -> int:
        """The string index of str(type) of a value printed with type ``printed``, asked of torch once per
        printed type; a function's type prints without the mangled part of its name (two functions, one
        print), so those are asked value by value (``per_value``: value name -> str(type))."""
        torch_type = value().type()
        text = str(torch_type)
        if torch_type.kind() == "FunctionType":
            per_value[name] = text
            return self.tables.string(text)
        self.type_names[printed] = text
        index = self.types[printed] = self.tables.string(text)
        return index

    def _schema(self, node) -> int | None:
        try:
            text = str(node.schema())
        except Exception:  # noqa: BLE001 - as the walk: no schema
            return None
        return None if text == "(no schema)" else self.tables.string(text)


_QUOTED_COMMA = '","'


def _null(index: int | None) -> str:
    return "null" if index is None else str(index)


def _joined(node: list) -> str:
    """The JSON of a node read with its blocks (``pending`` in GraphReader.read)."""
    prefix, suffix, blocks = node[0], node[1], node[2]
    return f"{prefix}[{','.join(blocks)}]{suffix}" if blocks else f"{prefix}null{suffix}"


def _lines(text: str, chunk: int = 1 << 20):
    """The lines of ``text``, split a megabyte at a time: a 205k-node graph prints 32 MB in 318k lines, as
    one list 48 MB more."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start + chunk)
        if end < 0:
            end = size
        yield from text[start:end].split("\n")
        start = end + 1


def _node_line(s: str):
    """(outputs [(name, printed type)], kind, attribute text, input names text, scope, position) of a node
    line that _SIMPLE does not match (several outputs, nested or quoted attributes, a scope)."""
    eq = s.find("= ")
    rest = s[eq + 2:]
    match = _KIND.match(rest)
    if match is None:
        raise Unsupported(s)
    kind, p = match.group(), match.end()
    attr_text = None
    if rest.startswith("[", p):
        q = _attributes_end(rest, p)
        attr_text, p = rest[p:q], q
    close = rest.find(")", p)
    if not rest.startswith("(", p) or close < 0:
        raise Unsupported(s)
    tail = _TAIL.fullmatch(rest[close + 1:])
    if tail is None:
        raise Unsupported(s)
    return _split_typed(s[:eq].rstrip()), kind, attr_text, rest[p + 1:close], tail.group(1), tail.group(2)


def _names(text: str) -> list[str]:
    if not text:
        return []
    names = text.split(", ")
    if any(not v.startswith("%") for v in names):
        raise Unsupported(text)
    return [v[1:] for v in names]


def _split_typed(text: str) -> list[tuple[str, str]]:
    """``%a : T, %b : U`` -> [(a, T), (b, U)] (a type never holds ``%``)."""
    if not text:
        return []
    out = []
    for part in text[1:].split(", %"):
        name, sep, ptype = part.partition(" : ")
        if not sep:
            raise Unsupported(text)
        out.append((name, ptype))
    return out


def _block_param(node, b: int, j: int):
    return list(node.blocks())[b].paramNode().outputsAt(j)


def _attributes_end(text: str, start: int) -> int:
    """The index after the ``]`` closing the attribute list that opens at ``start`` (strings skipped)."""
    close = text.find("](", start)
    if close >= 0 and '"' not in text[start:close] \
            and text.count("[", start, close) == text.count("]", start, close) + 1:
        return close + 1
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Unsupported(text)
