"""The result of ``tsinspect diff``: one object that the CLI, the TUI and the reports all render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tsinspect.archive.text import printable

SCHEMA = "tsinspect.diff/1"

# trace-vs-script findings, in report order
TRACE_KINDS = ("dropped_branch", "per_iteration_branch", "unrolled_loop", "baked_constant", "missing_method")
# how much harm a finding does, most harmful first: a wrong result with no error, an error on inputs the trace
# did not see (None for an argument traced with a value, a method the trace lacks), a difference only in
# another mode (training, grad)
SEVERITIES = ("silent", "raises", "mode")
VERDICTS = ("confirmed", "not reproduced", "not tested")  # ``diff --verify``, Finding.verdict["verdict"]
SEVERITY_TEXT = {"silent": "silent wrong result", "raises": "raises on other inputs", "mode": "other mode only"}
_PACKAGE_DIRS = ("site-packages", "dist-packages")


def origin_of(path: str | None) -> tuple[str, str | None]:
    """("user", None) for the model's own files, ("torch", "torch") or ("package", name) for library code:
    files under site-packages/dist-packages, or under a directory named torch (a source checkout)."""
    parts = (path or "").replace("\\", "/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part in _PACKAGE_DIRS and i + 2 < len(parts):
            name = parts[i + 1]
            return ("torch" if name == "torch" else "package"), name
    if "torch" in parts[:-1]:
        return "torch", "torch"
    return "user", None


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
    severity: str = "silent"  # one of SEVERITIES
    fix: str = ""  # one line on how to fix it
    verdict: dict | None = None  # set by ``diff --verify`` (tsinspect.verify.run): verdict, text, ...

    @property
    def origin(self) -> str:
        return origin_of(self.file)[0] if self.file else "user"

    @property
    def package(self) -> str | None:
        return origin_of(self.file)[1]

    def rank(self) -> tuple:
        """Report order: the user's own files first, then by harm, kind, place."""
        return (self.origin != "user", self.package or "", SEVERITIES.index(self.severity),
                TRACE_KINDS.index(self.kind) if self.kind in TRACE_KINDS else len(TRACE_KINDS),
                self.method or "", self.file or "", self.line or 0)

    def to_json(self) -> dict:
        return {"kind": self.kind, "method": self.method, "file": self.file, "line": self.line,
                "origin": self.origin, "package": self.package, "severity": self.severity, "fix": self.fix,
                "message": self.message, "code": self.code, "details": self.details,
                "excerpt": [{"line": n, "text": t, "mark": m or None} for n, t, m in self.excerpt],
                "traced": [t.to_json() for t in self.traced], "traced_total": self.traced_total,
                **({"verdict": self.verdict} if self.verdict is not None else {})}


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
    findings: list[Finding] = field(default_factory=list)  # in report order (Finding.rank)
    notes: list[str] = field(default_factory=list)
    # trace_vs_script: per method of the traced root, the arguments it accepts and the scripted one's
    accepts: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    verification: dict | None = None  # set by ``diff --verify`` (tsinspect.verify.run; docs/diff.md)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "mode": self.mode, "a": printable(self.a), "b": printable(self.b),
                "traced": printable(self.traced) if self.traced else None,
                "scripted": printable(self.scripted) if self.scripted else None,
                "kinds": self.kinds, "analysis": self.analysis, "analysis_note": self.analysis_note,
                "same_model": self.same_model, "same_model_reason": self.same_model_reason,
                "accepts": self.accepts, "findings": [f.to_json() for f in self.findings],
                "notes": list(self.notes), "counts": self.counts(), "library": self.library_counts(),
                **({"verification": self.verification} if self.verification is not None else {})}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def by_method(self, library: bool = True) -> list[tuple[str, list[Finding]]]:
        """The findings grouped by method, in report order (the user's own files first); ``library=False``
        leaves library code out (``library_counts`` summarizes it)."""
        groups: dict[str, list[Finding]] = {}
        for f in self.findings:
            if library or f.origin == "user":
                groups.setdefault(f.method or "(archive)", []).append(f)
        return list(groups.items())

    def library_counts(self) -> dict[str, int]:
        """Findings in library code, per package, in report order."""
        out: dict[str, int] = {}
        for f in self.findings:
            if f.origin != "user":
                out[f.package or "?"] = out.get(f.package or "?", 0) + 1
        return out

    def verification_lines(self) -> tuple[list[str], list[str]]:
        """``--verify``: (how the archives were run, with the verdict counts; the divergences no finding
        explains). Both empty when not verified."""
        v = self.verification
        if not v:
            return [], []
        if v.get("status") != "ran":
            return [f"verify: not run: {v.get('message') or ''}"], []
        verdicts = [f.verdict.get("verdict") for f in self.findings if f.verdict]
        counts = ", ".join(f"{verdicts.count(k)} {k}" for k in VERDICTS if verdicts.count(k))
        head = [f"verify: {v.get('message') or ''}" + (f"; {counts}" if counts else "")]
        head += [f"verify: {line}" for line in ([v["note"]] if v.get("note") else []) + list(v.get("together") or [])
                 + list(v.get("skipped") or [])[:5]]
        return head, [f"verify: {line}" for line in v.get("unexplained") or []]

    def accepts_line(self) -> str | None:
        """Says once which arguments the traced forward accepts (checks on the others are no findings)."""
        parts = []
        for method, sig in self.accepts.items():
            rest = [a for a in sig["scripted"] if a not in sig["traced"]]
            accepted = f"the traced {method}({', '.join(sig['traced'])})"
            parts.append(f"{accepted} accepts {len(sig['traced'])} of the scripted one's {len(sig['scripted'])} "
                         f"arguments; the others ({', '.join(rest)}) are always their defaults, so checks on them "
                         "are no findings" if rest else f"{accepted} accepts every argument of the scripted one")
        return "; ".join(parts) or None
