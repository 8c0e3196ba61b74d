"""Code files that are one text but for the numbers torch mangles class names with, read once for all.

``torch.jit.trace`` gives every submodule instance a class of its own, ``___torch_mangle_<N>``, and its
``code/`` file differs from its siblings' only in such numbers: its own (in its module path and where it
names itself) and those of the classes it holds (5,000 ``Linear`` s: 5,001 files of 4 shapes; 2,000
conv-bn-relu blocks: 8,007 files of 12). A file's *shape* is its module path and text with each distinct
mangled number replaced by a placeholder, ``__tsph0__``, ``__tsph1__``, ... in order of first appearance
(the module path first). The readers (the code index with its outline, the safety scan's certificate) read
a shape once and derive each file's result by writing its numbers back where the placeholders stand.

Why that is exact. A mangled number stands right after ``___torch_mangle_``, inside a run of identifier
characters, and its placeholder is identifier characters too: in code the tokenizer reads the same tokens
(a name stays a name, of the same words around it), in strings and comments plain characters; the parser
builds the same tree but for those names and strings, at the same line numbers. The file is the shape with
its numbers written back (nothing else in it holds ``__tsph``). A file gets a shape only when its text is
ASCII (an identifier's non-ASCII letters are normalised together with their neighbours), holds no
``__tsph``, and every line of it and of its shape is shorter than ``MAX_LINE`` (the outline keeps longer
lines); else it is read on its own. A derived string is exact when the marker occurs in the shape's result
only inside whole placeholders (the readers check that once a shape); a shape that fails to parse is not
shared at all.
"""

from __future__ import annotations

import re

MARK = "__tsph"
MAX_LINE = 4000  # tsinspect.archive.outline.MAX_LINE (not imported: the outline imports nothing of ours)
_MANGLED = re.compile(r"___torch_mangle_([0-9]+)")
_PLACEHOLDER = re.compile(r"__tsph([0-9]+)__")


def shape_of(module: str, source: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(the shape's module path, the shape's text, the file's numbers in placeholder order), or None when the
    file must be read on its own (see the module's docstring) or holds no mangled number."""
    if "___torch_mangle_" not in module and "___torch_mangle_" not in source:
        return None
    if MARK in source or MARK in module or not source.isascii() or not module.isascii():
        return None
    if len(source) >= MAX_LINE and not short_lines(source):
        return None
    numbers: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        number = match.group(1)
        mark = numbers.get(number)
        if mark is None:
            mark = numbers[number] = f"{MARK}{len(numbers)}__"
        return "___torch_mangle_" + mark

    shaped_module = _MANGLED.sub(placeholder, module)
    text = _MANGLED.sub(placeholder, source)
    return shaped_module, text, tuple(numbers)


def short_lines(text: str) -> bool:
    return max(map(len, text.split("\n"))) < MAX_LINE


def placed(value: str, numbers: tuple[str, ...]) -> str:
    """A string of the shape's result as the file's: each placeholder replaced by the file's number."""
    return _PLACEHOLDER.sub(lambda m: numbers[int(m.group(1))], value) if MARK in value else value


def whole(value: str, count: int) -> bool:
    """Whether the marker occurs in ``value`` only in whole placeholders of the shape's ``count`` numbers
    (then ``placed`` is exact)."""
    if MARK not in value:
        return True
    return all(k == str(int(k)) and int(k) < count for k in _PLACEHOLDER.findall(value)) \
        and MARK not in _PLACEHOLDER.sub("", value)
