"""A code record, highlighted, with each line's number and original file:line beside it.

The body renders only the lines on screen (Textual's line API): a code file of thousands of lines rendered
whole, as one ``Static``, stalled the UI for a second on each show (every line styled and measured).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.visual import Visual
from textual.widgets import Static

from tsinspect.archive.text import human_bytes, printable
from tsinspect.tui.render import DIM, CodeRows, origin_text


class CodeLines(ScrollView, can_focus=True):
    """Rows of styled text, one per line, drawn as they scroll into view; long lines scroll sideways."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: list[Content] = []
        self._strips: LRUCache[int, Strip] = LRUCache(1024)
        self._style_key = None

    @property
    def plain(self) -> str:
        """Every line's text (what the pane shows, without styles)."""
        return "\n".join(row.plain for row in self.rows)

    def set_rows(self, rows: CodeRows, top: int = 0) -> None:
        self.rows = rows.rows
        self._strips.clear()
        self.virtual_size = Size(rows.width, len(rows.rows))
        self.refresh()
        self.call_after_refresh(self.scroll_to, x=0, y=top, animate=False)  # once the pane has its size

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index, width = scroll_y + y, self.size.width
        style = self.rich_style
        if index >= len(self.rows):
            return Strip.blank(width, style)
        if self._style_key != self.styles._cache_key:  # a new theme: styles resolve anew
            self._style_key = self.styles._cache_key
            self._strips.clear()
        strip = self._strips.get(index)
        if strip is None:
            row = self.rows[index]
            strips = Visual.to_strips(self, row, max(row.cell_length, 1), 1, self.visual_style, apply_selection=False)
            strip = strips[0] if strips else Strip.blank(0, style)
            self._strips.set(index, strip)
        return strip.crop_extend(scroll_x, scroll_x + width, style)


class CodeView(Vertical):
    """Shows a prepared code body; a jump marks one line and names its original source above."""

    def compose(self) -> ComposeResult:
        yield Static(id="code-title", classes="pane-title")
        yield Static(id="code-origin")
        yield CodeLines(id="code-body")

    def show(self, code, rows: CodeRows, line: int | None) -> None:
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
        self.query_one("#code-body", CodeLines).set_rows(rows, max(0, (line or 1) - 6))
