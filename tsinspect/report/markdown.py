"""The Markdown report, written for GitHub: tables, fenced code, ``<details>`` for the long parts.

Archive text is escaped for its context: in running text and table cells Markdown punctuation is
backslash-escaped and ``& < >`` become entities (so no name can start a link, an image or HTML); in fenced
blocks the fence is longer than any run of backticks inside; ``<summary>`` text is HTML-escaped.
"""

from __future__ import annotations

import html
import re

import tsinspect
from tsinspect.archive.modules import short_type
from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.report import common
from tsinspect.ir.lines import graph_lines, text_of
from tsinspect.report.model import Report

# Markdown punctuation that can start markup anywhere on a line; "_" only at a word boundary.
_INLINE = re.compile(r"[\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|[&<>]")
_LEADING = re.compile(r"^([#+=-]|\d+(?=[.)]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md(text) -> str:
    """Archive text inside a line or a table cell: one line, nothing it contains is markup."""
    flat = printable(str(text)).replace("\n", " ")
    return _INLINE.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), flat)


def md_paragraph(text) -> str:
    """Like ``md``, for text that starts a line: it cannot start a heading or a list either."""
    return _LEADING.sub(lambda m: m.group() + "\\" if m.group().isdigit() else "\\" + m.group(), md(text), count=1)


def fence(body: str, lang: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body}\n{ticks}"


def details(summary: str, body: str, open_: bool = False) -> str:
    """``summary`` is already HTML; ``body`` Markdown."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n\n{body}\n\n</details>"


def table(head: list[str], rows: list[list[str]]) -> str:
    align = ["---:" if h.startswith(">") else "---" for h in head]
    lines = ["| " + " | ".join(h.lstrip(">") for h in head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _more(shown: int, total: int, what: str) -> str:
    return (f"\n\n*Showing the first {shown} of {total} {what}; the JSON report (`--format json`) has all of them.*"
            if total > shown else "")


def _where(file: str | None, line: int | None) -> str:
    return md(f"{file}:{line}") if file else ""


class _Writer:
    def __init__(self, report: Report):
        self.r, self.s = report, report.summary
        self.ir_left = report.limits.ir_total_lines

    def document(self) -> str:
        s = self.s
        parts = [f"# tsinspect report: {md(self.r.title)}",
                 f"`{human_bytes(s.file_size)}` {md(s.path)} · {md(s.format)} · generated {md(self.r.generated)} "
                 f"by tsinspect {md(tsinspect.__version__)}",
                 " · ".join(f"[{title}](#{anchor_of(title)})" for _, title in common.sections(self.r))]
        for anchor, _ in common.sections(self.r):
            parts.append(getattr(self, f"section_{anchor}")())
        return "\n\n".join(p for p in parts if p) + "\n"

    def section_summary(self) -> str:
        s, r = self.s, self.r
        facts = [(label, md(text)) for label, text in common.archive_facts(s)]
        unsafe = len(r.scan.unsafe)
        facts.append(("safety", f"**{counted(unsafe, 'unsafe finding')}**" if unsafe
                      else "no file or raw-memory operations"
                      if r.code else "no code/"))
        facts.append(("IR", self.ir_status()))
        facts.append(("problems", str(len(s.problems)) if s.problems else "none"))
        out = ["## Summary", table(["", ""], [[f"**{k}**", v] for k, v in facts])]
        rows = common.weight_rows(s)
        if rows:
            total, largest = max(s.weight_bytes, 1), max(max(w.bytes for w in rows), 1)
            out.append("### Where the weights' bytes go")
            out.append(table(["module", ">tensors", ">bytes", ">share", ""], [
                [md(w.label), str(w.tensors), human_bytes(w.bytes), f"{100 * w.bytes / total:.1f}%",
                 "█" * max(1, round(20 * w.bytes / largest))] for w in rows]))
        return "\n\n".join(out)

    def ir_status(self) -> str:
        ir = self.r.ir
        if ir.skipped:
            return md(ir.skipped)
        doc = ir.document
        if ir.loaded:
            warning = f"; **{md(ir.sandbox_warning)}**" if ir.sandbox_warning else ""
            return md(ir.how) + warning
        return f"**{md(doc.get('load'))}**: " + md((doc.get("error") or {}).get("message", ""))

    def section_diff(self) -> str:
        from tsinspect.report.markdown_diff import diff_section

        return diff_section(self.r.diff)

    def section_safety(self) -> str:
        scan, problems = self.r.scan, self.s.problems
        out = ["## Safety and problems"]
        if scan.unsafe:
            out.append(f"> **Unsafe:** {md(scan.refusal())}")
        elif self.r.code:
            out.append("Nothing in code/ reads or writes files or raw memory, and every `__setstate__` only assigns "
                       "attributes and calls ops of torch's own namespaces.")
        if scan.findings:
            out.append("### Findings of the static scan of code/")
            out.append(table(["verdict", "kind", "where", "what", "detail"], [
                [f"**{f.verdict}**" if f.verdict == "unsafe" else f.verdict, md(f.kind), _where(f.file, f.line),
                 md(f.what), md(f.detail + (f" (via {' -> '.join(f.via)})" if f.via else ""))]
                for f in scan.findings]))
        out.append("### Problems found while reading the archive")
        out.append(table(["kind", "member", "detail"], [[md(p.kind), md(p.member or ""), md(p.detail)]
                                                         for p in problems]) if problems else "None.")
        return "\n\n".join(out)

    def section_modules(self) -> str:
        rows = common.module_rows(self.s)
        limit = self.r.limits.modules
        body = [["&nbsp;&nbsp;" * row.depth + md(row.name), md(row.type), str(row.tensors or ""),
                 human_bytes(row.bytes) if row.bytes else "", md(", ".join(row.methods))] for row in rows[:limit]]
        return ("## Modules\n\nTensors and bytes count the whole subtree; bytes are distinct storages.\n\n"
                + table(["module", "type", ">tensors", ">bytes", "methods"], body) + _more(limit, len(rows), "modules"))

    def section_tensors(self) -> str:
        s, limit = self.s, self.r.limits.tensors
        out = ["## Tensors"]
        head = ["name", "kind", "dtype", "shape", ">bytes", "storage", "notes"]
        if not s.tensors:
            out.append("No tensors in data.pkl.")
        else:
            out.append(table(head, [self.tensor_row(t, s.tensor_kinds.get(t.name, "attribute"))
                                    for t in s.tensors[:limit]]) + _more(limit, len(s.tensors), "tensors"))
        for title, tensors in (("Constants (constants.pkl)", s.constants),
                               ("Traced example inputs (traced\\_inputs.pkl)", s.traced_inputs)):
            if tensors:
                out.append(f"### {title}")
                out.append(table(head, [self.tensor_row(t, "") for t in tensors[:limit]])
                           + _more(limit, len(tensors), "tensors"))
        return "\n\n".join(out)

    @staticmethod
    def tensor_row(t, kind: str) -> list[str]:
        notes = [f"also {', '.join(t.aliases)}" if t.aliases else "", t.quantization or "",
                 f"on {t.device}" if t.device != "cpu" else "", f"problem: {t.problem}" if t.problem else ""]
        storage = f"{t.record or t.storage_key}" + (f" +{t.offset}" if t.offset else "")
        return [md(t.name), md(kind), md(t.dtype), md(common.shape(t.shape)), human_bytes(t.nbytes), md(storage),
                md("; ".join(n for n in notes if n))]

    def section_code(self) -> str:
        out = ["## Code", "The TorchScript code of `code/`; the comment after each line is the original file:line "
               "its debug info records."]
        shown = common.shown_code(self.r)
        small = sum(len(f.lines) for f in self.r.code) <= 400
        for f in self.r.code:
            note = f", {html.escape(printable(f.note))}" if f.note else ""
            title = f"{html.escape(printable(f.name))} ({len(f.lines)} lines{note})"
            if f.name not in shown:
                out.append(details(title, "Not shown (the report's code budget is spent); the JSON report has it."))
                continue
            width = max((len(printable(t, keep_lines=True)) for t in f.lines), default=0)
            lines = []
            for text, origin in zip(f.lines, f.origins):
                text = printable(text, keep_lines=True)
                if origin is not None and origin.file:
                    text = f"{text.ljust(min(width, 88))}  # {printable(common.basename(origin.file))}:{origin.line}"
                lines.append(text)
            out.append(details(title, fence("\n".join(lines), "python"), open_=small))
        return "\n\n".join(out)

    def section_ops(self) -> str:
        ir, limit = self.r.ir, self.r.limits.ops
        source = "from the IR" if ir.ops_from == "ir" else "from code/ (not from the IR: the calls the code makes)"
        rows = [[str(entry.count), md(entry.kind),
                 md("; ".join(label + "".join(f" {file}:{','.join(map(str, lines))}" for file, lines in files)
                              for label, files in common.op_sites(entry)))] for entry in ir.ops[:limit]]
        total = sum(x.count for x in ir.ops)
        return (f"## Operators\n\n{len(ir.ops)} operators, {total} uses, {source}; each module type counted once.\n\n"
                + table([">count", "op", "used in"], rows) + _more(limit, len(ir.ops), "operators"))

    def section_ir(self) -> str:
        ir = self.r.ir
        out = ["## IR"]
        doc = ir.document
        if ir.skipped:
            out.append(f"No IR: {md(ir.skipped)}.")
        elif not ir.loaded:
            error = doc.get("error") or {}
            message, hint = error.get("message", ""), error.get("hint") or ""
            out.append(f"> **Not loaded ({md(doc.get('load'))}):** "
                       + md(message.rstrip(".") + (f"; {hint}" if hint and hint not in message else "") + "."))
        if not ir.loaded:
            if ir.fallback:
                out.append("The methods of code/ and the ops they call, read with `ast` (nothing was loaded or run):")
            for m in ir.fallback:
                body = "\n".join(f"{m.file}:{u.line}  {u.op}" for u in m.ops)
                out.append(details(html.escape(printable(m.qualname)) + f" ({len(m.ops)} call{'' if len(m.ops) == 1 else 's'})",
                                   fence(printable(body, keep_lines=True))))
            return "\n\n".join(out)
        out.append(md(ir.how[:1].upper() + ir.how[1:]) + ". One block per method of each module type.")
        out += [md_paragraph(note) for note in doc.get("notes", [])]
        for type_name, paths, methods in common.ir_types(self.r):
            out.append(f"### {md(short_type(type_name))} ({md(common.instances(paths))})")
            out += [self.ir_method(m) for m in methods] or ["*No methods.*"]
        return "\n\n".join(out)

    def ir_method(self, method) -> str:
        title = html.escape(printable(method.schema or method.name))
        if method.error or method.graph is None:
            return details(title, md(method.error or "no graph"))
        lines, limit = [], min(self.r.limits.ir_lines, self.ir_left)
        for count, (depth, pieces, source) in enumerate(graph_lines(method.graph)):
            if count == limit:
                lines.append("... more nodes: the JSON report has the whole graph")
                break
            text = "  " * depth + text_of(pieces)
            if source is not None and (source.code_file or source.file):
                where = [f"{source.code_file}:{source.code_line}"] if source.code_file else []
                where += [f"{common.basename(source.file)}:{source.line}"] if source.file else []
                text += "  # " + " <- ".join(where)
            lines.append(text)
        self.ir_left = max(0, self.ir_left - len(lines))
        nodes = sum(1 for _ in method.graph.walk())
        return details(f"{title} ({nodes} nodes)", fence(printable("\n".join(lines), keep_lines=True)))


def anchor_of(title: str) -> str:
    """GitHub's heading anchor for one of our section titles."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def render_markdown(report: Report) -> str:
    return _Writer(report).document()
