"""``tsinspect report FILE -o OUT``: an HTML, Markdown or JSON report of an archive (``--diff`` adds the
trace-vs-script diff with another). Written only to OUT, never over an existing file without ``--force``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from tsinspect.archive.text import human_bytes, printable
from tsinspect.cli import EXIT_FINDINGS, EXIT_OK, UsageError, add_command
from tsinspect.cli.progress import Progress

FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "report", "write a self-contained report (HTML, Markdown or JSON) of an archive, or of a "
                       "traced/scripted pair with --diff",
        "Write a report of FILE to OUT: summary, safety, modules, tensors, code with its original file:line, "
        "operators and IR (HTML, Markdown for GitHub, or JSON). --summary writes the short Markdown form for a "
        "pull-request comment, which always fits GitHub's 65,536-character limit. Nothing is written "
        "anywhere but OUT.",
        ["tsinspect report model.pt -o report.html",
         "tsinspect report traced.pt --diff scripted.pt -o pr-comment.md --summary --link https://ci/report.html",
         "tsinspect report model.pt --json > report.json"],
        {"0": "written", "1": "written, and the safety scan found unsafe code or the diff has findings",
         "2": "an error (nothing written)"})
    p.add_argument("file", help="the archive to report on")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="file to write ('-' for stdout, the default with --json); an existing file is kept "
                        "unless --force")
    p.add_argument("--format", choices=("html", "md", "json"),
                   help="default: from OUT's extension (.html, .md, .json), else html")
    p.add_argument("--json", action="store_const", const="json", dest="format", help="same as --format json")
    p.add_argument("--summary", action="store_true",
                   help="Markdown summary for a PR comment: findings in your code first, the rest counted, "
                        "always under 65,536 characters")
    p.add_argument("--link", metavar="URL", help="with --summary: where the full report is (e.g. a CI artifact)")
    p.add_argument("--diff", metavar="OTHER", help="add the diff with OTHER (the traced or scripted variant)")
    p.add_argument("--verify", action="store_true",
                   help="with --diff: run both archives on generated inputs and give each finding a verdict")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    # --ir as diff spells it (one spelling on every command); --no-ir, the old spelling, stays as a hidden alias
    p.add_argument("--ir", choices=("auto", "never", "always"), default="auto",
                   help="use the IR extracted by torch in a sandboxed child: auto (when the archive loads), "
                        "never (torch-free: no IR section, operators from code/), always (fail without it)")
    p.add_argument("--no-ir", action="store_const", const="never", dest="ir", help=argparse.SUPPRESS)
    p.add_argument("--trust", action="store_true",
                   help="load even when the safety scan finds load-time code that touches files or raw memory")
    p.add_argument("--library", action="append", default=[], metavar="PATH.so",
                   help="custom-op library for the IR extractor (torch.ops.load_library); repeatable")
    p.add_argument("--timeout", type=float, help="seconds torch may take to load (default 120)")
    p.add_argument("--memory-limit", type=int, metavar="MIB", help="address-space limit of the extractor in MiB")
    p.add_argument("--max-tensors", type=int, default=200, metavar="N",
                   help="tensors listed in HTML/Markdown (default 200; JSON has all)")
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from tsinspect.report.model import IROptions, Limits, build_report

    output = args.output or ("-" if args.format == "json" else None)
    if output is None:
        raise UsageError("give the output file with -o OUT ('-' for stdout)")
    fmt = _format(args, output)
    _check_output(output, args.force)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_tensors < 0:
        raise UsageError("--max-tensors must not be negative")
    options = IROptions(enabled=args.ir != "never", trust=args.trust, libraries=args.library, timeout=args.timeout,
                        memory_limit=args.memory_limit * 1024 * 1024 if args.memory_limit else None)
    with Progress("building the report" + (" and the diff" if args.diff else "")
                  + (", IR from torch in a sandboxed child" if args.ir != "never" else "")) as progress:
        report = build_report(args.file, options, args.diff, Limits(tensors=args.max_tensors))
        if args.ir == "always" and not report.ir.loaded:
            raise UsageError(f"no IR (--ir always): {report.ir.skipped or _load_message(report.ir.document)}")
        if args.verify and report.diff is not None:
            from tsinspect.verify.run import verify

            progress.stage("verifying the diff's findings in a sandboxed child")
            verify(report.diff, trust=args.trust)
        progress.stage(f"writing {fmt}")
        text = summary_text(report, args.link) if args.summary else render(report, fmt)
    if output == "-":
        sys.stdout.write(text)
    else:
        write_new(output, text, args.force)
        print(f"tsinspect: wrote {printable(output)} ({fmt}{' summary' if args.summary else ''}, "
              f"{human_bytes(len(text.encode()))})", file=sys.stderr)
    if report.unsafe:
        print(f"tsinspect: note: {printable(report.scan.refusal())}", file=sys.stderr)
    findings = report.unsafe or (report.diff is not None and bool(report.diff.findings))
    return EXIT_FINDINGS if findings else EXIT_OK


def _format(args: argparse.Namespace, output: str) -> str:
    fmt = args.format or FORMATS.get(os.path.splitext(output)[1].lower())
    if args.summary:
        if fmt not in (None, "md"):
            raise UsageError(f"--summary writes Markdown (for a PR comment), not {fmt}")
        return "md"
    if args.link:
        raise UsageError("--link goes with --summary (it says where the full report is)")
    return fmt or "html"


def _check_output(output: str, force: bool) -> None:
    """Everything about OUT that can be known before the (long) work starts."""
    if output == "-":
        return
    if os.path.isdir(output) and not os.path.islink(output):
        raise UsageError(f"{printable(output)} is a folder; give the report a file name, such as "
                         f"{printable(os.path.join(output, 'report.html'))}")
    if os.path.lexists(output) and not force:
        raise UsageError(f"{printable(output)} exists; pass --force to replace it")
    folder = os.path.dirname(output) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"the folder {printable(folder)} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in the folder {printable(folder)}")


def _load_message(document: dict | None) -> str:
    error = (document or {}).get("error") or {}
    return error.get("message") or (document or {}).get("load") or "not loaded"


def summary_text(report, link: str | None) -> str:
    from tsinspect.report.markdown_summary import render_summary

    return render_summary(report, link)


def render(report, fmt: str) -> str:
    if fmt == "json":
        from tsinspect.archive.text import json_dumps

        return json_dumps(report.to_json(), separators=(",", ":")) + "\n"
    if fmt == "md":
        from tsinspect.report.markdown import render_markdown

        return render_markdown(report)
    from tsinspect.report.html import render_html

    return render_html(report)


def write_new(path: str, text: str, force: bool) -> None:
    """Create ``path`` (never through an existing name or link unless ``force``, then replacing the name itself)."""
    if not force:
        with open(path, "x", encoding="utf-8") as out:
            out.write(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tsinspect-report-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
