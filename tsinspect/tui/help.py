"""F1 help: every key, by view. ``KEYS`` is the one list (docs/tui.md shows the same table)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

KEYS = [  # (where, key, what)
    ("everywhere", "a", "archive view: records by kind, the selected one on the right"),
    ("everywhere", "m", "modules view: the module hierarchy"),
    ("everywhere", "g", "IR view: methods, graphs and nodes"),
    ("everywhere", "s", "safety view: problems in the archive and the static scan's findings"),
    ("everywhere", "d", "diff view: what a trace lost against the scripted model, finding by finding"),
    ("everywhere", "e", "export view (torch.export .pt2): signature, modules, tensors, dynamic shapes"),
    ("everywhere", "ctrl+o", "compare this archive with another one (its traced or scripted variant)"),
    ("everywhere", "/", "search the current view (records, modules, op kinds or value names)"),
    ("everywhere", "n / N", "next / previous search match"),
    ("everywhere", "ctrl+p", "command palette: jump to any record, tensor, module, method, node or value"),
    ("everywhere", "F1", "this help"),
    ("everywhere", "q", "quit"),
    ("everywhere", "tab / shift+tab", "move between panes (the footer shows the keys of the one focused)"),
    ("trees", "up / down, enter, space", "move, expand or collapse (children load on expand)"),
    ("archive, pickle", "o", "opcodes instead of the object tree, and back"),
    ("archive, tensors", "enter / p", "read and show the first values of the selected tensor (in the tree too)"),
    ("modules", "c", "the module's class in the generated code"),
    ("IR", "i", "inlined graphs (submodule calls expanded; fetched from torch the first time), and back"),
    ("IR", "c", "the node's line in the generated code, with its original source"),
    ("IR", "tab / enter", "to the links of the line (the first one highlighted); enter on a line without "
                          "children does the same"),
    ("IR, links", "enter", "follow a link: an input's definition, an output's use, the code line"),
    ("IR", "t", "when the scan refused: load with torch anyway, after confirming"),
    ("safety, findings", "enter", "show the finding's line of code"),
    ("diff, findings", "up / down", "the highlighted finding: its source (- dropped, + kept) beside the traced code"),
    ("diff", "enter / c", "the finding's line in the scripted archive's code/ (when it is the archive browsed)"),
    ("export, nodes", "enter", "show the node in the IR view (its subgraphs nested, its source line)"),
    ("diff", "v", "verify: run both archives on generated inputs (sandboxed child), a verdict per finding"),
]

INTRO = """\
# tsinspect

Browse a TorchScript archive without running it. The archive view is read by tsinspect itself (no
torch); the IR comes from torch in a child process with the tensor storages emptied, and only when the
static scan of `code/` finds nothing that would touch files or raw memory while loading.
"""


def help_markdown() -> str:
    rows = "\n".join(f"| {where} | `{key}` | {what} |" for where, key, what in KEYS)
    return f"{INTRO}\n| where | key | what |\n|---|---|---|\n{rows}\n\n`escape` or `F1` closes this help.\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(help_markdown())
