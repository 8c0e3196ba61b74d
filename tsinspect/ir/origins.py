"""A node's source location from its ``code/`` position, the way torch's ``Node.sourceRange()`` gives it.

The extraction child loads a copy without ``*.debug_pkl`` (tsinspect.ir.metacopy), so torch's graph printer
writes each node's ``code/`` file:line:col, and the child sends those positions. ``CodeSources``, in the
parent, turns such a position into what ``parse_source`` reads from ``sourceRange()`` on a load with the debug
records: it finds the debug record in effect at the position's byte (the last one at or before it, as torch's
``findSourceRangeThatGenerated`` does), rebuilds the head of the text torch's ``SourceRange::highlight``
would print for the original range, and parses that with the very same ``parse_source``. The records come
from the archive's own ``.debug_pkl`` files, read torch-free (tsinspect.archive.debuginfo); torch never sees
them, and the child never holds them. Offsets are bytes, as in torch (a Python ``str`` index would drift on
non-ASCII sources).
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

from tsinspect.archive.debuginfo import DebugInfoError, DebugRecord, SourceMap, SourceMaps, line_starts
from tsinspect.archive.pickles import PickleError
from tsinspect.ir.sourcerange import parse_source

CONTEXT = 3  # lines torch prints before a highlighted range (SourceRange's CONTEXT)
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # as json.dumps(value, separators=(",", ":"))
DEBUG_SUFFIX = ".debug_pkl"


class CodeSources:
    """Source locations of ``code/`` positions. ``read(name)``: the bytes of the archive's ``code/`` file or
    ``.debug_pkl`` record of that name (as torch prints it, without the archive's top folder:
    ``code/__torch__/m.py``), found as torch finds it (case-insensitively); None when there is none.
    ``code_files``: the names of the ``code/`` files, which ``prefetch`` reads."""

    def __init__(self, read: Callable[[str], bytes | None], code_files: Iterable[str] = ()):
        self._read = read
        self._code_files = list(code_files)
        self._files: dict[str, tuple[list[int], SourceMap | None] | None] = {}
        self._heads: dict[int, str] = {}  # id(record) -> the head torch prints for its range
        self._tails: dict[int, bytes | None] = {}  # id(record) -> its entries' JSON after "code_line" (see table)
        self._maps = SourceMaps()  # a traced model's near-copies read once per shape

    def prefetch(self) -> None:
        """Read every code file's debug records now (while the child loads the archive, say)."""
        for name in self._code_files:
            self._file(name)

    def sources(self, positions: list) -> list[dict | None]:
        """The ``sources`` table of an IR document for the child's table of ``[file, line, column]``."""
        return [self.source(*position) for position in positions]

    def source(self, file: str, line: int, col: int) -> dict | None:
        """What ``parse_source`` gives for the ``sourceRange()`` of a node at ``file``:``line``:``col``."""
        if not file:  # torch prints `File "", line N`, which names no file
            return None
        record = self._record(file, line, col)
        if record is None:  # no debug record: torch prints the code position as the node's own place
            return {"code_file": None, "code_line": None, "file": file, "line": line}
        return parse_source(f'{self._head(record)}Serialized   File "{file}", line {line}\n')

    def table(self, positions: list) -> bytes:
        """``json.dumps(self.sources(positions), separators=(",", ":"))`` as ASCII bytes, with the part of an
        entry that comes from its debug record written once per record: a trace's records are call stacks,
        repeated in the entry of every position in their range (8,000 traced classes: 34,000 entries, 46 MB of
        JSON), and the dicts of ``sources`` took several times that in memory."""
        pieces = [b"["]
        for file, line, col in positions:
            if len(pieces) > 1:
                pieces.append(b",")
            record = self._record(file, line, col) if file else None
            tail = self._tail(record) if record is not None and '"' not in file and line >= 0 else None
            if tail is None:
                pieces.append(_dumps(self.source(file, line, col)).encode("ascii"))
            else:  # parse_source reads code_file and code_line from the "Serialized" line, the rest from the head
                pieces += (b'{"code_file":%s,"code_line":%d,' % (_dumps(file).encode("ascii"), line), tail)
        pieces.append(b"]")
        return b"".join(pieces)

    def _record(self, file: str, line: int, col: int) -> DebugRecord | None:
        known = self._file(file)
        if known is not None:
            starts, source_map = known
            if source_map is not None and 1 <= line <= len(starts):
                return source_map.record_at(starts[line - 1] + col)
        return None

    def _tail(self, record: DebugRecord) -> bytes | None:
        """The JSON of what ``parse_source`` reads from the record's head (file, line, stack), or None when the
        head could hold the "Serialized" line's words itself (then each entry is parsed whole)."""
        key = id(record)
        if key not in self._tails:
            head = self._head(record)
            tail = None
            if "Serialized" not in head:
                place = parse_source(head) or {"file": None, "line": None}
                tail = _dumps({k: v for k, v in place.items() if k not in ("code_file", "code_line")})[1:]
                tail = tail.encode("ascii")  # and the entry's closing brace
            self._tails[key] = tail
        return self._tails[key]

    def _file(self, file: str):
        if file not in self._files:
            self._files[file] = None
            code = self._read(file)
            if code is not None:
                self._files[file] = (line_starts(code), self._source_map(file + DEBUG_SUFFIX))
        return self._files[file]

    def _source_map(self, name: str) -> SourceMap | None:
        data = self._read(name)
        if data is None:
            return None
        try:
            return self._maps.read(data)
        except (DebugInfoError, PickleError, ValueError, RecursionError):
            return None  # unreadable debug records: no original location

    def _head(self, record: DebugRecord) -> str:
        head = self._heads.get(id(record))
        if head is None:
            head = self._heads[id(record)] = highlight_head(record)
        return head


def highlight_head(record: DebugRecord) -> str:
    """The part of torch's ``SourceRange::print_with_context`` output for the record's range that
    ``parse_source`` reads: the whole text when the range covers it (a traced call stack), else the
    ``File "...", line N`` line and the lines up to the one the range starts on."""
    source = record.source
    if source is None:
        return ""
    text = source.text.encode("utf-8")
    if record.end - record.start == len(text):
        return source.text
    start = max(0, min(record.start, len(text)))
    line_start = text.rfind(b"\n", 0, start) + 1
    context_start = line_start
    for _ in range(CONTEXT):
        if context_start == 0:
            break
        context_start = text.rfind(b"\n", 0, context_start - 1) + 1
    line_end = text.find(b"\n", start)
    shown = text[context_start:len(text) if line_end < 0 else line_end].decode("utf-8", "replace")
    where = ""
    if source.filename is not None:
        line = source.start_line + text.count(b"\n", 0, start)
        where = f'  File "{source.filename}", line {line}\n'
    return f"{where}{shown}\n~\n"

