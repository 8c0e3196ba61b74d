"""The Markdown summary for a pull-request comment: always within GitHub's 65,536-character limit.

What a reviewer needs first: what the archive is, its safety verdict, and the findings in their own
code, each with its place, message, fix and source excerpt; then the rest counted (library findings by
package, findings that did not fit), and a pointer to the full report. Blocks are added whole, in order,
while they fit the budget, so the Markdown is never cut inside a fence or a ``<details>``. Every piece of
archive text in a block is bounded first, so one hostile name cannot take the whole budget.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.report.common import shorten
from tsinspect.report.findings import USER, entries
from tsinspect.report.markdown import details, fence, md, table
from tsinspect.report.model import Report

GITHUB_LIMIT = 65_536  # characters of a comment body
BUDGET = GITHUB_LIMIT - 2_000  # room for a bot's own header around the report
MAX_TEXT = 600  # characters of one message, fix or source line shown
MAX_EXCERPT = 24  # source lines per finding
_URL_SAFE = ":/?#@!$&'*+,;=%~.-_"  # kept as they are in a link; "()<>[] " and the rest are percent-encoded


def length(text: str) -> int:
    """GitHub counts the body in UTF-16 code units (a JavaScript string's length), not code points."""
    return len(text.encode("utf-16-le")) // 2


def _cut(text, limit: int = MAX_TEXT) -> str:
    return shorten(text, limit)


def render_summary(report: Report, link: str | None = None, budget: int = BUDGET) -> str:
    found = entries(report)
    head = _head(report, found)
    tail = _tail(report, link)
    blocks: list[str] = []
    used = length(head) + length(tail) + 400  # and the closing "not shown" line
    shown = 0
    for entry in found:
        block = _block(entry)
        if used + length(block) + 2 > budget:
            break
        blocks.append(block)
        used += length(block) + 2
        shown += 1
    rest = found[shown:]
    if rest:
        by_origin: dict[str, int] = {}
        for e in rest:
            by_origin[e.origin] = by_origin.get(e.origin, 0) + 1
        parts = ", ".join(f"{n} {_place(o)}" for o, n in by_origin.items())
        blocks.append(f"*{counted(len(rest), 'more finding')} not shown here ({md(_cut(parts, 300))}): "
                      "see the full report.*")
    text = "\n\n".join([head, *blocks, tail]) + "\n"
    assert length(text) <= budget, length(text)  # the blocks were sized to fit; a bug otherwise
    return text


def _head(report: Report, found) -> str:
    s = report.summary
    lines = [f"### tsinspect: {md(_cut(report.title, 200))}"]
    facts = [f"`{human_bytes(s.file_size)}`", md(s.format)]
    if s.modules is not None:
        facts.append(counted(sum(1 for _ in s.modules.walk()), "module"))
    if s.tensors:
        facts.append(f"{counted(len(s.tensors), 'tensor')} ({human_bytes(s.weight_bytes)})")
    if s.methods:
        facts.append(counted(len(s.methods), "method"))
    lines.append(" · ".join(facts))
    rows = [["safety", _safety(report)], ["IR", _ir(report)]]
    if s.problems:
        rows.append(["problems", counted(len(s.problems), "problem") + " reading the archive"])
    d = report.diff
    if d is not None:
        rows.insert(0, ["diff", _diff_line(d, found)])
    lines.append(table(["", ""], [[f"**{k}**", v] for k, v in rows]))
    if d is not None and d.findings:
        user = sum(1 for e in found if e.part == "diff" and e.origin == USER)
        lines.append(f"#### {counted(user, 'finding')} in your code" if user else
                     "#### No findings in your code; library findings follow")
    return "\n\n".join(lines)


def _place(origin: str) -> str:
    return {USER: "in your code", "archive": "about the archive as a whole"}.get(origin, f"in {origin}")


def _diff_line(d, found) -> str:
    if not d.findings:
        return "no differences" + (": the trace keeps every branch and loop the script has"
                                   if d.mode == "trace_vs_script" else "")
    kinds = ", ".join(f"{n} {k}" for k, n in d.counts().items())
    libs: dict[str, int] = {}
    for e in found:
        if e.part == "diff" and e.origin != USER:
            libs[e.origin] = libs.get(e.origin, 0) + 1
    lib = "; " + ", ".join(f"{n} {_place(o)}" for o, n in libs.items()) if libs else ""
    mode = {"trace_vs_script": "trace vs script", "export": "TorchScript vs export"}.get(d.mode, "structural diff")
    return f"**{counted(len(d.findings), 'finding')}** ({mode}): {md(_cut(kinds + lib, 400))}"


def _safety(report: Report) -> str:
    scan = report.scan
    if not report.code:
        return "no code/: nothing runs at load time"
    if scan.unsafe:
        return f"**{counted(len(scan.unsafe), 'unsafe finding')}**: load-time code touches files or raw memory"
    return "no file or raw-memory operations in code/"


def _ir(report: Report) -> str:
    ir = report.ir
    if ir.skipped:
        return md(_cut(ir.skipped, 200))
    doc = ir.document or {}
    if ir.loaded:
        return md(f"loaded with torch {doc.get('torch_version')} ({doc.get('load')} tensors) in a sandboxed child")
    return f"**{md(doc.get('load'))}**: " + md(_cut((doc.get("error") or {}).get("message", ""), 300))


def _block(entry) -> str:
    where = f" at {code_span(_cut(entry.where, 200))}" if entry.where else ""
    sev = f" ({md(entry.severity)})" if entry.severity else ""
    origin = "" if entry.origin in (USER, "archive") else f" [{md(entry.origin)}]"
    method = f" in {md(_cut(entry.method, 200))}" if entry.method else ""
    lines = [f"- **{md(entry.kind)}**{sev}{origin}{where}{method}: {md(_cut(entry.message))}"]
    if entry.fix:
        lines.append(f"  *Fix:* {md(_cut(entry.fix))}")
    excerpt = _excerpt(entry.finding) if entry.part == "diff" else ""
    if excerpt:
        lines.append("")
        lines.append("  " + details("source", fence(excerpt, "diff")).replace("\n", "\n  "))
    return "\n".join(lines)


def code_span(text: str) -> str:
    """Archive text as inline code: backslashes and markup are literal there, so nothing is escaped but
    the delimiter, which is longer than any run of backticks inside."""
    flat = printable(text).replace("\n", " ")
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _excerpt(f) -> str:
    lines = f.excerpt or ([(f.line, f.code, "")] if f.code and f.line else [])
    if not lines and isinstance(f.details, dict) and f.details.get("diff"):
        body = [_cut(printable(t), 200) for t in f.details["diff"][:MAX_EXCERPT]]
        return "\n".join(body)
    signs = {"kept": "+", "dropped": "-"}
    body = [f"{signs.get(mark, ' ')} {line:>5} | {_cut(printable(text), 200)}" for line, text, mark in lines[:MAX_EXCERPT]]
    if len(lines) > MAX_EXCERPT:
        body.append(f"  ... {len(lines) - MAX_EXCERPT} more lines")
    return "\n".join(body)


def _tail(report: Report, link: str | None) -> str:
    s = report.summary
    if link and re.match(r"https?://", link) and printable(link) == link and len(link) <= 2000:
        pointer = f"[Full report]({quote(link, safe=_URL_SAFE)})"
    elif link:
        pointer = f"Full report: {md(_cut(link, 1000))}"
    else:
        other = f" --diff {_arg(report.diff.b if report.diff.a == s.path else report.diff.a)}" if report.diff else ""
        pointer = "Full report: " + code_span(f"tsinspect report {_arg(s.path)}{other} -o report.html")
    return f"---\n<sub>{pointer} · generated {md(report.generated)} by tsinspect</sub>"


def _arg(path: str) -> str:
    """A path for the suggested command line, shortened to its name when long."""
    return _cut(os.path.basename(path) if len(path) > 120 else path, 120)
