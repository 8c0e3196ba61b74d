"""Code files that are one text but for their own module path, read once for all.

``torch.jit.trace`` gives every submodule instance a class of its own (``___torch_mangle_N``), and its
``code/`` file differs from its siblings' only where it names itself (5,000 ``Linear`` s: 5,001 files of 4
shapes). A file's *shape* is its text with its module path (``module_of(name)``) replaced by a placeholder
of as many dotted components, ``__torch__.__tsph0__.__tsph1__``. The shape is itself valid Python when the
file is, and the readers (the code index, its outline, the safety scan's certificate) read the shape once
and derive each file's result by writing its path where the placeholder stands.

Why that is exact. A file gets a shape only when (checked here, else it is read on its own):
- its path is ``__torch__`` and 1 to 64 more components, each an ASCII identifier that is no keyword, not
  ``__debug__`` and not starting with ``__tsph``; the file's text holds no ``__tsph``;
- in the shape, no placeholder is preceded by an identifier character, a dot or a backslash, nor followed
  by an identifier character or a quote (so it never glues to a neighbouring token, continues an attribute chain,
  forms a keyword with what follows, or becomes a string prefix);
- every line of the file and of the shape is shorter than ``MAX_LINE`` (the outline keeps longer lines).
The file is the shape with each placeholder replaced by the path (the placeholders are where the path was,
and only there: nothing else holds ``__tsph``). Both start with ``__torch__.``, the same text, and the rest
of each is identifiers and dots only: no quote, backslash, bracket, ``#`` or line end. So the tokenizer
reads both alike (in code: the same names and dots, as many of them; in a string or a comment: plain
characters), and the parser builds the same tree but for those names and the strings that hold the path,
at the same line numbers (columns after the path shift). A derived result is the shape's with the
placeholder replaced, provided the placeholder's marker survives in it only as a whole placeholder (the
readers check that on the shape's result); a shape that fails to parse is not shared at all.
"""

from __future__ import annotations

import keyword
import re

MARK = "__tsph"
MAX_LINE = 4000  # tsinspect.archive.outline.MAX_LINE (not imported: the outline imports nothing of ours)
MAX_COMPONENTS = 64
_PATH = re.compile(r"__torch__(?:\.[A-Za-z_][A-Za-z0-9_]*){1,%d}" % MAX_COMPONENTS)
_NOT_COMPONENTS = frozenset(keyword.kwlist) | {"__debug__"}
_PLACEHOLDERS: dict[int, str] = {}
# what may stand next to a placeholder: ASCII, but no letter, digit or underscore (nor a dot or a backslash before
# it, nor a quote after it); a non-ASCII letter or mark would join the name (and be NFKC-normalised with it)
_APART = "".join(re.escape(chr(c)) for c in range(128) if not (chr(c).isalnum() or chr(c) == "_"))
_BEFORE = _APART.replace(re.escape("."), "").replace(re.escape("\\"), "")  # nor a backslash (an escape)
_AFTER = _APART.replace(re.escape("'"), "").replace(re.escape('"'), "")
_BOUNDED: dict[str, re.Pattern] = {}


def placeholder(components: int) -> str:
    """``__torch__`` and ``components`` marked components: stands for a path of as many."""
    text = _PLACEHOLDERS.get(components)
    if text is None:
        text = _PLACEHOLDERS[components] = "__torch__" + "".join(f".{MARK}{i}__" for i in range(components))
    return text


def shape_of(module: str, source: str) -> tuple[str, str] | None:
    """(the shape's text, its placeholder) of a file of ``module`` holding ``source``, or None when the file
    must be read on its own. ``bounded(text, placeholder)`` is the shape's own condition, asked once a shape."""
    if _PATH.fullmatch(module) is None or MARK in source:
        return None
    parts = module.split(".")[1:]
    if not _NOT_COMPONENTS.isdisjoint(parts) or any(p.startswith(MARK) for p in parts):
        return None
    if len(source) >= MAX_LINE and not short_lines(source):
        return None
    mark = placeholder(len(parts))
    return source.replace(module, mark), mark


def bounded(text: str, mark: str) -> bool:
    """Whether every placeholder in a shape stands apart from its neighbours (see the module's docstring) and
    every line of the shape is short."""
    pattern = _BOUNDED.get(mark)
    if pattern is None:
        pattern = _BOUNDED[mark] = re.compile(f"(?<![^{_BEFORE}]){re.escape(mark)}(?![^{_AFTER}])")
    return len(pattern.findall(text)) == text.count(mark) and (len(text) < MAX_LINE or short_lines(text))


def short_lines(text: str) -> bool:
    return max(map(len, text.split("\n"))) < MAX_LINE


def placed(value: str, mark: str, module: str) -> str:
    """A string of the shape's result as the file's: the placeholder replaced by the file's path."""
    return value.replace(mark, module) if mark in value else value


def whole(value: str, mark: str) -> bool:
    """Whether the marker occurs in ``value`` only as part of a whole placeholder (then ``placed`` is exact)."""
    return MARK not in value.replace(mark, "")
