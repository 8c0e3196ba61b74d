"""Decoding the extraction child's ``tsinspect.ir/2`` document in bounded slices, for a UI thread's sake.

``json.loads`` of a 200k-node inlined document holds the interpreter lock for its whole run (0.6 s and
more): a UI in another thread of the process freezes that long. Here the document's outer structure (the
top-level object, ``types`` and ``functions``, each METHOD and GRAPH, docs/ir.md) is walked in Python and
every top-level NODE (with its blocks) is one ``raw_decode`` call, so the lock is released between nodes
and the longest hold is that of the largest top-level node. The dataclasses are then built by
``IR.from_json``, which is plain Python too. Meant for a worker thread; same result as ``Extraction.ir``
(tsinspect.tui.irfetch reads ``graph --json``'s output with it).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from tsinspect.collector import freeze_for_good, paused
from tsinspect.ir.model import IR, SCHEMA

_decode_at = json.JSONDecoder().raw_decode
_SPACE = re.compile(r"[ \t\n\r]*")
PAUSE_EVERY = 100


class _Cursor:
    """A position in a JSON text, and the few structural steps the walk needs."""

    def __init__(self, text: str, pause: Callable[[], None] | None = None):
        self.text, self.at = text, 0
        self.pause = pause or (lambda: None)

    def skip(self) -> str:
        """The next non-space character (not consumed)."""
        self.at = _SPACE.match(self.text, self.at).end()
        if self.at >= len(self.text):
            raise ValueError("unexpected end of the document")
        return self.text[self.at]

    def expect(self, char: str) -> None:
        if self.skip() != char:
            raise ValueError(f"expected {char!r} at offset {self.at}")
        self.at += 1

    def value(self) -> Any:
        self.skip()
        value, self.at = _decode_at(self.text, self.at)
        return value

    def members(self):
        """The keys of the object at the cursor; the caller reads each key's value before asking for the next."""
        self.expect("{")
        if self.skip() == "}":
            self.at += 1
            return
        while True:
            key = self.value()
            self.expect(":")
            yield key
            char = self.skip()
            self.at += 1
            if char == "}":
                return
            if char != ",":
                raise ValueError(f"expected ',' or '}}' at offset {self.at - 1}")

    def elements(self):
        """Yields before each element of the array at the cursor; the caller reads it."""
        self.expect("[")
        if self.skip() == "]":
            self.at += 1
            return
        while True:
            yield
            char = self.skip()
            self.at += 1
            if char == "]":
                return
            if char != ",":
                raise ValueError(f"expected ',' or ']' at offset {self.at - 1}")


def _graph(cur: _Cursor) -> list:
    """GRAPH ``[inputs, outputs, nodes]``, one top-level node at a time."""
    parts: list = []
    for _ in cur.elements():
        if len(parts) == 2:
            nodes: list = []
            for _ in cur.elements():
                nodes.append(cur.value())
                if len(nodes) % PAUSE_EVERY == 0:
                    cur.pause()
            parts.append(nodes)
        else:
            parts.append(cur.value())
    return parts


def _method(cur: _Cursor) -> dict:
    method: dict = {}
    for key in cur.members():
        method[key] = _graph(cur) if key in ("graph", "inlined") and cur.skip() == "[" else cur.value()
    return method


def _methods_by_name(cur: _Cursor, entry: Callable[[_Cursor], Any]) -> dict:
    return {key: entry(cur) for key in cur.members()}


def _type_entry(cur: _Cursor) -> dict:
    entry: dict = {}
    for key in cur.members():
        if key == "methods" and cur.skip() == "[":
            entry[key] = [_method(cur) for _ in cur.elements()]
        else:
            entry[key] = cur.value()
    return entry


def _sources(cur: _Cursor) -> list:
    """The ``sources`` table, an entry at a time: a traced archive's holds a call stack per entry (8,007 traced
    classes: 34,000 entries, 46 MB of JSON, one decode holding the lock for most of a second), the same few
    frames over and over, kept once each."""
    entries: list = []
    frames: dict[str, str] = {}
    for _ in cur.elements():
        entry = cur.value()
        stack = entry.get("stack") if isinstance(entry, dict) else None
        if isinstance(stack, list) and all(isinstance(frame, str) for frame in stack):
            entry["stack"] = [frames.setdefault(frame, frame) for frame in stack]
        entries.append(entry)
        if len(entries) % PAUSE_EVERY == 0:
            cur.pause()
    return entries


def decode_document(text: str | bytes, pause: Callable[[], None] | None = None) -> dict:
    """The document, as ``json.loads`` would give it (ValueError when it is not one); ``pause`` is called
    every PAUSE_EVERY top-level nodes of a graph or entries of the source table (a UI's worker steps aside
    there: tsinspect.tui.priority)."""
    cur = _Cursor(text.decode("ascii") if isinstance(text, bytes) else text, pause)
    document: dict = {}
    for key in cur.members():
        if key == "types" and cur.skip() == "{":
            document[key] = _methods_by_name(cur, _type_entry)
        elif key == "functions" and cur.skip() == "{":
            document[key] = _methods_by_name(cur, _method)
        elif key == "sources" and cur.skip() == "[":
            document[key] = _sources(cur)
        else:
            document[key] = cur.value()
    if _SPACE.match(cur.text, cur.at).end() != len(cur.text):
        raise ValueError(f"extra data after the document at offset {cur.at}")
    return document


def _release(document: dict) -> None:
    """Drop the decoded document one top-level node at a time: freeing it whole is one long deallocation
    (hundreds of thousands of lists) that holds the interpreter lock as long as decoding it in one call did."""
    entries = [m for t in (document.get("types") or {}).values() if isinstance(t, dict) for m in t.get("methods", [])]
    entries += list((document.get("functions") or {}).values())
    for method in entries:
        for key in ("graph", "inlined"):
            graph = method.get(key) if isinstance(method, dict) else None
            nodes = graph[2] if isinstance(graph, list) and len(graph) == 3 and isinstance(graph[2], list) else []
            while nodes:
                nodes.pop()
    document.clear()


def ir_from_text(text: str | bytes, notes: list[str] | None = None, pause: Callable[[], None] | None = None) -> IR:
    """The IR of a document's text (``notes``: replace the document's own), decoded in slices with the
    collector paused; the result is frozen out of the collector's reach (gc.freeze), as Extraction.ir does.
    The collector stays paused from the first object to the freeze: a collection on the way (in this thread or
    in the UI's, whichever allocates next) would scan every object made so far, seconds at 200k nodes."""
    with paused():
        document = decode_document(text, pause)
        if notes is not None and document.get("schema") == SCHEMA:
            document["notes"] = list(notes)
        ir = IR.from_json(document)
        _release(document)
        freeze_for_good()
    return ir


def decode_extraction(extraction, pause: Callable[[], None] | None = None) -> None:
    """Give a tsinspect.ir.run.Extraction its ``ir`` decoded in slices (``ir_from_text``) when it holds the
    child's text: its own ``ir`` would decode the text with one ``json.loads``."""
    from tsinspect.ir.run import Transport

    header = extraction.header
    if "ir" not in extraction.__dict__ and isinstance(header, Transport):
        extraction.__dict__["ir"] = ir_from_text(header.body, list(header.get("notes") or []), pause)
