"""Archive view: records grouped by kind on the left; the selected one shown on the right.

Code is highlighted with its blame gutter, pickles are a lazy object tree (opcodes on ``o``), tensors a
table (values on ``enter``), extra files and metadata text or hex. Records are read by a thread worker.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import ContentSwitcher, DataTable, Static, Tree

from tsinspect.archive import records as rk
from tsinspect.archive.pickles import disassemble
from tsinspect.archive.pickletree import children
from tsinspect.archive.reader import PICKLE_CAP, Record
from tsinspect.archive.tensors import TensorInfo
from tsinspect.archive.text import human_bytes, printable
from tsinspect.tui import render
from tsinspect.tui.messages import RecordReady
from tsinspect.tui.widgets.codeview import CodeView
from tsinspect.tui.widgets.lazytree import Item, LazyTree

MAX_OPS = 10_000  # rows of the opcode table (added at once: more would stall the screen)

GROUPS = (  # (title, record kinds)
    ("code", (rk.CODE,)),
    ("pickles", (rk.PICKLE, rk.DEBUG_INFO)),
    ("extra files", (rk.EXTRA,)),
    ("metadata", (rk.VERSION, rk.METADATA, rk.OTHER)),
)


class RecordItem(Item):
    def __init__(self, record: Record, strip: str = "", width: int = 1000):
        self.record, self.strip, self.width = record, strip, width
        self.key = ("record", record.name)

    def label(self) -> Text:
        name = self.record.name
        return render.record_label(name[len(self.strip):] if name.startswith(self.strip) else name, self.record.size,
                                   self.width)


class TensorItem(Item):
    def __init__(self, tensor: TensorInfo, group: "Group"):
        self.tensor, self.group = tensor, group
        self.key = ("tensor", tensor.name)

    def label(self) -> Text:
        return render.tensor_label(self.tensor)


class Group(Item):
    def __init__(self, title: str, items: list[Item], size: int, tensors: list[TensorInfo] | None = None):
        self.title, self.items, self.size, self.tensors = title, items, size, tensors
        self.key = ("group", title)

    def label(self) -> Text:
        text = Text(self.title, style="bold", end="")
        text.append(f"  {len(self.items)}, {human_bytes(self.size)}", style="dim")
        return text

    def expandable(self) -> bool:
        return bool(self.items)

    def children(self) -> list[Item]:
        return self.items


class Overview(Item):
    key = ("overview",)

    def __init__(self, groups: list[Group]):
        self.groups = groups

    def label(self) -> Text:
        return Text("overview", style="bold", end="")

    def expandable(self) -> bool:
        return True

    def children(self) -> list[Item]:
        return self.groups


def build_groups(summary, width: int = 1000) -> list[Group]:
    """The record groups; names longer than ``width`` are cut in the middle."""
    groups = []
    for title, kinds in GROUPS:
        records = [r for r in summary.records if r.kind in kinds or (title == "metadata" and not r.inside)]
        if title == "metadata":
            records = [r for r in records if r.kind != rk.DIRECTORY]
        if records:
            strip = {"code": "code/", "extra files": "extra/"}.get(title, "")
            if title == "code" and all(r.name.startswith("code/__torch__/") for r in records):
                strip = "code/__torch__/"  # the names keep their room; the code pane's title has the full name
            groups.append(Group(title, [RecordItem(r, strip, width) for r in records], sum(r.size for r in records)))
        if title == "pickles":  # tensors and constants come right after the pickles that describe them
            for name, tensors in (("tensors", summary.tensors), ("constants", summary.constants)):
                if tensors:
                    group = Group(name, [], sum(t.nbytes for t in tensors), tensors)
                    group.items = [TensorItem(t, group) for t in tensors]
                    groups.append(group)
    return groups


class PickleItem(Item):
    def __init__(self, edge: str, value: Any, storage_dir: str, path: str):
        self.edge, self.value, self.storage_dir = edge, value, storage_dir
        self.key = path
        self._label, self._expandable = render.pickle_label(edge, value, storage_dir)

    def label(self) -> Text:
        return self._label

    def expandable(self) -> bool:
        return self._expandable

    def children(self) -> list[Item]:
        return [PickleItem(edge, child, self.storage_dir, f"{self.key}/{i}")
                for i, (edge, child) in enumerate(children(self.value))]


class PickleView(Vertical):
    """A pickle as a lazily expanded tree of inert values, or its opcodes (``o``)."""

    BINDINGS = [Binding("o", "toggle_ops", "Opcodes", tooltip="Show the pickle's opcodes instead of its tree")]

    def compose(self) -> ComposeResult:
        yield Static(id="pickle-title", classes="pane-title")
        yield LazyTree(id="pickle-tree")
        table = DataTable(id="pickle-ops", cursor_type="row", zebra_stripes=True)
        table.display = False
        yield table

    def show(self, name: str, value: Any) -> None:
        self.record_name = name
        self.query_one("#pickle-title", Static).update(
            Content.assemble((printable(name), "bold"), ("  tree of inert values; o: opcodes", render.DIM)))
        tree = self.query_one("#pickle-tree", LazyTree)
        root = PickleItem("", value, render.pickle_storage_dir(name), "")
        tree.show(root)
        tree.display = True
        table = self.query_one("#pickle-ops", DataTable)
        table.clear(columns=True)
        table.display = False

    def show_ops(self, ops: list, cut: bool) -> None:
        table = self.query_one("#pickle-ops", DataTable)
        table.clear(columns=True)
        table.add_columns("offset", "opcode", "argument")
        table.add_rows([(Text(str(op.offset), justify="right"), Text(op.name), Text(op.arg)) for op in ops])
        if cut:
            table.add_row(Text(""), Text(f"... stopped after {MAX_OPS} opcodes", style="dim"), Text(""))

    def action_toggle_ops(self) -> None:
        tree = self.query_one("#pickle-tree", LazyTree)
        table = self.query_one("#pickle-ops", DataTable)
        showing_ops = not table.display
        table.display, tree.display = showing_ops, not showing_ops
        (table if showing_ops else tree).focus()
        if showing_ops and not table.row_count:
            self.app.query_one(ArchiveView).load_ops(self.record_name)


class TensorView(Vertical):
    """The tensors of one group as a table; ``enter`` shows a tensor's first values."""

    BINDINGS = [Binding("p", "preview", "Values", tooltip="Read and show the first values of this tensor")]

    def compose(self) -> ComposeResult:
        yield Static(id="tensor-title", classes="pane-title")
        yield DataTable(id="tensor-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="tensor-preview-scroll"):
            yield Static(Content.styled("enter: show the selected tensor's values", render.DIM),
                         id="tensor-preview")

    def show(self, group: Group, kinds: dict[str, str], select: str | None) -> None:
        self.tensors = group.tensors or []
        self.query_one("#tensor-title", Static).update(Content.assemble(
            (group.title, "bold"), (f"  {len(self.tensors)} tensors, {human_bytes(group.size)}", render.DIM)))
        table = self.query_one("#tensor-table", DataTable)
        table.clear(columns=True)
        table.add_columns("name", "dtype", "shape", "bytes", "kind", "device", "storage", "problem")
        table.add_rows([render.tensor_cells(t, kinds.get(t.name, "constant")) for t in self.tensors])
        index = next((i for i, t in enumerate(self.tensors) if t.name == select), 0)
        table.move_cursor(row=index)

    def selected(self) -> TensorInfo | None:
        table = self.query_one("#tensor-table", DataTable)
        return self.tensors[table.cursor_row] if self.tensors and table.cursor_row < len(self.tensors) else None

    @on(DataTable.RowSelected, "#tensor-table")
    def action_preview(self) -> None:
        tensor = self.selected()
        if tensor is not None:
            self.query_one("#tensor-preview", Static).update(Content.styled("reading...", render.DIM))
            self.app.query_one(ArchiveView).load_preview(tensor)


class ArchiveView(Horizontal):
    """Records on the left, the selected record on the right."""

    _jump: tuple | None = None  # (key, line) of a jump waiting for the cursor to arrive
    groups: list[Group] = []

    def compose(self) -> ComposeResult:
        yield LazyTree("reading...", id="records")
        with ContentSwitcher(id="record-pane", initial="overview"):
            with VerticalScroll(id="overview"):
                yield Static(Content.styled("Reading the archive...", render.DIM), id="overview-body")
            yield CodeView(id="code")
            yield PickleView(id="pickle")
            yield TensorView(id="tensors")
            with VerticalScroll(id="raw"):
                yield Static(id="raw-title", classes="pane-title")
                yield Static(id="raw-body")

    @property
    def loaded(self):
        return self.app.loaded

    def focus_main(self) -> None:
        self.query_one("#records", LazyTree).focus()

    def show_failure(self, message: str) -> None:
        self.query_one("#records", LazyTree).root.set_label(Text("cannot open", style="red"))
        self.query_one("#overview-body", Static).update(lines_error(message))

    def show_archive(self) -> None:
        tree = self.query_one("#records", LazyTree)
        # a label's room in the tree: its width less the border, two levels of guides and the scroll bar
        width = min(tree.size.width or 90, self.app.size.width * 2 // 5) - 2 - 8 - 1
        self.groups = build_groups(self.loaded.summary, max(16, width))
        tree.show(Overview(self.groups), render.plain(self.loaded.summary.path.rsplit("/", 1)[-1], "bold"))
        if self.groups and self.groups[0].title == "code":
            self.run_worker(partial(tree.reveal, [self.groups[0].key], expand=True), group="tree-fill")
        self.refresh_overview()

    def refresh_overview(self) -> None:
        self.query_one("#overview-body", Static).update(render.overview(self.loaded))

    # ----- selection

    @on(Tree.NodeHighlighted, "#records")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        item, line = event.node.data, None
        if self._jump is not None and item is not None and item.key == self._jump[0]:
            line, self._jump = self._jump[1], None
        self.open_item(item, line)

    @on(Tree.NodeSelected, "#records")
    def _selected(self, event: Tree.NodeSelected) -> None:
        """enter on a tensor reads and shows its first values (on a group or record: expand, as in any tree)."""
        if isinstance(event.node.data, TensorItem):
            self.query_one(TensorView).action_preview()

    def open_item(self, item: Item | None, line: int | None = None) -> None:
        pane = self.query_one("#record-pane", ContentSwitcher)
        if item is None or isinstance(item, Overview) or (isinstance(item, Group) and not item.tensors):
            pane.current = "overview"
        elif isinstance(item, (Group, TensorItem)):
            group = item if isinstance(item, Group) else item.group
            self.query_one(TensorView).show(group, self.loaded.summary.tensor_kinds,
                                            item.tensor.name if isinstance(item, TensorItem) else None)
            pane.current = "tensors"
        elif isinstance(item, RecordItem):
            self.load_record(item.record, line)

    async def jump(self, key: tuple, line: int | None = None) -> bool:
        """Select the record or tensor with this key (("record", name) or ("tensor", name))."""
        group = next((g for g in self.groups if any(i.key == key for i in g.items)), None)
        if group is None:
            return False
        tree = self.query_one("#records", LazyTree)
        before = tree.cursor_node
        node = await tree.reveal([group.key, key])
        if node is None:
            return False
        if node is before:
            self.open_item(node.data, line)
        else:  # the cursor moves after the next refresh; the highlight handler opens it with the line
            self._jump = (key, line)
        return True

    def search(self, query: str) -> list[tuple]:
        """Keys of records and tensors whose name contains ``query``."""
        q = query.lower()
        return [item.key for g in self.groups for item in g.items
                if q in (item.record.name if isinstance(item, RecordItem) else item.tensor.name).lower()]

    # ----- workers (they read the archive; results come back as RecordReady)

    @work(thread=True, exclusive=True, group="record", exit_on_error=False)
    def load_record(self, record: Record, line: int | None = None) -> None:
        loaded = self.loaded
        try:
            if record.kind == rk.CODE:
                code = loaded.code_file(record.name)
                self.post_message(RecordReady(record.name, "code", (code, render.code_content(code, line), line)))
            elif record.kind in (rk.PICKLE, rk.DEBUG_INFO):
                with loaded.read_lock:
                    value = loaded.archive.pickle(record.name).value
                self.post_message(RecordReady(record.name, "pickle", value))
            else:
                with loaded.read_lock:
                    data = loaded.archive.read(record, min(record.size, render.TEXT_CAP) or 1)
                self.post_message(RecordReady(record.name, "raw", render.raw_record(record.name, data, record.size)))
        except Exception as exc:  # a damaged record is shown in place, never a crash
            self.post_message(RecordReady(record.name, "raw", lines_error(str(exc))))

    @work(thread=True, exclusive=True, group="record", exit_on_error=False)
    def load_ops(self, name: str) -> None:
        loaded = self.loaded
        ops, cut = [], False
        try:
            with loaded.read_lock:
                data = loaded.archive.read(name, PICKLE_CAP)
            for op in disassemble(data):
                if len(ops) >= MAX_OPS:
                    cut = True
                    break
                ops.append(op)
        except Exception as exc:
            ops.append(type("Op", (), {"offset": "", "name": "error", "arg": printable(str(exc))})())
        self.post_message(RecordReady(name, "ops", (ops, cut)))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_preview(self, tensor: TensorInfo) -> None:
        try:
            content = render.tensor_preview(self.loaded, tensor)
        except Exception as exc:
            content = lines_error(str(exc))
        self.post_message(RecordReady(tensor.name, "preview", content))

    @on(RecordReady)
    def _record_ready(self, message: RecordReady) -> None:
        pane = self.query_one("#record-pane", ContentSwitcher)
        if message.kind == "code":
            code, body, line = message.payload
            self.query_one(CodeView).show(code, body, line)
            pane.current = "code"
        elif message.kind == "pickle":
            self.query_one(PickleView).show(message.name, message.payload)
            pane.current = "pickle"
        elif message.kind == "ops":
            self.query_one(PickleView).show_ops(*message.payload)
        elif message.kind == "preview":
            self.query_one("#tensor-preview", Static).update(message.payload)
        else:
            self.query_one("#raw-title", Static).update(Content.styled(printable(message.name), "bold"))
            self.query_one("#raw-body", Static).update(message.payload)
            pane.current = "raw"


def lines_error(message: str) -> Content:
    return Content.styled(printable(message), render.BAD)
