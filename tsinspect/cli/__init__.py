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
from tsinspect.collector import paused

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
# Commands that wait for all they start and leave nothing to clean up: run as the program, the process ends once
# their output is flushed, without freeing what they read object by object (20 ms at 10,000 tensors).
QUICK_EXIT = frozenset({"ls", "info", "cat", "pickle"})


class UsageError(Exception):
    """A mistake in how the command was called (exit status 2)."""


EXIT_TEXT = {"0": "ok", "1": "findings", "2": "an error (one line on stderr)"}


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    """The options every command takes, before or after its name. On subcommands their default is
    SUPPRESS, so a value given before the command is not reset by the subcommand's parser."""
    group = parser.add_argument_group("global options")
    taken = parser._option_string_actions
    if "--color" not in taken:
        group.add_argument("--color", choices=("auto", "always", "never"),
                           default="auto" if default is None else default,
                           help="colour output (default auto: off when NO_COLOR is set or output is not a terminal)")
    if "--quiet" not in taken:
        group.add_argument("--quiet", "-q", action="store_true", default=False if default is None else default,
                           help="no progress line on stderr (it is shown only when stderr is a terminal)")


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; the epilog (exit codes, examples) kept line by line."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line + "\n" for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
                examples: list[str], exits: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, its exit codes and examples."""
    codes = dict(EXIT_TEXT, **(exits or {}))
    epilog = ("exit status:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(codes.items()))
              + "\n\nexamples:\n" + "\n".join(f"  {example}" for example in examples))
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=_HelpFormatter)


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsinspect",
        description="Inspect TorchScript archives (.pt/.ptl) without running them.",
        epilog="Run 'tsinspect COMMAND --help' for a command's options. 'tsinspect FILE' opens FILE.\n"
               "Exit status: 0 ok, 1 findings (differences, unsafe findings, a refused load), 2 error.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = dict.fromkeys(COMMANDS.values()) if command is None else [COMMANDS[command]]
    for module in modules:
        importlib.import_module(module).add_parsers(sub)
    for subparser in sub.choices.values():
        _global_options(subparser, argparse.SUPPRESS)
    return parser


def _first_positional(argv: list[str]) -> str | None:
    """The command (or file) word, skipping global options and their values."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--color":
            skip = True
        elif arg == "--":
            continue
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _first_positional(argv)
    if command is not None and command not in COMMANDS:
        argv.insert(argv.index(command), "open")
        command = "open"
    try:
        with paused():  # the modules imported make thousands of objects, none garbage (~2 ms of collections)
            parser = build_parser(command)  # imports the command's module: Ctrl-C may come here
        args = parser.parse_args(argv)
        from tsinspect.cli import progress

        progress.configure(args.quiet)
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


def run() -> None:
    """The program (``python -m tsinspect``, the ``tsinspect`` script): ``main()``, then exit with its status;
    after a command of QUICK_EXIT, with its output flushed, at once (the code index's parse thread, idle by then,
    is not joined either)."""
    status = main()
    if _first_positional(sys.argv[1:]) in QUICK_EXIT:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - Python's own exit reports it, as without this
            raise SystemExit(status) from None
        os._exit(status)
    raise SystemExit(status)


def report_error(exc: BaseException) -> int:
    from tsinspect.archive.text import printable
    from tsinspect.cli.progress import print_above

    print_above(f"tsinspect: error: {printable(error_message(exc))}", sys.stderr)
    return EXIT_ERROR


def error_message(exc: BaseException) -> str:
    """The one line that says what went wrong (raised again under TSINSPECT_DEBUG when it is our bug)."""
    from tsinspect.archive.problems import ArchiveError

    if isinstance(exc, (ArchiveError, UsageError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
    if os.environ.get("TSINSPECT_DEBUG"):
        raise exc
    return f"internal error ({type(exc).__name__}: {exc}); please report it with the file if you can"
