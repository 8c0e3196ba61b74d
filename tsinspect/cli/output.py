"""What every command writes: JSON on stdout, warnings on stderr."""

from __future__ import annotations

import sys
from typing import Any

from tsinspect.archive.problems import Problem
from tsinspect.archive.text import json_dumps
from tsinspect.cli.style import Style
from tsinspect.cli.progress import print_above


def emit_json(obj: Any) -> None:
    """Indented for a person at a terminal; compact (and several times faster to encode) for a pipe."""
    # strings from the archive are in there: json escapes C0 controls, json_dumps the C1 and bidi ones
    sys.stdout.write(json_dumps(obj, indent=1 if sys.stdout.isatty() else None))
    sys.stdout.write("\n")


def json_line(obj: Any) -> str:
    """One compact JSON Lines record (``--jsonl``, several files with ``--json``), escaped as emit_json's."""
    return json_dumps(obj)


def stderr_style(style: Style) -> Style:
    """The command's colour choice, applied to stderr only when stderr is a terminal too."""
    return Style(style.enabled and sys.stderr.isatty())


def warn_problems(problems: list[Problem], style: Style, limit: int = 20) -> None:
    err = stderr_style(style)
    for problem in problems[:limit]:
        print_above(f"tsinspect: {err('warning', 'yellow')}: {problem}", sys.stderr)
    if len(problems) > limit:
        print_above(f"tsinspect: {err('warning', 'yellow')}: {len(problems) - limit} more problems (see --json)",
                    sys.stderr)
