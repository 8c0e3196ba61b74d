"""``tsinspect scan FILE...``: a safety verdict per file (clean / suspicious / unsafe / error), torch-free."""

from __future__ import annotations

import argparse
import sys

from tsinspect.archive.text import printable
from tsinspect.cli.output import emit_json, stderr_style
from tsinspect.cli.style import style_for

_COLOURS = {"clean": "green", "suspicious": "yellow", "unsafe": "red", "error": "red", "info": "dim"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan", help="check files for pickles, load-time code and zip tricks that run code or fool tools",
        description="Judge each FILE without loading it: every pickle any loader could reach against what "
                    "torch's own restricted unpicklers accept, load-time code in code/, and zip structure "
                    "tricks. Exit status: 0 all clean, 1 any suspicious or unsafe, 2 any file unreadable.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.scan/1)")
    p.add_argument("--all", action="store_true", help="show info findings too (default: only what sets the verdict)")
    p.set_defaults(run=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    from tsinspect.safety.scan import exit_status, report_json, scan_file

    results = []
    style = style_for(args.color)
    err = stderr_style(style)
    for path in args.files:
        result = scan_file(path)
        results.append(result)
        if result.error is not None:
            print(f"tsinspect: {err('error', 'red')}: {printable(result.error)}", file=sys.stderr)
        if not args.json:
            _print(result, style, args.all)
    if args.json:
        emit_json(report_json(results))
    return exit_status(results)


def _print(result, style, show_all: bool) -> None:
    verdict = style(result.verdict.upper(), "bold", _COLOURS[result.verdict])
    counts = result.counts()
    tally = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    fmt = f" [{result.format}]" if result.format else ""
    print(f"{verdict:<10} {style(printable(result.path), 'bold')}{fmt}" + (f"  ({tally})" if tally else ""))
    if result.error is not None:
        print(f"    {printable(result.error)}")
    shown = [f for f in result.findings if show_all or f.severity != "info"]
    for f in shown:
        print(f"    {style(f'{f.severity:<10}', _COLOURS[f.severity])} {f.kind:<18} "
              f"{printable(f.where)}: {printable(f.detail)}")
    hidden = len(result.findings) - len(shown)
    if hidden:
        print(style(f"    ({hidden} info finding(s); --all shows them)", "dim"))
