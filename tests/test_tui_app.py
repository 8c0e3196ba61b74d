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
            assert cursor_label(app, "#records").startswith("__torch__/models.py")
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
