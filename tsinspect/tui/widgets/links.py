"""A list of links whose targets are kept by position, never as option ids.

Labels and targets come from archive data: names repeat (a node using two graph inputs links to the same
definition twice), hold any character and can number in the tens of thousands. OptionList ids must be
unique, so the targets live in a parallel list and the list is capped.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tsinspect.tui.widgets.quietsize import QuietVirtualSize

MAX_LINKS = 400


class LinkList(QuietVirtualSize, OptionList):
    BINDINGS = [Binding("enter", "select", "Follow link", tooltip="Go to the highlighted link's target")]

    class Followed(Message):
        def __init__(self, links: "LinkList", target: Any):
            super().__init__()
            self.links, self.target = links, target

        @property
        def control(self) -> "LinkList":
            return self.links

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.targets: list[Any] = []

    def set_links(self, links: list[tuple[Text, Any]]) -> None:
        """``(label, target)`` pairs; a None target is a heading, shown but not selectable."""
        if len(links) > MAX_LINKS:
            more = len(links) - MAX_LINKS
            links = links[:MAX_LINKS] + [(Text(f"... {more} more links not listed", style="dim"), None)]
        self.targets = [target for _, target in links]
        self.clear_options()
        self.add_options([Option(label, disabled=target is None) for label, target in links])
        if self.has_focus:
            self.action_first()

    def on_focus(self) -> None:
        if self.highlighted is None:
            self.action_first()

    def action_select(self) -> None:
        index = self.highlighted
        if index is not None and 0 <= index < len(self.targets) and self.targets[index] is not None:
            self.post_message(self.Followed(self, self.targets[index]))
