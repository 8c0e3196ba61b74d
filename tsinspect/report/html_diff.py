"""The HTML of a diff (``tsinspect.diff.model.DiffResult``): findings by method with source excerpts."""

from __future__ import annotations

from tsinspect.diff.model import SEVERITY_TEXT
from tsinspect.report import common
from tsinspect.report.html import e

_MARKS = {"kept": ("+", "kept"), "dropped": ("-", "dropped")}


def diff_section(w) -> str:
    """``w`` is the HTML writer of html.py (for its links and tables)."""
    d = w.r.diff
    out = [f'<section id="diff"><h2>{common.diff_title(d)}</h2>']
    out.append(w.table(["archive", "kind", "evidence"], [
        f'<tr><td class="mono name">{e(path)}</td><td>{e(kind.get("kind", ""))}</td>'
        f'<td>{e("; ".join(kind.get("evidence", [])))}</td></tr>' for path, kind in d.kinds.items()],
        filterable=False))
    notes = common.diff_notes(d)
    out += [f'<p class="note">{e(note)}</p>' for note in notes]
    head, unexplained = d.verification_lines()
    out += [f'<p class="note">{e(line)}</p>' for line in head]
    out += [f'<div class="box warn">{e(line)}</div>' for line in unexplained]
    if not d.findings:
        message = ("no differences: the trace keeps every branch and loop the script has"
                   if d.mode == "trace_vs_script" else "no differences")
        out.append(f'<div class="box good">{e(message)}</div>')
        return "".join(out) + "</section>"
    counts = ", ".join(f"{n} {kind}" for kind, n in d.counts().items())
    out.append(f'<div class="box warn">{common.counted(len(d.findings), "finding")}: {e(counts)}</div>')
    if d.mode == "structural":  # export and trace diffs: by method, with where and excerpt
        out += [_structural(w, f) for f in d.findings]
        return "".join(out) + "</section>"
    linkable = w.s.path == d.scripted  # code/ locations of findings are in the scripted archive
    for method, findings in d.by_method():  # the user's own files first, then library code
        library = f" (library code: {e(findings[0].package or '?')})" if findings[0].origin != "user" else ""
        out.append(f'<h3 class="mono">{e(method)}{library}</h3>')
        out += [_finding(w, f, linkable) for f in findings]
    return "".join(out) + "</section>"


def _finding(w, f, linkable: bool) -> str:
    where = w.origin(f.file, f.line) if f.file else ""
    code_at = f.details.get("code_location") if isinstance(f.details, dict) else None
    if code_at and linkable:
        file, _, line = code_at.rpartition(":")
        where += f" · {w.code_link(file, int(line) if line.isdigit() else None)}"
    excerpt = f.excerpt or ([(f.line, f.code, "")] if f.code and f.line else [])
    rows = []
    for line, text, mark in excerpt:
        sign, cls = _MARKS.get(mark, (" ", ""))
        rows.append(f'<tr class="line {cls}"><td class="mark">{sign}</td><td class="ln">{line}</td>'
                    f'<td class="src">{e(text)}</td></tr>')
    table = (f'<div class="scroll excerpt"><table class="code mono"><tbody>{"".join(rows)}</tbody></table></div>'
             if rows else "")
    fix = f'<p class="note">fix: {e(f.fix)}</p>' if f.fix else ""
    if f.verdict:
        badge = {"confirmed": "bad", "not reproduced": "good"}.get(f.verdict.get("verdict"), "warn")
        fix += (f'<p><span class="badge {badge}">{e(f.verdict.get("verdict", ""))}</span> '
                f'{e(f.verdict.get("text", ""))}</p>')
    return (f'<details class="searchable"{w.anchor_attr(f)}><summary><span class="badge bad">{e(f.kind)}</span> '
            f'<span class="mono">{where}</span> <span class="note">{e(SEVERITY_TEXT.get(f.severity, f.severity))}'
            f'</span></summary><div style="padding:.5rem .75rem">'
            f"<p>{e(f.message)}</p>{table}{fix}</div></details>")


def _structural(w, f) -> str:
    lines = f.details.get("diff", []) if isinstance(f.details, dict) else []
    body = "".join(f'<span class="line {"dropped" if s.startswith("-") else "kept" if s.startswith("+") else ""}">'
                   f"{e(s)}</span>" for s in lines[:200])
    pre = f'<pre class="ir excerpt">{body}</pre>' if body else ""
    return (f'<details class="searchable"{w.anchor_attr(f)}><summary><span class="badge warn">{e(f.kind)}</span> '
            f'{e(f.message)}</summary>{pre}</details>')
