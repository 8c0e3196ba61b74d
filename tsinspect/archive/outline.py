"""A file of generated code with its one-line statements set aside: what the code index parses up front.

Most of a large ``code/`` file is one-line statements of a few shapes that torch writes by the thousand
(``_0 = getattr(self, "0")``, ``input0 = (_0).forward(input, )``, ``__annotations__["0"] = <type>``).
Nothing the index reads is inside them but the annotations, and parsing them is most of ``info``'s time on
an archive of many modules. :func:`outline` turns each run of such lines (consecutive, same indentation)
into blank lines ending in one ``pass`` at the run's last line, so every line number, ``end_lineno``, class
and ``def`` of the outline's tree is the file's.

Why the outline parses exactly when the file does: each line set aside is, by its pattern, a complete
simple statement, valid in any block. If the file holds no triple quote and no line ending in a
backslash, a line can continue a previous one only inside brackets, where ``pass`` is a syntax error; so
when the outline parses, every ``pass`` stood at the start of a statement, and the file's token stream is the
outline's with each ``pass`` replaced by the run's statements at the same indentation: it parses too, to the
same classes, defs and line numbers. When the outline does not parse, the caller parses the file itself
(its error is the one to report). Files with a carriage return or a NUL, triple quotes or a backslash at a
line's end get no outline (None): they are parsed whole.
"""

from __future__ import annotations

import keyword
import re

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_ID}(?:\.{_ID})*"
_STRING = r'"[ !#-\[\]-~]*"'  # printable ASCII, no quote, no backslash
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?"
_ATOM = rf"(?:{_DOTTED}|{_NUMBER}|{_STRING}|\({_ID}\))"
_CALLEE = rf"(?:\({_ID}\)\.)?{_DOTTED}"
_NEXT = r"(?:, |(?=\)))"  # an argument ends with a comma and a space, or the closing parenthesis
_ARG = rf"(?:{_CALLEE}\((?:{_ATOM}{_NEXT})*\)|{_ATOM})"
_CALL = rf"{_CALLEE}\((?:{_ARG}{_NEXT})*(?:{_ID}={_ARG}{_NEXT})*\)"  # positional arguments, then keywords
# the statements set aside: an annotation by subscript (group 2: name, 3: type), or an assignment to a name
# other than the two the index reads (``__parameters__``, ``__buffers__``) of a call or an atom
_SIMPLE = re.compile(
    rf'( *)(?:__annotations__\["([ !#-\[\]-~]*)"\] = ({_DOTTED})'
    rf"|(?!__parameters__ |__buffers__ ){_ID} = (?:{_CALL}|{_ATOM}))")
# names the pattern lets through but Python does not: a keyword anywhere (in a string too: such a line is
# just kept), and None, True or False as a target, an attribute or an argument's name (as a value, fine)
_KEYWORDS = frozenset(keyword.kwlist) - {"None", "True", "False"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONSTANT_MISUSED = re.compile(r"\.(?:None|True|False)\b|\b(?:None|True|False)=|^ *(?:None|True|False) ", re.M)


def _misnamed(line: str) -> bool:
    if not _KEYWORDS.isdisjoint(_WORD.findall(line)):
        return True
    return ("None" in line or "True" in line or "False" in line) and _CONSTANT_MISUSED.search(line) is not None


_DIGITS = str.maketrans("", "", "0123456789")


def _any_misnamed(lines: list[str]) -> bool:
    """Whether ``_misnamed`` may hold for one of ``lines`` (True when it does). Asked of their distinct
    shapes with the ASCII digits deleted: thousands of generated lines differ only in their numbers (15,000
    lines become 3; 2 ms against 14 for the words of every line). Deleting digits can make a keyword
    (``in1`` -> ``in``) or a misused constant (``.None1`` -> ``.None``) where there was none, never lose one:
    neither contains a digit, and the characters around them that the tests look at are not digits."""
    return _misnamed("\n".join(set("\n".join(lines).translate(_DIGITS).split("\n"))))


MAX_LINE = 4000  # longer lines are kept (a bound on the pattern's backtracking over hostile text)
_UNSUITED = ("\r", "\0", "'''", '"""', "\\\n")  # found by substring search: a pattern's is 6x slower


def outline(source: str) -> tuple[str | None, dict[int, list[tuple[str, str]]]]:
    """(the outline, {line of each ``pass``: the (name, type) annotations of its run}), or (None, {}) when
    the file gets none (see the module's docstring) or nothing in it would be set aside."""
    if source.endswith("\\") or any(text in source for text in _UNSUITED):
        return None, {}
    lines = source.split("\n")
    found = _matches(source.translate(_ONES).split("\n"))
    aside = [line for line, hit in zip(lines, found) if hit is not None]
    if not aside:
        return None, {}
    if _any_misnamed(aside):  # one check for all (rarely true): then line by line
        found = [None if hit is None or _misnamed(line) else hit for line, hit in zip(lines, found)]
    runs: dict[int, list[tuple[str, str]]] = {}
    run_indent = None  # the indentation of the run the previous line belongs to, None after a kept line
    annotations: list[tuple[str, str]] = []
    set_aside = 0
    for number, hit in enumerate(found):
        if hit is None:
            if run_indent is not None:
                _close(lines, number - 1, run_indent, annotations, runs)
                run_indent, annotations = None, []
            continue
        indent = hit.group(1)
        if run_indent is not None and indent != run_indent:
            _close(lines, number - 1, run_indent, annotations, runs)
            annotations = []
        run_indent = indent
        if hit.group(2) is not None:  # the match is of the line's shape: its text is the line's, at the same place
            line = lines[number]
            annotations.append((line[hit.start(2):hit.end(2)], line[hit.start(3):hit.end(3)]))
        lines[number] = ""
        set_aside += 1
    if run_indent is not None:
        _close(lines, len(lines) - 1, run_indent, annotations, runs)
    if not set_aside:
        return None, {}
    return "\n".join(lines), runs


# A line's shape: its digits 2-9 written 1. The pattern tells digits apart only by ``0`` against ``[1-9]``
# (a number's first digit) and never splits a run of digits, so it matches a line exactly when it matches
# its shape, with the same groups at the same places. Generated lines differ mostly in their numbers: the
# 15,000 lines of a forward have a few dozen shapes.
_ONES = str.maketrans("23456789", "11111111")


def _matches(shapes: list[str]) -> list[re.Match | None]:
    """``_SIMPLE.fullmatch`` of each line's shape (None for lines of ``MAX_LINE`` or more), once per shape."""
    known: dict[str, re.Match | None] = {}
    found: list[re.Match | None] = []
    match, unknown = _SIMPLE.fullmatch, found  # a list is never a match: "not known yet"
    for shape in shapes:
        hit = known.get(shape, unknown)
        if hit is unknown:
            hit = known[shape] = match(shape) if len(shape) < MAX_LINE else None
        found.append(hit)
    return found


def _close(lines: list[str], last: int, indent: str, annotations: list, runs: dict) -> None:
    lines[last] = indent + "pass"
    runs[last + 1] = annotations
