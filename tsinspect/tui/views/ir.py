"""IR view: modules -> methods -> graph nodes as a lazily expanded tree, blocks nested under their node.

The right side shows the highlighted node (kind, outputs and types, inputs, attributes, schema, scope,
its code line and original source) and links: each input to its definition, each output to its uses,
the code line. ``i`` toggles the inlined graphs. When torch cannot or may not load the archive, the
reason is shown in place with the ``ast`` view of code/ (methods and the ops they call) instead.
"""

from __future__ import annotations

import bisect
import re
import time
from functools import partial

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static, Tree

from tsinspect.archive.modules import short_type
from tsinspect.archive.text import counted, printable
from tsinspect.collector import freeze_for_good, paused
from tsinspect.ir.fallback import AstMethod, OpUse, ast_methods
from tsinspect.ir.lines import attr_text, node_pieces
from tsinspect.ir.model import Block, Graph, Method, Module, Node
from tsinspect.ir.views import GraphView
from tsinspect.tui import render
from tsinspect.tui.priority import paced, ui_priority
from tsinspect.tui.widgets.lazytree import Item, LazyTree, Mapped
from tsinspect.tui.widgets.links import LinkList

MAX_USES = 50  # uses listed per value
MAX_VALUES = 100  # inputs and outputs listed in a node's detail (a prim::ListConstruct can have thousands)
MAX_LABEL = 600  # characters of a node's line in the tree
HINT = "Move the cursor onto a method or a node: its detail and links (inputs, uses, code line) show here."


_ROLE_STYLES = {"value": "cyan", "type": "dim", "kind": "bold", "attr": "yellow"}


def node_label(node: Node) -> Text:
    """``%h.1 : Tensor = aten::linear(%x.1, %w)`` with its parts styled."""
    text = Text(no_wrap=True, end="")
    for piece, role in node_pieces(node):
        if role == "attr" and len(piece) > 82:
            piece = piece[:78] + "...]"
        text.append(printable(piece), style=_ROLE_STYLES.get(role, ""))
        if len(text) > MAX_LABEL:
            text.truncate(MAX_LABEL)
            text.append("...)", style="dim")
            break
    return text


def values_text(prefix: str, names: list[str]) -> Text:
    return Text(prefix + "(" + ", ".join("%" + printable(n) for n in names) + ")", style="dim", end="")


def _node_key(node: Node) -> tuple:
    return ("node", node.id)


class NodeItem(Item):
    def __init__(self, node: Node):
        self.node = node
        self.key = ("node", node.id)

    def label(self) -> Text:
        return node_label(self.node)

    def expandable(self) -> bool:
        return bool(self.node.blocks)

    def children(self) -> list[Item]:
        return [BlockItem(i, b) for i, b in enumerate(self.node.blocks)]


class BlockItem(Item):
    def __init__(self, index: int, block: Block):
        self.index, self.block = index, block
        self.key = ("block", index)

    def label(self) -> Text:
        text = Text(f"block{self.index}", style="blue", end="")
        text.append("(" + ", ".join(f"%{printable(v.name)} : {printable(v.type)}" for v in self.block.inputs) + ")")
        text.append_text(values_text("  -> ", self.block.outputs))
        return text

    def expandable(self) -> bool:
        return bool(self.block.nodes)

    def children(self) -> Mapped:
        return Mapped(self.block.nodes, NodeItem, _node_key)


class GraphEnd(Item):
    """The graph's parameters (first line) or its return (last line)."""

    def __init__(self, graph: Graph, which: str):
        self.graph, self.which = graph, which
        self.key = (which,)

    def label(self) -> Text:
        if self.which == "inputs":
            return Text("graph(" + ", ".join(f"%{printable(v.name)} : {printable(v.type)}"
                                             for v in self.graph.inputs) + ")", style="magenta", end="")
        return values_text("return ", self.graph.outputs)


class MethodItem(Item):
    def __init__(self, module: Module, method: Method, graph: Graph | None, count: int | None = None):
        self.module, self.method, self.graph, self.count = module, method, graph, count
        self.key = ("method", method.name)

    def label(self) -> Text:
        text = Text(printable(self.method.name), style="bold green", end="")
        if self.graph is not None and self.count is not None:
            text.append(f"  {self.count} nodes", style="dim")
        if self.method.error:
            text.append("  " + printable(self.method.error), style="red")
        return text

    def expandable(self) -> bool:
        return self.graph is not None

    def children(self) -> Mapped:
        g = self.graph
        return Mapped(["inputs", *g.nodes, "return"], lambda x: GraphEnd(g, x) if isinstance(x, str) else NodeItem(x),
                      lambda x: (x,) if isinstance(x, str) else _node_key(x))


class ModuleItem(Item):
    def __init__(self, module: Module, inlined: bool, counts: dict):
        self.module, self.inlined, self.counts = module, inlined, counts
        self.key = ("module", module.path)

    def label(self) -> Text:
        text = Text(printable(self.module.path or "<root>"), style="bold", end="")
        text.append("  " + printable(short_type(self.module.type)), style="dim")
        return text

    def expandable(self) -> bool:
        return bool(self.module.methods)

    def children(self) -> list[Item]:
        items = []
        for m in self.module.methods:
            graph = m.inlined if self.inlined and m.inlined else m.graph
            items.append(MethodItem(self.module, m, graph, self.counts.get(id(graph))))
        return items


class IRRoot(Item):
    def __init__(self, modules: list[Module], inlined: bool, counts: dict):
        self.modules, self.inlined, self.counts = modules, inlined, counts

    def children(self) -> list[Item]:
        return [ModuleItem(m, self.inlined, self.counts) for m in self.modules]


class AstMethodItem(Item):
    def __init__(self, method: AstMethod):
        self.method = method
        self.key = ("ast", method.qualname)

    def label(self) -> Text:
        text = Text(printable(short_type(self.method.owner or "") + "." if self.method.owner else ""), end="")
        text.append(printable(self.method.name), style="bold green")
        text.append(f"  {printable(self.method.file)}:{self.method.line}  {len(self.method.ops)} calls", style="dim")
        return text

    def expandable(self) -> bool:
        return bool(self.method.ops)

    def children(self) -> list[Item]:
        return [AstOpItem(self.method, use) for use in self.method.ops]


class AstOpItem(Item):
    def __init__(self, method: AstMethod, use: OpUse):
        self.method, self.use = method, use

    def label(self) -> Text:
        text = Text(f"{self.use.line:5d}  ", style="dim", end="")
        text.append(printable(self.use.op))
        return text


class AstRoot(Item):
    def __init__(self, methods: list[AstMethod]):
        self.methods = methods

    def children(self) -> list[Item]:
        return [AstMethodItem(m) for m in self.methods]


def in_place(refusal: str) -> str:
    """The gate's refusal without its advice to rerun with --trust: in the UI, trusting is one key here."""
    return re.sub(r"[;,.]? *rerun with --trust[^;]*", "", refusal)


def _graphs(ir) -> list[Graph]:
    return [g for module in ir.modules for m in module.methods for g in (m.graph, m.inlined) if g is not None]


def graph_size(graph: Graph) -> int:
    """The nodes of ``graph``, its blocks' included: the id of its last node in pre-order, plus one (node ids
    number a graph's nodes in pre-order, tsinspect.ir.model), so no walk; a walk when the ids say otherwise."""
    nodes, last = graph.nodes, None
    while nodes:
        last = nodes[-1]
        nodes = next((b.nodes for b in reversed(last.blocks) if b.nodes), None)
    if last is None:
        return 0
    if graph.nodes[0].id != 0 or last.id + 1 < len(graph.nodes):
        return sum(1 for _ in graph.walk())
    return last.id + 1


def count_nodes(ir) -> dict[int, int]:
    """``id(graph) -> nodes`` (its blocks' included) of every method graph: the method lines' counts, and
    which graphs are worth indexing in a worker (index_graphs)."""
    return {id(g): graph_size(g) for g in _graphs(ir)}


SMALL_GRAPH = 2000  # nodes of a graph whose def/use index is built when first needed, on the loop (< 10 ms)


def index_graphs(ir, counts: dict[int, int]) -> dict[int, GraphView]:
    """``id(graph) -> GraphView`` (where each value is defined and used; no networkx unless asked) for every
    method graph of more than SMALL_GRAPH nodes (``counts``: count_nodes), built in the worker that received
    the IR, then frozen out of the collector's reach, so that moving the cursor only looks things up. The
    small ones cost more to index all at once (1,822 graphs of 1,059 nodes in all: 90 ms) than one at a time."""
    with paused():  # until the freeze: see tsinspect.ir.stream.ir_from_text
        large = [g for g in _graphs(ir) if counts.get(id(g), 0) > SMALL_GRAPH]
        index = {id(g): GraphView(g, ui_priority.pause) for g in large}
        freeze_for_good()
    return index


class TrustScreen(ModalScreen[bool]):
    """Explicit confirmation before loading an archive the static scan found unsafe."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, refusal: str):
        super().__init__()
        self.refusal = refusal

    def compose(self) -> ComposeResult:
        with Vertical(id="trust-dialog"):
            yield Static(Content.styled("Load this archive with torch anyway?", "bold"))
            yield Static(Content(printable(in_place(self.refusal))))
            yield Static(Content.styled(
                "torch runs the archive's __setstate__ code while loading. tsinspect loads it in a child process "
                "with an empty temporary working directory and resource limits, but absolute paths are not "
                "contained.", render.DIM))
            with Horizontal(id="trust-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Load with torch", id="load", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "load")


class IRView(Vertical):
    BINDINGS = [
        Binding("i", "toggle_inlined", "Inlined", tooltip="Toggle the inlined graphs (submodule calls expanded)"),
        Binding("c", "code", "Code line", tooltip="Show the node's line in the generated code"),
        Binding("t", "trust", "Load anyway", tooltip="Load an archive the scan refused, after confirming"),
    ]

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The footer shows ``t`` only while the scan's refusal stands, ``i`` only with a graph to inline."""
        if action == "trust":
            return self.state == "refused"
        if action == "toggle_inlined":
            return self.state == "loaded"
        return True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extraction = None
        self.inlined = False
        self.state = "waiting"  # waiting, loading, loaded, refused, failed, none
        self._index: dict | None = None  # id(graph) -> GraphView, from the worker (index_graphs); None: not yet
        self._small: dict | None = None  # the small graphs' GraphViews made before the worker's index came
        self._counts: dict = {}  # id(graph) -> its nodes (count_nodes)
        self._loading_since = 0.0
        self._loading_what = ""
        self._reading: set[str] = set()  # code files whose blame a worker is reading (_origin)
        self._unreadable: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Waiting for the archive...", render.DIM), id="ir-status")
        with Horizontal(id="ir-main"):
            yield LazyTree("IR", id="ir-tree")
            with Vertical(id="ir-side"):
                with VerticalScroll(id="ir-info-scroll", can_focus=False):
                    yield Static(id="ir-info")
                yield LinkList(id="ir-links")

    def on_mount(self) -> None:
        tree = self.query_one("#ir-tree", LazyTree)
        tree.show_root = False
        self.query_one("#ir-side").display = False
        # named, so that the box reads as a place for links when the cursor is on a line that has none
        self.query_one("#ir-links", LinkList).border_title = "links (enter)"

    # ----- state

    def status(self) -> Content:
        """A few words for the app's status line."""
        ir = self.extraction.ir if self.extraction else None
        if self.state == "loaded" and ir is not None:
            return Content.styled(f"{ir.load} load" + (", inlined" if self.inlined else ""), render.GOOD)
        styles = {"loading": render.DIM, "refused": render.BAD, "failed": render.WARN, "none": render.DIM,
                  "waiting": render.DIM}
        words = {"loading": "extracting...", "refused": "refused (unsafe code)", "failed": "torch could not load it",
                 "none": "none in this format", "waiting": "..."}
        return Content.styled(words[self.state], styles[self.state])

    def show_archive(self) -> None:
        summary = self.app.loaded.summary
        if summary.format in ("torchscript", "lite", "pt2"):
            if self.state == "waiting":  # the extraction usually started with the app, and may be done
                self.show_loading(self.app.trust)
            elif self.state == "loading":  # says whether it waits for the scan
                self.tick()
        else:
            self.state = "none"
            self.query_one("#ir-tree", LazyTree).loading = False
            self._set_status(Content.styled(f"A {summary.format} archive has no TorchScript code and no IR graphs.",
                                            render.DIM))

    def show_failure(self, message: str) -> None:
        self.state = "none"
        self.query_one("#ir-tree", LazyTree).loading = False
        self._set_status(Content.styled(printable(message), render.BAD))

    def show_loading(self, trust: bool, what: str = "") -> None:
        self.state = "loading"
        self._loading_since = time.monotonic()
        how = " (trusted: the scan's findings were overridden)" if trust else ""
        self._loading_what = f"Extracting the IR with torch in a child process{how}" + (f": {what}" if what else "")
        self.tick()
        self.query_one("#ir-tree", LazyTree).loading = True
        self.query_one("#ir-side").display = False

    def tick(self) -> None:
        elapsed = time.monotonic() - self._loading_since
        loaded = self.app.loaded
        waiting = " (waiting for the safety scan's verdict)" if loaded is not None and loaded.scan is None else ""
        self._set_status(Content.styled(f"{self._loading_what}{waiting}... {elapsed:.0f} s", render.DIM))

    def show_error(self, message: str) -> None:
        self.state = "failed"
        self.query_one("#ir-tree", LazyTree).loading = False
        self._set_status(Content.styled(printable(message), render.BAD))

    def show_ir(self, extraction, counts: dict | None = None) -> None:
        """Show an extraction (decoded already; ``counts``: count_nodes of it). Until ``indexed`` brings where
        each value is defined and used, the detail says so in place of those links."""
        if extraction is not self.extraction:
            self._index = None if counts is not None else {}  # no counts: no worker indexes it, view_of does
            self._small = None
        self.extraction = extraction
        ir = extraction.ir
        self._counts = counts if counts is not None else count_nodes(ir)
        tree = self.query_one("#ir-tree", LazyTree)
        tree.loading = False
        self.query_one("#ir-side").display = True
        self._show_detail(Content.styled(HINT, render.DIM), [])
        if ir.load in ("meta", "full", "pt2"):
            self.state = "loaded"
            self._set_status(self._loaded_status())
            tree.show(IRRoot(ir.modules, self.inlined, self._counts))
            first = next((m for m in ir.modules if m.methods), None)
            if first is not None:  # open on the first method's graph
                self.run_worker(partial(self.jump, (first.path, first.methods[0].name, None), focus=False),
                                group="tree-fill")
        else:
            self.state = "refused" if ir.load == "refused" else "failed"
            error = ir.error
            parts: list = [(printable(in_place(error.message) if error else "torch could not load the archive"),
                            render.BAD if self.state == "refused" else render.WARN)]
            if self.state == "refused":
                parts.append(("\nt: load it with torch anyway, after confirming. ", "bold"))
            elif error and error.hint:
                parts.append(("\n" + printable(error.hint), render.DIM))
            parts.append(("\nBelow: the methods of code/ and the ops they call, read from the code without torch.",
                          render.DIM))
            self._set_status(Content.assemble(*parts))
            tree.show(AstRoot(ast_methods(extraction.index)))

    def _loaded_status(self) -> Content:
        ir = self.extraction.ir
        methods = sum(len(m.methods) for m in ir.modules)
        graph = "inlined graphs (i: as saved)" if self.inlined else "graphs as saved (i: inlined)"
        notes = f"  {'; '.join(ir.notes)[:300]}" if ir.notes else ""
        # an unconfined child is worth a warning; "sandbox on" is the normal case (graph --json says it)
        sandbox = f"  {ir.sandbox.message}" if ir.sandbox and ir.sandbox.state != "on" else ""
        how = (f"{ir.load} load by torch {ir.torch_version or '?'}" if ir.load != "pt2" else
               f"exported program read without torch (written by torch {ir.torch_version or '?'})")
        return Content.assemble(("IR ", "bold"), f"{how}, {len(ir.modules)} modules, {methods} methods, {graph}",
                                (printable(sandbox), render.BAD), (printable(notes), render.DIM))

    def _set_status(self, content: Content) -> None:
        self.query_one("#ir-status", Static).update(content)
        self.refresh_bindings()  # the footer's i and t follow the state

    def focus_main(self) -> None:
        self.query_one("#ir-tree", LazyTree).focus()

    # ----- details

    def graph_of(self, module_path: str, method_name: str) -> Graph | None:
        module = self.extraction.ir.module(module_path) if self.extraction else None
        method = module.method(method_name) if module else None
        return self.shown_graph(method) if method is not None else None

    def shown_graph(self, method) -> Graph | None:
        """The method's graph as the tree shows it (inlined or as saved). Callers walking every module use this,
        not graph_of by path: one lookup per method was quadratic in modules (a traced model has one per
        submodule instance: 5,001)."""
        return method.inlined if self.inlined and method.inlined else method.graph

    def indexed(self, extraction, index: dict) -> None:
        """The index of the extraction shown arrived: the highlighted line's links follow."""
        if extraction is not self.extraction:
            return  # an older extraction, replaced since
        self._index = {**self._small, **index} if self._small else index
        self._refresh_line()

    def view_of(self, graph: Graph) -> GraphView | None:
        """Where each value of ``graph`` is defined and used: a large graph's from the worker that got the IR
        (None while that index is on its way), a small one's built here when first asked for."""
        index = self._index
        if index is None:
            if self._counts.get(id(graph), 0) > SMALL_GRAPH:
                return None
            index = self._small = self._small if self._small is not None else {}
        if id(graph) not in index:
            index[id(graph)] = GraphView(graph)
        return index[id(graph)]

    def has_inlined(self) -> bool:
        return any(m.inlined for module in self.extraction.ir.modules for m in module.methods)

    @on(Tree.NodeHighlighted, "#ir-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        self._show_line(event.node)

    def _show_line(self, tree_node) -> None:
        item = tree_node.data
        method = self._method_of(tree_node)
        if isinstance(item, (AstOpItem, AstMethodItem)):
            line = item.use.line if isinstance(item, AstOpItem) else item.method.line
            self._show_detail(Content.assemble((printable(item.method.qualname), "bold"),
                                               f"\n{printable(item.method.file)}:{line}"),
                              [(Text("show this line of code (c)"), ("code", item.method.file, line))])
            return
        if item is None or method is None:
            self._show_detail(Content.styled(HINT, render.DIM), [])
            return
        target = (method.module.path, method.method.name)
        if isinstance(item, NodeItem):
            self._show_detail(*self._node_detail(item.node, self.view_of(method.graph), target))
        elif isinstance(item, GraphEnd):
            names = [v.name for v in method.graph.inputs] if item.which == "inputs" else method.graph.outputs
            info = Content.assemble((f"{printable(method.method.name)}: graph {item.which}", "bold"),
                                    (f"\n{printable(method.method.schema or '')}", render.DIM))
            self._show_detail(info, self._value_links(names, self.view_of(method.graph), target,
                                                      uses=item.which == "inputs"))
        else:
            info = Content.assemble((printable(method.method.name), "bold"),
                                    (f"\n{printable(method.method.schema or '')}", render.DIM))
            self._show_detail(info, [])

    @on(Tree.NodeSelected, "#ir-tree")
    def _selected(self, event: Tree.NodeSelected) -> None:
        """enter on a line without children opens its links (the first one highlighted)."""
        if event.node.data is not None and not event.node.allow_expand:
            links = self.query_one("#ir-links", LinkList)
            if any(t is not None for t in links.targets):
                links.focus()

    def _method_of(self, node) -> MethodItem | None:
        while node is not None and not isinstance(node.data, MethodItem):
            node = node.parent
        return node.data if node is not None else None

    def _show_detail(self, info: Content, links: list[tuple[Text, tuple | None]]) -> None:
        static = self.query_one("#ir-info", Static)
        # a layout pass (the whole screen measured and drawn again, 50-120 ms at 200k nodes on a loaded
        # machine) only when the detail needs more lines than it has, up to what its pane shows: a shorter
        # one is padded with blank lines, so the links below stay where they are as the cursor moves
        width, height = static.content_region.width, static.content_region.height
        same = False
        if width and static.display:
            needed = info.get_height(static.styles, width)
            shown = min(height, self.query_one("#ir-info-scroll").content_region.height)
            if needed < shown:
                info, needed = info + "\n" * (shown - needed), shown
            same = needed == height
        static.update(info, layout=not same)
        self.query_one("#ir-links", LinkList).set_links(links)

    def _node_detail(self, node: Node, view: GraphView | None, target: tuple) -> tuple[Content, list]:
        rows: list[Content | str] = [Content.assemble(("node ", render.DIM), (f"#{node.id} ", render.DIM),
                                                      (printable(node.kind), "bold"))]
        for out in node.outputs[:MAX_VALUES]:
            rows.append(render.field("output", f"%{out.name} : {out.type}"))
        for name in node.inputs[:MAX_VALUES]:
            rows.append(render.field("input", f"%{name}"))
        for what, count in (("outputs", len(node.outputs)), ("inputs", len(node.inputs))):
            if count > MAX_VALUES:
                rows.append(render.field("", Content.styled(f"... {count} {what} in all", render.DIM)))
        for key, value in node.attributes.items():
            rows.append(render.field("attribute", f"{key} = {attr_text(value)}"[:400]))
        if node.schema:
            rows.append(render.field("schema", node.schema))
        if node.scope:
            rows.append(render.field("scope", node.scope))
        links: list[tuple[Text, tuple | None]] = []
        src = node.source
        if src is not None and src.code_file:
            rows.append(render.field("code", f"{src.code_file}:{src.code_line}"))
            origin = self._origin(src.code_file, src.code_line)
            if origin is ...:
                rows.append(render.field("source", Content.styled("reading the debug info...", render.DIM)))
            elif origin is not None and origin.file:
                rows.append(render.field("source", f"{origin.where}"))
                rows.append(render.field("", origin.text.strip()[:200]))
            links.append((Text(f"show code line {printable(src.code_file)}:{src.code_line}  (c)"),
                          ("code", src.code_file, src.code_line)))
        elif src is not None and src.file:
            rows.append(render.field("source", f"{src.file}:{src.line}"))
        for frame in (src.stack[:6] if src else []):
            rows.append(render.field("  called from", frame))
        links += self._value_links(node.inputs[:MAX_VALUES], view, target, uses=False)
        links += self._value_links([v.name for v in node.outputs[:MAX_VALUES]], view, target, uses=True)
        return render.lines(*rows), links

    def _value_links(self, names: list[str], view: GraphView | None, target: tuple, uses: bool) -> list:
        """``(label, target)`` pairs: each value's definition, or each value's uses under a heading."""
        if view is None:  # the index is on its way (IRIndexed)
            what = "uses" if uses else "definitions"
            return [(Text(f"{what}: indexing...", style="dim"), None)] if names else []
        links: list[tuple[Text, tuple | None]] = []
        for name in names:
            if not uses:
                source = view.where_defined(name)
                text = Text(f"← %{printable(name)}  defined by ", end="", no_wrap=True)
                if isinstance(source, Node):
                    text.append_text(node_label(source))
                    links.append((text, ("node", target[0], target[1], source.id)))
                else:
                    text.append("the graph's " + str(source or "?") if source else "?", style="dim")
                    links.append((text, None))
                continue
            users = view.where_used(name)
            links.append((Text(f"%{printable(name)} is used {counted(len(users), 'time')}", style="bold", no_wrap=True), None))
            for user in users[:MAX_USES]:
                if isinstance(user, Node):
                    text = Text("  → ", end="", no_wrap=True)
                    text.append_text(node_label(user))
                    links.append((text, ("node", target[0], target[1], user.id)))
                else:
                    links.append((Text(f"  → the graph's {user}", style="dim"), None))
            if len(users) > MAX_USES:
                links.append((Text(f"  ... {len(users) - MAX_USES} more uses", style="dim"), None))
        return links

    def _origin(self, code_file: str, line: int | None):
        """The original source of a code line; ``...`` while its code file's blame is read in a worker (a
        record's debug info takes 10-100 ms to parse: never on the event loop)."""
        loaded = self.app.loaded
        if loaded is None:
            return None
        code = loaded.cached_code_file(code_file)
        if code is None:
            if code_file in self._unreadable:
                return None
            if code_file not in self._reading:
                self._reading.add(code_file)
                self._read_code_file(loaded, code_file)
            return ...
        return code.origins[line - 1] if line and 0 < line <= len(code.origins) else None

    @work(thread=True, group="ir-blame", exit_on_error=False, description="blame")  # no repr of the arguments
    def _read_code_file(self, loaded, name: str) -> None:
        try:
            loaded.code_file(name)
        except Exception:
            self._unreadable.add(name)
        self._reading.discard(name)
        self.app.call_from_thread(self._refresh_line)

    def _refresh_line(self) -> None:
        if not self.is_attached:
            return
        tree = self.query_one("#ir-tree", LazyTree)
        if tree.cursor_node is not None:
            self._show_line(tree.cursor_node)

    @on(LinkList.Followed, "#ir-links")
    def _link(self, event: LinkList.Followed) -> None:
        self._follow(event.target)

    def _follow(self, target: tuple) -> None:
        if target[0] == "code":
            self.app.show_code(target[1], target[2])
        elif target[0] == "node":
            self.app.show_node(target[1:])

    # ----- actions

    def action_code(self) -> None:
        link = next((t for t in self.query_one("#ir-links", LinkList).targets if t and t[0] == "code"), None)
        if link is None:
            self.app.notify("This line has no code location.", severity="warning")
            return
        self._follow(link)

    def action_toggle_inlined(self) -> None:
        if self.state != "loaded":
            self.app.notify("The IR is not loaded.", severity="warning")
            return
        if self.extraction.ir.load == "pt2":
            self.app.notify("An exported program has no submodule calls to inline: its graph is flat already.")
            return
        self.inlined = not self.inlined
        if self.inlined and not self.has_inlined():  # asked for on demand: a second torch child
            self.app.request_ir(self.app.ir_trust, inline=True)
            return
        self.show_ir(self.extraction, self._counts)
        self.app.update_status()

    def action_trust(self) -> None:
        if self.state != "refused":
            return

        def answered(load: bool | None) -> None:
            if load:
                self.app.request_ir(trust=True)

        self.app.push_screen(TrustScreen(self.extraction.ir.error.message), answered)

    # ----- search and jumps

    def search(self, query: str) -> list[tuple]:
        """(module, method, node id) of every node whose kind contains ``query`` or that defines a value
        named ``query`` (``h`` finds ``h``, ``h.1``, ...)."""
        if self.state != "loaded":
            return []
        q = query.lower().lstrip("%")
        versioned = q + "."
        kind_matches: dict[str, bool] = {}  # a few hundred kinds among 200k nodes: each lowered once
        hits = []
        for module in self.extraction.ir.modules:
            for method in module.methods:
                graph = self.shown_graph(method)
                for node, _ in paced(graph.walk()) if graph else ():
                    kind = node.kind
                    hit = kind_matches.get(kind)
                    if hit is None:
                        hit = kind_matches[kind] = q in kind.lower()
                    if hit or any((name := v.name.lower()) == q or name.startswith(versioned) for v in node.outputs):
                        hits.append((module.path, method.name, node.id))
        return hits

    @staticmethod
    def _node_path(graph: Graph, node_id: int) -> list | None:
        """Tree keys from the method down to the node: node, block, node, ... Node ids number a graph's nodes
        in pre-order (tsinspect.ir.model), so each list of nodes is searched by bisection (a walk to a node
        near the end of a 200k-node graph took 50-120 ms of the event loop); a walk when that finds nothing."""
        path: list = []
        nodes = graph.nodes
        while nodes:
            at = bisect.bisect_right(nodes, node_id, key=lambda n: n.id) - 1
            if at < 0:
                break
            node = nodes[at]
            path.append(("node", node.id))
            if node.id == node_id:
                return path
            # inside one of its blocks: the last block whose first node's id is not past it
            blocks = [i for i, b in enumerate(node.blocks) if b.nodes and b.nodes[0].id <= node_id]
            if not blocks:
                break
            path.append(("block", blocks[-1]))
            nodes = node.blocks[blocks[-1]].nodes
        return IRView._walk_to(graph, node_id)

    @staticmethod
    def _walk_to(graph: Graph, node_id: int) -> list | None:
        """``_node_path`` by a walk of the whole graph (nothing assumed about the ids)."""
        stack: list[tuple[list[Node], list]] = [(graph.nodes, [])]
        while stack:
            nodes, prefix = stack.pop()
            for node in nodes:
                if node.id == node_id:
                    return prefix + [("node", node.id)]
                for i, block in enumerate(node.blocks):
                    stack.append((block.nodes, prefix + [("node", node.id), ("block", i)]))
        return None

    async def jump(self, target: tuple, focus: bool = True) -> bool:
        """Show a method, or a node of it: (module path, method name, node id or None)."""
        module, method, node_id = target
        if self.state != "loaded":
            self.app.notify("The IR is not loaded.", severity="warning")
            return False
        keys = [("module", module), ("method", method)]
        if node_id is not None:
            graph = self.graph_of(module, method)
            path = self._node_path(graph, node_id) if graph else None
            if path is None:
                return False
            keys += path
        tree = self.query_one("#ir-tree", LazyTree)
        node = await tree.reveal(keys, expand=node_id is None)
        if focus:
            tree.focus()
        return node is not None
