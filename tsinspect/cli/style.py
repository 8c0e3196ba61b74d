"""Colour for terminal output: on for terminals, off for pipes, NO_COLOR and ``--color never``."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
          "cyan": "36"}


class Style:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def style_for(choice: str, stream: TextIO = sys.stdout) -> Style:
    if choice == "always":
        return Style(True)
    if choice == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return Style(False)
    return Style(hasattr(stream, "isatty") and stream.isatty())
