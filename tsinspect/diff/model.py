"""The result of ``tsinspect diff``: one object that the CLI, the TUI and the reports all render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tsinspect.archive.text import printable

SCHEMA = "tsinspect.diff/1"

# trace-vs-script findings, in report order
TRACE_KINDS = ("dropped_branch", "per_iteration_branch", "unrolled_loop", "baked_constant", "missing_method",
               "divergent_ops")


@dataclass
class TracedLine:
    """A line of the traced archive's generated code holding ops recorded at the finding's source lines."""

    file: str  # the code record, "code/__torch__/models.py"
    line: int
    text: str  # the generated line ("" when the result does not carry the code)
    source_lines: list[int] = field(default_factory=list)  # the finding's file's lines it ran from

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "text": self.text,
                "source_lines": list(self.source_lines)}


@dataclass
class Finding:
    kind: str
    method: str | None
    file: str | None
    line: int | None
    message: str
    code: str | None = None  # the original source line at `line`
    details: dict[str, Any] = field(default_factory=dict)
    excerpt: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, mark: "kept"/"dropped"/"")
    traced: list[TracedLine] = field(default_factory=list)  # the traced code/ lines for the excerpt's lines
    traced_total: int = 0  # how many there are (``traced`` holds the first ones only)

    def to_json(self) -> dict:
        return {"kind": self.kind, "method": self.method, "file": self.file, "line": self.line,
                "message": self.message, "code": self.code, "details": self.details,
                "excerpt": [{"line": n, "text": t, "mark": m or None} for n, t, m in self.excerpt],
                "traced": [t.to_json() for t in self.traced], "traced_total": self.traced_total}


@dataclass
class DiffResult:
    mode: str  # "trace_vs_script" or "structural"
    a: str  # the paths as given
    b: str
    traced: str | None = None  # trace_vs_script: which path is which
    scripted: str | None = None
    kinds: dict[str, dict] = field(default_factory=dict)  # path -> {"kind", "evidence"}
    analysis: str = "ast"  # "ast" (torch-free: code/ + debug info) or "ir"
    analysis_note: str | None = None  # why the IR was not used, or how it was loaded
    same_model: bool = True
    same_model_reason: str = ""
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "mode": self.mode, "a": printable(self.a), "b": printable(self.b),
                "traced": printable(self.traced) if self.traced else None,
                "scripted": printable(self.scripted) if self.scripted else None,
                "kinds": self.kinds, "analysis": self.analysis, "analysis_note": self.analysis_note,
                "same_model": self.same_model, "same_model_reason": self.same_model_reason,
                "findings": [f.to_json() for f in self.findings], "notes": list(self.notes),
                "counts": self.counts()}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def by_method(self) -> list[tuple[str, list[Finding]]]:
        groups: dict[str, list[Finding]] = {}
        for f in self.findings:
            groups.setdefault(f.method or "(archive)", []).append(f)
        return list(groups.items())
