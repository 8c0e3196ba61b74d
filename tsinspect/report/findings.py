"""Every finding of a report in one ordered list: the HTML index, the Markdown summary and its counts.

The diff's findings come first, in the order the diff result gives them, with those in the user's own
files before the rest; then the static safety scan's unsafe ones. A finding's origin, severity and fix
are read from the diff result when it carries them, and otherwise derived here from its file only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tsinspect.diff.model as diff_model
from tsinspect.report.common import basename

USER = "user"
# the diff result's words for its severities ("silent" -> "silent wrong result"), where it has them
_SEVERITY_TEXT = getattr(diff_model, "SEVERITY_TEXT", {})
_SITE = re.compile(r"(?:site|dist)-packages/([A-Za-z0-9_]+)/")


@dataclass
class Entry:
    anchor: str  # HTML id of the finding's details, "finding-3"
    part: str  # "diff" or "safety"
    kind: str
    severity: str | None
    origin: str  # "user", "torch", another package, or "archive" (no source file)
    where: str  # "models.py:42" or "code/__torch__/models.py:12"
    method: str | None
    message: str
    fix: str | None
    finding: object


def origin_of(finding) -> str:
    """"user", or the library a finding is in ("torch", a package name), or "archive" (no source file)."""
    given = getattr(finding, "origin", None)  # the diff result's own (tsinspect.diff.model): user/torch/package
    if given:
        return USER if given == USER else str(getattr(finding, "package", None) or given)
    file = (getattr(finding, "file", None) or "").replace("\\", "/")
    if not file:
        return "archive"
    site = _SITE.search(file)
    if site:
        return site.group(1)
    if "/torch/" in file or file.startswith("torch/"):
        return "torch"
    return USER


def entries(report) -> list[Entry]:
    out: list[Entry] = []
    diff = report.diff
    if diff is not None:
        ordered = sorted(diff.findings, key=lambda f: origin_of(f) != USER)  # stable: keeps the diff's order
        for f in ordered:
            where = f"{basename(f.file)}:{f.line}" if f.file else ""
            severity = getattr(f, "severity", None)
            out.append(Entry(f"finding-{len(out) + 1}", "diff", f.kind, _SEVERITY_TEXT.get(severity, severity),
                             origin_of(f), where, f.method, f.message, getattr(f, "fix", None), f))
    for f in report.scan.unsafe:  # benign and info findings are counted, not indexed (140 in a quantized model)
        where = f"{f.file}:{f.line}" if f.file else ""
        detail = f.detail + (f" (via {' -> '.join(f.via)})" if f.via else "")
        out.append(Entry(f"finding-{len(out) + 1}", "safety", f.kind, f.verdict, "archive", where, None,
                         f"{f.what}: {detail}" if f.what else detail, None, f))
    return out


def anchors(report) -> dict[int, str]:
    """id(finding object) -> its HTML anchor, for the writers that render the findings themselves."""
    return {id(e.finding): e.anchor for e in entries(report)}
