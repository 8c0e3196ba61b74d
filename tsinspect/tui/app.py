"""The tsinspect app: one screen with a tab per view, a search bar, the footer and F1 help.

Workers: ``load_archive`` (summary and scan, torch-free) then ``load_ir`` (the extraction child). They
post messages; the handlers here own every state change. Views call ``show_code``/``show_node`` to jump.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from tsinspect.archive import records as rk
from tsinspect.archive.text import printable
from tsinspect.tui import render
from tsinspect.tui.commands import JumpProvider
from tsinspect.tui.help import HelpScreen
from tsinspect.tui.messages import ArchiveFailed, ArchiveLoaded, IRFailed, IRLoaded
from tsinspect.tui.views.archive import ArchiveView
from tsinspect.tui.views.ir import IRView
from tsinspect.tui.views.modules import ModulesView
from tsinspect.tui.views.safety import SafetyView

VIEWS = {"archive": ArchiveView, "modules": ModulesView, "ir": IRView, "safety": SafetyView}


class InspectorApp(App):
    CSS_PATH = "tsinspect.tcss"
    TITLE = "tsinspect"
    COMMANDS = App.COMMANDS | {JumpProvider}
    BINDINGS = [
        Binding("a", "view('archive')", "Archive", tooltip="Records grouped by kind", id="view-archive"),
        Binding("m", "view('modules')", "Modules", tooltip="The module hierarchy", id="view-modules"),
        Binding("g", "view('ir')", "IR", tooltip="Methods, graphs and nodes", id="view-ir"),
        Binding("s", "view('safety')", "Safety", tooltip="Problems and the static scan", id="view-safety"),
        Binding("slash", "search", "Search", tooltip="Find in the current view", id="search"),
        Binding("n", "next_match(1)", "Next match", show=False, id="next-match"),
        Binding("N", "next_match(-1)", "Previous match", show=False, id="previous-match"),
        Binding("f1", "help", "Help", tooltip="Every key", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, path: str, *, trust: bool = False, other: str | None = None):
        super().__init__()
        self.path, self.trust, self.other = str(path), trust, other
        self.loaded = None  # tsinspect.tui.state.Loaded once the archive is read
        self.extraction = None  # tsinspect.ir.run.Extraction once the child answered
        self.matches: list = []
        self.match_index = 0
        self.match_view = ""

    def compose(self) -> ComposeResult:
        yield Static(Content.assemble(("tsinspect ", "bold"), printable(Path(self.path).name),
                                      ("  reading...", render.DIM)), id="status")
        with TabbedContent(initial="archive", id="views"):
            with TabPane(Content("Archive [a]"), id="archive"):
                yield ArchiveView()
            with TabPane(Content("Modules [m]"), id="modules"):
                yield ModulesView()
            with TabPane(Content("IR [g]"), id="ir"):
                yield IRView()
            with TabPane(Content("Safety [s]"), id="safety"):
                yield SafetyView()
        search = Input(placeholder="find in this view: op kind, value, record, module name; enter, then n / N",
                       id="search")
        search.display = False
        yield search
        yield Footer()

    def on_mount(self) -> None:
        self.load_archive()

    # ----- loading

    @work(thread=True, exclusive=True, group="archive", exit_on_error=False)
    def load_archive(self) -> None:
        from tsinspect.archive.problems import ArchiveError
        from tsinspect.tui.state import load

        try:
            self.post_message(ArchiveLoaded(load(self.path)))
        except ArchiveError as exc:
            self.post_message(ArchiveFailed(str(exc)))
        except Exception as exc:  # keep the UI up and say what happened
            self.post_message(ArchiveFailed(f"internal error ({type(exc).__name__}: {exc})"))

    @on(ArchiveLoaded)
    def _archive_loaded(self, message: ArchiveLoaded) -> None:
        self.loaded = message.state
        for view in VIEWS.values():
            self.query_one(view).show_archive()
        self.query_one("#records").focus()
        if self.loaded.summary.format in (rk.TORCHSCRIPT, rk.LITE):
            self.load_ir(self.trust)
        self.update_status()

    @on(ArchiveFailed)
    def _archive_failed(self, message: ArchiveFailed) -> None:
        for view in VIEWS.values():
            self.query_one(view).show_failure(message.message)
        self.update_status(message.message)

    @work(thread=True, exclusive=True, group="ir", exit_on_error=False)
    def load_ir(self, trust: bool) -> None:
        from tsinspect.archive.reader import open_archive
        from tsinspect.ir.run import Options, extract_ir

        try:
            with open_archive(self.path) as archive:  # its own file handle: the UI keeps reading the other
                extraction = extract_ir(archive, Options(inline=True, trust=trust))
            extraction.ir  # build the dataclasses here, off the event loop
            self.post_message(IRLoaded(extraction))
        except Exception as exc:
            self.post_message(IRFailed(str(exc)))

    def request_ir(self, trust: bool) -> None:
        self.extraction = None
        self.query_one(IRView).show_loading(trust)
        self.load_ir(trust)
        self.update_status()

    @on(IRLoaded)
    def _ir_loaded(self, message: IRLoaded) -> None:
        self.extraction = message.extraction
        self.query_one(IRView).show_ir(message.extraction)
        self.update_status()

    @on(IRFailed)
    def _ir_failed(self, message: IRFailed) -> None:
        self.query_one(IRView).show_error(message.message)
        self.update_status()

    def update_status(self, error: str | None = None) -> None:
        parts: list = [("tsinspect ", "bold"), printable(Path(self.path).name)]
        if error:
            parts.append(("  cannot open: " + printable(error), render.BAD))
        elif self.loaded is not None:
            s = self.loaded.summary
            parts.append((f"  {s.format}, {len(s.records)} records", render.DIM))
            parts.append(("  IR: ", render.DIM))
            parts.append(self.query_one(IRView).status())
            if self.loaded.scan.unsafe:
                parts.append(("  unsafe code found (s)", render.BAD))
        self.query_one("#status", Static).update(Content.assemble(*parts))

    # ----- views and jumps

    def action_view(self, name: str) -> None:
        self.query_one("#views", TabbedContent).active = name
        self.query_one(VIEWS[name]).focus_main()

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        view = VIEWS.get(event.pane.id or "")
        if view is not None:
            self.query_one(view).focus_main()

    def current_view(self) -> str:
        return self.query_one("#views", TabbedContent).active

    def show_code(self, file: str, line: int | None = None) -> None:
        """Switch to the archive view on a code record, marking ``line``."""
        self.query_one("#views", TabbedContent).active = "archive"
        self.run_worker(self.query_one(ArchiveView).jump(("record", file), line), group="jump")

    def show_record(self, key: tuple) -> None:
        self.query_one("#views", TabbedContent).active = "archive"
        self.run_worker(self.query_one(ArchiveView).jump(key), group="jump")

    def show_module(self, path: str) -> None:
        self.query_one("#views", TabbedContent).active = "modules"
        self.run_worker(self.query_one(ModulesView).jump(path), group="jump")

    def show_node(self, target: tuple) -> None:
        """Switch to the IR view on a method or node: (module path, method, node id or None)."""
        self.query_one("#views", TabbedContent).active = "ir"
        self.run_worker(self.query_one(IRView).jump(target), group="jump")

    # ----- search

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        event.input.display = False
        if not query or self.loaded is None:
            self.query_one(VIEWS[self.current_view()]).focus_main()
            return
        self.match_view = self.current_view()
        self.matches = self.query_one(VIEWS[self.match_view]).search(query)
        self.match_index = 0
        if not self.matches:
            self.notify(f"nothing matches {query!r} in this view", severity="warning", markup=False)
            self.query_one(VIEWS[self.match_view]).focus_main()
            return
        self.notify(f"{len(self.matches)} match(es) for {query!r}: n next, N previous", markup=False)
        self._go_to_match()

    def key_escape(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
            self.query_one(VIEWS[self.current_view()]).focus_main()

    def action_next_match(self, step: int) -> None:
        if not self.matches:
            self.notify("no search yet: press / to search", markup=False)
            return
        self.match_index = (self.match_index + step) % len(self.matches)
        self._go_to_match()

    def _go_to_match(self) -> None:
        target = self.matches[self.match_index]
        jump = {"archive": self.show_record, "modules": self.show_module, "ir": self.show_node}
        jump[self.match_view](target)

    # ----- help

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
