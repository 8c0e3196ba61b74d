"""The diff view's parts for a TorchScript archive against its export (``diff model.pt model.pt2``): the
header naming both sides, and beside the TorchScript source the exported graph's nodes at the same lines."""

from __future__ import annotations

from textual.content import Content

from tsinspect.archive.text import printable
from tsinspect.tui import render


def export_header(result, browsed: str, basename) -> Content:
    from tsinspect.diff.text import summary_line

    first = Content.assemble(("TorchScript ", "bold"), basename(result.a), ("  exported ", "bold"), basename(result.b),
                             (f"  (browsed: {basename(browsed)})" if browsed else "", render.DIM))
    count = summary_line(result) if result.findings else "no finding: nothing the export visibly fixed"
    rows = [first, Content.styled(count, render.BAD if result.findings else render.GOOD)]
    rows += [Content.styled("note: " + printable(n), render.DIM) for n in result.notes[:3]]
    return render.lines(*rows)


def source_label(finding) -> str:
    """Whose source a finding's lines are: the user's, or the library's that holds them."""
    return "your source " if finding.origin == "user" else f"{finding.package or 'library'} source "


def export_titles(result, finding, basename) -> tuple[Content, Content]:
    line = f":{finding.line}" if finding.line else ""
    return (Content.assemble(("TorchScript: " + source_label(finding), render.HEAD),
                             (f"{basename(finding.file)}{line}" if finding.file else "", "bold")),
            Content.assemble(("exported: its nodes at these lines ", render.HEAD), (basename(result.b), "bold")))


def export_nodes(finding) -> Content:
    nodes = finding.details.get("export_nodes") or []
    if not nodes:
        text = ("The exported graph has no node whose stack_trace names these lines."
                if finding.file else "This finding is about the whole program, not one line.")
        return Content.styled(text, render.DIM)
    return render.lines(*(Content(printable(n)) for n in nodes))
