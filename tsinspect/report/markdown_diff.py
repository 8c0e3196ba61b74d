"""The Markdown of a diff (``tsinspect.diff.model.DiffResult``): findings by method with source excerpts."""

from __future__ import annotations

from tsinspect.archive.text import printable
from tsinspect.diff.model import SEVERITY_TEXT
from tsinspect.report import common
from tsinspect.report.markdown import fence, md, table

_SIGNS = {"kept": "+", "dropped": "-"}


def diff_section(d) -> str:
    out = [f"## {common.diff_title(d)}"]
    out.append(table(["archive", "kind", "evidence"], [[md(path), md(kind.get("kind", "")),
                                                        md("; ".join(kind.get("evidence", [])))]
                                                       for path, kind in d.kinds.items()]))
    notes = common.diff_notes(d)
    out += [f"*{md(note)}*" for note in notes]
    head, unexplained = d.verification_lines()
    out += [f"*{md(line)}*" for line in head] + [f"**{md(line)}**" for line in unexplained]
    if not d.findings:
        out.append("**No differences**" + (": the trace keeps every branch and loop the script has."
                                           if d.mode == "trace_vs_script" else "."))
        return "\n\n".join(out)
    counts = ", ".join(f"{n} {kind}" for kind, n in d.counts().items())
    out.append(f"> **{common.counted(len(d.findings), 'finding')}:** {md(counts)}")
    if d.mode == "structural":  # export and trace diffs: by method, with where and excerpt
        for f in d.findings:
            out.append(f"- **{md(f.kind)}** {md(f.message)}")
            lines = f.details.get("diff", []) if isinstance(f.details, dict) else []
            if lines:
                out.append(fence(printable("\n".join(lines[:200]), keep_lines=True), "diff"))
        return "\n\n".join(out)
    for method, findings in d.by_method():  # the user's own files first, then library code
        library = f" (library code: {md(findings[0].package or '?')})" if findings[0].origin != "user" else ""
        out.append(f"### {md(method)}{library}")
        for f in findings:
            where = f" at {md(common.basename(f.file))}:{f.line}" if f.file else ""
            out.append(f"**{md(f.kind)}**{where} *({md(SEVERITY_TEXT.get(f.severity, f.severity))})*: "
                       f"{md(f.message)}")
            excerpt = f.excerpt or ([(f.line, f.code, "")] if f.code and f.line else [])
            if excerpt:
                body = "\n".join(f"{_SIGNS.get(mark, ' ')} {line:>5} | {text}" for line, text, mark in excerpt)
                out.append(fence(printable(body, keep_lines=True), "diff"))
            if f.fix:
                out.append(f"Fix: {md(f.fix)}")
            if f.verdict:
                out.append(f"**{md(f.verdict.get('verdict', ''))}**: {md(f.verdict.get('text', ''))}")
    return "\n\n".join(out)
