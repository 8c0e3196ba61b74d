"""The tsinspect app: one screen with a tab per view, a search bar, the footer and F1 help.

Workers: ``load_archive`` (the summary; the safety scan follows in a thread once the first screen is drawn;
torch-free) and ``load_ir`` (``tsinspect graph --json`` in a
process of its own, tui.irfetch; the IR is decoded and indexed in the worker, with the garbage collector
paused), ``compare`` (the diff of the
browsed archive with a second one) and ``find`` (search). They post messages; the handlers here own every
state change. Views call ``show_code``/``show_node`` to jump.

Started with a second archive (``tsinspect diff A B --tui``) the app opens on the diff view at once and
runs the diff; meanwhile ``pick_browsed`` reads both archives (torch-free) to tell the scripted one, which
the app browses (the first one given when both are of one kind). The diff's own extraction of that
archive then serves the IR view: torch loads each archive once.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Input, Static, TabbedContent, TabPane

from tsinspect.archive import records as rk
from tsinspect.archive.text import counted, printable
from tsinspect.tui import render
from tsinspect.tui.commands import JumpProvider
from tsinspect.tui.messages import (ArchiveFailed, ArchiveLoaded, ArchiveScanned, Browse, DiffReady, IRFailed,
                                   IRIndexed, IRLoaded, SearchDone)
from tsinspect.tui.priority import ui_priority
from tsinspect.tui.views.archive import ArchiveView
from tsinspect.tui.views.diff import CompareScreen, DiffView, basename
from tsinspect.tui.views.export import ExportView
from tsinspect.tui.views.ir import IRView, count_nodes, index_graphs
from tsinspect.tui.views.modules import ModulesView
from tsinspect.tui.views.safety import SafetyView
from tsinspect.tui.widgets.footer import Footer


def _freeze_survivors(phase: str, info: dict) -> None:
    """After each full collection, what survived it moves out of the collector's reach (``gc.freeze``): the next
    full collection scans only what was made since. Textual keeps ~100k containers alive in its render caches
    (a Strip holds 7 caches of its own), and a full collection, run whenever a quarter more survived, scanned
    them all: 100-270 ms on the UI thread, several times while scrolling a 200k-node tree. The price: cyclic
    garbage among frozen objects is never reclaimed (reference counting still frees the rest)."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


VIEWS = {"archive": ArchiveView, "modules": ModulesView, "ir": IRView, "safety": SafetyView, "diff": DiffView,
         "export": ExportView}
TITLES = {"archive": "Archive [a]", "modules": "Modules [m]", "ir": "IR [g]", "safety": "Safety [s]",
          "diff": "Diff [d]", "export": "Export [e]"}
# composed after the first screen (see InspectorApp.mount_views); the IR view is not: it follows the IR's
# extraction from the start, and the status line reads it
LATER = ("modules", "safety", "diff", "export")


class InspectorApp(App):
    CSS_PATH = "tsinspect.tcss"
    TITLE = "tsinspect"
    COMMANDS = App.COMMANDS | {JumpProvider}
    BINDINGS = [
        # the view keys are on the tabs ("Archive [a]"); the footer keeps its room for the focused pane's keys,
        # so that F1 and q still show on an 80-column terminal
        Binding("a", "view('archive')", "Archive", show=False, tooltip="Records grouped by kind", id="view-archive"),
        Binding("m", "view('modules')", "Modules", show=False, tooltip="The module hierarchy", id="view-modules"),
        Binding("g", "view('ir')", "IR", show=False, tooltip="Methods, graphs and nodes", id="view-ir"),
        Binding("s", "view('safety')", "Safety", show=False, tooltip="Problems and the static scan",
                id="view-safety"),
        Binding("d", "view('diff')", "Diff", show=False, tooltip="What a trace lost against the scripted model",
                id="view-diff"),
        Binding("e", "view('export')", "Export", show=False, tooltip="A torch.export program: modules, tensors, "
                "dynamic shapes", id="view-export"),
        # priority: handled as it arrives, so that a query typed fast right after "/" all lands in the field
        # (a plain binding reaches the app only after the keys behind it were handed to the focused widget)
        Binding("slash", "search", "Search", tooltip="Find in the current view", id="search", priority=True),
        Binding("n", "next_match(1)", "Next match", show=False, id="next-match"),
        Binding("N", "next_match(-1)", "Previous match", show=False, id="previous-match"),
        Binding("ctrl+o", "compare", "Compare", show=False, tooltip="Diff this archive with another one (its "
                "traced or scripted variant)", id="compare"),
        Binding("f1", "help", "Help", tooltip="Every key", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, path: str, *, trust: bool = False, other: str | None = None, diff_ir: str = "auto",
                 started_ir=None):
        super().__init__()
        self.started_ir = started_ir  # tsinspect.tui.irfetch.Early: the IR's torch child, started before the app
        self._early = None  # that child once a worker waits for it (stopped by a quit)
        self._read: dict = {}  # path -> its tsinspect.tui.state.Loaded, False if it could not be read
        self.path, self.trust, self.other = str(path), trust, other
        self.diff_ir = diff_ir  # the diff's --ir: auto, never or always
        self.diff = None  # tsinspect.diff.model.DiffResult of the last comparison
        self.diff_pair: tuple[str, str] | None = None  # (a, b) of the comparison running or shown
        self.diff_extractions: dict = {}  # path -> Extraction of all modules, not inlined, made by the diff
        self.ir_after_diff = False
        self.ir_trust = trust  # the IR shown was loaded with --trust or after the user confirmed
        self.loaded = None  # tsinspect.tui.state.Loaded once the archive is read
        self.extraction = None  # tsinspect.ir.run.Extraction once the child answered
        self.matches: list = []
        self.match_index = 0
        self.match_view = ""
        self.load_error: str | None = None
        # the views composed: the others wait in empty tabs until the first screen is shown (with a second
        # archive, every view at once: the app opens on the diff)
        self.views_ready = set(VIEWS) if other else set(VIEWS) - set(LATER)
        self._mounting = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield Static(Content.assemble(("tsinspect ", "bold"), printable(Path(self.path).name),
                                      ("  reading...", render.DIM)), id="status")
        with TabbedContent(initial="diff" if self.other else "archive", id="views"):
            for name, view in VIEWS.items():
                with TabPane(Content(TITLES[name]), id=name):
                    if name in self.views_ready:
                        yield view()
        search = Input(placeholder="find in this view: op kind, value, record, module name; enter, then n / N",
                       id="search")
        search.display = False
        yield search
        yield Footer()

    def on_mount(self) -> None:
        gc.callbacks.append(_freeze_survivors)
        ui_priority.watch(asyncio.get_running_loop())  # the workers' loops step aside while this one is busy
        self.query_one("#views", TabbedContent).hide_tab("export")  # shown once a pt2 archive is read
        if self.other:
            self.start_diff(self.path, self.other)
            self.pick_browsed(self.path, self.other)
        else:
            self.load_archive()
            self.request_ir(self.trust)  # the torch child starts with the app, not after the archive is read
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        if self._early is not None:  # the worker waits for the torch child: no wait for it at exit
            self._early.stop()
        ui_priority.unwatch()
        if _freeze_survivors in gc.callbacks:
            gc.callbacks.remove(_freeze_survivors)

    def view(self, name: str):
        """The view ``name`` once composed, else None."""
        return self.query_one(VIEWS[name]) if name in self.views_ready else None

    async def mount_views(self) -> None:
        """Compose the views not composed yet (once; every caller waits for it): after the first screen is
        shown, or earlier by whatever needs one of them (its key, a jump, ctrl+o). Their 34 widgets of 86,
        hidden at start, were composed and styled before the first screen."""
        async with self._mounting:
            later = [name for name in VIEWS if name not in self.views_ready]
            if not later:
                return
            views = {name: VIEWS[name]() for name in later}
            for name, view in views.items():  # one at a time: mounted together, their children were not all there
                pane = self.query(f"TabPane#{name}")
                if not pane:  # the app quits (q right after the first screen): its widgets are going
                    return
                await pane.first().mount(view)
            if not all(view.children for view in views.values()):  # the app quit meanwhile
                return
            self.views_ready.update(later)
            for view in views.values():  # what the views composed at once were told already
                if self.load_error is not None:
                    view.show_failure(self.load_error)
                elif self.loaded is not None:
                    view.show_archive()

    def _mount_later(self) -> None:
        self.run_worker(self.mount_views, group="views")

    def _tick(self) -> None:
        """Long work shows its elapsed time."""
        for view in self.query("IRView, DiffView"):  # nothing while the app shuts down
            if view.state == "loading" and view.children:  # none once the app quits: q in the first second
                view.tick()

    # ----- loading

    @work(thread=True, exclusive=True, group="archive", exit_on_error=False)
    def load_archive(self) -> None:
        """The archive's summary, shown at once (ArchiveLoaded), then its safety scan (ArchiveScanned): seconds on
        an archive of thousands of code files, that the first screen does not wait for."""
        from tsinspect.archive.problems import ArchiveError
        from tsinspect.tui.state import open_loaded

        path = self.path
        try:
            state = open_loaded(path)
        except ArchiveError as exc:
            self._read[path] = False
            self.post_message(ArchiveFailed(str(exc)))
            return
        except Exception as exc:  # keep the UI up and say what happened
            self._read[path] = False
            self.post_message(ArchiveFailed(f"internal error ({type(exc).__name__}: {exc})"))
            return
        self._read[path] = state  # the IR's gate (irfetch.Early) need not wait for the message, only the verdict
        self.post_message(ArchiveLoaded(state))  # its handler starts the scan once the archive is on screen

    def _start_scan(self, state) -> None:
        """The scan, started once the first screen is drawn (begun earlier, it took the interpreter lock from the
        drawing half the time); in a daemon thread, not a worker: a quit does not wait for it (Textual joins
        its workers' threads)."""
        threading.Thread(target=self._scan, args=(state,), name="tsinspect-scan", daemon=True).start()

    def _scan(self, state) -> None:
        from tsinspect.collector import freeze_for_good

        try:
            state.run_scan()
        except Exception:  # state.scan_error says what happened; nothing is loaded
            pass
        # what the summary and the scan built stays as long as the app (the code index, its syntax trees): out of
        # the collector's reach now, or the next full collection scans it all, in whichever thread allocates
        # next (3.8 s of the UI thread on a traced model of 5,000 submodules)
        freeze_for_good()
        self.post_message(ArchiveScanned(state))

    @work(thread=True, group="pick", exit_on_error=False)
    def pick_browsed(self, a: str, b: str) -> None:
        """The scripted archive of the two, as the diff will tell (its torch-free part, read twice: cheap);
        the first one given when both are of one kind or are not variants of one model."""
        from tsinspect.archive.madeby import SCRIPTED, TRACED
        from tsinspect.diff.kinds import same_model
        from tsinspect.diff.run import load_side

        path = a
        try:
            side_a, side_b = load_side(a), load_side(b)
            kind_a, kind_b = side_a.kind, side_b.kind
            if ({kind_a, kind_b} != {kind_a} and (kind_b == SCRIPTED or kind_a == TRACED)
                    and same_model(side_a.program, side_b.program)[0]):
                path = b
        except Exception:  # the diff says what is wrong; browse the first one given
            pass
        self.post_message(Browse(path))

    @on(Browse)
    def _browse(self, message: Browse) -> None:
        self.path = message.path
        self.load_archive()
        if self.diff is not None:  # the diff was quicker: its header names the archive browsed
            self.query_one(DiffView).show_header(self.path)
        self.update_status()

    @on(ArchiveLoaded)
    def _archive_loaded(self, message: ArchiveLoaded) -> None:
        self.loaded = message.state
        if self.loaded.summary.format == rk.PT2:
            self.query_one("#views", TabbedContent).show_tab("export")
        self.load_error = None
        ir_asked = self.query_one(IRView).state != "waiting"  # the IR worker started with the app
        for name in self.views_ready:
            self.view(name).show_archive()
        diff = self.view("diff")
        if self.current_view() == "diff" and diff is not None:  # opened by diff --tui: the focus stays there
            diff.focus_main()
        elif self.current_view() == "archive":  # not when a view key came first: the IR tree takes it on arrival
            self.query_one("#records").focus()
        if self.loaded.summary.format in rk.IR_FORMATS and not ir_asked:
            if self.path in self.diff_extractions:
                self.ir_from_diff()
            elif (diff is not None and diff.state == "loading" and self.path in (self.diff_pair or ())
                  and self.diff_ir != "never"):
                self.ir_after_diff = True  # the diff is extracting this archive already
                self.query_one(IRView).show_loading(self.trust, "the diff is extracting it")
            else:
                self.load_ir(self.trust)
        self.update_status()
        self.call_after_refresh(self._start_scan, self.loaded)
        self.call_after_refresh(self._mount_later)

    @on(ArchiveScanned)
    def _archive_scanned(self, message: ArchiveScanned) -> None:
        if message.state is not self.loaded:  # an archive browsed before (diff --tui)
            return
        self.query_one(ArchiveView).refresh_overview()  # the summary's safety line
        safety = self.view("safety")
        if safety is not None:  # else it shows the verdict when composed
            safety.show_archive()
        ir = self.query_one(IRView)
        if ir.state == "loading":
            ir.tick()
        self.update_status()

    @on(ArchiveFailed)
    def _archive_failed(self, message: ArchiveFailed) -> None:
        self.load_error = message.message
        for name in self.views_ready:
            self.view(name).show_failure(message.message)
        self.update_status(message.message)
        self.call_after_refresh(self._mount_later)

    @work(thread=True, exclusive=True, group="ir", exit_on_error=False)
    def load_ir(self, trust: bool, inline: bool = False) -> None:
        """The IR of the browsed archive; ``inline``: with the inlined graphs too (asked for by ``i``).
        TorchScript archives: ``tsinspect graph --json`` in a process of its own (tui.irfetch), ended if the
        app quits first; pt2 archives are read here (no torch, no child)."""
        from textual.worker import get_current_worker

        from tsinspect.archive.code import index_code
        from tsinspect.archive.reader import open_archive
        from tsinspect.ir.run import Options, extract_ir
        from tsinspect.tui.irfetch import Cancelled, Early, fetch

        worker = get_current_worker()
        started = self.started_ir
        if isinstance(started, Early):  # gated by the app's own reading of the archive (irfetch.Early)
            self.started_ir = None
            if started.key == (self.path, trust, inline):
                self._early = started  # stopped by a quit
                try:
                    fetched = started.result(lambda: self._read.get(self.path), lambda: worker.is_cancelled)
                    if fetched is not None:
                        self.deliver_ir(fetched)
                except Cancelled:
                    pass
                except Exception as exc:
                    self.post_message(IRFailed(str(exc)))
                return
            started.stop()
        try:
            archive = open_archive(self.path)  # its own file handle: the UI keeps reading the other
        except Exception:
            return  # the archive worker says why it cannot be opened
        try:
            with archive:
                if archive.format not in rk.IR_FORMATS:
                    return  # the archive view says what it is; the IR view says it has no IR
                if archive.format == rk.PT2 and self.started_ir is None:
                    extraction = extract_ir(archive, Options(inline=inline, trust=trust))
                else:
                    started, self.started_ir = self.started_ir, None
                    extraction = fetch(self.path, trust=trust, inline=inline, cancelled=lambda: worker.is_cancelled,
                                       index=lambda: index_code(archive), started=started)
            # decoded in slices (the event loop gets the interpreter lock between them), collector paused, then
            # frozen (tsinspect.ir.stream), and indexed here, off the event loop
            self.deliver_ir(extraction)
        except Cancelled:
            return
        except Exception as exc:
            self.post_message(IRFailed(str(exc)))

    def deliver_ir(self, extraction) -> None:
        """From a worker: the tree first, then where each value is defined and used (1 s of CPU at 205k nodes,
        that the tree need not wait for), started once the tree is on screen: built meanwhile, it took the
        interpreter lock from the event loop half the time while the tree was shown."""
        from textual.worker import get_current_worker

        worker = get_current_worker()
        shown = threading.Event()
        counts = count_nodes(extraction.ir)
        self.post_message(IRLoaded(extraction, counts, shown))
        deadline = time.monotonic() + 2.0
        while not shown.wait(0.05) and time.monotonic() < deadline:
            if worker.is_cancelled:
                return
        self.post_message(IRIndexed(extraction, index_graphs(extraction.ir, counts)))

    def request_ir(self, trust: bool, inline: bool = False) -> None:
        self.extraction, self.ir_trust = None, trust
        self.query_one(IRView).show_loading(trust, "fetching the inlined graphs" if inline else "")
        self.load_ir(trust, inline)
        self.update_status()

    @on(IRLoaded)
    def _ir_loaded(self, message: IRLoaded) -> None:
        self.extraction = message.extraction
        view = self.query_one(IRView)
        view.show_ir(message.extraction, message.counts)
        if message.shown is not None:
            self.call_after_refresh(message.shown.set)
        if self.current_view() == "ir" and (self.focused is None or view not in self.focused.ancestors):
            view.focus_main()  # g was pressed while the IR was extracting: the tree takes the focus
        self.update_status()

    @on(IRIndexed)
    def _ir_indexed(self, message: IRIndexed) -> None:
        self.query_one(IRView).indexed(message.extraction, message.index)

    @on(IRFailed)
    def _ir_failed(self, message: IRFailed) -> None:
        self.query_one(IRView).show_error(message.message)
        self.update_status()

    # ----- diff

    def start_diff(self, a: str, b: str) -> None:
        """Compare ``a`` with ``b`` in a worker; the diff view shows it running, then the result."""
        self.diff_pair, self.diff = (a, b), None
        self.query_one(DiffView).show_loading(a, b)
        self.compare(a, b)
        self.update_status()

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def compare(self, a: str, b: str) -> None:
        from tsinspect.archive.problems import ArchiveError
        from tsinspect.diff.irread import extract_path
        from tsinspect.diff.run import diff_archives

        def extract(path, options):
            """The diff's extractions; the one of a whole archive, not inlined, is what the IR view shows."""
            extraction = extract_path(path, options)
            if options.module is None and options.method is None and not options.inline:
                self.diff_extractions[path] = extraction
            return extraction

        try:
            result = diff_archives(a, b, ir=self.diff_ir, trust=self.trust, extract=extract)
            self.post_message(DiffReady(a, b, result))
        except ArchiveError as exc:
            self.post_message(DiffReady(a, b, error=str(exc)))
        except OSError as exc:
            self.post_message(DiffReady(a, b, error=f"{exc.filename + ': ' if exc.filename else ''}"
                                                    f"{exc.strerror or exc}"))
        except Exception as exc:  # keep the UI up and say what happened
            self.post_message(DiffReady(a, b, error=f"internal error ({type(exc).__name__}: {exc})"))

    @on(DiffReady)
    def _diff_ready(self, message: DiffReady) -> None:
        if (message.a, message.b) != self.diff_pair:
            return  # an older comparison, replaced since
        view = self.query_one(DiffView)
        if self.ir_after_diff:
            self.ir_after_diff = False
            self.ir_from_diff()
        if message.result is None:
            view.show_error(message.a, message.b, message.error or "unknown error")
        else:
            self.diff = message.result
            view.show_result(message.result, self.path)
            if self.current_view() == "diff":
                view.focus_main()
        self.update_status()

    @work(thread=True, exclusive=True, group="ir", exit_on_error=False)
    def ir_from_diff(self) -> None:
        """The IR view's IR from the diff's extraction of the browsed archive (decoded there already); a
        child of its own when the diff had none (it failed, or the archive was the traced side)."""
        extraction = self.diff_extractions.get(self.path)
        if extraction is None:
            self.call_from_thread(self.load_ir, self.trust)
            return
        self.deliver_ir(extraction)

    def action_compare(self) -> None:
        if isinstance(self.screen, CompareScreen):
            return
        if len(self.views_ready) < len(VIEWS):  # before the first screen: the diff view is composed first
            async def when_composed() -> None:
                await self.mount_views()
                self.action_compare()

            self.run_worker(when_composed, group="views")
            return
        folder = str(Path(self.path).parent)
        start = "" if folder == "." else folder.rstrip("/") + "/"

        def chosen(path: str | None) -> None:
            if path:
                self.other = path
                self.start_diff(self.path, path)
                # once the dialog is gone: the main screen, resumed, gives the focus back to the widget that had
                # it, whose tab (the safety view's, in test_tui_walk) could take the diff's place
                self.call_after_refresh(self._activate, "diff")

        self.push_screen(CompareScreen(self.path, start), chosen)

    def show_finding(self, index: int) -> None:
        def show(view: DiffView) -> None:
            view.show_finding(index)
            view.focus_main()

        self._jump("diff", show)

    # ----- status

    def update_status(self, error: str | None = None) -> None:
        parts: list = [("tsinspect ", "bold"), printable(Path(self.path).name)]
        if self.loaded is None and not error and self.other:
            parts.append(("  reading...", render.DIM))
        if error:
            parts.append(("  cannot open: " + printable(error), render.BAD))
        elif self.loaded is not None:
            s = self.loaded.summary
            parts.append((f"  {s.format}, {len(s.records)} records", render.DIM))
            parts.append(("  IR: ", render.DIM))
            parts.append(self.query_one(IRView).status())
            scan = self.loaded.scan
            if scan is None:
                parts.append(("  safety: " + ("scan failed (s)" if self.loaded.scan_error else "scanning..."),
                              render.WARN if self.loaded.scan_error else render.DIM))
            elif scan.unsafe:
                parts.append(("  unsafe code found (s)", render.BAD))
        if self.diff_pair is not None:
            parts.append(self._diff_status())
        self.query_one("#status", Static).update(Content.assemble(*parts))

    def _diff_status(self) -> tuple[str, str]:
        a, b = self.diff_pair
        other = basename(b if a == self.path else a)
        state = self.query_one(DiffView).state
        if state == "loading":
            return f"  diff with {other}...", render.DIM
        if state == "failed":
            return f"  diff with {other} failed (d)", render.WARN
        if self.diff is None:
            return "", ""
        count = len(self.diff.findings)
        return (f"  diff with {other}: {count} finding{'s' if count != 1 else ''} (d)",
                render.BAD if count else render.GOOD)

    # ----- views and jumps

    def action_view(self, name: str) -> None:
        if name == "export" and (self.loaded is None or self.loaded.summary.format != rk.PT2):
            self.notify("The export view shows torch.export archives (.pt2); this is not one.", markup=False)
            return
        if name in self.views_ready:
            self._activate(name)
        else:  # its tab shows at once, the view once composed
            self._jump(name, lambda view: view.focus_main())

    def _activate(self, name: str) -> None:
        self.query_one("#views", TabbedContent).active = name
        self.view(name).focus_main()

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        name = event.pane.id or ""
        if name in self.views_ready:
            self.view(name).focus_main()
        elif name in VIEWS:  # a click on the tab of a view not composed yet
            self._jump(name, lambda view: view.focus_main())

    def current_view(self) -> str:
        return self.query_one("#views", TabbedContent).active

    def _jump(self, name: str, go) -> None:
        """Switch to view ``name`` and call ``go`` with it (awaited when it returns an awaitable), in a worker:
        the view may have to be composed first."""
        self.query_one("#views", TabbedContent).active = name

        async def run() -> None:
            if name not in self.views_ready:
                await self.mount_views()
            result = go(self.view(name))
            if inspect.isawaitable(result):
                await result

        self.run_worker(run, group="jump")

    def show_code(self, file: str, line: int | None = None) -> None:
        """Switch to the archive view on a code record, marking ``line``."""
        self._jump("archive", lambda view: view.jump(("record", file), line))

    def show_record(self, key: tuple) -> None:
        self._jump("archive", lambda view: view.jump(key))

    def show_module(self, path: str) -> None:
        self._jump("modules", lambda view: view.jump(path))

    def show_export(self, chain: list) -> None:
        """Switch to the export view on an item: its tree keys from the root down."""
        self._jump("export", lambda view: view.jump(chain))

    def show_node(self, target: tuple) -> None:
        """Switch to the IR view on a method or node: (module path, method, node id or None)."""
        self._jump("ir", lambda view: view.jump(target))

    # ----- search

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """``/`` types a slash in a text field (the search itself, the compare dialog's path) and does nothing
        over a dialog."""
        if action == "search":
            return self.screen is self.screen_stack[0] and not isinstance(self.focused, Input)
        return True

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        self.screen.set_focus(search)  # now: focus() would wait for a later turn of the message queue

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        self._hide_search()
        view = self.view(self.current_view())
        if view is None:  # its tab was clicked and it is being composed
            return
        view.focus_main()
        if not query or self.loaded is None:
            return
        self.find(self.current_view(), view.search, query)

    @work(thread=True, exclusive=True, group="search", exit_on_error=False, description="search")
    def find(self, view: str, search, query: str) -> None:
        """Search off the event loop (``search``: the view's; it reads data, never widgets): a 50k-node graph
        takes a noticeable moment."""
        self.post_message(SearchDone(view, query, search(query)))

    @on(SearchDone)
    def _found(self, message: SearchDone) -> None:
        self.match_view, self.matches, self.match_index = message.view, message.matches, 0
        query = message.query
        if not self.matches:
            self.notify(f"nothing matches {query!r} in this view", severity="warning", markup=False)
            return
        self.notify(f"{counted(len(self.matches), 'match', 'matches')} for {query!r}: n next, N previous", markup=False)
        self._go_to_match()

    def key_escape(self) -> None:
        if self.query_one("#search", Input).display:
            self._hide_search()
            view = self.view(self.current_view())
            if view is not None:
                view.focus_main()

    def _hide_search(self) -> None:
        """Hide the search field and take the focus from it now: a view still loading (the IR tree while `i`
        fetches) cannot take it, and a hidden field kept the keys typed next, q included."""
        self.query_one("#search", Input).display = False
        self.screen.set_focus(None)

    def action_next_match(self, step: int) -> None:
        if not self.matches:
            self.notify("no search yet: press / to search", markup=False)
            return
        self.match_index = (self.match_index + step) % len(self.matches)
        self._go_to_match()

    def _go_to_match(self) -> None:
        target = self.matches[self.match_index]
        jump = {"archive": self.show_record, "modules": self.show_module, "ir": self.show_node,
                "diff": self.show_finding, "export": self.show_export}
        jump[self.match_view](target)

    # ----- help

    def action_help(self) -> None:
        from tsinspect.tui.help import HelpScreen  # Textual's Markdown widget: 31 ms to import, on the first F1

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
