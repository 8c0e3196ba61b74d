"""``tsinspect FILE`` (``tsinspect open FILE``): the terminal UI on a terminal, the ``info`` summary otherwise.

Textual is imported only here, and only when both stdin and stdout are terminals, so scripts, pipes and
CI keep getting the plain summary.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from tsinspect.cli import add_command

    p = add_command(
        sub, "open", "browse an archive in the terminal UI (prints the summary when not on a terminal)",
        "Open FILE in the terminal UI: records, code with blame, pickles, tensors, the IR. When stdin or stdout "
        "is not a terminal, print the info summary instead. 'tsinspect FILE' is the same command.",
        ["tsinspect model.pt", "tsinspect open model.pt --trust"])
    p.add_argument("file", help="a PyTorch archive")
    p.add_argument("--trust", action="store_true",
                   help="let torch load the archive for the IR view even when the static scan finds unsafe code")
    p.set_defaults(run=run_open)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def check_archive(path: str) -> None:
    """Raise (ArchiveError, OSError) when ``path`` cannot be opened as an archive, so that a missing, empty,
    truncated or non-archive file is one error line before the full-screen UI starts, never a UI saying so."""
    from tsinspect.archive.reader import open_archive

    with open_archive(path):
        pass


def run_open(args: argparse.Namespace) -> int:
    check_archive(args.file)
    if interactive():
        from tsinspect.tui import run

        return run(args.file, trust=args.trust)
    from tsinspect.cli.archive_cmds import run_info

    args.json, args.all = False, False
    return run_info(args)
