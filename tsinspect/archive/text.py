"""Make names and strings from an archive safe to show on a terminal."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the bidirectional overrides that can make text read differently than it runs, and
# lone surrogates (pickle strings are decoded with 'surrogatepass'; they cannot be written as UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_unsafe_chars(text: str) -> bool:
    """Whether ``text`` holds anything :func:`printable` would escape (C0/C1 controls, DEL, bidi, surrogates)."""
    return _UNSAFE.search(text) is not None


def printable(text: str, keep_lines: bool = False) -> str:
    """Escape control characters (``\\x1b`` becomes the four characters ``\\x1b``).

    With ``keep_lines`` newlines and tabs stay, for multi-line text such as code.
    """
    if text.isascii() and text.isprintable():  # most names: nothing to escape, and cheaper than the search
        return text
    pattern = _UNSAFE_KEEP_LINES if keep_lines else _UNSAFE
    return pattern.sub(_escape, text)


# What json.dumps(ensure_ascii=False) leaves raw and a terminal may act on: DEL, C1 controls (U+009B is
# CSI on 8-bit terminals), bidirectional overrides; and lone surrogates, which cannot be encoded as UTF-8.
# In serialized JSON they can only sit inside strings.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def json_safe(text: str) -> str:
    """Serialized JSON with the characters above written as ``\\uXXXX`` escapes: the same JSON value."""
    if text.isascii() and "\x7f" not in text:  # two scans in C, against the pattern's 18 ms on 5.7 MB
        return text
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_dumps(obj: object, **options) -> str:
    """``json.dumps`` for anything holding archive strings, wherever it goes (stdout, a report file): UTF-8
    text kept readable, every character a terminal or an editor may act on escaped (see json_safe)."""
    import json

    # what is encoded is built for it, a tree: the encoder's cycle check (a dict entry per container, 15% of
    # the time on 10,000 tensors) can only find none
    return json_safe(json.dumps(obj, ensure_ascii=False, check_circular=False, **options))


def decode_name(raw: bytes) -> tuple[str, bool]:
    """Decode a member name; returns the text and whether it was valid UTF-8."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), False


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    if abs(n) >= 1 << 80:  # only a hostile pickle declares this much; float() fails past 2**1024
        return f"~2^{abs(n).bit_length() - 1} B" if n > 0 else f"-2^{abs(n).bit_length() - 1} B"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 tensor``, ``2 tensors``: the count with the noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
