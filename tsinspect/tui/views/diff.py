"""Diff view: the findings of ``tsinspect.diff`` (the DiffResult the diff layer computed; nothing is analysed
here), grouped by method. The highlighted finding shows its message, the original source around it with
the lines the trace dropped (``-``) and kept (``+``) marked, and beside it the lines of the traced
archive's generated code that ran from those source lines.

Paths are shown as base names: the full paths are in the result (and ``tsinspect diff --json``).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, LoadingIndicator, Static, Tree

from tsinspect.archive.text import printable
from tsinspect.diff.model import SEVERITY_TEXT
from tsinspect.tui import render
from tsinspect.tui.messages import CompareChecked
from tsinspect.tui.views.exportdiff import source_label

MAX_LEAVES = 1000  # findings listed per method (structural diffs of big models can have many)
KIND_STYLE = {"dropped_branch": "bold $text-error", "missing_method": "bold $text-error",
              "per_iteration_branch": "bold $text-warning", "unrolled_loop": "bold $text-warning",
              "baked_constant": "bold $text-accent", "divergent_ops": "bold $text-primary"}
MARKS = {"dropped": ("-", "$text-error", "on $error 20%"), "kept": ("+", "$text-success", "on $success 15%")}
VERDICT_STYLE = {"confirmed": "bold $text-error", "not reproduced": "$text-success", "not tested": "$text-warning"}
NO_DIFF = "no differences: the trace keeps every branch and loop the script has"


def basename(path: str | None) -> str:
    return printable((path or "?").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1])


def where(finding) -> str:
    return f"{basename(finding.file)}:{finding.line}" if finding.file and finding.line else ""


def _dedent(texts: list[str]) -> list[str]:
    indents = [len(t) - len(t.lstrip(" ")) for t in texts if t.strip()]
    cut = min(indents, default=0)
    return [t[cut:] for t in texts]


def _code(texts: list[str]) -> list[Content]:
    """Highlighted lines (as Python), one Content per line, common indentation removed."""
    body = printable("\n".join(_dedent(texts)), keep_lines=True)
    from textual.highlight import highlight  # pygments, imported when a diff shows code

    return list(highlight(body, language="python").split("\n", allow_blank=True))[:len(texts)]


def script_excerpt(finding) -> Content:
    """The original source around the finding, with what the trace dropped and kept marked."""
    excerpt = finding.excerpt or ([(finding.line, finding.code, "")] if finding.code and finding.line else [])
    if not excerpt:
        return Content.styled("No source excerpt for this finding.", render.DIM)
    rows: list[Content] = []
    for (number, _, mark), line in zip(excerpt, _code([t for _, t, _ in excerpt])):
        sign, sign_style, background = MARKS.get(mark, (" ", render.DIM, ""))
        number_style = "bold $text-accent" if number == finding.line else render.DIM
        row = Content.assemble((f"{number:>5} ", number_style), (sign, sign_style), (" │ ", render.DIM)) + line
        rows.append(row.stylize(background) if background else row)
    return render.lines(*rows)


def traced_excerpt(finding) -> Content:
    """The traced code/ lines recorded at the excerpt's source lines, each with the source line(s) it ran
    from; then the dropped source lines the trace holds nothing for."""
    rows: list[Content | str] = []
    width = max((len(",".join(map(str, t.source_lines))) for t in finding.traced), default=0)
    current = None
    for line, body in zip(finding.traced, _code([t.text for t in finding.traced])):
        if line.file != current:
            current = line.file
            rows.append(Content.styled(printable(line.file), render.HEAD))
        source = ",".join(map(str, line.source_lines))
        gutter = Content.assemble((f"{line.line:>5} ", render.DIM), (f"← {source:<{width}}", "$text-primary"),
                                  (" │ ", render.DIM))
        rows.append(gutter + (body if line.text else Content.styled("(the result does not carry this line's text)",
                                                                    render.DIM)))
    if finding.traced_total > len(finding.traced):
        rows.append(Content.styled(f"... and {finding.traced_total - len(finding.traced)} more lines", render.DIM))
    covered = {n for t in finding.traced for n in t.source_lines}
    missing = [n for n, _, mark in finding.excerpt if mark == "dropped" and n not in covered]
    if not finding.traced:
        lines = [n for n, _, _ in finding.excerpt] or ([finding.line] if finding.line else [])
        span = (f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}") if lines else "it"
        if finding.kind == "missing_method":
            rows.append(Content.styled("The traced archive has no such method.", render.WARN))
        else:
            rows.append(Content.styled(f"No line of the traced code/ ran from {span}.", render.WARN))
    if missing and finding.traced:
        rows += ["", Content.styled(f"nothing in the trace for the dropped line{'s' if len(missing) > 1 else ''} "
                                    + ", ".join(map(str, missing)), render.BAD)]
    return render.lines(*rows)


def finding_detail(finding, result) -> Content:
    rows: list[Content | str] = [Content.assemble(
        (printable(finding.kind), KIND_STYLE.get(finding.kind, "bold")),
        ("  " + where(finding) if where(finding) else "", "bold"),
        (f"  in {printable(finding.method)}" if finding.method else "", render.DIM))]
    if result.mode == "trace_vs_script":
        origin = "your code" if finding.origin == "user" else f"library code ({finding.package})"
        rows.append(Content.styled(f"{SEVERITY_TEXT.get(finding.severity, finding.severity)} · {origin}", render.DIM))
    rows.append(Content(printable(finding.message)))
    if finding.fix:
        rows.append(Content.assemble(("fix  ", "bold"), printable(finding.fix)))
    if finding.verdict:
        verdict = finding.verdict.get("verdict", "")
        rows.append(Content.assemble((verdict + "  ", VERDICT_STYLE.get(verdict, "bold")),
                                     printable(finding.verdict.get("text", ""))))
    code = finding.details.get("code_location")
    if code and result.mode == "trace_vs_script":
        rows.append(Content.assemble(("scripted code  ", render.DIM), printable(code), ("  (c: show it)", render.DIM)))
    return render.lines(*rows)


def structural_detail(finding) -> Content:
    diff = finding.details.get("diff")
    if diff:
        rows = []
        for line in diff[:2000]:
            style = (render.BAD if line.startswith("-") else render.GOOD if line.startswith("+")
                     else render.DIM if line.startswith("@") else "")
            rows.append(Content.styled(printable(line), style))
        return render.lines(*rows)
    details = {k: v for k, v in finding.details.items() if k != "code_location"}
    if not details:
        return Content.styled("No more detail for this finding.", render.DIM)
    return render.lines(*(render.field(str(k), printable(str(v))[:2000]) for k, v in details.items()))


def header(result, browsed: str) -> Content:
    from tsinspect.diff.text import summary_line

    if result.mode == "export":
        from tsinspect.tui.views.exportdiff import export_header
        return export_header(result, browsed, basename)
    if result.mode == "structural":
        kinds = "/".join(sorted({v.get("kind", "?") for v in result.kinds.values()}))
        first = Content.assemble(("structural diff ", "bold"), f"{basename(result.a)} vs {basename(result.b)}",
                                 (f"  both archives are {kinds}", render.DIM))
        if not result.same_model:
            first += Content.styled(f"; they do not look like one model: {printable(result.same_model_reason)}",
                                    render.WARN)
    else:
        first = Content.assemble(("traced ", "bold"), basename(result.traced), ("  scripted ", "bold"),
                                 basename(result.scripted),
                                 ("  (browsed)" if browsed == result.scripted else "", render.DIM))
    count = summary_line(result) if result.findings else (NO_DIFF if result.mode == "trace_vs_script"
                                                          else "no differences")
    analysis = (f"   analysis: {printable(result.analysis_note or result.analysis)}"
                if result.mode == "trace_vs_script" else "")
    second = Content.assemble((count, render.BAD if result.findings else render.GOOD), (analysis, render.DIM))
    notes = [Content.styled("note: " + printable(n), render.DIM) for n in result.notes[:3]]
    verified, unexplained = result.verification_lines() if result.mode == "trace_vs_script" else ([], [])
    notes += [Content.styled(printable(n), render.DIM) for n in verified[:2]]
    notes += [Content.styled(printable(n), render.WARN) for n in unexplained[:3]]
    return render.lines(first, second, *notes)


class DiffView(Vertical):
    """Findings on the top left, the highlighted one's message on the top right, the scripted source and
    the traced code below, side by side."""

    BINDINGS = [
        Binding("c", "code", "Code line", tooltip="Show the finding's line in the scripted archive's code/"),
        Binding("ctrl+o", "app.compare", "Compare", tooltip="Diff the browsed archive with another one"),
        Binding("v", "verify", "Verify", show=False,
                tooltip="Run both archives on generated inputs (sandboxed child): a verdict per finding"),
    ]

    can_focus = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.result = None
        self.state = "none"  # none, loading, loaded, failed
        self.findings: list = []
        self._leaves: dict[int, Any] = {}  # finding index -> tree node
        self._browsed = ""
        self.verifying = False

    def compose(self) -> ComposeResult:
        yield Static(id="diff-status")
        yield LoadingIndicator(id="diff-loading")
        with Horizontal(id="diff-top"):
            yield Tree("findings", id="diff-findings")
            with VerticalScroll(id="diff-detail-scroll"):
                yield Static(id="diff-detail")
        with Horizontal(id="diff-code"):
            with Vertical(id="diff-script-pane"):
                yield Static(id="diff-script-title", classes="pane-title")
                with ScrollableContainer(id="diff-script-scroll"):
                    yield Static(id="diff-script")
            with Vertical(id="diff-trace-pane"):
                yield Static(id="diff-trace-title", classes="pane-title")
                with ScrollableContainer(id="diff-trace-scroll"):
                    yield Static(id="diff-trace")

    def on_mount(self) -> None:
        self.query_one("#diff-findings", Tree).show_root = False
        self.show_none()

    # ----- states

    def _panes(self, shown: bool) -> None:
        for selector in ("#diff-top", "#diff-code"):
            self.query_one(selector).display = shown
        self.query_one("#diff-loading").display = self.state == "loading"

    def show_none(self) -> None:
        self.state = "none"
        self._panes(False)
        self.query_one("#diff-status", Static).update(Content.assemble(
            ("No second archive to compare with.\n", "bold"),
            ("ctrl+o", "bold $text-accent"),
            (": choose the traced (or scripted) variant of this model. tsinspect tells which is which and names, "
             "by file and line of your source, what the trace lost: dropped branches, unrolled loops, baked "
             "constants. From the shell: tsinspect diff A B --tui", render.DIM)))

    def show_loading(self, a: str, b: str) -> None:
        import time

        self.state, self._loading = "loading", (a, b, time.monotonic())
        self._panes(False)
        self.tick()

    def tick(self) -> None:
        """The running comparison, with its elapsed time (the app calls this every second)."""
        import time

        a, b, since = self._loading
        self.query_one("#diff-status", Static).update(Content.assemble(
            (f"Comparing {basename(a)} with {basename(b)}...  {time.monotonic() - since:.0f} s", "bold"),
            ("\nReading both archives; the IR analysis loads each with torch in a child process when the safety "
             "scan allows it (a few seconds). The other views fill in meanwhile.", render.DIM)))

    def show_error(self, a: str, b: str, message: str) -> None:
        self.state = "failed"
        self._panes(False)
        self.query_one("#diff-status", Static).update(Content.assemble(
            (f"Cannot compare {basename(a)} with {basename(b)}:\n", "bold"), (printable(message), render.BAD),
            ("\nctrl+o: choose another archive.", render.DIM)))

    def show_result(self, result, browsed: str) -> None:
        self.state, self.result, self._browsed = "loaded", result, browsed
        self.show_header(browsed)
        tree = self.query_one("#diff-findings", Tree)
        tree.clear()
        self.findings, self._leaves = list(result.findings), {}
        index = {id(f): i for i, f in enumerate(self.findings)}
        for method, findings in result.by_method():
            group = tree.root.add(Text(printable(method), style="bold", no_wrap=True, end="")
                                  .append(f"  {len(findings)}", style="dim"), expand=True)
            for finding in findings[:MAX_LEAVES]:
                self._leaves[index[id(finding)]] = group.add_leaf(self._label(finding), data=finding)
            if len(findings) > MAX_LEAVES:
                group.add_leaf(Text(f"... {len(findings) - MAX_LEAVES} more (tsinspect diff --json lists them)",
                                    style="dim"))
        self._panes(bool(self.findings))
        self.query_one("#diff-trace-pane").display = result.mode in ("trace_vs_script", "export")
        if self.findings:
            self.show_finding(0)

    def show_header(self, browsed: str) -> None:
        self._browsed = browsed
        self.query_one("#diff-status", Static).update(header(self.result, browsed))

    @staticmethod
    def _label(finding) -> Text:
        text = Text(no_wrap=True, end="")
        text.append(where(finding) or "-")
        style = {"dropped_branch": "bold red", "missing_method": "bold red", "per_iteration_branch": "yellow",
                 "unrolled_loop": "yellow", "baked_constant": "magenta", "divergent_ops": "cyan"}
        text.append("  " + printable(finding.kind), style=style.get(finding.kind, "bold"))
        if finding.verdict:
            verdict = finding.verdict.get("verdict", "")
            text.append(f"  {verdict}", style={"confirmed": "bold red", "not reproduced": "green"}.get(verdict, "yellow"))
        return text

    # ----- the highlighted finding

    def show_finding(self, index: int) -> None:
        """Move the cursor to finding ``index`` (its detail follows the highlight)."""
        node = self._leaves.get(index)
        if node is None:
            return
        tree = self.query_one("#diff-findings", Tree)
        tree.call_after_refresh(tree.move_cursor, node)  # the tree lays its lines out on the next refresh
        self._show(node.data)

    @on(Tree.NodeHighlighted, "#diff-findings")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self._show(event.node.data)

    @on(Tree.NodeSelected, "#diff-findings")
    def _selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data is not None:  # enter on a finding: its line of code, as in the safety view
            self.action_code()

    def current(self):
        node = self.query_one("#diff-findings", Tree).cursor_node
        return node.data if node is not None else None

    def _show(self, finding) -> None:
        result = self.result
        self.query_one("#diff-detail", Static).update(finding_detail(finding, result))
        script_title = self.query_one("#diff-script-title", Static)
        if result.mode == "structural":
            script_title.update(Content.styled("detail", render.HEAD))
            self.query_one("#diff-script", Static).update(structural_detail(finding))
            return
        lines = [n for n, _, _ in finding.excerpt] or ([finding.line] if finding.line else [])
        span = (f":{lines[0]}" if len(lines) == 1 else f":{lines[0]}-{lines[-1]}") if lines else ""
        marks = {mark for _, _, mark in finding.excerpt}
        legend = [("  - dropped", "$text-error")] if "dropped" in marks else []
        legend += [("  + kept", "$text-success")] if "kept" in marks else []
        script_title.update(Content.assemble(
            ("scripted: " + source_label(finding), render.HEAD), (f"{basename(finding.file)}{span}" if finding.file else "", "bold"),
            *legend))
        self.query_one("#diff-script", Static).update(script_excerpt(finding))
        self.query_one("#diff-trace-title", Static).update(Content.assemble(
            ("traced: its code/ ", render.HEAD), (basename(result.traced), "bold"),
            ("  ← source line", render.DIM)))
        self.query_one("#diff-trace", Static).update(traced_excerpt(finding))
        if result.mode == "export":
            from tsinspect.tui.views.exportdiff import export_nodes, export_titles
            titles = export_titles(result, finding, basename)
            script_title.update(titles[0])
            self.query_one("#diff-trace-title", Static).update(titles[1])
            self.query_one("#diff-trace", Static).update(export_nodes(finding))
        for selector in ("#diff-script-scroll", "#diff-trace-scroll", "#diff-detail-scroll"):
            self.query_one(selector).scroll_home(animate=False)

    # ----- diff --verify, in a worker: the UI stays live, the status line shows its progress

    def action_verify(self) -> None:
        result = self.result
        if self.state != "loaded" or result is None or result.mode != "trace_vs_script" or self.verifying:
            self.app.notify("Verify runs a loaded trace-vs-script diff (once at a time).", severity="warning")
            return
        self.verifying = True
        self._progress("starting")
        self._verify(result, self.app.trust)

    def _progress(self, text: str) -> None:
        if self.verifying and self.result is not None:
            self.query_one("#diff-status", Static).update(
                header(self.result, self._browsed) + Content.styled(f"\nverifying: {text}...", render.WARN))

    @work(thread=True, exclusive=True, group="verify", exit_on_error=False)
    def _verify(self, result, trust: bool) -> None:
        import copy

        from tsinspect.verify.run import verify

        checked = copy.copy(result)  # verify sorts its findings: not the list the view shows meanwhile
        checked.findings = list(result.findings)
        try:
            verify(checked, trust=trust, progress=lambda text: self.app.call_from_thread(self._progress, text))
        except Exception as exc:  # noqa: BLE001 - a message in the UI, never a crash
            self.app.call_from_thread(self.app.notify, f"verify failed: {printable(str(exc))}", severity="error")
            checked = result
        self.app.call_from_thread(self._verified, checked)

    def _verified(self, result) -> None:
        self.verifying = False
        if self.result is not None and result.traced == self.result.traced and result.scripted == self.result.scripted:
            self.show_result(result, self._browsed)

    # ----- app protocol (the app calls these on every view)

    def show_archive(self) -> None:
        pass

    def show_failure(self, message: str) -> None:
        pass

    def focus_main(self) -> None:
        """The findings; the view itself while there are none (so the focus never stays in a hidden view, which
        would switch the tabs back to it)."""
        if self.state == "loaded" and self.findings:
            self.query_one("#diff-findings", Tree).focus()
        else:
            self.focus()

    def search(self, query: str) -> list[int]:
        """Indices of the findings whose kind, method, file:line or message contains ``query``."""
        q = query.lower()
        return [i for i, f in enumerate(self.findings)
                if i in self._leaves and any(q in (s or "").lower() for s in (f.kind, f.method, where(f), f.message))]

    def action_code(self) -> None:
        finding = self.current()
        code = finding.details.get("code_location") if finding is not None else None
        if not code or self.result is None or self.result.mode != "trace_vs_script":
            self.app.notify("This finding has no line in the scripted code/.", severity="warning")
            return
        if self.app.path != self.result.scripted:
            self.app.notify(f"The archive view shows {basename(self.app.path)}; this line is in the scripted "
                            f"archive {basename(self.result.scripted)} ({printable(code)}).", markup=False)
            return
        file, _, line = code.rpartition(":")
        self.app.show_code(file, int(line) if line.isdigit() else None)


class PathSuggester(Suggester):
    """Completes the last part of a path from its folder: archives (.pt, .ptl, .zip) and folders first."""

    def __init__(self):
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        import os

        folder, slash, stem = value.rpartition("/")
        base = folder + slash  # "samples/", "/" or ""
        try:
            with os.scandir(os.path.expanduser(base) if base else ".") as entries:
                names = sorted((not e.is_dir() and not e.name.endswith((".pt", ".ptl", ".zip")), e.name, e.is_dir())
                               for e in entries
                               if e.name.startswith(stem) and (stem.startswith(".") or not e.name.startswith(".")))
        except OSError:
            return None
        if not names or (not stem and len(names) > 1):
            return None
        _, name, is_dir = names[0]
        return base + name + ("/" if is_dir else "")


class CompareScreen(ModalScreen[str | None]):
    """Ask for the archive to compare the browsed one with; checks it in a worker, errors shown here."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: str, start: str = ""):
        super().__init__()
        self.current, self.start = current, start

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-dialog"):
            yield Static(Content.assemble(("Compare ", "bold"), (basename(self.current), "bold"),
                                          (" with another archive", "bold")))
            yield Static(Content.styled("The traced or the scripted variant of the same model, in either order; "
                                        "two archives of one kind get a structural diff.", render.DIM))
            yield Input(self.start, placeholder="path of a .pt archive (right arrow completes)", id="compare-path",
                        suggester=PathSuggester(), select_on_focus=False)
            yield Static(id="compare-error")
            with Horizontal(id="compare-buttons"):
                yield Button("Cancel", id="compare-cancel")
                yield Button("Compare", id="compare-ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#compare-error").display = False
        self.query_one("#compare-path", Input).focus()

    @on(Button.Pressed, "#compare-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#compare-ok")
    @on(Input.Submitted, "#compare-path")
    def _submit(self) -> None:
        path = self.query_one("#compare-path", Input).value.strip()
        if not path:
            self._error("Type the path of an archive.")
            return
        self._error("checking...", render.DIM)
        self.check(path)

    def _error(self, message: str, style: str = render.BAD) -> None:
        error = self.query_one("#compare-error", Static)
        error.update(Content.styled(printable(message), style))
        error.display = True

    @work(thread=True, exclusive=True, group="compare-check", exit_on_error=False)
    def check(self, path: str) -> None:
        self.post_message(CompareChecked(path, check_archive(path, self.current)))

    @on(CompareChecked)
    def _checked(self, message: CompareChecked) -> None:
        if message.path != self.query_one("#compare-path", Input).value.strip():
            return  # the path was edited meanwhile
        if message.error:
            self._error(message.error)
            self.query_one("#compare-path", Input).focus()
        else:
            import os

            self.dismiss(os.path.expanduser(message.path))


def check_archive(path: str, current: str) -> str | None:
    """Why ``path`` cannot be compared with ``current`` (None when it can)."""
    import os

    from tsinspect.archive.problems import ArchiveError
    from tsinspect.archive.reader import open_archive

    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return f"{path}: no such file" + ("" if os.path.isabs(full) else f" (relative to {os.getcwd()})")
    if os.path.isdir(full):
        return f"{path} is a folder; give the path of an archive file"
    try:
        if os.path.exists(current) and os.path.samefile(full, current):
            return f"{path} is the archive being browsed; choose its traced or scripted variant"
        with open_archive(full) as archive:
            fmt = archive.format
    except ArchiveError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    except Exception as exc:  # a hostile file: say so, keep the dialog
        return f"{path}: cannot be read ({type(exc).__name__}: {exc})"
    if fmt not in ("torchscript", "lite"):
        return f"{path} is a {fmt} file, not a TorchScript archive; diff compares TorchScript archives"
    return None
