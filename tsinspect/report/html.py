"""The HTML report: one self-contained file (inline CSS and script, no network requests), escaped throughout.

A Content-Security-Policy allows only the page's own inline style and its one script (by hash), so even
text that slipped past escaping could neither run nor load anything. Layout: a sticky navigation with a
filter box beside (wide screens) or above (narrow screens) the sections of ``common.sections``.
"""

from __future__ import annotations

import base64
import hashlib
import html
from importlib import resources

from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from pygments.token import STANDARD_TYPES

import tsinspect
from tsinspect.archive.modules import short_type
from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.report import common
from tsinspect.ir.lines import graph_lines
from tsinspect.report.findings import USER, entries
from tsinspect.report.model import Report

LIGHT_STYLE, DARK_STYLE = "default", "github-dark"


def e(text) -> str:
    """Archive text made safe for HTML: control characters shown escaped, markup characters as entities."""
    return html.escape(printable(str(text)), quote=True)


def _asset(name: str) -> str:
    return resources.files("tsinspect.report").joinpath("assets", name).read_text(encoding="utf-8")


def _pygments_css() -> str:
    def rules(style: str) -> str:
        defs = HtmlFormatter(style=style).get_style_defs(".hl")
        return "\n".join(line for line in defs.splitlines() if line.startswith(".hl ."))

    return f"{rules(LIGHT_STYLE)}\n@media (prefers-color-scheme: dark) {{\n{rules(DARK_STYLE)}\n}}"


def _token_class(ttype) -> str:
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    return STANDARD_TYPES[ttype]


def highlight_lines(text: str) -> list[str]:
    """Python source as one HTML string per line (pygments token classes under ``.hl``)."""
    lines: list[list[str]] = [[]]
    for ttype, value in PythonLexer(stripnl=False, ensurenl=False).get_tokens(text):
        cls = _token_class(ttype)
        for i, part in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if part:
                body = html.escape(printable(part, keep_lines=True))
                lines[-1].append(f'<span class="{cls}">{body}</span>' if cls else body)
    return ["".join(parts) for parts in lines]


class _Writer:
    def __init__(self, report: Report):
        self.r = report
        self.s = report.summary
        self.code_ids = {f.name: i for i, f in enumerate(report.code)}
        self.ir_left = report.limits.ir_total_lines
        self.findings = entries(report)
        self.anchors = {id(x.finding): x.anchor for x in self.findings}

    # -- small pieces ---------------------------------------------------------------------------------
    def code_link(self, file: str | None, line: int | None) -> str:
        if not file:
            return ""
        text = e(f"{file}:{line}" if line else file)
        if file in self.code_ids and line:
            return f'<a href="#code-{self.code_ids[file]}-L{line}">{text}</a>'
        return text

    def line_link(self, file: str, line: int) -> str:
        """Just the line number, linked to the code line."""
        if file in self.code_ids:
            return f'<a href="#code-{self.code_ids[file]}-L{line}">{line}</a>'
        return str(line)

    def anchor_attr(self, finding) -> str:
        """`` id="finding-N"`` for a finding the index links to, else nothing."""
        anchor = self.anchors.get(id(finding))
        return f' id="{anchor}"' if anchor else ""

    @staticmethod
    def origin(file: str | None, line: int | None, text: str = "") -> str:
        if not file:
            return ""
        title = e(f"{file}:{line}") + (f"&#10;{e(text)}" if text else "")
        return f'<span title="{title}">{e(common.basename(file))}:{e(line)}</span>'

    @staticmethod
    def table(head: list[str], rows: list[str], filterable: bool = True, cls: str = "") -> str:
        heads = "".join(f'<th class="num">{h[1:]}</th>' if h.startswith(">") else f"<th>{h}</th>" for h in head)
        classes = " ".join(c for c in ("filter" if filterable else "", cls) if c)
        return (f'<div class="scroll"><table class="{classes}"><thead><tr>{heads}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')

    @staticmethod
    def more(shown: int, total: int, what: str) -> str:
        if total <= shown:
            return ""
        return (f'<p class="note">Showing the first {shown} of {total} {what}; the JSON report '
                f"(<code>--format json</code>) has all of them.</p>")

    # -- document -------------------------------------------------------------------------------------
    def document(self) -> str:
        script = _asset("report.js")
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"
        body = "\n".join([self.findings_index()] + [getattr(self, f"section_{anchor}")()
                                                    for anchor, _ in common.sections(self.r)])
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
                f'<meta name="generator" content="tsinspect {e(tsinspect.__version__)}">\n'
                f"<title>tsinspect report: {e(self.r.title)}</title>\n"
                f"<style>\n{_asset('report.css')}\n{_pygments_css()}\n</style>\n</head>\n<body>\n"
                f"{self.header()}\n<div class=\"layout\">\n{self.nav()}\n<main>\n{body}\n</main>\n</div>\n"
                f"<footer>Generated by tsinspect {e(tsinspect.__version__)} on {e(self.r.generated)}. "
                f"Nothing in this report was run: it was read from the archive"
                f"{' and from the IR torch built in a sandboxed child process' if self.r.ir.from_torch else ''}."
                f"</footer>\n<script>{script}</script>\n</body>\n</html>\n")

    def header(self) -> str:
        s = self.s
        facts = [e(s.path), human_bytes(s.file_size), e(s.format)]
        if self.r.diff is not None:
            facts.append(f"diffed with {e(self.r.diff.b if self.r.diff.a == s.path else self.r.diff.a)}")
        return (f'<header class="top"><h1>{e(self.r.title)}</h1>'
                f'<p>{" · ".join(facts)} · report generated {e(self.r.generated)}</p></header>')

    def nav(self) -> str:
        counts = {"tensors": (len(self.s.tensors), False), "code": (len(self.r.code), False),
                  "modules": (len(common.module_rows(self.s)), False), "ops": (len(self.r.ir.ops), False),
                  "safety": (len(self.r.scan.unsafe) + len(self.s.problems),
                             bool(self.r.scan.unsafe or self.s.problems))}
        if self.r.diff is not None:
            counts["diff"] = (len(self.r.diff.findings), bool(self.r.diff.findings))
        items = []
        if self.findings:
            items.append(f'<li><a href="#findings"><span>Findings</span><span class="count bad">'
                         f"{len(self.findings)}</span></a></li>")
        for anchor, title in common.sections(self.r):
            count, bad = counts.get(anchor, (None, False))
            badge = f'<span class="count{" bad" if bad else ""}">{count}</span>' if count is not None else ""
            items.append(f'<li><a href="#{anchor}"><span>{title}</span>{badge}</a></li>')
        return (f'<nav id="toc" aria-label="Sections"><input id="q" type="search" placeholder="Filter rows and lines"'
                f' aria-label="Filter the report"><span id="q-status" role="status"></span>'
                f'<ul>{"".join(items)}</ul></nav>')

    # -- sections -------------------------------------------------------------------------------------
    def findings_index(self) -> str:
        """Every finding in one table at the top, each row linking to its details (collapsed below)."""
        if not self.findings:
            return ""
        severities = any(x.severity for x in self.findings)
        rows = []
        for n, x in enumerate(self.findings, 1):
            origin = "your code" if x.origin == USER else x.origin
            method = (x.method or "").rsplit(".", 1)[-1]
            where = e(x.where) + (f'<br><span class="muted">{e(method)}</span>' if method else "")
            severity = f"<td>{e(x.severity or '')}</td>" if severities else ""
            rows.append(f'<tr><td class="num"><a href="#{x.anchor}">{n}</a></td>'
                        f'<td><a href="#{x.anchor}">{e(x.kind)}</a></td>{severity}<td>{e(origin)}</td>'
                        f'<td class="mono">{where}</td><td class="what">{e(common.shorten(x.message, 140))}</td></tr>')
        user = sum(1 for x in self.findings if x.origin == USER)
        mine = f", {user} in your code" if user else ""
        head = ["#", "kind"] + (["severity"] if severities else []) + ["origin", "where", "what"]
        return (f'<section id="findings"><h2>Findings <span class="muted">({len(self.findings)}{mine})</span></h2>'
                f'<p class="note">In the order to read them: your code first. Each links to its details below.</p>'
                f'{self.table(head, rows, cls="index")}</section>')

    def section_summary(self) -> str:
        s = self.s
        facts = [(label, e(text)) for label, text in common.archive_facts(s)]
        facts.append(("safety", self.verdict_text()))
        facts.append(("IR", self.ir_status()))
        facts.append(("problems", f'<span class="warn">{len(s.problems)}</span>' if s.problems else "none"))
        body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        out = [f'<section id="summary"><h2>Summary</h2><dl class="facts">{body}</dl>']
        rows = common.weight_rows(s)
        if rows:
            total, largest = max(s.weight_bytes, 1), max(max(w.bytes for w in rows), 1)
            out.append("<h3>Where the weights' bytes go</h3>")
            out.append(self.table(["module", ">tensors", ">bytes", ">share", ""], [
                f'<tr><td class="name mono">{e(w.label)}</td><td class="num">{w.tensors}</td>'
                f'<td class="num">{human_bytes(w.bytes)}</td><td class="num">{100 * w.bytes / total:.1f}%</td>'
                f'<td><span class="bar" style="width:{max(1, round(160 * w.bytes / largest))}px"></span></td></tr>'
                for w in rows], filterable=False, cls="compact"))
        return "".join(out) + "</section>"

    def verdict_text(self) -> str:
        scan = self.r.scan
        if not self.r.code:
            return "no code/: nothing runs at load time"
        if scan.unsafe:
            return (f'<span class="bad">{counted(len(scan.unsafe), "unsafe finding")}</span>: '
                    'code/ runs file or raw-memory '
                    f'operations (<a href="#safety">details</a>)')
        return '<span class="good">no file or raw-memory operations in code/</span>'

    def ir_status(self) -> str:
        ir = self.r.ir
        if ir.skipped:
            return e(ir.skipped)
        doc = ir.document
        if ir.loaded:
            warning = f'; <span class="bad">{e(ir.sandbox_warning)}</span>' if ir.sandbox_warning else ""
            return e(ir.how) + warning
        error = doc.get("error") or {}
        return f'<span class="bad">{e(doc.get("load"))}</span>: {e(error.get("message", ""))}'

    def section_diff(self) -> str:
        from tsinspect.report.html_diff import diff_section

        return diff_section(self)

    def section_safety(self) -> str:
        scan, problems = self.r.scan, self.s.problems
        out = ['<section id="safety"><h2>Safety and problems</h2>']
        if scan.unsafe:
            out.append(f'<div class="box bad">{e(scan.refusal())}</div>')
        elif self.r.code:
            out.append('<div class="box good">Nothing in code/ reads or writes files or raw memory, and every '
                       "<code>__setstate__</code> only assigns attributes and calls ops of torch's own "
                       "namespaces.</div>")
        if scan.findings:
            out.append("<h3>Findings of the static scan of code/</h3>")
            out.append(self.table(["verdict", "kind", "where", "what", "detail"], [
                f'<tr{self.anchor_attr(f)}><td><span class="badge {e(f.verdict)}">{e(f.verdict)}</span></td>'
                f'<td>{e(f.kind)}</td>'
                f'<td class="mono">{self.code_link(f.file, f.line)}</td><td class="mono">{e(f.what)}</td>'
                f'<td>{e(f.detail)}{e(" (via " + " -> ".join(f.via) + ")") if f.via else ""}</td></tr>'
                for f in scan.findings]))
        out.append("<h3>Problems found while reading the archive</h3>")
        if problems:
            out.append(self.table(["kind", "member", "detail"], [
                f'<tr><td class="warn">{e(p.kind)}</td><td class="mono name">{e(p.member or "")}</td>'
                f"<td>{e(p.detail)}</td></tr>" for p in problems]))
        else:
            out.append('<p class="muted">None: the zip structure, pickles, tensors and debug info are consistent.</p>')
        return "".join(out) + "</section>"

    def section_modules(self) -> str:
        rows = common.module_rows(self.s)
        limit = self.r.limits.modules
        body = [f'<tr><td class="name mono" style="padding-left:{0.6 + 1.1 * row.depth:.1f}rem" '
                f'title="{e(row.path or "<root>")}">{e(row.name)}</td><td class="mono">{e(row.type)}</td>'
                f'<td class="num">{row.tensors or ""}</td><td class="num">{human_bytes(row.bytes) if row.bytes else ""}'
                f'</td><td class="mono">{e(", ".join(row.methods))}</td></tr>' for row in rows[:limit]]
        return (f'<section id="modules"><h2>Modules</h2>'
                f'<p class="note">Tensors and bytes count the whole subtree; bytes are distinct storages.</p>'
                f'{self.table(["module", "type", ">tensors", ">bytes", "methods"], body)}'
                f'{self.more(limit, len(rows), "modules")}</section>')

    def section_tensors(self) -> str:
        s, limit = self.s, self.r.limits.tensors
        out = ['<section id="tensors"><h2>Tensors</h2>']
        if not s.tensors:
            out.append('<p class="muted">No tensors in data.pkl.</p>')
        else:
            out.append(self.table(["name", "kind", "dtype", "shape", ">bytes", "storage", "notes"],
                                  [self.tensor_row(t, s.tensor_kinds.get(t.name, "attribute"))
                                   for t in s.tensors[:limit]]))
            out.append(self.more(limit, len(s.tensors), "tensors"))
        for title, tensors in (("Constants (constants.pkl, CONSTANTS.c&lt;i&gt; in code)", s.constants),
                               ("Traced example inputs (traced_inputs.pkl)", s.traced_inputs)):
            if tensors:
                out.append(f"<h3>{title}</h3>")
                out.append(self.table(["name", "kind", "dtype", "shape", ">bytes", "storage", "notes"],
                                      [self.tensor_row(t, "") for t in tensors[:limit]]))
                out.append(self.more(limit, len(tensors), "tensors"))
        return "".join(out) + "</section>"

    @staticmethod
    def tensor_row(t, kind: str) -> str:
        notes = [f"also {', '.join(t.aliases)}" if t.aliases else "", t.quantization or "",
                 f"on {t.device}" if t.device != "cpu" else ""]
        note = e("; ".join(n for n in notes if n))
        if t.problem:
            note += f' <span class="bad">{e(t.problem)}</span>'
        storage = f"{t.record or t.storage_key}" + (f" +{t.offset}" if t.offset else "")
        return (f'<tr><td class="name mono">{e(t.name)}</td><td>{e(kind)}</td><td class="mono">{e(t.dtype)}</td>'
                f'<td class="mono">{e(common.shape(t.shape))}</td><td class="num">{human_bytes(t.nbytes)}</td>'
                f'<td class="mono">{e(storage)}</td><td>{note}</td></tr>')

    def section_code(self) -> str:
        out = ['<section id="code"><h2>Code</h2><p class="note">The TorchScript code the archive carries '
               "(<code>code/</code>), each line with the original file:line its debug info records "
               "(hover for the full path and source line).</p>"]
        shown = common.shown_code(self.r)
        small = sum(len(f.lines) for f in self.r.code) <= 400
        for i, f in enumerate(self.r.code):
            head = (f'<summary id="code-{i}"><span class="mono">{e(f.name)}</span> <span class="muted">'
                    f'{len(f.lines)} lines{", " + e(f.note) if f.note else ""}</span></summary>')
            if f.name not in shown:
                out.append(f'<details>{head}<p class="note" style="padding:0 .75rem">Not shown: the report shows '
                           f'{self.r.limits.code_lines} lines of code in all; the JSON report has every line.</p>'
                           "</details>")
                continue
            rows = []
            for n, (text, origin) in enumerate(zip(highlight_lines("\n".join(f.lines)), f.origins), 1):
                where = self.origin(origin.file, origin.line, origin.text) if origin else ""
                rows.append(f'<tr class="line" id="code-{i}-L{n}"><td class="ln"><a href="#code-{i}-L{n}">{n}'
                            f'</a></td><td class="src hl">{text}</td><td class="origin">{where}</td></tr>')
            out.append(f'<details class="searchable"{" open" if small else ""}>{head}<div class="scroll">'
                       f'<table class="code mono"><tbody>{"".join(rows)}</tbody></table></div></details>')
        return "".join(out) + "</section>"

    def section_ops(self) -> str:
        ir, limit = self.r.ir, self.r.limits.ops
        source = ("from the IR" if ir.ops_from == "ir" else
                  "from code/ (not from the IR: the calls the code makes)")
        rows = []
        for entry in ir.ops[:limit]:
            sites = "; ".join(e(label) + "".join(f" {e(file)}:" + ",".join(self.line_link(file, n) for n in lines)
                                                 for file, lines in files)
                              for label, files in common.op_sites(entry))
            rows.append(f'<tr><td class="num">{entry.count}</td><td class="mono">{e(entry.kind)}</td>'
                        f'<td class="mono">{sites}</td></tr>')
        total = sum(x.count for x in ir.ops)
        return (f'<section id="ops"><h2>Operators</h2><p class="note">{len(ir.ops)} operators, {total} uses, '
                f"{source}; each module type counted once.</p>"
                f'{self.table([">count", "op", "used in"], rows)}{self.more(limit, len(ir.ops), "operators")}'
                "</section>")

    def section_ir(self) -> str:
        ir = self.r.ir
        out = ['<section id="ir"><h2>IR</h2>']
        if ir.skipped:
            out.append(f'<p class="muted">No IR: {e(ir.skipped)}.</p>')
            out.append(self.fallback() if ir.fallback else "")
            return "".join(out) + "</section>"
        doc = ir.document
        if not ir.loaded:
            error = doc.get("error") or {}
            message, hint = error.get("message", ""), error.get("hint") or ""
            text = e(message.rstrip(".") + (f"; {hint}" if hint and hint not in message else "")) + "."
            if doc.get("load") == "refused":
                text += ' See <a href="#safety">the findings</a>.'
            out.append(f'<div class="box bad">Not loaded ({e(doc.get("load"))}): {text}</div>')
            out.append(self.fallback())
            return "".join(out) + "</section>"
        out.append(f'<p class="note">{e(ir.how[:1].upper() + ir.how[1:])}. One block per method of each module '
                   "type; each line's comment names its code/ line and the original source.</p>")
        out += [f'<p class="note">{e(note)}</p>' for note in doc.get("notes", [])]
        for type_name, paths, methods in common.ir_types(self.r):
            out.append(f'<h3 class="mono">{e(short_type(type_name))} <span class="muted">'
                       f"({e(common.instances(paths))})</span></h3>")
            out += [self.ir_method(method) for method in methods] or ['<p class="muted">No methods.</p>']
        return "".join(out) + "</section>"

    def ir_method(self, method) -> str:
        head = f'<summary class="mono">{e(method.schema or method.name)}'
        if method.error or method.graph is None:
            return f'<details>{head} <span class="bad">{e(method.error or "no graph")}</span></summary></details>'
        lines, limit = [], min(self.r.limits.ir_lines, self.ir_left)
        for count, (depth, pieces, source) in enumerate(graph_lines(method.graph)):
            if count == limit:
                lines.append('<span class="line muted">... more nodes: the JSON report has the whole graph'
                             "</span>")
                break
            text = "".join(f'<span class="{role}">{e(t)}</span>' if role else e(t) for t, role in pieces)
            if source is not None and (source.code_file or source.file):
                parts = [self.code_link(source.code_file, source.code_line)] if source.code_file else []
                if source.file:
                    parts.append(self.origin(source.file, source.line))
                text += f'<span class="where">  # {" &lt;- ".join(parts)}</span>'
            lines.append(f'<span class="line">{"  " * depth}{text}</span>')
        self.ir_left = max(0, self.ir_left - len(lines))
        nodes = sum(1 for _ in method.graph.walk())
        return (f'<details class="searchable">{head} <span class="muted">{nodes} nodes</span></summary>'
                f'<pre class="ir">{"".join(lines)}</pre></details>')

    def fallback(self) -> str:
        out = ['<p class="note">The methods of code/ and the ops they call, read with <code>ast</code> '
               "(nothing was loaded or run):</p>"]
        for m in self.r.ir.fallback:
            lines = "".join(f'<span class="line">{self.code_link(m.file, u.line)}  <span class="kind">{e(u.op)}</span>'
                            f"</span>" for u in m.ops)
            out.append(f'<details class="searchable"><summary class="mono">{e(m.qualname)} <span class="muted">'
                       f'{counted(len(m.ops), "call")}</span></summary><pre class="ir">{lines}</pre></details>')
        return "".join(out)


def render_html(report: Report) -> str:
    return _Writer(report).document()
