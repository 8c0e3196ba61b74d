"""``tsinspect diff A B``: what a traced archive lost against its scripted variant (either order), or a
structural diff of two archives of one kind. Never imports torch here; the IR comes from a child process.
"""

from __future__ import annotations

import argparse
import sys

from tsinspect.archive.text import printable
from tsinspect.cli import EXIT_FINDINGS, EXIT_OK, add_command
from tsinspect.cli.output import emit_json
from tsinspect.cli.progress import Progress


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "diff", "what a traced archive lost against the scripted one (dropped branches, unrolled loops, "
                     "baked constants), or a structural diff of two archives",
        "Compare a traced archive with the scripted one of the same model (in either order): what the trace "
        "dropped, unrolled or baked in, by file and line of your source. Two archives of one kind get a "
        "structural diff (modules, tensors, code, extra files).",
        ["tsinspect diff traced.pt scripted.pt", "tsinspect diff traced.pt scripted.pt --ir never --json",
         "tsinspect diff old.pt new.pt --quiet && echo same"],
        {"0": "no differences", "1": "differences (findings)"})
    p.add_argument("a", help="an archive (traced or scripted, in either order)")
    p.add_argument("b", help="the other archive")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--json", action="store_const", const="json", dest="format", help="same as --format json")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; exit 0 (no findings) or 1")
    p.add_argument("--all", action="store_true", dest="show_all",
                   help="also list the findings in library code (torch, other packages), not only their counts")
    p.add_argument("--ir", choices=("auto", "never", "always"), default="auto",
                   help="use the IR extracted by torch in a child process: auto (when both archives load), "
                        "never (torch-free only), always (fail without it)")
    p.add_argument("--no-ir", action="store_const", const="never", dest="ir", help=argparse.SUPPRESS)
    p.add_argument("--trust", action="store_true",
                   help="let torch load archives the safety scan flags (only for files you trust)")
    p.add_argument("--verify", action="store_true",
                   help="then run both archives (sandboxed child, after the safety gate) on generated inputs and "
                        "mark each finding confirmed (an input on which the scripted model takes its other side "
                        "and the outputs differ because of it), not reproduced or not tested (docs/diff.md)")
    p.add_argument("--verify-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="time limit of the verification child (default 120)")
    p.add_argument("--tui", action="store_true",
                   help="show the findings in the terminal UI, browsing the scripted archive (prints the report "
                        "when not on a terminal)")
    p.set_defaults(run=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    from tsinspect.diff.run import diff_archives

    if args.tui:
        from tsinspect.cli.open_cmd import check_archive, interactive

        for path in (args.a, args.b):  # a file that is no archive is one error line, not a UI
            check_archive(path)
        if interactive():
            from tsinspect.tui import run

            return run(args.a, trust=args.trust, other=args.b, diff_ir=args.ir)
        print("tsinspect: --tui needs a terminal (stdin and stdout); printing the report instead", file=sys.stderr)

    _warn_same(args.a, args.b)
    with Progress("diffing") as progress:
        result = diff_archives(args.a, args.b, ir=args.ir, trust=args.trust)
        if args.verify:
            from tsinspect.verify.run import verify

            progress.stage("verifying: both archives on generated inputs in a sandboxed child")
            verify(result, trust=args.trust, timeout=args.verify_timeout)
    status = EXIT_FINDINGS if result.findings else EXIT_OK
    if args.quiet:
        return status
    if args.format == "json":
        emit_json(result.to_json())
        return status
    from tsinspect.cli.style import style_for
    from tsinspect.diff.text import render

    style = style_for(args.color)
    for line in render(result, style, show_all=args.show_all):
        print(line)
    return status


def _warn_same(a: str, b: str) -> None:
    import os

    try:
        same = os.path.samefile(a, b)
    except OSError:
        return  # the diff says what is wrong with the file
    if same:
        print(f"tsinspect: warning: {printable(a)} and {printable(b)} are the same file; "
              "there is nothing to compare", file=sys.stderr)
