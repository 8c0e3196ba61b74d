"""Command line: ``tsinspect FILE`` opens the archive; subcommands print, extract and export.

Each command module adds its parsers with ``add_parsers(subparsers)`` and sets ``run=function(args) -> int``.
Command modules are imported only when needed, so ``ls``/``info``/``cat``/``pickle`` never import torch or
textual. Every error the user can cause becomes one line ``tsinspect: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tsinspect import __version__

# command name -> module that implements it
COMMANDS = {
    "open": "tsinspect.cli.open_cmd",
    "ls": "tsinspect.cli.archive_cmds",
    "info": "tsinspect.cli.archive_cmds",
    "cat": "tsinspect.cli.archive_cmds",
    "pickle": "tsinspect.cli.archive_cmds",
    "extract": "tsinspect.cli.archive_cmds",
    "graph": "tsinspect.cli.ir_cmds",
    "ops": "tsinspect.cli.ir_cmds",
    "diff": "tsinspect.cli.diff_cmd",
    "report": "tsinspect.cli.report_cmd",
    "scan": "tsinspect.cli.scan_cmd",
}

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A mistake in how the command was called (exit status 2)."""


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsinspect",
        description="Inspect TorchScript archives (.pt/.ptl) without running them.",
        epilog="Run 'tsinspect COMMAND --help' for a command's options. 'tsinspect FILE' opens FILE.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour output (default: auto, off when NO_COLOR is set or output is not a terminal)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = dict.fromkeys(COMMANDS.values()) if command is None else [COMMANDS[command]]
    for module in modules:
        importlib.import_module(module).add_parsers(sub)
    return parser


def _first_positional(argv: list[str]) -> str | None:
    """The command (or file) word, skipping global options and their values."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--color":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _first_positional(argv)
    if command is not None and command not in COMMANDS:
        argv.insert(argv.index(command), "open")
        command = "open"
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return EXIT_OK
        return args.run(args)
    except BrokenPipeError:
        # the reader went away (``| head``): not an error; silence the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure is one line, never a traceback
        return report_error(exc)


def report_error(exc: BaseException) -> int:
    from tsinspect.archive.problems import ArchiveError

    if isinstance(exc, (ArchiveError, UsageError)):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
    else:
        if os.environ.get("TSINSPECT_DEBUG"):
            raise exc
        message = f"internal error ({type(exc).__name__}: {exc}); please report it with the file if you can"
    from tsinspect.archive.text import printable

    print(f"tsinspect: error: {printable(message)}", file=sys.stderr)
    return EXIT_ERROR
