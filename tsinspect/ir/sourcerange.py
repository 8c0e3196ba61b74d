"""A node's place read from the text of torch's ``Node.sourceRange()``: the generated ``code/`` line and the
user's original file:line (or, for a traced node, its recorded call stack). Torch-free: the extraction
child reads it from a walked node, the parent (tsinspect.ir.origins) from the text it rebuilds."""

from __future__ import annotations

import re

_FILE_LINE = re.compile(r'^\s*File "(.*)", line (\d+)')
_FRAME = re.compile(r"^(.*)\((\d+)\): (.*)$")
_SERIALIZED = re.compile(r'Serialized\s+File "([^"]*)", line (\d+)')


def parse_source(text: str) -> dict | None:
    """Node.sourceRange() text -> {code_file, code_line, file, line[, stack]}, or None when empty."""
    if not text or not text.strip():
        return None
    out: dict = {"code_file": None, "code_line": None, "file": None, "line": None}
    serialized = _SERIALIZED.search(text)
    if serialized:
        out["code_file"], out["code_line"] = serialized.group(1), int(serialized.group(2))
    head = text[:serialized.start()] if serialized else text
    lines = head.splitlines()
    first = lines[0] if lines else ""
    match = _FILE_LINE.match(first)
    if match and match.group(1):
        out["file"], out["line"] = match.group(1), int(match.group(2))
    else:
        stack = []
        for line in lines:
            frame = _FRAME.match(line)
            if not frame:
                break
            stack.append(f"{frame.group(1)}:{frame.group(2)}")
        if stack:
            file, _, line = stack[0].rpartition(":")
            out["file"], out["line"], out["stack"] = file, int(line), stack
    if out["file"] is None and out["code_file"] is None:
        return None
    return out
