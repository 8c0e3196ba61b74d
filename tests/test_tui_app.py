"""Pilot tests: every view and key path of the terminal UI, waiting on workers, never sleeping."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from textual.widgets import DataTable, OptionList

from helpers import REPO, SAMPLES, sample_line
from tui_driver import cursor_label, press, run, settle, started, status, text_of, typed, until


def test_opens_on_the_archive_overview_then_the_ir_arrives():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            assert app.query_one("#views").active == "archive"
            overview = text_of(app, "#overview-body")
            assert "torchscript" in overview and "modules       3" in overview
            assert "IR: meta load" in status(app)
            groups = [c.label.plain.split()[0] for c in app.query_one("#records").root.children]
            assert groups == ["code", "pickles", "tensors", "metadata"]
    run(body())


def test_the_ui_process_never_imports_torch():
    script = (
        "import sys, asyncio\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from tui_driver import started\n"
        "async def main():\n"
        f"    async with started({str(SAMPLES / 'gate_scripted.pt')!r}) as (app, pilot):\n"
        "        assert app.query_one('IRView').state == 'loaded'\n"
        "asyncio.run(main())\n"
        "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_code_record_shows_highlighted_code_with_original_lines():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "down")
            assert cursor_label(app, "#records").startswith("models.py")  # code/__torch__/ is left out
            assert app.query_one("#record-pane").current == "code"
            code = text_of(app, "#code-body")
            assert f"models.py:{sample_line('if-cond')} │     if bool(torch.gt(torch.sum(h), 0)):" in code
    run(body())


def test_pickle_tree_expands_lazily_and_opcodes_toggle():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            app.show_record(("record", "data.pkl"))
            await settle(app, pilot)
            assert app.query_one("#record-pane").current == "pickle"
            tree = app.query_one("#pickle-tree")
            labels = [c.label.plain for c in tree.root.children]
            assert any(label.startswith(".proj: ") for label in labels), labels
            proj = next(c for c in tree.root.children if c.label.plain.startswith(".proj"))
            assert not proj.children  # nothing below is built until it is expanded
            proj.expand()
            await settle(app, pilot)
            assert any("Tensor float32[4x4]" in c.label.plain for c in proj.children)
            tree.focus()
            await press(app, pilot, "o")
            ops = app.query_one("#pickle-ops", DataTable)
            assert ops.display and ops.row_count > 10
            await press(app, pilot, "o")
            assert tree.display and not ops.display
    run(body())


def test_tensor_table_and_value_preview():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            app.show_record(("tensor", "proj.bias"))
            await settle(app, pilot)
            assert app.query_one("#record-pane").current == "tensors"
            table = app.query_one("#tensor-table", DataTable)
            assert table.row_count == 2 and table.cursor_row == 1
            table.focus()
            await press(app, pilot, "enter")
            preview = text_of(app, "#tensor-preview")
            assert "first 4 of 4 values" in preview
            assert len(preview.splitlines()[-1].split()) == 4
    run(body())


def test_extra_files_as_text_and_hex(tmp_path):
    path = tmp_path / "extra.pt"
    shutil.copy(SAMPLES / "gate_extra.pt", path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("gate_extra/extra/blob.bin", bytes(range(40)))
        zf.writestr("gate_extra/extra/[red]x[/red]\x1b[2J.txt", "[bold]not markup[/bold]")

    async def body():
        async with started(path) as (app, pilot):
            app.show_record(("record", "extra/meta.json"))
            await settle(app, pilot)
            assert '"author": "tsinspect samples"' in text_of(app, "#raw-body")
            app.show_record(("record", "extra/blob.bin"))
            await settle(app, pilot)
            raw = text_of(app, "#raw-body")
            assert "binary, 40 bytes" in raw and "00000000  00 01 02 03" in raw
            app.show_record(("record", "extra/[red]x[/red]\x1b[2J.txt"))
            await settle(app, pilot)
            assert text_of(app, "#raw-body") == "[bold]not markup[/bold]"
            assert text_of(app, "#raw-title") == "extra/[red]x[/red]\\x1b[2J.txt"
            group = next(c for c in app.query_one("#records").root.children if c.label.plain.startswith("extra"))
            assert "[red]x[/red]\\x1b[2J.txt" in " ".join(c.label.plain for c in group.children)
    run(body())


def test_modules_view_and_jump_to_class_code():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "m")
            assert app.query_one("#views").active == "modules"
            assert "models.Gate" in text_of(app, "#module-detail")
            await press(app, pilot, "down")
            assert cursor_label(app, "#module-tree").startswith("proj")
            detail = text_of(app, "#module-detail")
            assert "parameters (2)" in detail and "weight  float32[4, 4]" in detail and "forward" in detail
            await press(app, pilot, "c")
            assert app.query_one("#views").active == "archive"
            assert app.query_one("#record-pane").current == "code"
            assert "linear.py" in text_of(app, "#code-title")
    run(body())


def test_ir_view_nodes_definitions_uses_and_code_jump():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "g")
            tree = app.query_one("#ir-tree")
            assert app.focused is tree and cursor_label(app, "#ir-tree").startswith("forward")
            app.show_node(("", "forward", None))
            await settle(app, pilot)
            await press(app, pilot, "slash")
            await typed(app, pilot, "prim::If", "enter")
            assert "= prim::If(" in cursor_label(app, "#ir-tree")
            node = tree.cursor_node
            node.expand()
            await settle(app, pilot)
            assert [c.label.plain.split("(")[0] for c in node.children] == ["block0", "block1"]
            info = text_of(app, "#ir-info")
            assert "prim::If" in info and f"models.py:{sample_line('if-cond')}" in info
            # the input of the If is defined by aten::Bool: follow the link
            links = app.query_one("#ir-links", OptionList)
            index = next(i for i, o in enumerate(links.options) if "defined by" in str(o.prompt))
            links.focus()
            links.highlighted = index
            await press(app, pilot, "enter")
            assert "aten::Bool" in cursor_label(app, "#ir-tree")
            await press(app, pilot, "c")
            assert app.query_one("#views").active == "archive"
            assert f"original /work/main/samples/models.py:{sample_line('if-cond')}" in text_of(app, "#code-origin")
    run(body())


def test_ir_search_next_previous_and_inlined_toggle():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "g", "slash")
            await typed(app, pilot, "h0", "enter")
            assert len(app.matches) >= 1 and "%h0" in cursor_label(app, "#ir-tree")
            await press(app, pilot, "slash")
            await typed(app, pilot, "aten::size", "enter")
            first = cursor_label(app, "#ir-tree")
            await press(app, pilot, "n")
            second = cursor_label(app, "#ir-tree")
            assert "aten::size" in first and "aten::size" in second and first != second
            await press(app, pilot, "N")
            assert cursor_label(app, "#ir-tree") == first
            view = app.query_one("IRView")
            await press(app, pilot, "i")
            assert view.inlined and "inlined" in status(app)
            assert view.search("aten::linear")  # the Linear call is inlined into forward
            await press(app, pilot, "i")
            assert not view.inlined and not view.search("aten::linear")[:1] == view.search("prim::CallMethod")[:1]
    run(body())


def test_safety_view_lists_problems_and_findings(setstate_file_writer_archive, setstate_marker):
    async def body():
        async with started(setstate_file_writer_archive) as (app, pilot):
            assert "unsafe code found" in status(app) and "refused" in status(app)
            await press(app, pilot, "s")
            findings = app.query_one("#findings", DataTable)
            assert app.focused is findings
            assert "unsafe" in str(findings.get_row_at(0)[0])
            await press(app, pilot, "enter")
            assert app.query_one("#record-pane").current == "code"
    run(body())
    assert not setstate_marker.exists()


def test_refused_ir_is_explained_in_place_and_trust_needs_confirmation(setstate_file_writer_archive,
                                                                        setstate_marker):
    async def body():
        async with started(setstate_file_writer_archive) as (app, pilot):
            await press(app, pilot, "g")
            view = app.query_one("IRView")
            assert view.state == "refused"
            assert "refusing to load" in text_of(app, "#ir-status") and "t: load it" in text_of(app, "#ir-status")
            assert any("__setstate__" in c.label.plain for c in app.query_one("#ir-tree").root.children)
            await press(app, pilot, "t")
            assert type(app.screen).__name__ == "TrustScreen"
            await press(app, pilot, "escape")
            assert view.state == "refused"
    run(body())
    assert not setstate_marker.exists()


def test_archive_torch_cannot_load_keeps_every_torch_free_view(custom_op_archive):
    async def body():
        async with started(custom_op_archive) as (app, pilot):
            view = app.query_one("IRView")
            assert view.state == "failed"
            assert "torchvision::nms" in text_of(app, "#ir-status")
            methods = app.query_one("#ir-tree").root.children
            methods[0].expand()
            await settle(app, pilot)
            assert any("torchvision::nms" in c.label.plain for m in methods for c in m.children)
            await press(app, pilot, "m")
            assert app.query_one("#module-tree").root.label.plain
    run(body())


def test_not_an_archive_is_explained_in_place(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("just text\n")

    async def body():
        async with started(path) as (app, pilot):
            assert "cannot open" in status(app) and "not a PyTorch archive" in status(app)
            assert "not a PyTorch archive" in text_of(app, "#overview-body")
            await press(app, pilot, "g", "m", "s", "a", "slash", "x", "enter")
            assert app.is_running
    run(body())


def test_state_dict_has_no_ir_and_says_so():
    async def body():
        async with started(SAMPLES / "gate_state_dict.pt") as (app, pilot):
            await press(app, pilot, "g")
            assert "no TorchScript code" in text_of(app, "#ir-status")
            assert "none in this format" in status(app)
    run(body())


def test_help_lists_every_binding_and_closes():
    from tsinspect.tui.help import KEYS

    async def body():
        async with started(SAMPLES / "plain_scripted.pt", ir=False) as (app, pilot):
            await press(app, pilot, "f1")
            assert type(app.screen).__name__ == "HelpScreen"
            keys = {key for _, key, _ in KEYS}
            for binding in app.BINDINGS:
                shown = {"slash": "/", "f1": "F1", "n": "n / N", "N": "n / N"}.get(binding.key, binding.key)
                assert shown in keys, binding.key
            await press(app, pilot, "escape")
            assert type(app.screen).__name__ != "HelpScreen"
            await press(app, pilot, "q")
            assert not app.is_running
    run(body())


def test_command_palette_jumps_to_a_tensor_and_a_node():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "ctrl+p")
            await typed(app, pilot, "tensor: proj.bias")
            await until(app, pilot, lambda: "proj.bias" in str(app.screen.query("CommandList").first().options
                                                                 [0].prompt) if app.screen.query("CommandList")
                        and app.screen.query("CommandList").first().option_count else False, "palette hits")
            await press(app, pilot, "enter")
            assert app.query_one("#record-pane").current == "tensors"
            assert app.query_one("#tensor-table", DataTable).cursor_row == 1
            await press(app, pilot, "ctrl+p")
            await typed(app, pilot, "node: %h0 = prim::If")
            await until(app, pilot, lambda: app.screen.query("CommandList").first().option_count > 0
                        if app.screen.query("CommandList") else False, "palette hits")
            await press(app, pilot, "enter")
            assert app.query_one("#views").active == "ir"
            assert "prim::If" in cursor_label(app, "#ir-tree")
    run(body())


def test_silero_vad_opens_with_modules_and_ir(silero_vad_archive):
    async def body():
        async with started(silero_vad_archive) as (app, pilot):
            assert app.query_one("IRView").state == "loaded"
            await press(app, pilot, "m")
            assert "_model" in " ".join(c.label.plain for c in app.query_one("#module-tree").root.children)
            view = app.query_one("IRView")
            assert view.search("aten::stft") or view.search("aten::conv1d")
    run(body())


def test_bare_file_prints_the_summary_when_not_on_a_terminal():
    from helpers import run_cli

    out = run_cli(SAMPLES / "gate_scripted.pt").stdout
    assert "torchscript" in out and "modules" in out
    script = ("import sys\nfrom tsinspect.cli import main\n"
              f"main([{str(SAMPLES / 'gate_scripted.pt')!r}])\n"
              "print('textual' in sys.modules, 'torch' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "False False"


# ----- diff view


def _finding_lines(app) -> list[int]:
    tree = app.query_one("#diff-findings")
    return [int(leaf.label.plain.split()[0].rsplit(":", 1)[1]) for group in tree.root.children for leaf in group.children]


def test_diff_view_names_torch_as_the_owner_of_a_library_findings_source(tmp_path):
    """A traced nn.TransformerEncoder's findings are all in torch's files: the excerpt is torch's source, not
    the user's."""
    import warnings

    import torch
    from torch import nn

    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1,
                                  enable_nested_tensor=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(2, 3, 8), check_trace=False), str(tmp_path / "t.pt"))
        torch.jit.save(torch.jit.script(model), str(tmp_path / "s.pt"))

    async def body():
        async with started(tmp_path / "s.pt", other=str(tmp_path / "t.pt"), diff_ir="never") as (app, pilot):
            await until(app, pilot, lambda: app.query_one("DiffView").state == "loaded", "the diff")
            assert "· library code (torch)" in text_of(app, "#diff-detail")
            assert text_of(app, "#diff-script-title").startswith("scripted: torch source ")

    run(body())


def test_diff_view_lists_findings_and_marks_the_excerpt_beside_the_traced_code():
    async def body():
        # the traced archive first: the app browses the scripted one, whichever order
        async with started(SAMPLES / "gate_traced.pt", other=str(SAMPLES / "gate_scripted.pt"),
                           diff_ir="never") as (app, pilot):
            await until(app, pilot, lambda: app.query_one("DiffView").state == "loaded", "the diff")
            assert app.query_one("#views").active == "diff"
            assert app.path.endswith("gate_scripted.pt") and app.loaded.summary.path.endswith("gate_scripted.pt")
            assert "diff with gate_traced.pt: 3 findings" in status(app)
            header = text_of(app, "#diff-status")
            assert "traced gate_traced.pt  scripted gate_scripted.pt  (browsed)" in header
            assert "3 findings: 2 dropped_branch, 1 unrolled_loop" in header
            assert _finding_lines(app) == [sample_line("if-cond"), sample_line("loop"), sample_line("train-cond")]
            # the first finding is shown: the then branch dropped, the else branch kept, the traced line beside
            assert app.focused is app.query_one("#diff-findings")
            assert text_of(app, "#diff-detail").startswith(f"dropped_branch  models.py:{sample_line('if-cond')}")
            script = text_of(app, "#diff-script").splitlines()
            assert script[0].startswith(f"   {sample_line('if-cond')}   │ if h.sum() > 0:")
            assert script[1].startswith(f"   {sample_line('if-then')} - │     h = torch.relu(h)")
            assert script[3].startswith(f"   {sample_line('else-body')} + │     h = torch.tanh(h) * -1.0")
            trace = text_of(app, "#diff-trace")
            assert f"← {sample_line('else-body')} │ h = torch.mul(torch.tanh((proj).forward(x, )), CONSTANTS.c0)" in trace
            assert f"nothing in the trace for the dropped line {sample_line('if-then')}" in trace
            assert "/work" not in text_of(app, "#diff-script-title") + text_of(app, "#diff-detail")
            assert text_of(app, "#diff-script-title").startswith("scripted: your source models.py:")
            # down: the unrolled loop (a silent wrong result, ranked before a mode-only one), its body twice
            await press(app, pilot, "down")
            assert "unrolled" in text_of(app, "#diff-detail")
            assert text_of(app, "#diff-trace").count(f"← {sample_line('loop-body')} │") == 2
            # down: the training branch, whose dropped side left nothing in the trace
            await press(app, pilot, "down")
            assert "self.training" in text_of(app, "#diff-detail")
            assert f"{sample_line('train-body')} - │" in text_of(app, "#diff-script")
            assert "No line of the traced code/ ran from lines" in text_of(app, "#diff-trace")
            # c: the finding's line in the scripted code/, in the archive view (it browses the scripted archive)
            await press(app, pilot, "c")
            assert app.query_one("#views").active == "archive"
            assert f"models.py:{sample_line('train-cond')}" in text_of(app, "#code-origin")
            # search and the command palette find findings
            await press(app, pilot, "d", "slash")
            await typed(app, pilot, "self.training", "enter")
            assert app.query_one("DiffView").current().line == sample_line("train-cond")
            await press(app, pilot, "enter")  # enter on a finding: its code line, as c does
            assert app.query_one("#views").active == "archive"
            assert f"models.py:{sample_line('train-cond')}" in text_of(app, "#code-origin")
            await press(app, pilot, "ctrl+p")
            await typed(app, pilot, "diff: unrolled_loop")
            await until(app, pilot, lambda: app.screen.query("CommandList").first().option_count > 0
                        if app.screen.query("CommandList") else False, "palette hits")
            await press(app, pilot, "enter")
            assert app.query_one("#views").active == "diff"
            assert app.query_one("DiffView").current().line == sample_line("loop")
    run(body())


def test_compare_dialog_validates_the_path_then_diffs_against_the_browsed_archive(tmp_path):
    notes = tmp_path / "notes.pt"
    notes.write_text("just text\n")

    async def attempt(app, pilot, path: str) -> str:
        field = app.screen.query_one("#compare-path")
        field.value = path
        await press(app, pilot, "enter")
        await until(app, pilot, lambda: type(app.screen).__name__ != "CompareScreen"
                    or "checking" not in text_of(app.screen, "#compare-error"), "the check")
        return text_of(app.screen, "#compare-error") if type(app.screen).__name__ == "CompareScreen" else ""

    async def body():
        async with started(SAMPLES / "gate_traced.pt", diff_ir="never") as (app, pilot):
            await press(app, pilot, "d")
            assert "No second archive" in text_of(app, "#diff-status")
            await press(app, pilot, "ctrl+o")
            assert type(app.screen).__name__ == "CompareScreen"
            assert (await attempt(app, pilot, str(tmp_path / "missing.pt"))).endswith("missing.pt: no such file")
            assert "is a folder" in await attempt(app, pilot, str(tmp_path))
            assert "not a PyTorch archive" in await attempt(app, pilot, str(notes))
            assert "not a TorchScript archive" in await attempt(app, pilot, str(SAMPLES / "gate_state_dict.pt"))
            assert "the archive being browsed" in await attempt(app, pilot, str(SAMPLES / "gate_traced.pt"))
            assert type(app.screen).__name__ == "CompareScreen" and app.other is None
            assert await attempt(app, pilot, str(SAMPLES / "gate_scripted.pt")) == ""
            await until(app, pilot, lambda: app.query_one("DiffView").state == "loaded", "the diff")
            assert app.query_one("#views").active == "diff"
            assert app.path.endswith("gate_traced.pt")  # the archive the user browses stays
            assert _finding_lines(app) == [sample_line("if-cond"), sample_line("loop"), sample_line("train-cond")]
            assert "(browsed)" not in text_of(app, "#diff-status")
            await press(app, pilot, "c")  # the scripted code is not in the archive browsed: said, not jumped
            assert app.query_one("#views").active == "diff"
            # escape cancels the dialog and keeps the comparison
            await press(app, pilot, "ctrl+o", "escape")
            assert type(app.screen).__name__ != "CompareScreen" and app.query_one("DiffView").state == "loaded"
    run(body())


def test_a_diff_that_fails_is_explained_in_the_diff_view():
    async def body():
        async with started(SAMPLES / "plain_traced.pt", other=str(SAMPLES / "gate_scripted.pt"),
                           diff_ir="never") as (app, pilot):
            await until(app, pilot, lambda: app.query_one("DiffView").state == "failed", "the diff")
            assert "not variants of the same model" in text_of(app, "#diff-status")
            assert app.path.endswith("plain_traced.pt") and app.loaded is not None  # the first one is browsed
            assert "diff with gate_scripted.pt failed" in status(app)
            await press(app, pilot, "a", "d")
            assert app.is_running
    run(body())


def test_diff_tui_prints_the_report_when_not_on_a_terminal():
    from helpers import run_cli

    proc = run_cli("diff", SAMPLES / "gate_traced.pt", SAMPLES / "gate_scripted.pt", "--tui", "--ir", "never",
                   check=1)
    assert "dropped_branch" in proc.stdout and "3 findings: 2 dropped_branch, 1 unrolled_loop" in proc.stdout
    assert proc.stderr.strip() == ("tsinspect: --tui needs a terminal (stdin and stdout); printing the report "
                                   "instead")
    missing = run_cli("diff", SAMPLES / "gate_traced.pt", "missing.pt", "--tui", check=2)
    assert missing.stderr.startswith("tsinspect: error: ") and "missing.pt" in missing.stderr


# ----- issue 12: the keyboard path, start-up errors, one torch load per archive


def test_one_tab_reaches_the_links_first_one_highlighted_and_enter_follows_it():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            app.show_node(app.query_one("IRView").search("prim::If")[0])  # %h0 = prim::If(%13)
            await settle(app, pilot)
            await press(app, pilot, "tab")
            links = app.query_one("#ir-links")
            assert app.focused is links and links.highlighted == 0
            assert str(links.options[0].prompt).startswith("show code line")
            await press(app, pilot, "down", "enter")  # the second link: the If's input, defined by aten::Bool
            assert app.focused is app.query_one("#ir-tree") and "aten::Bool" in cursor_label(app, "#ir-tree")
            await press(app, pilot, "enter")  # enter on a line without children opens its links
            assert app.focused is links and links.highlighted == 0
    run(body())


def test_enter_on_a_tensor_in_the_tree_shows_its_values():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            app.show_record(("tensor", "proj.bias"))
            await settle(app, pilot)
            assert app.focused is app.query_one("#records")
            await press(app, pilot, "enter")
            assert "first 4 of 4 values" in text_of(app, "#tensor-preview")
    run(body())


def test_the_ir_takes_the_focus_when_it_arrives_after_g():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt", ir=False) as (app, pilot):
            await pilot.press("g")
            await until(app, pilot, lambda: app.query_one("IRView").state == "loaded", "the IR")
            await settle(app, pilot)
            assert app.focused is app.query_one("#ir-tree")
    run(body())


def test_diff_tui_loads_each_archive_with_torch_once(monkeypatch):
    import tsinspect.ir.run as ir_run
    import tsinspect.tui.irfetch as irfetch

    calls = []
    real = ir_run.extract_ir

    def counted(archive, options=None, early=None):
        options = early.options if early is not None else options
        calls.append((archive.path.rsplit("/", 1)[-1], options.inline if options else False))
        return real(archive, options, early)

    monkeypatch.setattr(ir_run, "extract_ir", counted)  # extract_path (the diff's) calls it there
    real_fetch = irfetch.fetch

    def fetched(path, **kwargs):  # the IR view's own extraction, in a process of its own
        calls.append((path.rsplit("/", 1)[-1], kwargs["inline"]))
        return real_fetch(path, **kwargs)

    monkeypatch.setattr(irfetch, "fetch", fetched)

    async def body():
        async with started(SAMPLES / "gate_traced.pt", other=str(SAMPLES / "gate_scripted.pt")) as (app, pilot):
            await until(app, pilot, lambda: app.query_one("DiffView").state == "loaded", "the diff")
            await until(app, pilot, lambda: app.query_one("IRView").state == "loaded", "the IR")
            assert app.query_one("DiffView").result.analysis == "ir"
            assert app.query_one("IRView").search("prim::If")
    run(body())
    assert sorted(name for name, _ in calls) == ["gate_scripted.pt", "gate_traced.pt"], calls


def test_a_file_that_is_no_archive_is_one_error_line_before_the_ui(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((SAMPLES / "gate_scripted.pt").read_bytes()[:3000])
    for path, args in ((png, []), (empty, []), (truncated, []), (png, ["diff", str(SAMPLES / "gate_traced.pt")])):
        command = [*args, str(path)] + (["--tui"] if args else [])
        script = ("import sys\nimport tsinspect.cli.open_cmd as o\no.interactive = lambda: True\n"
                  "from tsinspect.cli import main\ncode = main(%r)\n"
                  "print('textual' in sys.modules, code)\n" % command)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == "False 2", (path, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tsinspect: error: ") and path.name in lines[0], lines


def test_quitting_while_the_ir_extracts_ends_its_torch_child():
    """The exit used to wait for the extraction worker, and so for the torch child (seconds on a loaded
    machine): the flaky quit of the terminal walk. Now the child the worker waits for is killed at a quit."""
    from tsinspect.tui import start_ir
    from tsinspect.tui.app import InspectorApp

    path = str(SAMPLES / "gate_scripted.pt")
    started_ir = start_ir(path, trust=False)  # as tsinspect.tui.run starts it
    proc = started_ir.child.child.proc

    async def body():
        app = InspectorApp(path, started_ir=started_ir)
        async with app.run_test() as pilot:
            for _ in range(500):  # until a worker waits for the child
                if app._early is not None:
                    break
                await pilot.pause(0.01)
            assert proc.poll() is None, "the torch child ended before the quit"
            app.exit()

    run(body())
    assert proc.returncode is not None and proc.returncode < 0  # killed, not waited for until it finished


def test_the_first_extraction_is_gated_by_the_apps_own_scan(monkeypatch):
    """The torch child started with the app loads the archive only if the app's own scan of it (the one its
    safety view shows) lets it: an unsafe finding there refuses the IR, with no second scan that could
    disagree."""
    import tsinspect.tui.state as state
    from tsinspect.safety.codescan import UNSAFE, Finding

    real = state.scan_archive

    def scan_with_a_finding(archive, index):
        result = real(archive, index)
        result.findings.insert(0, Finding("ambiguous_code", UNSAFE, "code/__torch__.py", 0, "code/__torch__.py",
                                          "planted by the test"))
        return result

    monkeypatch.setattr(state, "scan_archive", scan_with_a_finding)

    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            view = app.query_one("IRView")
            assert view.state == "refused", view.state
            assert "planted by the test" in text_of(app, "#ir-status")
    run(body())


def test_the_tree_shows_before_the_index_and_the_links_follow_it(monkeypatch):
    """IRLoaded shows the tree with the node counts; where each value is defined and used (IRIndexed) can come
    later for a large graph: meanwhile the detail says so, then the highlighted line's links appear without a
    key. A small graph's links are there at once (indexed when first shown)."""
    from copy import copy

    import tsinspect.tui.views.ir as irview
    from tsinspect.tui.views.ir import count_nodes, index_graphs

    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            view = app.query_one("IRView")
            other = copy(app.extraction)
            view.show_ir(other, count_nodes(other.ir))
            await settle(app, pilot)
            app.show_node(view.search("prim::If")[0])
            await settle(app, pilot)
            prompts = [str(o.prompt) for o in app.query_one("#ir-links").options]
            assert any("defined by" in p and "aten::Bool" in p for p in prompts), prompts
        monkeypatch.setattr(irview, "SMALL_GRAPH", 0)  # every graph large: indexed by the worker only
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            view = app.query_one("IRView")
            extraction = app.extraction
            other = copy(extraction)  # another extraction of the same IR, not indexed yet
            view.show_ir(other, count_nodes(other.ir))
            await settle(app, pilot)
            app.show_node(view.search("prim::If")[0])
            await settle(app, pilot)
            links = app.query_one("#ir-links")
            prompts = [str(o.prompt) for o in links.options]
            assert "definitions: indexing..." in prompts and not any("defined by" in p for p in prompts), prompts
            view.indexed(extraction, index_graphs(extraction.ir, count_nodes(extraction.ir)))  # an older extraction's index: ignored
            assert "definitions: indexing..." in [str(o.prompt) for o in links.options]
            view.indexed(other, index_graphs(other.ir, count_nodes(other.ir)))
            await settle(app, pilot)
            prompts = [str(o.prompt) for o in links.options]
            assert any("defined by" in p and "aten::Bool" in p for p in prompts), prompts
    run(body())


def test_graph_size_counts_the_nodes_of_blocks_as_a_walk_does():
    from tsinspect.ir.model import Graph
    from tsinspect.ir.run import Options, extract_path
    from tsinspect.tui.views.ir import _graphs, graph_size

    ir = extract_path(str(SAMPLES / "gate_scripted.pt"), Options(inline=True)).ir
    sizes = [(graph_size(g), sum(1 for _ in g.walk())) for g in _graphs(ir)]
    assert sizes and all(size == walked for size, walked in sizes), sizes
    assert any(any(n.blocks for n, _ in g.walk()) for g in _graphs(ir))  # blocks were counted
    assert graph_size(Graph([], [])) == 0


def test_views_composed_after_the_first_screen_answer_keys_pressed_before():
    """Only the archive and IR views are composed for the first screen; a view key pressed before the others
    are shows its view once composed, with the focus and the archive's content."""
    from tsinspect.tui.app import InspectorApp

    async def body():
        app = InspectorApp(str(SAMPLES / "gate_scripted.pt"))
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.view("archive") is not None and app.view("ir") is not None
            assert app.view("modules") is None and app.view("diff") is None
            await pilot.press("m")
            await until(app, pilot, lambda: app.loaded is not None and app.view("modules") is not None, "modules")
            await settle(app, pilot)
            assert app.current_view() == "modules"
            assert app.focused is app.query_one("#module-tree")
            assert "models.Gate" in app.query_one("#module-tree").root.label.plain
            await press(app, pilot, "s")
            assert "0 problems" in text_of(app, "#safety-summary")
    run(body())


def test_compare_before_the_late_views_are_composed():
    """ctrl+o at start composes the diff view first, then asks for the other archive; the diff shows."""
    from tsinspect.tui.app import InspectorApp

    async def body():
        app = InspectorApp(str(SAMPLES / "gate_traced.pt"))
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.view("diff") is None
            await pilot.press("ctrl+o")
            await until(app, pilot, lambda: type(app.screen).__name__ == "CompareScreen", "the dialog")
            app.screen.query_one("#compare-path").value = str(SAMPLES / "gate_scripted.pt")
            await pilot.press("enter")
            await until(app, pilot, lambda: app.view("diff").state in ("loaded", "failed"), "the diff")
            await settle(app, pilot)
            assert app.view("diff").state == "loaded"
            assert app.current_view() == "diff" and app.focused is app.query_one("#diff-findings")
    run(body())


def test_node_path_by_bisection_agrees_with_a_walk_through_blocks():
    """A jump's path to a node (node, block, node, ...) is found by bisection of the pre-order node ids: the
    same path as a walk of the whole graph for every node of every graph, saved and inlined; None for an id
    that is not there."""
    from tsinspect.diff.irread import extract_path
    from tsinspect.ir.run import Options
    from tsinspect.tui.views.ir import IRView

    extraction = extract_path(str(REPO / "tests/real/silero_vad_v6.jit"), Options(inline=True))
    graphs = [g for module in extraction.ir.modules for m in module.methods for g in (m.graph, m.inlined) if g]
    checked = nested = 0
    for graph in graphs:
        for node, depth in graph.walk():
            path = IRView._node_path(graph, node.id)
            assert path == IRView._walk_to(graph, node.id) and path[-1] == ("node", node.id)
            checked += 1
            nested += depth > 0
        last = max((n.id for n, _ in graph.walk()), default=0)
        assert IRView._node_path(graph, last + 1) is None and IRView._node_path(graph, -1) is None
    assert checked > 1000 and nested > 100  # silero's loops and ifs: paths through blocks were checked


def test_the_footer_is_composed_again_only_when_its_keys_change():
    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "g")
            footer = app.query_one("Footer")
            keys = list(footer.query("FooterKey"))
            assert "i" in [k.key for k in keys]
            view = app.query_one("IRView")
            view._set_status(view._loaded_status())  # bindings refreshed, the same keys shown
            await settle(app, pilot)
            assert list(footer.query("FooterKey")) == keys  # the same widgets: not composed again
            await press(app, pilot, "tab")  # the links take the focus: enter follows a link
            assert app.focused is app.query_one("#ir-links")
            assert "Follow link" in [k.description for k in footer.query("FooterKey")]
            view.show_loading(False)  # i is hidden while the IR is extracted
            await settle(app, pilot)
            assert "i" not in [k.key for k in footer.query("FooterKey")]
            view.show_ir(app.extraction)
            view.focus_main()  # as the app does when the IR arrives
            await settle(app, pilot)
            assert "i" in [k.key for k in footer.query("FooterKey")]
    run(body())


def test_the_archive_arriving_after_a_view_key_leaves_that_view_its_focus():
    """g pressed before the archive was read: its arrival no longer moves the focus to the hidden archive
    view's records (the keys typed next went there)."""
    from tsinspect.tui.messages import ArchiveLoaded

    async def body():
        async with started(SAMPLES / "gate_scripted.pt") as (app, pilot):
            await press(app, pilot, "g")
            tree = app.query_one("#ir-tree")
            assert app.focused is tree
            app.post_message(ArchiveLoaded(app.loaded))
            await settle(app, pilot)
            assert app.query_one("#views").active == "ir" and app.focused is tree
    run(body())


def test_workers_pause_while_the_event_loop_is_busy_never_the_loop_itself():
    """tui.priority: a worker's pause() sleeps while the loop runs callbacks and returns once it waits in
    select(); called on the loop's own thread it never waits."""
    import asyncio
    import threading

    from tsinspect.tui.priority import UIPriority

    async def body():
        priority = UIPriority()
        priority.watch(asyncio.get_running_loop())
        try:
            assert priority.busy  # running this coroutine
            priority.pause()  # on the loop's thread: returns at once (a wait here could never end early)
            paused = threading.Event()
            released = []

            def worker():
                paused.set()
                priority.pause()
                released.append(priority.busy)

            thread = threading.Thread(target=worker)
            thread.start()
            paused.wait()
            await asyncio.sleep(0.2)  # the loop waits in select(): the worker's pause ends
            thread.join(1)
            assert released == [False]
        finally:
            priority.unwatch()
        assert not priority.busy and priority._selector is None

    asyncio.run(body())


def _slow_scan(monkeypatch, plant: bool = False, fail: bool = False):
    """The app's safety scan held until the returned event is set (then the real one: with an unsafe finding
    planted, or raising); and the calls of ir.run.extract_ir, each with whether the scan was done then."""
    import threading

    import tsinspect.ir.run as run_mod
    import tsinspect.tui.state as state
    from tsinspect.safety.codescan import UNSAFE, Finding

    release, calls = threading.Event(), []
    real_scan, real_extract = state.scan_archive, run_mod.extract_ir

    def held_scan(archive, index):
        release.wait(60)
        if fail:
            raise RuntimeError("planted failure")
        result = real_scan(archive, index)
        if plant:
            result.findings.insert(0, Finding("ambiguous_code", UNSAFE, "code/__torch__.py", 0, "code/__torch__.py",
                                              "planted by the test"))
        return result

    def recorded_extract(archive, *args, scanned=None, **kwargs):
        calls.append(scanned)
        return real_extract(archive, *args, scanned=scanned, **kwargs)

    monkeypatch.setattr(state, "scan_archive", held_scan)
    monkeypatch.setattr(run_mod, "extract_ir", recorded_extract)
    return release, calls


def _with_early_ir(release, check) -> None:
    """The app on gate_scripted.pt with its IR child started first, as ``tsinspect FILE`` starts it;
    ``check(app, pilot)`` drives it; the held scan is released and the child stopped whatever happens."""
    from tsinspect.tui import start_ir
    from tsinspect.tui.app import InspectorApp

    path = str(SAMPLES / "gate_scripted.pt")

    async def body():
        started_ir = start_ir(path, trust=False)
        app = InspectorApp(path, started_ir=started_ir)
        try:
            async with app.run_test() as pilot:
                await check(app, pilot)
        finally:
            release.set()
            started_ir.stop()
    run(body())


async def _first_screen_while_scanning(app, pilot, release, calls):
    """Checks what shows while the scan is held; polls a bounded number of times (the workers wait on it)."""
    for _ in range(1000):
        if app.loaded is not None:
            break
        await pilot.pause(0.01)
    assert app.loaded is not None, "the first screen waited for the scan"
    for _ in range(20):  # time for a wrong IR worker to call the extraction
        await pilot.pause(0.02)
    assert app.loaded.scan is None and "scanning code/" in text_of(app, "#overview-body")
    assert "safety: scanning" in status(app)
    assert app.query_one("IRView").state == "loading" and "safety scan's verdict" in text_of(app, "#ir-status")
    assert calls == [], "the IR was extracted before the scan's verdict"
    await pilot.press("s")  # composed by the key meanwhile: says the scan runs (no settle: a worker waits)
    for _ in range(500):
        if app.view("safety") is not None and app.focused is app.query_one("#findings"):
            break
        await pilot.pause(0.01)
    assert "scanning" in text_of(app, "#safety-summary")
    assert "scanning" in str(app.query_one("#findings", DataTable).get_row_at(0)[0])
    release.set()


def test_the_first_screen_does_not_wait_for_the_scan_and_the_ir_waits_for_its_verdict(monkeypatch):
    """The archive shows as soon as it is summarised, saying the scan runs; the verdict fills in when done,
    and the torch child loads only after it, gated by that very scan."""
    release, calls = _slow_scan(monkeypatch)

    async def check(app, pilot):
        await _first_screen_while_scanning(app, pilot, release, calls)
        await until(app, pilot, lambda: app.query_one("IRView").state == "loaded", "the IR")
        assert "nothing unsafe in code/" in text_of(app, "#overview-body")
        assert "scanning" not in status(app) and "IR: meta load" in status(app)
        assert "nothing in code/ runs" in text_of(app, "#safety-summary")
        assert len(calls) == 1 and calls[0][1] is app.loaded.scan
    _with_early_ir(release, check)


def test_an_unsafe_verdict_after_the_first_screen_still_refuses_the_ir(monkeypatch):
    release, calls = _slow_scan(monkeypatch, plant=True)

    async def check(app, pilot):
        await _first_screen_while_scanning(app, pilot, release, calls)
        await until(app, pilot, lambda: app.query_one("IRView").state == "refused", "the refusal")
        assert "planted by the test" in text_of(app, "#ir-status")
        assert "unsafe code found" in status(app) and "1 unsafe finding" in text_of(app, "#overview-body")
        assert "planted by the test" in str(app.query_one("#findings", DataTable).get_row_at(0)[4])
    _with_early_ir(release, check)


def test_a_scan_that_fails_loads_nothing_and_says_so(monkeypatch):
    release, calls = _slow_scan(monkeypatch, fail=True)
    release.set()

    async def check(app, pilot):
        await until(app, pilot, lambda: app.query_one("IRView").state == "failed", "the IR's failure")
        assert "safety scan failed" in text_of(app, "#ir-status") and calls == []
        assert "planted failure" in text_of(app, "#overview-body") and "scan failed" in status(app)
    _with_early_ir(release, check)


def test_the_scan_reads_the_archive_only_under_the_read_lock(monkeypatch):
    """The scan runs beside the record view's workers, on one file handle: each read holds the lock, and
    the lock is free between reads (held for the whole scan, it kept the record view waiting)."""
    from tsinspect.archive.zipread import ZipArchive
    from tsinspect.tui.state import open_loaded

    loaded = open_loaded(str(SAMPLES / "gate_scripted.pt"))
    reads = []
    for name in ("read", "read_range", "iter_chunks"):
        real = getattr(ZipArchive, name)

        def checked(self, *args, _real=real, **kwargs):
            reads.append(loaded.read_lock.locked())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(ZipArchive, name, checked)
    monkeypatch.setattr(loaded.archive, "_read_pickles", {})  # what the summary read is read again
    loaded.run_scan()
    assert reads and all(reads), reads
    assert not loaded.read_lock.locked() and loaded.scan is not None
