"""Safety view: problems found in the archive and the static scan's findings about code/."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from tsinspect.safety.codescan import BENIGN, UNSAFE
from tsinspect.archive.text import counted, printable
from tsinspect.tui import render

VERDICT_STYLE = {UNSAFE: "bold red", BENIGN: "green"}
MAX_ROWS = 1000  # rows per table: a hostile zip can hold 65,535 duplicate entries, each a problem


def capped(rows: list, total: int, width: int, what: str) -> list:
    if total > MAX_ROWS:
        rows = rows[:MAX_ROWS] + [(Text(f"... {total - MAX_ROWS} more", style="dim"),
                                   Text(f"tsinspect {what} lists them all", style="dim"),
                                   *[Text("")] * (width - 2))]
    return rows


class SafetyView(Vertical):
    """Two tables; ``enter`` on a finding jumps to its line of code."""

    def compose(self) -> ComposeResult:
        yield Static(id="safety-summary", classes="pane-title")
        yield Static(Content.styled("Findings of the static scan of code/ (enter: show the code)", render.HEAD))
        yield DataTable(id="findings", cursor_type="row", zebra_stripes=True)
        yield Static(Content.styled("Problems found while reading the archive", render.HEAD))
        yield DataTable(id="problems", cursor_type="row", zebra_stripes=True)

    def show_archive(self) -> None:
        """The archive's problems, and the scan's findings once it is done (called again then)."""
        loaded = self.app.loaded
        scan, problems = loaded.scan, loaded.summary.problems
        unsafe = len(scan.unsafe) if scan is not None else 0
        verdict = (render.safety_line(loaded) if scan is None else
                   Content.styled(f"{counted(unsafe, 'unsafe finding')}: the IR is only loaded with torch after you confirm",
                                  render.BAD) if unsafe else
                   Content.styled("nothing in code/ runs file or raw-memory operations at load time", render.GOOD))
        self.query_one("#safety-summary", Static).update(Content.assemble(
            verdict, (f"   {counted(len(problems), 'problem')} in the archive", render.WARN if problems else render.DIM)))
        findings = self.query_one("#findings", DataTable)
        findings.clear(columns=True)
        findings.add_columns("verdict", "kind", "where", "what", "detail")
        self.findings = list(scan.findings) if scan is not None else []
        rows = [(Text(f.verdict, style=VERDICT_STYLE.get(f.verdict, "")), render.plain(f.kind),
                 render.plain(f.where), render.plain(f.what),
                 render.plain(f.detail + (f" (via {' -> '.join(f.via)})" if f.via else "")))
                for f in self.findings[:MAX_ROWS]]
        empty = Text("scanning..." if scan is None else "none", style="dim")
        findings.add_rows(capped(rows, len(self.findings), 5, "scan --json")
                          or [(empty, Text(""), Text(""), Text(""), Text(""))])
        table = self.query_one("#problems", DataTable)
        table.clear(columns=True)
        table.add_columns("kind", "member", "detail")
        rows = [(render.plain(p.kind, "yellow"), render.plain(p.member or ""), render.plain(p.detail))
                for p in problems[:MAX_ROWS]]
        table.add_rows(capped(rows, len(problems), 3, "info --json")
                       or [(Text("none", style="dim"), Text(""), Text(""))])

    def focus_main(self) -> None:
        self.query_one("#findings", DataTable).focus()

    def search(self, query: str) -> list:
        return []

    def show_failure(self, message: str) -> None:
        self.query_one("#safety-summary", Static).update(Content.styled(printable(message), render.BAD))

    @on(DataTable.RowSelected, "#findings")
    def _finding(self, event: DataTable.RowSelected) -> None:
        if event.cursor_row < len(getattr(self, "findings", [])):
            finding = self.findings[event.cursor_row]
            self.app.show_code(finding.file, finding.line)
