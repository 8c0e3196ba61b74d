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

The text is read a top-level node at a time (the node's line and its blocks' lines: a *unit*), with every
value name cut out (``_HOLE``). An inlined forward repeats the same units with only their value names
changed (a 140-layer encoder: 13,808 units, 304 distinct, in 318k lines), so each distinct unit is read
once into a template of its JSON text with a slot per name (``_Template``), and its copies are written by
filling the slots: a few C-level operations a unit instead of a regular expression and a dozen dictionary
operations a line. What a template assumes of a copy is checked on each copy (the types of the values it
uses from earlier units, the names it defines and uses itself); a copy that differs is read line by line.

Anything the reader does not recognise raises ``Unsupported``, and the caller walks that graph instead.
"""

from __future__ import annotations

import itertools
import re
from operator import itemgetter
from typing import Callable

_HOLE = "\x00"  # where a value name was cut out (torch's printer writes no NUL: checked per graph)
_AT = "\x01"  # where a node's code/ position was cut out (nor this: checked per graph)
_POSITION = re.compile(r" # ([^\n]*)")  # the first ` # ` of a line and the rest: a node's position, where it is one
_NAME = re.compile(r"%([\w.]+)")
_ASCII_NAME = re.compile(r"%([\w.]+)", re.ASCII)  # the same on ASCII text, in two thirds of the time
_TOP = re.compile(r"\n(?=  (?:\S| = ))")  # where the lines of a top-level node begin (` = f(...)`: no outputs)
# one output (or none), attributes without nested lists, inputs, and the code/ position: most lines
_SIMPLE = re.compile(r' *(?:\x00 : ([^=\x00]*?) )?= ([^\[\(\s]+)(\[(?:[^"\[\]]|"(?:[^"\\]|\\.)*")*\])?'
                     r'\(((?:\x00(?:, \x00)*)?)\)(?: # (.*))?$', re.ASCII)
_KIND = re.compile(r"[^\[\(\s]+")
_TAIL = re.compile(r"(?:, scope: (.*?))?(?: # (.*))?")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_TENSORISH = re.compile(r"[{<]")
_PLAIN_STRING = re.compile(r'\[(\w+)="(\w*)"\]', re.ASCII)
_BLOCK = re.compile(r"block\d+\((.*)\):")
CALLS = ("prim::CallFunction", "prim::CallMethod")
_NO_BLOCKS_PREFIX = "aten::"
# characters of printed text abstracted at a time (cut where a top-level node begins): each part's value names
# and pieces are a transient (1 << 20: 5-6 MB more at the peak of a 51k-node graph; 1 << 16: 0.4 MiB more at
# 10k nodes than 1 << 14, at the same time)
CHUNK = 1 << 14
# top-level nodes' JSON texts joined into one piece (50 bytes an object less) this many at a time: the list and
# its join are alive together, so 1,024 at a time held a 10k-node graph's whole JSON twice at the end of its read
# (0.5 MiB more at the child's peak than 128)
JOINED = 127


class Unsupported(ValueError):
    """The printed text has a form this reader does not read exactly: walk the graph instead."""


class _Nodes:
    """A graph's torch nodes by kind, in pre-order. Walked from the start only as far as a representative is
    asked for (the first occurrence of a printed case is mostly near the start); a case first seen further
    on than ``AHEAD`` nodes past the walk takes all nodes of its kind from torch at once (``findAllNodes``, in
    C++). ``no_blocks``: kinds that own no blocks; ``parsed``: nodes read so far (set by the reader).

    No pybind iterator is run to its end: pybind ends one by throwing a C++ exception, and unwinding it reads
    libtorch's exception tables (0.75 MiB of pages torch's own print never touches). A block's last node is
    known beforehand (its return node's ``prev()``), and a node's blocks are taken one by one (``_blocks``)."""

    AHEAD = 512
    __slots__ = ("graph", "todo", "by_kind", "whole", "no_blocks", "previous", "walked", "parsed")

    def __init__(self, graph, no_blocks: frozenset):
        self.graph = graph
        self.todo = []  # per block being walked: (its nodes' iterator, its last node)
        self.by_kind: dict[str, list] = {}
        self.whole: set[str] = set()  # kinds fetched whole
        self.no_blocks = no_blocks
        self.previous = None  # (node, kind) walked last
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
        todo = self.todo
        if self.previous is None:
            if not self.walked:  # the first node asked for
                _push(todo, self.graph.nodes(), self.graph.return_node())
        else:
            previous, kind = self.previous
            if kind not in self.no_blocks and not kind.startswith(_NO_BLOCKS_PREFIX):
                for block in reversed(_blocks(previous, kind)):  # pre-order: a node, then block 0's nodes first
                    _push(todo, block.nodes(), block.returnNode())
        while todo:
            nodes, last = todo[-1]
            node = next(nodes, None)
            if node is not None:
                if node is last:
                    todo.pop()
                self.walked += 1
                kind = node.kind()
                self.previous = node, kind
                if kind not in self.whole:
                    self.by_kind.setdefault(kind, []).append(node)
                return
            todo.pop()  # (not reached while pybind gives the same wrapper for the same node)
        raise Unsupported("fewer nodes than printed")


# kinds whose nodes torch always builds with this many blocks (the reader checks each printed one): taken with
# next(), which never reaches the iterator's end
BLOCKS = {"prim::If": 2, "prim::Loop": 1}


def _blocks(node, kind: str) -> list:
    count = BLOCKS.get(kind)
    if count is None:
        return list(node.blocks())
    blocks = iter(node.blocks())
    return [next(blocks) for _ in range(count)]


def _push(todo: list, nodes, end) -> None:
    """Walk a block's ``nodes`` next (``end``: its return node), unless it has none."""
    last = end.prev()
    if last.kind() != "prim::Param":  # the return node's prev() of an empty block is its param node
        todo.append((iter(nodes), last))


class _Unit:
    """One top-level node read line by line: its JSON as a %-format (``form``, a ``%s`` per value name, written
    in the order of ``order``: slots in the unit's name list), and what a copy of it must be checked for."""

    __slots__ = ("form", "order", "same", "top", "external", "refs", "calls", "kinds", "size", "sources")

    def __init__(self):
        self.same = True  # its copies can share a template (nothing in it is asked of torch value by value)
        self.sources: list[str] = []  # the source index of each position, in order: the slots after its names
        self.top: list[tuple[int, str]] = []  # the node's outputs: (slot, printed type)
        self.external: list[int] = []  # slots of values from earlier units whose type a schema or call needs
        self.refs: list[tuple[int, int]] = []  # (slot of a typed use, slot of its definition in the unit)
        self.calls: list[tuple[int, str | None, str | None]] = []  # (callee slot, method, its printed type)
        self.kinds: dict[str, int] = {}
        self.size = 0


class _Template:
    """A distinct unit, for its copies: ``forms`` maps the printed types of its external values (schemas
    depend on them) to its %-format."""

    __slots__ = ("holes", "order", "top", "top_types", "external", "uses", "defines", "calls", "kinds", "size",
                 "forms")

    def __init__(self, unit: _Unit, holes: int, types: tuple):
        self.holes = holes
        self.order = _getter(unit.order)
        self.top = _getter([slot for slot, _ in unit.top])
        self.top_types = tuple(ptype for _, ptype in unit.top)
        self.external = _getter(unit.external) if unit.external else None
        self.uses = _getter([r for r, _ in unit.refs]) if unit.refs else None  # a value used in the unit ...
        self.defines = _getter([d for _, d in unit.refs]) if unit.refs else None  # ... is the one defined there
        self.calls, self.kinds, self.size = unit.calls, unit.kinds, unit.size
        self.forms: dict[tuple, str] = {types: unit.form}


def _getter(slots: list[int]) -> Callable:
    """A function of a name list that returns the names at ``slots`` as a tuple."""
    if len(slots) > 1:
        return itemgetter(*slots)
    if slots:
        only = slots[0]
        return lambda names: (names[only],)
    return lambda names: ()


_LIST_FORMS = ["[]"] + ['["' + '","'.join(["%s"] * n) + '"]' for n in range(1, 64)]


def _list_form(n: int) -> str:
    """A JSON list of ``n`` value names as a %-format."""
    return _LIST_FORMS[n] if n < len(_LIST_FORMS) else '["' + '","'.join(["%s"] * n) + '"]'


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
        self.attrs: dict[tuple[str, str], tuple] = {}  # (kind, printed attributes) -> attributes, JSON
        self.schemas: dict[tuple, int | None] = {}  # (kind, printed input types) -> schema string index
        self.positions: dict[str, str] = {}  # printed "file:line:col" -> its source index as JSON
        # units read, across graphs: the distinct ones seen twice get a template (see read)
        self.templates: dict[str, _Template] = {}
        self.seen: set[int] = set()  # hashes of units read once
        self.kinds: dict[str, tuple] = {}  # kind -> (string index, prim::, a call, owns no blocks)

    def read(self, graph):
        """(head, top-level nodes in comma-joined chunks, calls): the pieces of tsinspect.ir.extract.Walked."""
        text = str(graph)
        if _HOLE in text or _AT in text:
            raise Unsupported("a NUL or \\x01 in the printed graph")
        # per graph: its nodes, value name -> printed type (graph inputs and top-level outputs: a value
        # defined in a block is not seen outside it), value name -> str(type) for types whose print is
        # ambiguous, occurrences of each kind read so far (``backlog``: units written from templates since)
        self._nodes = _Nodes(graph, self.no_blocks)
        self._vtype, self._per_value, self._counts, self._backlog = {}, {}, {}, []
        self._calls: list[tuple[str, str | None]] = []
        inputs, start = self._header(text, graph)
        templates, seen = self.templates, self.seen
        vtype, backlog, source_of = self._vtype, self._backlog, self._source
        vget = vtype.__getitem__
        texts: list[str] = []  # top-level nodes, joined JOINED at a time into chunks
        chunks: list[str] = []
        outputs = None
        # the text cut into parts first (``unread``), each freed once read: the whole text is no longer alive
        # beside the whole JSON at the end of the read (1.2 MiB less at the child's peak at 10k nodes, 1.9 MiB at
        # 51k); the parts are copied while what torch's str() used for the text is free again
        unread = list(_chunks(text, start))
        del text
        unread.reverse()
        while unread:
            chunk = unread.pop()
            ascii = chunk.isascii()
            pieces = (_ASCII_NAME if ascii else _NAME).split(chunk)
            del chunk
            names = pieces[1::2]
            abstract = _HOLE.join(pieces[0::2])
            del pieces
            written = names if ascii else [self.dumps(n)[1:-1] for n in names]
            # positions cut out too, so that units differing only in them (a layer's code in each of 5,000
            # traced classes, a Sequential's calls line by line) share a template; not where one held a name
            wheres = _POSITION.findall(abstract)
            shared = not any(_HOLE in where for where in wheres)
            cut = bool(wheres) and shared
            keyed = _POSITION.sub(" # " + _AT, abstract) if cut else abstract
            del abstract
            units = _TOP.split(keyed)
            del keyed
            units.reverse()  # each unit freed once read (a single unit can be most of a part)
            i = w = 0
            while units:
                unit = units.pop()
                if outputs is not None:
                    if unit.strip():
                        raise Unsupported("text after the return (a subgraph)")
                    continue
                at = 0
                if cut:
                    at = unit.count(_AT)
                    w += at
                template = templates.get(unit) if shared else None
                types = None
                if template is not None:
                    end = i + template.holes
                    own = names[i:end]
                    if template.uses is None or template.uses(own) == template.defines(own):
                        try:
                            types = tuple(map(vget, template.external(own))) if template.external else ()
                        except KeyError:
                            pass
                        form = None if types is None else template.forms.get(types)
                        if form is not None:  # a copy
                            if template.top_types:
                                vtype.update(zip(template.top(own), template.top_types))
                            if template.calls:
                                self._add_calls(template.calls, own)
                            values = own if written is names else written[i:end]
                            if at:
                                values = values + [source_of(where) for where in wheres[w - at:w]]
                            texts.append(form % template.order(values))
                            backlog.append(template)
                            i = end
                            if len(texts) > JOINED:
                                chunks.append(",".join(texts))
                                texts.clear()
                            continue
                else:
                    end = i + unit.count(_HOLE)
                    own = names[i:end]
                key = unit
                if at:  # the unit as printed
                    parts = unit.split(_AT)
                    unit = parts[0] + "".join(map(str.__add__, wheres[w - at:w], parts[1:]))
                    del parts
                if unit.startswith("  return ("):
                    line, _, rest = unit.partition("\n")
                    if rest.strip() or not line.endswith(")"):
                        raise Unsupported("text after the return (a subgraph)")
                    outputs = _holes_only(line[10:-1], own)
                    i = end
                    continue
                self._flush()
                lines = unit.split("\n")
                del unit  # (the printed unit; its abstracted text is ``key``)
                built = self._unit(lines, own)
                del lines
                for slot, ptype in built.top:
                    vtype[own[slot]] = ptype
                if built.calls:
                    self._add_calls(built.calls, own)
                mine = (own if written is names else written[i:end]) + built.sources
                texts.append(built.form % tuple([mine[s] for s in built.order]))
                if built.same and shared:
                    if types is not None:  # the template's unit, with other types from earlier units
                        template.forms[types] = built.form
                    elif template is None:
                        if hash(key) in seen:
                            templates[key] = _Template(built, end - i, tuple(vtype[own[s]] for s in built.external))
                        else:
                            seen.add(hash(key))
                i = end
                if len(texts) > JOINED:
                    chunks.append(",".join(texts))
                    texts.clear()
            if i != len(names):
                raise Unsupported("value names out of step with the text")
        if outputs is None:
            raise Unsupported("no return")
        if texts:
            chunks.append(",".join(texts))
        result = f"[{self.dumps(inputs)},{self.dumps(outputs)},", chunks, self._calls
        self._nodes = self._vtype = self._per_value = self._backlog = self._calls = None
        return result

    def _flush(self) -> None:
        """Count the nodes of the units written from templates since the last count (their kinds'
        occurrences locate representatives in torch's graph)."""
        if self._backlog:
            counts, nodes = self._counts, self._nodes
            for template in self._backlog:
                for kind, n in template.kinds.items():
                    counts[kind] = counts.get(kind, 0) + n
                nodes.parsed += template.size
            self._backlog.clear()

    def _add_calls(self, calls: list, own: list[str]) -> None:
        for slot, method, ptype in calls:
            callee = own[slot]
            self._calls.append((self._per_value.get(callee) or self.type_names[ptype or self._vtype[callee]],
                                method))

    def _unit(self, lines: list[str], own: list[str]) -> _Unit:
        """A top-level node and its blocks read line by line from its abstracted ``lines`` (``own``: its value
        names in order). Each node is kept as (%-format, slots); a node that can own blocks waits
        (``pending``) until its blocks are read, since a block's outputs are printed after its nodes but
        written before them. A node's position is a slot too, after the unit's names (``unit.sources``): a
        template serves units that differ in them, provided each position is where ``read`` cut one out (the
        first ` # ` of its line), and no other line has a ` # `."""
        unit = _Unit()
        nodes, counts, types, attrs, schemas, kinds = (self._nodes, self._counts, self.types, self.attrs,
                                                       self.schemas, self.kinds)
        vtype, dumps = self._vtype, self.dumps
        defined: dict[str, tuple[str, int]] = {}  # name -> (printed type, slot): values defined in this unit
        external: dict[int, int] = {}  # slot -> index in unit.external
        unit_kinds = unit.kinds
        top: list = []
        current = top  # the (form, slots) of the nodes of the unit or of the open block
        frames: list = []  # per open block: (its owner, the enclosing node list, its parameters' form, slots)
        pending = None  # [prefix, suffix, blocks, kind, occurrence, output names, slots, position slot]
        slot = 0
        position_slot = len(own)
        first = True

        def type_of(at: int) -> str:
            """The printed type of the value used at slot ``at``."""
            name = own[at]
            found = defined.get(name)
            if found is not None:
                unit.refs.append((at, found[1]))
                return found[0]
            try:
                ptype = vtype[name]
            except KeyError:
                raise Unsupported(f"the input %{name} is not defined before it is used") from None
            if at not in external:
                external[at] = len(unit.external)
                unit.external.append(at)
            return ptype

        for line in lines:
            holes = line.count(_HOLE)
            match = _SIMPLE.match(line)
            if match is not None:
                ptype, kind, attr_text, ins_text, where = match.groups()
                scope = None
                if line.find(" # ") != (-1 if where is None else len(line) - len(where) - 3):
                    unit.same = False  # a ` # ` before the position, or without one
                outs = [(slot, ptype)] if ptype is not None else []
                at = slot + len(outs)
                if attr_text is not None and _HOLE in attr_text:
                    unit.same = False
                    attr_text, at = _filled(attr_text, own, at)
                ins = list(range(at, at + ins_text.count(_HOLE)))
                at += len(ins)
                if where is not None and _HOLE in where:
                    unit.same = False
                    where, at = _filled(where, own, at)
            else:
                s = line.lstrip()
                if s.startswith(_HOLE) or s.startswith("= "):
                    outs, kind, attr_text, ins_text, scope, where = _node_line(s)
                    if line.find(" # ") != (-1 if where is None else len(line) - len(where) - 3):
                        unit.same = False
                    outs = [(slot + j, ptype) for j, ptype in enumerate(outs)]
                    at = slot + len(outs)
                    if attr_text is not None and _HOLE in attr_text:
                        unit.same = False
                        attr_text, at = _filled(attr_text, own, at)
                    ins = list(range(at, at + len(_holes_only(ins_text, own[at:]))))
                    at += len(ins)
                    if scope is not None and _HOLE in scope:
                        unit.same = False
                        scope, at = _filled(scope, own, at)
                    if where is not None and _HOLE in where:
                        unit.same = False
                        where, at = _filled(where, own, at)
                elif s.startswith("-> ("):
                    if not frames or not s.endswith(")"):
                        raise Unsupported(line)
                    if " # " in line:
                        unit.same = False
                    returned = len(_holes_only(s[4:-1], own[slot:]))
                    if pending is not None:
                        current.append(_joined(pending))
                    owner, outer, params_form, params_slots = frames.pop()
                    block_slots = params_slots + list(range(slot, slot + returned))
                    for _, node_slots in current:
                        block_slots += node_slots
                    owner[2].append((f"[{params_form},{_list_form(returned)},[{','.join(f for f, _ in current)}]]",
                                     block_slots))
                    slot += returned
                    current, pending = outer, owner
                    continue
                elif s.startswith("block"):
                    match = _BLOCK.fullmatch(s)
                    if match is None or pending is None:
                        raise Unsupported(line)
                    if " # " in line:
                        unit.same = False
                    owner = pending
                    b, params, params_slots = len(owner[2]), [], []
                    for j, ptype in enumerate(_split_typed(match.group(1))):
                        name = own[slot]
                        index = types.get(ptype)
                        if index is None:
                            index = self._type(ptype, lambda: _block_param(nodes.get(*owner[3:6]), b, j), name)
                            if ptype not in types:
                                unit.same = False
                        defined[name] = (ptype, slot)
                        params.append(f'["%s",{index}]')
                        params_slots.append(slot)
                        slot += 1
                    frames.append((owner, current, f"[{','.join(params)}]", params_slots))
                    current, pending = [], None
                    continue
                else:
                    raise Unsupported(line)
            if at != slot + holes:
                raise Unsupported(line)
            if pending is not None:
                current.append(_joined(pending))
                pending = None
            elif not first and current is top:
                raise Unsupported("two top-level nodes in one unit")
            occurrence = counts.get(kind, 0)
            counts[kind] = occurrence + 1
            unit_kinds[kind] = unit_kinds.get(kind, 0) + 1
            nodes.parsed += 1
            unit.size += 1
            out_names = [own[o] for o, _ in outs]
            out_forms = []
            for j, (o, ptype) in enumerate(outs):
                index = types.get(ptype)
                if index is None:
                    index = self._type(ptype, lambda: nodes.get(kind, occurrence, out_names).outputsAt(j), own[o])
                    if ptype not in types:
                        unit.same = False
                defined[own[o]] = (ptype, o)
                out_forms.append(f'["%s",{index}]')
            if first:
                unit.top = outs
                first = False
            attributes = None
            attributes_json = "null"
            if attr_text is not None:
                key = (kind, attr_text)
                found = attrs.get(key)
                if found is None:
                    plain = _PLAIN_STRING.fullmatch(attr_text)
                    # one string attribute with nothing torch's printer escapes: its text is its value (the
                    # names of GetAttr and CallMethod: one distinct text per submodule)
                    attributes = ({plain[1]: plain[2]} if plain is not None
                                  else self.attributes(nodes.get(kind, occurrence, out_names)))
                    attributes_json = dumps(attributes).replace("%", "%%")
                    # a tensor prints as `{...}` or `<Tensor>` whatever its dtype and shape: those node by node
                    if not _TENSORISH.search(_STRINGS.sub("", attr_text)):
                        attrs[key] = (attributes, attributes_json)
                    else:
                        unit.same = False
                else:
                    attributes, attributes_json = found
            known = kinds.get(kind)
            if known is None:
                known = kinds[kind] = (self.tables.string(kind), kind.startswith("prim::"), kind in CALLS,
                                       kind in self.no_blocks or kind.startswith(_NO_BLOCKS_PREFIX))
            schema = None
            if not known[1]:
                key = (kind, tuple([type_of(at) for at in ins]))
                schema = schemas.get(key, -1)
                if schema == -1:
                    schema = schemas[key] = self._schema(nodes.get(kind, occurrence, out_names))
            elif known[2] and ins:
                method = (attributes or {}).get("name") if kind == "prim::CallMethod" else None
                callee = type_of(ins[0])
                unit.calls.append((ins[0], method, callee if own[ins[0]] in defined else None))
            position = []
            if where is not None:
                unit.sources.append(self._source(where))
                position.append(position_slot)
                position_slot += 1
            prefix = f"[{known[0]},{_list_form(len(ins))},[{','.join(out_forms)}],{attributes_json},"
            suffix = (f",{'null' if where is None else '%s'},{_null(self.tables.string(scope) if scope else None)},"
                      f"{_null(schema)}]")
            node_slots = ins + [o for o, _ in outs]
            if known[3]:
                current.append((f"{prefix}null{suffix}", node_slots + position))
            else:
                pending = [prefix, suffix, [], kind, occurrence, out_names, node_slots, position]
            slot = at
        if frames:
            raise Unsupported("a block left open")
        if pending is not None:
            current.append(_joined(pending))
        if len(top) != 1:
            raise Unsupported("no node in a unit")
        unit.form, unit.order = top[0]
        return unit

    def _source(self, where: str) -> str:
        """The source index of a printed ``file:line:col``, as JSON."""
        text = self.positions.get(where)
        if text is None:
            file, sep, rest = where.rpartition(":")
            file, sep2, line = file.rpartition(":")
            if not (sep and sep2 and line.isdigit() and rest.isdigit()):
                raise Unsupported(where)
            text = self.positions[where] = _null(self.tables.position(file, int(line), int(rest)))
        return text

    def _header(self, text: str, graph) -> tuple[list, int]:
        """The graph's inputs, printed one a line (``graph(%a : T,`` ... ``%z : U):``), and where the
        text after them begins."""
        end = text.find("\n")
        first = text[:end if end >= 0 else len(text)]
        if not first.startswith("graph("):
            raise Unsupported(first)
        if first == "graph():":
            return [], end + 1
        inputs, part = [], first[6:]
        while True:
            done = part.endswith("):")
            if not done and not part.endswith(","):
                raise Unsupported(part)
            name, sep, ptype = part[:-2 if done else -1].partition(" : ")
            if not sep or not name.startswith("%"):
                raise Unsupported(part)
            self._vtype[name[1:]] = ptype
            index = self.types.get(ptype)
            if index is None:
                j = len(inputs)
                index = self._type(ptype, lambda: graph.param_node().outputsAt(j), name[1:])
            inputs.append([name[1:], index])
            if done or end < 0:
                if not done:
                    raise Unsupported(part)
                return inputs, end + 1
            start = end + 1
            end = text.find("\n", start)
            part = text[start:end if end >= 0 else len(text)].lstrip()

    def _type(self, printed: str, value: Callable, name: str) -> int:
        """The string index of str(type) of a value printed with type ``printed``, asked of torch once per
        printed type; a function's type prints without the mangled part of its name (two functions, one
        print), so those are asked value by value (``_per_value``: value name -> str(type))."""
        torch_type = value().type()
        text = str(torch_type)
        if torch_type.kind() == "FunctionType":
            self._per_value[name] = text
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


def _chunks(text: str, start: int):
    """The text from ``start`` about ``CHUNK`` characters at a time, cut where a top-level node begins."""
    size = len(text)
    while start < size:
        match = _TOP.search(text, start + CHUNK) if start + CHUNK < size else None
        end = match.start() if match is not None else size
        yield text[start:end]
        start = end + 1


def _null(index: int | None) -> str:
    return "null" if index is None else str(index)


def _joined(node: list) -> tuple[str, list[int]]:
    """(%-format, slots) of a node read with its blocks (``pending`` in GraphReader._unit)."""
    prefix, suffix, blocks, slots = node[0], node[1], node[2], node[6]
    if len(blocks) != BLOCKS.get(node[3], len(blocks)):  # what _Nodes assumes of torch's graph
        raise Unsupported(f"a {node[3]} with {len(blocks)} blocks")
    if not blocks:
        return f"{prefix}null{suffix}", slots + node[7]
    slots = list(slots)
    for _, block_slots in blocks:
        slots += block_slots
    return f"{prefix}[{','.join(form for form, _ in blocks)}]{suffix}", slots + node[7]


def _filled(text: str, names: list[str], at: int) -> tuple[str, int]:
    """``text`` with its holes filled with the names from slot ``at`` on, and the slot after them."""
    pieces = text.split(_HOLE)
    out = [pieces[0]]
    for j, piece in enumerate(pieces[1:]):
        out += ["%", names[at + j], piece]
    return "".join(out), at + len(pieces) - 1


def _holes_only(text: str, names: list[str]) -> list[str]:
    """The names of a list of values (``%a, %b`` abstracted to holes), given the names from its first slot."""
    if not text:
        return []
    count = text.count(_HOLE)
    if text != ", ".join([_HOLE] * count):
        raise Unsupported(text)
    return names[:count]


def _node_line(s: str):
    """(output printed types, kind, attribute text, input names text, scope, position) of an abstracted node
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


def _split_typed(text: str) -> list[str]:
    """``<hole> : T, <hole> : U`` -> [T, U] (a type never holds a value name)."""
    if not text:
        return []
    out = []
    if not text.startswith(_HOLE):
        raise Unsupported(text)
    for part in text[1:].split(", " + _HOLE):
        name, sep, ptype = part.partition(" : ")
        if name or not sep or _HOLE in ptype:
            raise Unsupported(text)
        out.append(ptype)
    return out


def _block_param(node, b: int, j: int):
    return next(itertools.islice(node.blocks(), b, None)).paramNode().outputsAt(j)


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
