"""A code record, highlighted, with each line's number and original file:line beside it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import ScrollableContainer, Vertical
from textual.content import Content
from textual.widgets import Static

from tsinspect.archive.text import human_bytes, printable
from tsinspect.tui.render import DIM, origin_text


class CodeView(Vertical):
    """Shows a prepared code body; a jump marks one line and names its original source above."""

    def compose(self) -> ComposeResult:
        yield Static(id="code-title", classes="pane-title")
        yield Static(id="code-origin")
        with ScrollableContainer(id="code-scroll"):  # long lines scroll sideways, never under the gutter
            yield Static(id="code-body")

    def show(self, code, body: Content, line: int | None) -> None:
        self.code_name = code.name
        title = Content.assemble((printable(code.name), "bold"),
                                 (f"  {code.text.count(chr(10)) + 1} lines, "
                                  f"{human_bytes(len(code.text.encode('utf-8', 'replace')))}", DIM),
                                 (f"  ({code.debug_note})" if code.debug_note else "", DIM))
        self.query_one("#code-title", Static).update(title)
        origin = self.query_one("#code-origin", Static)
        if line is not None and 0 < line <= len(code.origins):
            origin.update(Content.assemble((f"line {line}: ", DIM), origin_text(code.origins[line - 1])))
        else:
            origin.update("")
        origin.display = line is not None
        self.query_one("#code-body", Static).update(body)
        scroll = self.query_one("#code-scroll", ScrollableContainer)
        target = max(0, (line or 1) - 6)
        self.call_after_refresh(scroll.scroll_to, y=target, animate=False)
