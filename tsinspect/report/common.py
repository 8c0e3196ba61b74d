"""Presentation shared by the HTML and Markdown writers: which rows each bounded section shows."""

from __future__ import annotations

from dataclasses import dataclass

from tsinspect.archive.modules import short_type
from tsinspect.archive.summary import ArchiveSummary
from tsinspect.archive.text import counted, human_bytes
from tsinspect.report.model import Report

SECTIONS = (("summary", "Summary"), ("diff", "Trace vs script"), ("safety", "Safety and problems"),
            ("modules", "Modules"), ("tensors", "Tensors"), ("code", "Code"), ("ops", "Operators"), ("ir", "IR"))


def sections(report: Report) -> list[tuple[str, str]]:
    """(anchor, title) of the sections this report has, in order."""
    skip = set()
    if report.diff is None:
        skip.add("diff")
    if report.summary.modules is None:
        skip.add("modules")
    if not report.code:
        skip.add("code")
        if not report.ir.loaded:  # a pt2's exported graph has no code/ but is an IR
            skip.update(("ops", "ir"))
    return [(anchor, diff_title(report.diff) if anchor == "diff" and report.diff is not None else title)
            for anchor, title in SECTIONS if anchor not in skip]


def archive_facts(s: ArchiveSummary) -> list[tuple[str, str]]:
    """The summary's (label, plain text) rows about the archive itself; writers escape the text."""
    facts = [("file", s.path), ("size", f"{human_bytes(s.file_size)} ({s.file_size:,} bytes)"),
             ("format", s.format + (f" ({s.container} container)" if s.container != "zip" else ""))]
    if s.prefix:
        facts.append(("top folder", s.prefix.rstrip("/")))
    if s.note:
        facts.append(("note", s.note))
    if s.versions:
        facts.append(("versions", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.versions.items())))
    if s.records:
        facts.append(("records", record_kinds(s)))
    if s.modules is not None:
        facts.append(("modules", f"{sum(1 for _ in s.modules.walk())}, root {short_type(s.modules.type)}"))
    if s.tensors:
        dtypes = ", ".join(f"{n} {d}" for d, n in s.dtype_counts().items())
        facts.append(("tensors", f"{len(s.tensors)}, {human_bytes(s.weight_bytes)} of storage: {dtypes}"))
    if s.constants:
        facts.append(("constants", f"{counted(len(s.constants), 'tensor')} in "
                                   + ("data/constants/" if s.pt2 else "constants.pkl")))
    if s.traced_inputs:
        facts.append(("traced with", ", ".join(f"{t.name}: {t.dtype}{shape(t.shape)}" for t in s.traced_inputs)))
    if s.methods:
        facts.append(("methods", f"{len(s.methods)} in {len(s.code_files)} code files"))
    facts += s.pt2.facts() if s.pt2 else []
    if s.extra_files:
        facts.append(("extra files", ", ".join(f"{x.name[len('extra/'):]} ({human_bytes(x.size)})"
                                               for x in s.extra_files)))
    return facts


def diff_title(diff) -> str:
    return {"trace_vs_script": "Trace vs script", "export": "TorchScript vs export"}.get(diff.mode, "Structural diff")


def diff_notes(diff) -> list[str]:
    """What the diff section says before its findings: the analysis or the kind of diff, and notes."""
    if diff.mode in ("trace_vs_script", "export"):
        head = [diff.analysis_note or diff.analysis]
    else:
        kinds = "/".join(sorted({v.get("kind", "?") for v in diff.kinds.values()}))
        head = [f"both archives are {kinds}: a structural diff"]
    if not diff.same_model:
        head.append(f"they do not look like one model: {diff.same_model_reason}")
    return head + list(diff.notes)


def shown_code(report: Report) -> set[str]:
    """The code files shown in full: in order, while they fit the line and character budgets."""
    lines, chars = report.limits.code_lines, report.limits.code_chars
    shown = set()
    for f in report.code:
        size = sum(map(len, f.lines))
        if len(f.lines) <= lines and size <= chars:
            shown.add(f.name)
            lines, chars = lines - len(f.lines), chars - size
    return shown


def shorten(text, limit: int) -> str:
    """At most ``limit`` characters, with an ellipsis when cut."""
    text = str(text or "")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def basename(path: str | None) -> str:
    return (path or "?").replace("\\", "/").rsplit("/", 1)[-1]


def shape(dims: list[int]) -> str:
    return "[" + ", ".join(map(str, dims)) + "]"


def record_kinds(summary: ArchiveSummary) -> str:
    kinds: dict[str, int] = {}
    for r in summary.records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    return f"{len(summary.records)}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())


@dataclass
class WeightRow:
    label: str
    tensors: int
    bytes: int


def weight_rows(summary: ArchiveSummary, limit: int = 24) -> list[WeightRow]:
    """Where the weights' bytes go: modules at the first depth that splits them (at least two modules
    holding weights), largest first, then what lies outside them and the constants."""
    by_module = summary.bytes_by_module()
    total = by_module.get("", (0, 0))[1]
    rows: list[WeightRow] = []
    for depth in range(1, 5):
        rows = [WeightRow(path, n, size) for path, (n, size) in by_module.items()
                if path and path.count(".") + 1 == depth]
        if len(rows) >= 2:
            break
    else:
        rows = [WeightRow(path, n, size) for path, (n, size) in by_module.items() if path and "." not in path]
    rows.sort(key=lambda r: -r.bytes)
    if len(rows) > limit:
        rest = rows[limit - 1:]
        rows = rows[:limit - 1] + [WeightRow(f"{len(rest)} more modules", sum(r.tensors for r in rest),
                                             sum(r.bytes for r in rest))]
    outside = total - sum(r.bytes for r in rows)
    if outside > 0:
        rows.append(WeightRow("(tensors outside these modules)", by_module[""][0] - sum(r.tensors for r in rows),
                              outside))
    constants = summary.weight_bytes - total
    if summary.constants and constants > 0:
        rows.append(WeightRow("(constants.pkl)", len(summary.constants), constants))
    return rows


@dataclass
class ModuleRow:
    path: str
    name: str
    depth: int
    type: str
    tensors: int
    bytes: int
    methods: list[str]


def module_rows(summary: ArchiveSummary) -> list[ModuleRow]:
    if summary.modules is None:
        return []
    by_module = summary.bytes_by_module()
    rows = []
    for m in summary.modules.walk():
        n, size = by_module.get(m.path, (0, 0))
        depth = m.path.count(".") + 1 if m.path else 0
        rows.append(ModuleRow(m.path, m.name, depth, short_type(m.type), n, size, m.methods))
    return rows


def op_sites(entry, limit: int = 6) -> list[tuple[str, list[tuple[str, list[int]]]]]:
    """An op's uses grouped by ``Class.method`` and code file: [(label, [(file, [lines])])], ``limit`` labels."""
    groups: dict[str, dict[str, list[int]]] = {}
    for use in entry.uses:
        owner = (use.module_type or "").rsplit(".", 1)[-1]
        files = groups.setdefault(f"{owner}.{use.method}" if owner else use.method, {})
        file, _, line = (use.code or "").rpartition(":")
        if file and line.isdigit():
            lines = files.setdefault(file, [])
            if int(line) not in lines:
                lines.append(int(line))
    return [(label, [(file, sorted(lines)) for file, lines in files.items()])
            for label, files in list(groups.items())[:limit]]


def ir_types(report: Report) -> list[tuple[str, list[str], list]]:
    """(module type, instance paths, methods) for every module type of the loaded IR."""
    paths: dict[str, list[str]] = {}
    for module in report.ir.ir.modules:
        paths.setdefault(module.type, []).append(module.path or "<root>")
    return [(name, paths[name], methods) for name, methods in report.ir.ir.types.items()]


def instances(paths: list[str], limit: int = 4) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more
