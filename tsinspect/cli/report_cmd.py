"""``tsinspect report FILE -o OUT``: an HTML, Markdown or JSON report of an archive (``--diff`` adds the
trace-vs-script diff with another). Written only to OUT, never over an existing file without ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from tsinspect.archive.text import human_bytes, printable
from tsinspect.cli import EXIT_FINDINGS, EXIT_OK, UsageError

FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained report (HTML, Markdown or JSON) of an archive, "
                                      "or of a traced/scripted pair with --diff")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="file to write ('-' for stdout); an existing file is kept unless --force")
    p.add_argument("--format", choices=("html", "md", "json"),
                   help="default: from OUT's extension (.html, .md, .json), else html")
    p.add_argument("--diff", metavar="OTHER", help="add the diff with OTHER (the traced or scripted variant)")
    p.add_argument("--verify", action="store_true",
                   help="with --diff: run both archives on generated inputs and give each finding a verdict")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-ir", action="store_true",
                   help="never load the archive with torch: no IR section, operators from code/")
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

    fmt = args.format or FORMATS.get(os.path.splitext(args.output)[1].lower(), "html")
    if args.output != "-" and os.path.lexists(args.output) and not args.force:
        raise UsageError(f"{printable(args.output)} exists; pass --force to replace it")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_tensors < 0:
        raise UsageError("--max-tensors must not be negative")
    options = IROptions(enabled=not args.no_ir, trust=args.trust, libraries=args.library, timeout=args.timeout,
                        memory_limit=args.memory_limit * 1024 * 1024 if args.memory_limit else None)
    report = build_report(args.file, options, args.diff, Limits(tensors=args.max_tensors))
    if args.verify and report.diff is not None:
        from tsinspect.verify.run import verify

        verify(report.diff, trust=args.trust)
    text = render(report, fmt)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_new(args.output, text, args.force)
        print(f"tsinspect: wrote {printable(args.output)} ({fmt}, {human_bytes(len(text.encode()))})", file=sys.stderr)
    if report.unsafe:
        print(f"tsinspect: note: {printable(report.scan.refusal())}", file=sys.stderr)
    findings = report.unsafe or (report.diff is not None and bool(report.diff.findings))
    return EXIT_FINDINGS if findings else EXIT_OK


def render(report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
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
