"""``tsinspect scan PATH...``: a safety verdict per file (clean / suspicious / unsafe / error), torch-free.

Folders are walked for archives (tsinspect.cli.files); files are judged in parallel worker processes
(the judge is tsinspect.safety.scan), and the results come out in the order the files were found, as
they are ready, so ``--jsonl`` output of a registry of thousands of archives streams and can be merged
with ``cat``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tsinspect.archive.text import counted, printable
from tsinspect.cli import add_command
from tsinspect.cli.output import emit_json, json_line, stderr_style
from tsinspect.cli.progress import Progress, print_above
from tsinspect.cli.style import style_for

_COLOURS = {"clean": "green", "suspicious": "yellow", "unsafe": "red", "error": "red", "info": "dim"}
FILE_SCHEMA = "tsinspect.scan.file/1"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "scan", "check files and folders for pickles, load-time code and zip tricks that run code or "
                     "fool tools",
        "Judge each file without loading it: every pickle any loader could reach against what torch's own "
        "restricted unpicklers accept, load-time code in code/, and zip structure tricks. A folder is walked "
        "for archives, recognised by their first bytes (zip, pickle, tar) or a model/pickle extension; links "
        "inside it are not followed. Files are judged in parallel, one worker process per core.",
        ["tsinspect scan model.pt", "tsinspect scan models/ --jsonl > verdicts.jsonl",
         "tsinspect scan a.pt b.ptl --json --all"],
        {"0": "every file clean", "1": "any file suspicious or unsafe", "2": "any file unreadable (and for "
                                                                            "usage errors)"})
    p.add_argument("files", nargs="+", metavar="PATH", help="archive files and folders to walk")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document at the end (schema tsinspect.scan/1)")
    out.add_argument("--jsonl", action="store_true",
                     help=f"print one JSON object per file as it is judged (schema {FILE_SCHEMA}), for large folders")
    p.add_argument("--all", action="store_true", help="show info findings too (default: only what sets the verdict)")
    p.add_argument("--jobs", "-j", type=int, default=0, metavar="N",
                   help="worker processes (default: one per core; 1 judges in this process)")
    p.set_defaults(run=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    from tsinspect.cli import UsageError
    from tsinspect.cli.files import find_files
    from tsinspect.safety.scan import exit_status, report_json

    if args.jobs < 0:
        raise UsageError("--jobs must not be negative")
    style = style_for(args.color)
    err = stderr_style(style)
    found = find_files(args.files)
    for folder in found.unreadable:
        print(f"tsinspect: {err('error', 'red')}: cannot list {printable(folder)}; its files were not judged",
              file=sys.stderr)
    results = []
    start = time.monotonic()
    with Progress("scanning", total=len(found.files)) as progress:
        for result in judge(found.files, args.jobs):
            progress.advance()
            results.append(result)
            if result.error is not None:  # said once, on stderr; the listing says ERROR
                print_above(f"tsinspect: {err('error', 'red')}: {printable(result.error)}", sys.stderr)
            if args.jsonl:
                print_above(json_line({"schema": FILE_SCHEMA, **result.to_json()}))
            elif not args.json:
                for line in _lines(result, style, args.all):
                    print_above(line)
    if args.json:
        emit_json(report_json(results))
    elif not args.jsonl and (len(results) > 1 or found.folders):
        print(_tally(results, found, time.monotonic() - start))
    if not found.files:
        print(f"tsinspect: {err('warning', 'yellow')}: no archives found"
              + (f" ({counted(found.skipped, 'other file')} skipped)" if found.skipped else ""), file=sys.stderr)
    return 2 if found.unreadable else exit_status(results)  # files that were not judged are not clean


def judge(files: list[str], jobs: int = 0):
    """ScanResults in the order of ``files``, each as soon as it and the ones before it are done."""
    from tsinspect.safety.scan import scan_file

    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(files) < 2:
        yield from map(scan_file, files)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: the workers do not inherit the progress thread (fork with threads running can deadlock)
    context = multiprocessing.get_context("forkserver" if sys.platform.startswith("linux") else None)
    workers = min(jobs, len(files))
    chunk = max(1, min(16, len(files) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(scan_file, files, chunksize=chunk)


def _lines(result, style, show_all: bool):
    verdict = style(f"{result.verdict.upper():<10}", "bold", _COLOURS[result.verdict])
    counts = result.counts()
    tally = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    fmt = f" [{result.format}]" if result.format else ""
    yield f"{verdict} {style(printable(result.path), 'bold')}{fmt}" + (f"  ({tally})" if tally else "")
    shown = [f for f in result.findings if show_all or f.severity != "info"]
    for f in shown:
        yield (f"    {style(f'{f.severity:<10}', _COLOURS[f.severity])} {f.kind:<18} "
               f"{printable(f.where)}: {printable(f.detail)}")
    hidden = len(result.findings) - len(shown)
    if hidden:
        yield style(f"    ({counted(hidden, 'info finding')}; --all shows them)", "dim")


def _tally(results, found, seconds: float) -> str:
    by_verdict: dict[str, int] = {}
    for r in results:
        by_verdict[r.verdict] = by_verdict.get(r.verdict, 0) + 1
    parts = [counted(by_verdict[v], v) if v == "error" else f"{by_verdict[v]} {v}"
             for v in ("clean", "suspicious", "unsafe", "error") if v in by_verdict]
    skipped = f"; {counted(found.skipped, 'other file')} skipped" if found.skipped else ""
    return f"{counted(len(results), 'file')}: {', '.join(parts) or 'none'}{skipped} ({seconds:.1f} s)"
