"""Module view: the module hierarchy from data.pkl with each module's tensors, attributes and methods."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static, Tree

from tsinspect.archive.modules import ModuleInfo
from tsinspect.archive.text import printable
from tsinspect.tui import render
from tsinspect.tui.widgets.lazytree import Item, LazyTree


class ModuleItem(Item):
    def __init__(self, module: ModuleInfo):
        self.module = module
        self.key = module.path

    def label(self) -> Text:
        return render.module_label(self.module)

    def expandable(self) -> bool:
        return bool(self.module.children)

    def children(self) -> list[Item]:
        return [ModuleItem(c) for c in self.module.children]


class ModulesView(Horizontal):
    BINDINGS = [Binding("c", "code", "Class code", tooltip="Show the module's class in the generated code")]

    def compose(self) -> ComposeResult:
        yield LazyTree("modules", id="module-tree")
        with VerticalScroll(id="module-detail-scroll"):
            yield Static(Content.styled("Reading the archive...", render.DIM), id="module-detail")

    def show_archive(self) -> None:
        summary = self.app.loaded.summary
        tree = self.query_one("#module-tree", LazyTree)
        if summary.modules is None:
            tree.root.set_label(Text("no modules", style="dim"))
            self.query_one("#module-detail", Static).update(Content.styled(
                f"This {summary.format} archive has no TorchScript module tree in data.pkl"
                + ("; the export view [e] has the exported program's modules." if summary.pt2 else "."), render.DIM))
            return
        root = summary.modules
        tree.show(ModuleItem(root), render.module_label(root))
        self.query_one("#module-detail", Static).update(render.module_detail(root, self.app.loaded))

    def focus_main(self) -> None:
        self.query_one("#module-tree", LazyTree).focus()

    def show_failure(self, message: str) -> None:
        self.query_one("#module-detail", Static).update(Content.styled(printable(message), render.BAD))

    @on(Tree.NodeHighlighted, "#module-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self.query_one("#module-detail", Static).update(render.module_detail(event.node.data.module,
                                                                                  self.app.loaded))

    def current(self) -> ModuleInfo | None:
        node = self.query_one("#module-tree", LazyTree).cursor_node
        return node.data.module if node is not None and node.data is not None else None

    def action_code(self) -> None:
        module = self.current()
        cls = self.app.loaded.summary.code.classes.get(module.type) if module else None
        if cls is None:
            self.app.notify("No generated code for this module's class.", severity="warning")
            return
        self.app.show_code(cls.file, cls.line)

    def search(self, query: str) -> list:
        summary = self.app.loaded.summary
        q = query.lower()
        return [m.path for m in (summary.modules.walk() if summary.modules else [])
                if q in m.path.lower() or q in m.type.lower()]

    async def jump(self, path: str) -> bool:
        keys = path.split(".") if path else []
        chain = [".".join(keys[:i + 1]) for i in range(len(keys))]
        tree = self.query_one("#module-tree", LazyTree)
        node = await tree.reveal(chain) if chain else tree.root
        if node is tree.root:
            tree.call_after_refresh(tree.move_cursor, node)
        return node is not None
