"""Source maps from ``*.debug_pkl``: for each byte range of a generated ``code/`` file, the user's source.

Three layouts exist (torchscript-format-notes §1.4), all tuples of records ``(byte_offset, range[, tag])``:
- current: ``("FORMAT_WITH_STRING_TABLE", text_table, records)`` where a range's source is
  ``(build_intlist(line indices into text_table), filename index, starting line)``;
- legacy: records whose source is ``(text, filename, starting line)`` directly, with a tag;
- oldest: 2-tuples without a tag (and one writer put the tag before the range).
A range is ``(source, start, end)``: byte offsets into the source text. For scripted code the text is the
def's original source; for traced code it is the Python call stack at record time, one frame a line.
"""

from __future__ import annotations

import ast
import bisect
import re
import struct
import sys
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from tsinspect.archive.calls import op_of_call
from tsinspect.archive.pickles import Call, Global, PickleError, PList, PTuple, walk

MAX_SOURCE_CHARS = 64 * 1024 * 1024
MAX_LINE_CHARS = 4096  # longest source line shown as an origin's text
_FRAME = re.compile(r"^(.*)\((\d{1,9})\): (.*)$")  # a line number int() can read (not 5000 digits)


@dataclass(frozen=True)
class Source:
    text: str
    filename: str | None
    start_line: int


@dataclass(frozen=True)
class Origin:
    """Where a piece of generated code came from."""

    file: str | None
    line: int | None
    text: str  # the original line (scripted) or the innermost frame (traced)
    stack: tuple[tuple[str, int, str], ...] = ()  # traced only: (file, line, function), innermost first

    def to_json(self) -> dict:
        out: dict = {"file": self.file, "line": self.line, "text": self.text}
        if self.stack:
            out["stack"] = [{"file": f, "line": n, "function": fn} for f, n, fn in self.stack]
        return out

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "?"


@dataclass(frozen=True)
class DebugRecord:
    offset: int
    source: Source | None
    start: int
    end: int
    tag: int


class DebugInfoError(ValueError):
    pass


class SourceMap:
    """Records sorted by generated-code byte offset; ``origin_at`` finds what generated a byte."""

    def __init__(self, records: list[DebugRecord], layout: str):
        self.records = sorted(records, key=lambda r: r.offset)
        self.offsets = [r.offset for r in self.records]
        self.layout = layout
        self._origins: dict[int, Origin | None] = {}  # record index -> origin, computed once
        self._lines: _LineIndex | None = None

    def record_at(self, offset: int) -> DebugRecord | None:
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self.records[i] if i >= 0 else None

    def origin_at(self, offset: int) -> Origin | None:
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self._origin(i) if i >= 0 else None

    def _origin(self, i: int) -> Origin | None:
        # Many records (and every code line) can share one huge source: compute each origin once, and
        # count lines with an index built in one pass over each source, not once per record.
        if i not in self._origins:
            if self._lines is None:
                self._lines = _LineIndex(self.records)
            self._origins[i] = origin_of(self.records[i], self._lines)
        return self._origins[i]

    def line_origins(self, code: bytes) -> list[Origin | None]:
        """One origin per line of ``code``: what torch gives the line's first graph node.

        A node's original location is the record in effect at the node's first byte, and a line's first
        node starts at its first expression that is not an assignment target (``b = torch.size(x, 0)``:
        at ``torch``), or at an ``if``/``for``/``while``/``raise`` keyword. The record in effect at the
        indentation is often still the previous statement's, and the next one to start is often a pooled
        constant's; this rule matched torch's source range for every node-bearing line of 27 real archives
        of all three debug_pkl layouts (benchmarks/fidelity.py). Lines ``ast`` cannot place fall back to
        the first range starting on the line that has a source.
        """
        anchors = _first_node_columns(code)
        out: list[Origin | None] = []
        pos = 0
        for number, line in enumerate(code.split(b"\n"), 1):
            start, end = pos + len(line) - len(line.lstrip()), pos + len(line)
            line_start, pos = pos, end + 1
            origin = None
            if line.strip():
                column = anchors.get(number)
                if column is not None:
                    origin = self.origin_at(line_start + column)
                i = bisect.bisect_left(self.offsets, start)
                while origin is None and i < len(self.records) and self.offsets[i] < end:
                    origin = self._origin(i)
                    i += 1
                origin = origin or self.origin_at(start)
            out.append(origin)
        return out


_NO_NODE_STATEMENTS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AugAssign,
                       ast.AnnAssign, ast.Expr, ast.Return, ast.Pass, ast.Import, ast.ImportFrom, ast.Global,
                       ast.Nonlocal)


def _first_node_columns(code: bytes) -> dict[int, int]:
    """Line number -> byte column where the line's first graph node would start (see line_origins)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    skip: set[int] = set()  # assignment targets, signatures and annotations make no node
    columns: dict[int, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            parts: list = list(ast.iter_child_nodes(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            parts = [node.args, *([node.returns] if node.returns else []), *node.decorator_list]
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            parts = [*getattr(node, "targets", []), *([node.target] if hasattr(node, "target") else []),
                     *([node.annotation] if getattr(node, "annotation", None) else [])]
        else:
            parts = []
            if isinstance(node, ast.expr) and not isinstance(node, ast.Name) or (
                    isinstance(node, ast.stmt) and not isinstance(node, _NO_NODE_STATEMENTS)):
                if node.col_offset < columns.get(node.lineno, 1 << 62):
                    columns[node.lineno] = node.col_offset
        skip.update(map(id, parts))
    return columns


class _LineIndex:
    """For every (source, start) of a list of records, how many lines of the source precede ``start``.

    Built by counting newlines between consecutive starts, so each source text is scanned once.
    """

    def __init__(self, records: list[DebugRecord]):
        starts: dict[int, set[int]] = {}
        texts: dict[int, str] = {}
        for record in records:
            if record.source is not None:
                key = id(record.source.text)
                texts[key] = record.source.text
                starts.setdefault(key, set()).add(_clip(record.start, record.source.text))
        self.counts: dict[tuple[int, int], int] = {}
        self.stacks: dict[int, tuple] = {}  # id(text) -> parsed traced call stack
        for key, points in starts.items():
            text, prev, count = texts[key], 0, 0
            for point in sorted(points):
                count += text.count("\n", prev, point)
                self.counts[key, point] = count
                prev = point

    def stack(self, text: str) -> tuple[tuple[str, int, str], ...]:
        if id(text) not in self.stacks:
            self.stacks[id(text)] = _stack(text)
        return self.stacks[id(text)]

    def lines_before(self, text: str, start: int) -> int:
        count = self.counts.get((id(text), start))
        return text.count("\n", 0, start) if count is None else count


def _clip(start: int, text: str) -> int:
    return max(0, min(start, len(text)))


def origin_of(record: DebugRecord, lines: _LineIndex | None = None) -> Origin | None:
    src = record.source
    if src is None or not src.filename and not src.text:
        return None
    text = src.text
    newline = text.find("\n", 0, MAX_LINE_CHARS)
    first = text[:newline if newline >= 0 else MAX_LINE_CHARS]
    frame = _FRAME.match(first)
    if frame and record.start == 0:  # a traced call stack
        stack = lines.stack(text) if lines else _stack(text)
        return Origin(stack[0][0], stack[0][1], f"{stack[0][2]}", stack)
    start = _clip(record.start, text)
    line_index = lines.lines_before(text, start) if lines else text.count("\n", 0, start)
    # the line holding ``start``, looked for at most MAX_LINE_CHARS either side (a source can be one huge line)
    line_start = text.rfind("\n", max(0, start - MAX_LINE_CHARS), start) + 1 or max(0, start - MAX_LINE_CHARS)
    line_end = text.find("\n", start, start + MAX_LINE_CHARS)
    line_text = text[line_start:line_end if line_end >= 0 else min(len(text), start + MAX_LINE_CHARS)]
    return Origin(src.filename, src.start_line + line_index, line_text.strip())


def _stack(text: str) -> tuple[tuple[str, int, str], ...]:
    """(file, line, function) of each frame of a traced call stack, innermost first."""
    return tuple((m.group(1), int(m.group(2)), m.group(3))
                 for m in map(_FRAME.match, text.splitlines()) if m)


def parse_source_map(value: Any, known: dict | None = None) -> SourceMap:
    """Decode a walked debug_pkl value; DebugInfoError when it matches no known layout. ``known``: sources
    made before, by the id of their value (SourceMaps' copies share the nodes of a call stack's lines)."""
    items = _tuple(value)
    if items is None:
        raise DebugInfoError("debug info is not a tuple")
    if len(items) == 3 and items[0] == "FORMAT_WITH_STRING_TABLE":
        table = _tuple(items[1])
        recs = _tuple(items[2])
        if table is None or recs is None or not all(isinstance(t, str) for t in table):
            raise DebugInfoError("string table layout with a malformed table")
        return SourceMap(_records(recs, _TableSources(table, known)), "string_table")
    return SourceMap(_records(items, _InlineSources()), "legacy")


class _InlineSources:
    def __init__(self) -> None:
        self.cache: dict[int, Source | None] = {}

    def __call__(self, value: Any) -> Source | None:
        key = id(value)
        if key not in self.cache:
            parts = _tuple(value)
            if parts is None or len(parts) < 3 or not isinstance(parts[0], str):
                raise DebugInfoError("source is not (text, filename, line)")
            filename = parts[1] if isinstance(parts[1], str) else None
            self.cache[key] = Source(parts[0], filename, parts[2] if isinstance(parts[2], int) else 0)
        return self.cache[key]


class _TableSources:
    def __init__(self, table: list[str], known: dict | None = None):
        self.table = table
        self.cache: dict[int, Source | None] = {}
        self.chars = 0
        self.known = known  # id(value) -> (value, table, its source, its characters), for the same objects

    def __call__(self, value: Any) -> Source | None:
        key = id(value)
        if key not in self.cache and self.known is not None:
            made = self.known.get(key)
            if made is not None and made[0] is value and made[1] is self.table:
                self.chars += made[3]
                if self.chars > MAX_SOURCE_CHARS:
                    raise DebugInfoError(f"sources add up to more than {MAX_SOURCE_CHARS} characters")
                self.cache[key] = made[2]
        if key not in self.cache:
            parts = _tuple(value)
            if parts is None or len(parts) < 3:
                raise DebugInfoError("source is not (lines, filename, line)")
            lines = _ints(parts[0])
            if lines is None or not isinstance(parts[1], int) or not isinstance(parts[2], int):
                raise DebugInfoError("source fields are not integers")
            size = len(self.table)
            if lines and (min(lines) < 0 or max(lines) >= size) or not 0 <= parts[1] < size:
                raise DebugInfoError("source refers past the string table")
            # count before joining: a short list of indices can repeat one huge table string
            chars = sum(map(len, map(self.table.__getitem__, lines)))
            self.chars += chars
            if self.chars > MAX_SOURCE_CHARS:
                raise DebugInfoError(f"sources add up to more than {MAX_SOURCE_CHARS} characters")
            # interned: a trace repeats the same call stacks in every class's records (8,000 classes: 85 MB of
            # texts, 6 distinct)
            text = sys.intern("".join(map(self.table.__getitem__, lines)))
            self.cache[key] = Source(text, self.table[parts[1]] or None, parts[2]) if lines or parts[1] else None
            if self.known is not None:
                self.known[key] = (value, self.table, self.cache[key], chars)
        return self.cache[key]


def _records(items: list, source_of) -> list[DebugRecord]:
    out = []
    for item in items:
        rec = _tuple(item)
        if rec is None or len(rec) < 2 or not isinstance(rec[0], int):
            raise DebugInfoError("a record is not (offset, range, ...)")
        if len(rec) >= 3 and isinstance(rec[1], int):  # an old writer put the tag before the range
            tag, rng = rec[1], rec[2]
        else:
            rng, tag = rec[1], rec[2] if len(rec) >= 3 and isinstance(rec[2], int) else -1
        parts = _tuple(rng)
        if parts is None or len(parts) < 3 or not isinstance(parts[1], int) or not isinstance(parts[2], int):
            raise DebugInfoError("a range is not (source, start, end)")
        out.append(DebugRecord(rec[0], source_of(parts[0]), parts[1], parts[2], tag))
    return out


def _tuple(value: Any) -> list | None:
    return value.items if isinstance(value, (PTuple, PList)) else None


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, Call) and value.func_name == "torch.jit._pickle.build_intlist" and value.arg_list:
        value = value.arg_list[0]
    items = _tuple(value)
    # a walked pickle's numbers are ints and bools (no other subclass of int): ints only, as a set of types
    if items is None or not set(map(type, items)) <= _INT:
        return None
    return items


_INT = frozenset({int})


def load_source_map(archive, code_record: str) -> SourceMap | None:
    """The source map of a code record from its ``.debug_pkl``; None when absent.

    A damaged debug record raises ArchiveError naming it.
    """
    from tsinspect.archive.problems import ArchiveError

    name = code_record + ".debug_pkl"
    if name not in archive.by_name:
        return None
    walked = archive.pickle(name)
    try:
        return parse_source_map(walked.value)
    except DebugInfoError as exc:
        raise ArchiveError(f"unrecognised debug info ({exc})", name) from None


_MAX_DEPTH = 200  # statement nesting followed by op_origin_kinds


def line_starts(code: bytes) -> list[int]:
    """The byte offset where each line of ``code`` starts (lines end at b"\\n", as torch counts them)."""
    return [0, *accumulate(map((1).__add__, map(len, code.split(b"\n")[:-1])))]


def op_origin_kinds(code, archive) -> tuple[int, int]:
    """(op calls of ``code``'s methods whose debug record holds a call stack of more than one frame, those
    whose record holds a source): a trace's records are call stacks, a script's the original ``def``."""
    from tsinspect.archive.problems import ArchiveError

    stacks = plain = 0
    for file, source in code.sources.items():
        try:
            source_map = load_source_map(archive, file)
        except ArchiveError:  # the debug info's readers report it
            continue
        if source_map is None:
            continue
        starts = line_starts(source.encode("utf-8"))
        for method in code.methods_of(file):
            for call in _calls(method.node.body, 0):
                if op_of_call(call) is None:
                    continue
                line = call.lineno - 1
                origin = source_map.origin_at((starts[line] if line < len(starts) else 0) + call.col_offset)
                if origin is None or origin.file is None or origin.line is None:
                    continue
                if len(origin.stack) > 1:
                    stacks += 1
                else:
                    plain += 1
    return stacks, plain


def _calls(stmts: list[ast.stmt], depth: int):
    """The calls of a method body, statement by statement (the conditions and loop heads with them)."""
    if depth > _MAX_DEPTH:
        return
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            yield from (n for n in ast.walk(stmt.test) if isinstance(n, ast.Call))
            yield from _calls(stmt.body, depth + 1)
            yield from _calls(stmt.orelse, depth + 1)
        elif isinstance(stmt, (ast.For, ast.While)):
            head = stmt.iter if isinstance(stmt, ast.For) else stmt.test
            yield from (n for n in ast.walk(head) if isinstance(n, ast.Call))
            yield from _calls(stmt.body + stmt.orelse, depth + 1)
        else:
            yield from (n for n in ast.walk(stmt) if isinstance(n, ast.Call))


# -- the debug records of near-copies ----------------------------------------------------------------------
# A traced model's ``.debug_pkl`` records differ from their siblings' only in integers (byte offsets, tags):
# the same pickle opcodes, the same strings. ``SourceMaps`` walks such a pickle once per shape, with every
# integer a sentinel naming its place, and gives each further copy that tree with its own integers in
# place, read by the same ``parse_source_map``. Only the opcodes below are read so (the walk pushes a
# BININT1/2/BININT's value and nothing else depends on it; no BINPERSID and no NEWTRUE/NEWFALSE, so none of
# the walk's tensor shortcuts applies); any other pickle is walked on its own.
_FIXED = {0x80: 1, 0x71: 1, 0x72: 4, 0x94: 0, 0x68: 1, 0x6A: 4, 0x28: 0, 0x74: 0, 0x85: 0, 0x86: 0, 0x87: 0,
          0x29: 0, 0x5D: 0, 0x65: 0, 0x61: 0, 0x52: 0, 0x4E: 0}  # opcode -> its argument's length
_WIDTHS = {0x4B: 1, 0x4D: 2, 0x4A: 4}  # BININT1, BININT2, BININT
_FORMATS = {1: "B", 2: "H", 4: "i"}
_SENTINEL = 1 << 30  # + the integer's place; more places than 2**30 - 1 do not fit a pickle this reads
MAX_SHAPES_A_LENGTH = 8
MAX_SHAPED_BYTES = 1 << 16  # a shape keeps its pickle's bytes: larger ones (a script's sources) are not copies


class SourceMaps:
    """``parse_source_map(walk(data).value)`` for the ``.debug_pkl`` records of one archive, the same map or
    the same exception, with near-copies read once per shape (see above)."""

    def __init__(self) -> None:
        self._shapes: dict[int, list[_DebugShape]] = {}  # by the pickle's length
        self._known: dict = {}  # parse_source_map's sources made, for the nodes copies share

    def read(self, data: bytes) -> SourceMap:
        for shape in self._shapes.get(len(data), ()):
            ints = shape.match(data)
            if ints is not None:
                value = shape.value(data, ints)
                if value is not None:
                    return parse_source_map(value, self._known)
                break
        else:
            slots = _int_slots(data) if len(data) <= MAX_SHAPED_BYTES else None
            known = self._shapes.setdefault(len(data), [])
            if slots and len(known) < MAX_SHAPES_A_LENGTH:
                known.append(_DebugShape(data, slots))
        return parse_source_map(walk(data).value)


def _int_slots(data: bytes) -> list[tuple[int, int]] | None:
    """(where each integer's argument starts, its width) up to STOP, or None when an opcode is not one of
    those above or there is no STOP."""
    pos, size, slots = 0, len(data), []
    while pos < size:
        code = data[pos]
        width = _WIDTHS.get(code)
        if width is not None:
            slots.append((pos + 1, width))
            pos += 1 + width
        elif code == 0x58:  # BINUNICODE
            if pos + 5 > size:
                return None
            pos += 5 + int.from_bytes(data[pos + 1:pos + 5], "little")
        elif code == 0x8C:  # SHORT_BINUNICODE
            if pos + 2 > size:
                return None
            pos += 2 + data[pos + 1]
        elif code == 0x63:  # GLOBAL: module and name, a line each
            first = data.find(b"\n", pos + 1)
            second = data.find(b"\n", first + 1) if first >= 0 else -1
            if second < 0:
                return None
            pos = second + 1
        elif code == 0x2E:  # STOP (bytes after it, which the walk ignores, are compared with the rest)
            return slots
        elif code in _FIXED:
            pos += 1 + _FIXED[code]
        else:
            return None
    return None


class _DebugShape:
    """Pickles of one length equal to ``data`` but in the arguments of its integers: a struct reads all of a
    candidate's bytes at once, its other bytes compared and its integers taken."""

    def __init__(self, data: bytes, slots: list[tuple[int, int]]):
        formats, kept, ints, pos = ["<"], [], [], 0
        for at, width in slots:
            kept.append(len(formats) - 1)  # the bytes up to the integer's opcode, and the opcode
            formats.append(f"{at - pos}s")
            ints.append(len(formats) - 1)
            formats.append(_FORMATS[width])
            pos = at + width
        kept.append(len(formats) - 1)
        formats.append(f"{len(data) - pos}s")
        self.struct = struct.Struct("".join(formats))
        self.kept, self.ints, self.slots = kept, ints, slots
        fields = self.struct.unpack(data)
        self.bytes = [fields[i] for i in kept]
        self.tree: Any = None  # the sentinel walk's value, made when a third pickle of the shape comes
        self.failed = False
        self.matched = 0
        self._with_ints: set[int] = set()  # ids of the tree's nodes holding an integer
        self._places: dict[int, tuple[int, ...]] = {}  # id(node) -> the places of the integers it holds
        self._last: dict[int, tuple] = {}  # id(node) -> (its integers, its copy) for the last copy made

    def match(self, data: bytes) -> tuple[int, ...] | None:
        fields = self.struct.unpack(data)
        if [fields[i] for i in self.kept] != self.bytes:
            return None
        return tuple(fields[i] for i in self.ints)

    def value(self, data: bytes, ints: tuple[int, ...]) -> Any:
        """The walked value of ``data`` (of this shape, with these integers), or None when the shape is not
        shared (its sentinel walk failed or gave a value this does not copy)."""
        self.matched += 1
        if self.matched < 2:  # a shape of two pickles: both walked on their own (making one costs a walk)
            return None
        if self.tree is None and not self.failed:
            self._make(data)
        if self.failed:
            return None
        try:
            return self._copy(self.tree, ints, {})
        except RecursionError:  # nested deeper than this copies: the pickle is walked on its own
            return None

    def _make(self, data: bytes) -> None:
        pieces, pos = [], 0
        for place, (at, width) in enumerate(self.slots):
            pieces += [data[pos:at - 1], b"J", struct.pack("<i", _SENTINEL + place)]
            pos = at + width
        pieces.append(data[pos:])
        try:
            tree = walk(b"".join(pieces)).value
        except (PickleError, ValueError, RecursionError, MemoryError):
            self.failed = True
            return
        self.failed = not self._holds_ints(tree, len(self.slots), set())
        self.tree = tree

    def _holds_ints(self, node: Any, places: int, seen: set) -> bool:
        """Whether the tree is of the node kinds ``_copy`` copies, every integer a sentinel; marks the nodes
        holding one."""
        stack, order = [node], []
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is int:
                if not _SENTINEL <= item < _SENTINEL + places:
                    return False
            elif kind in (PTuple, PList):
                if id(item) not in seen:
                    seen.add(id(item))
                    order.append(item)
                    stack += item.items
            elif kind is Call:
                if id(item) not in seen:
                    if item.states or item.kwargs is not None or item.kind != "reduce":
                        return False
                    seen.add(id(item))
                    order.append(item)
                    stack += [item.func, item.args]
            elif item is not None and kind not in (str, Global):
                return False
        places = self._places
        changed = True
        while changed:  # the integers each node holds, its children's (children first: one pass but for cycles)
            changed = False
            for item in reversed(order):
                children = item.items if type(item) is not Call else [item.func, item.args]
                held = set(places.get(id(item), ()))
                for child in children:
                    if type(child) is int:
                        held.add(child - _SENTINEL)
                    else:
                        held.update(places.get(id(child), ()))
                if held and len(held) != len(places.get(id(item), ())):
                    places[id(item)] = tuple(sorted(held))
                    changed = True
        self._with_ints = set(places)
        return True

    def _copy(self, node: Any, ints: tuple[int, ...], memo: dict) -> Any:
        kind = type(node)
        if kind is int:
            return ints[node - _SENTINEL]
        if id(node) not in self._with_ints:
            return node  # nothing of this copy's own in it: the shape's node itself
        made = memo.get(id(node))
        if made is None:
            held = tuple(ints[i] for i in self._places[id(node)])
            last = self._last.get(id(node))
            if last is not None and last[0] == held:  # the same integers as the copy before (a call stack's
                memo[id(node)] = last[1]  # lines in the string table): that copy's node, shared
                return last[1]
            if kind is Call:
                made = memo[id(node)] = Call(self._copy(node.func, ints, memo), None)
                made.args = self._copy(node.args, ints, memo)
            else:
                made = memo[id(node)] = kind([])
                made.items = [self._copy(item, ints, memo) for item in node.items]
            self._last[id(node)] = (held, made)
        return made
