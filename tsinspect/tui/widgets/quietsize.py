"""Content that grows or shrinks without a layout pass of the whole screen.

Textual declares a widget's ``virtual_size`` (the size of what it scrolls over) with ``layout=True``: a tree
line added or a link list refilled asks for a layout of the whole screen, whose repaint was most of the
event loop's time per key at 200k IR nodes (30-50 ms, twice per key at worst). When the widget's own size
does not follow its content (no ``auto`` width or height), only its scrollbars do: they are updated in
place, and a layout happens only when one appears or goes (``show_vertical_scrollbar`` asks for it).
"""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive


class QuietVirtualSize:
    """Mixed in before a Textual ScrollView (Tree, OptionList)."""

    virtual_size = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        if self.styles.auto_dimensions:
            self.refresh(layout=True)  # its own size follows its content
        else:
            self._scroll_update(size)
