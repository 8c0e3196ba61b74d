"""Text rendering of a DiffResult: findings in report order (the user's own files first, by harm), grouped by
method, with source excerpts marking what the trace kept (+) and dropped (-) and a line on how to fix each;
findings in library code counted per package unless ``show_all``. ``style(text, *names)`` colours; pass the
CLI's Style or ``lambda t, *s: t``.
"""

from __future__ import annotations

from typing import Callable, Iterator

from tsinspect.archive.text import printable
from tsinspect.diff.model import SEVERITY_TEXT, DiffResult, Finding

StyleFn = Callable[..., str]
_KIND_STYLE = {"dropped_branch": ("red", "bold"), "per_iteration_branch": ("yellow", "bold"),
               "unrolled_loop": ("yellow", "bold"), "baked_constant": ("magenta", "bold"),
               "missing_method": ("red", "bold")}
_VERDICT_STYLE = {"confirmed": "red", "not reproduced": "green", "not tested": "yellow"}


def render(result: DiffResult, style: StyleFn, show_all: bool = False) -> Iterator[str]:
    if result.mode == "structural":
        yield from _structural(result, style)
        return
    if result.mode == "export":
        yield f"{style('TorchScript', 'bold')} {printable(result.a)}"
        yield f"{style('exported   ', 'bold')} {printable(result.b)}"
        for note in result.notes:
            yield style(f"note: {printable(note)}", "dim")
        for finding in result.findings:
            if show_all or finding.origin == "user":
                yield from _finding(finding, style)
        yield from _library(result, style, show_all)
        yield ""
        yield summary_line(result)
        return
    yield f"{style('traced  ', 'bold')} {printable(result.traced or '')}"
    yield f"{style('scripted', 'bold')} {printable(result.scripted or '')}"
    yield style(f"analysis: {result.analysis_note or result.analysis}", "dim")
    for note in result.notes:
        yield style(f"note: {printable(note)}", "dim")
    yield from _verification(result, style)
    if not result.findings:
        yield style("no differences: the trace keeps every branch and loop the script has", "green")
        return
    package = None
    for method, findings in result.by_method(library=show_all):
        if findings[0].origin != "user" and findings[0].package != package:
            package = findings[0].package
            yield ""
            yield style(f"-- library code: {printable(package or '?')} --", "bold")
        yield ""
        yield style(printable(method), "bold", "cyan")
        for finding in findings:
            yield from _finding(finding, style)
    yield from _library(result, style, show_all)
    yield ""
    yield summary_line(result)


def _library(result: DiffResult, style: StyleFn, show_all: bool) -> Iterator[str]:
    library = result.library_counts()
    if library and not show_all:
        yield ""
        yield style("library code: " + ", ".join(f"{n} in {printable(p)}" for p, n in library.items())
                    + " (--all shows them)", "dim")


def summary_line(result: DiffResult) -> str:
    counts = result.counts()
    if not counts:
        return "no findings"
    total = sum(counts.values())
    return f"{total} finding{'s' if total != 1 else ''}: " + ", ".join(f"{n} {k}" for k, n in counts.items())


def _finding(f: Finding, style: StyleFn) -> Iterator[str]:
    where = f"{_short(f.file)}:{f.line}" if f.file else "-"
    harm = f"  {SEVERITY_TEXT.get(f.severity, f.severity)}" if f.severity else ""
    yield f"  {style(f.kind, *_KIND_STYLE.get(f.kind, ('bold',)))}  {style(printable(where), 'dim')}{style(harm, 'dim')}"
    yield f"    {printable(f.message)}"
    excerpt = f.excerpt or ([(f.line, f.code, "")] if f.code and f.line else [])
    for line, text, mark in excerpt:
        sign, colour = {"dropped": ("-", "red"), "kept": ("+", "green")}.get(mark, (" ", "dim"))
        body = f"    {sign} {line:>5} | {printable(text)}"
        yield style(body, colour) if mark else body
    if f.fix:
        yield f"    {style('fix:', 'bold')} {printable(f.fix)}"
    if f.verdict:
        colour = _VERDICT_STYLE.get(f.verdict.get("verdict"), "dim")
        yield f"    {style(str(f.verdict.get('verdict')) + ':', 'bold', colour)} {printable(f.verdict.get('text') or '')}"


def _verification(result: DiffResult, style: StyleFn) -> Iterator[str]:
    """``--verify``: how the archives were run, and the divergences no finding explains."""
    head, unexplained = result.verification_lines()
    ran = (result.verification or {}).get("status") == "ran"
    yield from (style(printable(line), "dim" if ran else "yellow") for line in head)
    yield from (style(printable(line), "yellow", "bold") for line in unexplained)


def _structural(result: DiffResult, style: StyleFn) -> Iterator[str]:
    yield f"{style('a', 'bold')} {printable(result.a)}"
    yield f"{style('b', 'bold')} {printable(result.b)}"
    kinds = {v["kind"] for v in result.kinds.values()}
    yield style(f"both archives are {'/'.join(sorted(kinds))}: structural diff"
                + ("" if result.same_model else f" (they do not look like one model: {result.same_model_reason})"),
                "dim")
    if not result.findings:
        yield style("no differences", "green")
        return
    for f in result.findings:
        yield f"  {style(f.kind, 'bold')}  {printable(f.message)}"
        for line in f.details.get("diff", [])[:60]:
            colour = "red" if line.startswith("-") else "green" if line.startswith("+") else "dim"
            yield "      " + style(printable(line), colour)
    yield ""
    yield summary_line(result)


def _short(path: str | None) -> str:
    return (path or "?").replace("\\", "/").rsplit("/", 1)[-1]
