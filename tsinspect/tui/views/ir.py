"""IR view: modules -> methods -> graph nodes as a lazily expanded tree, blocks nested under their node.

The right side shows the highlighted node (kind, outputs and types, inputs, attributes, schema, scope,
its code line and original source) and links: each input to its definition, each output to its uses,
the code line. ``i`` toggles the inlined graphs. When torch cannot or may not load the archive, the
reason is shown in place with the ``ast`` view of code/ (methods and the ops they call) instead.
"""

from __future__ import annotations


from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static, Tree
from textual.widgets.option_list import Option

from tsinspect.archive.modules import short_type
from tsinspect.archive.text import printable
from tsinspect.ir.fallback import AstMethod, OpUse, ast_methods
from tsinspect.ir.lines import attr_text, node_pieces
from tsinspect.ir.model import Block, Graph, Method, Module, Node
from tsinspect.tui import render
from tsinspect.tui.widgets.lazytree import Item, LazyTree

MAX_USES = 50  # uses listed per value


_ROLE_STYLES = {"value": "cyan", "type": "dim", "kind": "bold", "attr": "yellow"}


def node_label(node: Node) -> Text:
    """``%h.1 : Tensor = aten::linear(%x.1, %w)`` with its parts styled."""
    text = Text(no_wrap=True, end="")
    for piece, role in node_pieces(node):
        if role == "attr" and len(piece) > 82:
            piece = piece[:78] + "...]"
        text.append(printable(piece), style=_ROLE_STYLES.get(role, ""))
    return text


def values_text(prefix: str, names: list[str]) -> Text:
    return Text(prefix + "(" + ", ".join("%" + printable(n) for n in names) + ")", style="dim", end="")


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

    def children(self) -> list[Item]:
        return [NodeItem(n) for n in self.block.nodes]


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
    def __init__(self, module: Module, method: Method, graph: Graph | None):
        self.module, self.method, self.graph = module, method, graph
        self.key = ("method", method.name)

    def label(self) -> Text:
        text = Text(printable(self.method.name), style="bold green", end="")
        if self.graph is not None:
            text.append(f"  {sum(1 for _ in self.graph.walk())} nodes", style="dim")
        if self.method.error:
            text.append("  " + printable(self.method.error), style="red")
        return text

    def expandable(self) -> bool:
        return self.graph is not None

    def children(self) -> list[Item]:
        g = self.graph
        return [GraphEnd(g, "inputs"), *(NodeItem(n) for n in g.nodes), GraphEnd(g, "return")]


class ModuleItem(Item):
    def __init__(self, module: Module, inlined: bool):
        self.module, self.inlined = module, inlined
        self.key = ("module", module.path)

    def label(self) -> Text:
        text = Text(printable(self.module.path or "<root>"), style="bold", end="")
        text.append("  " + printable(short_type(self.module.type)), style="dim")
        return text

    def expandable(self) -> bool:
        return bool(self.module.methods)

    def children(self) -> list[Item]:
        return [MethodItem(self.module, m, m.inlined if self.inlined and m.inlined else m.graph)
                for m in self.module.methods]


class IRRoot(Item):
    def __init__(self, modules: list[Module], inlined: bool):
        self.modules, self.inlined = modules, inlined

    def children(self) -> list[Item]:
        return [ModuleItem(m, self.inlined) for m in self.modules]


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


class TrustScreen(ModalScreen[bool]):
    """Explicit confirmation before loading an archive the static scan found unsafe."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, refusal: str):
        super().__init__()
        self.refusal = refusal

    def compose(self) -> ComposeResult:
        with Vertical(id="trust-dialog"):
            yield Static(Content.styled("Load this archive with torch anyway?", "bold"))
            yield Static(Content(printable(self.refusal)))
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
        Binding("t", "trust", "Load anyway", show=False, tooltip="Load an archive the scan refused, after confirming"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extraction = None
        self.inlined = False
        self.state = "waiting"  # waiting, loading, loaded, refused, failed, none
        self._views: dict = {}  # id(graph) -> tsinspect.ir.views.GraphView
        self._paths: dict[int, dict[int, list]] = {}

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Waiting for the archive...", render.DIM), id="ir-status")
        with Horizontal(id="ir-main"):
            yield LazyTree("IR", id="ir-tree")
            with Vertical(id="ir-side"):
                with VerticalScroll(id="ir-info-scroll"):
                    yield Static(id="ir-info")
                yield OptionList(id="ir-links")

    def on_mount(self) -> None:
        tree = self.query_one("#ir-tree", LazyTree)
        tree.show_root = False
        self.query_one("#ir-side").display = False

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
        if summary.format in ("torchscript", "lite"):
            self.show_loading(self.app.trust)
        else:
            self.state = "none"
            self._set_status(Content.styled(f"A {summary.format} archive has no TorchScript code and no IR graphs.",
                                            render.DIM))

    def show_failure(self, message: str) -> None:
        self.state = "none"
        self._set_status(Content.styled(printable(message), render.BAD))

    def show_loading(self, trust: bool) -> None:
        self.state = "loading"
        how = " (trusted: the scan's findings were overridden)" if trust else ""
        self._set_status(Content.styled(f"Extracting the IR with torch in a child process{how}...", render.DIM))
        self.query_one("#ir-tree", LazyTree).loading = True

    def show_error(self, message: str) -> None:
        self.state = "failed"
        self.query_one("#ir-tree", LazyTree).loading = False
        self._set_status(Content.styled(printable(message), render.BAD))

    def show_ir(self, extraction) -> None:
        self.extraction, self._views, self._paths = extraction, {}, {}
        ir = extraction.ir
        tree = self.query_one("#ir-tree", LazyTree)
        tree.loading = False
        if ir.load in ("meta", "full"):
            self.state = "loaded"
            self._set_status(self._loaded_status())
            tree.show(IRRoot(ir.modules, self.inlined))
            first = next((m for m in ir.modules if m.methods), None)
            if first is not None:  # open on the first method's graph
                self.run_worker(self.jump((first.path, first.methods[0].name, None), focus=False), group="tree-fill")
        else:
            self.state = "refused" if ir.load == "refused" else "failed"
            error = ir.error
            parts: list = [(printable(error.message if error else "torch could not load the archive"),
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
        return Content.assemble(("IR ", "bold"), f"{ir.load} load by torch {ir.torch_version or '?'}, "
                                f"{len(ir.modules)} modules, {methods} methods, {graph}",
                                (printable(sandbox), render.BAD), (printable(notes), render.DIM))

    def _set_status(self, content: Content) -> None:
        self.query_one("#ir-status", Static).update(content)

    def focus_main(self) -> None:
        self.query_one("#ir-tree", LazyTree).focus()

    # ----- details

    def graph_of(self, module_path: str, method_name: str) -> Graph | None:
        module = self.extraction.ir.module(module_path) if self.extraction else None
        method = module.method(method_name) if module else None
        if method is None:
            return None
        return method.inlined if self.inlined and method.inlined else method.graph

    def view_of(self, graph: Graph):
        """The def-use view of a graph (networkx, imported on first use to keep start-up quick)."""
        if id(graph) not in self._views:
            from tsinspect.ir.views import GraphView

            self._views[id(graph)] = GraphView(graph)
        return self._views[id(graph)]

    @on(Tree.NodeHighlighted, "#ir-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        node = event.node
        item = node.data
        method = self._method_of(node)
        side = self.query_one("#ir-side")
        if item is None or (method is None and not isinstance(item, (AstOpItem, AstMethodItem))):
            side.display = False
            return
        side.display = True
        if isinstance(item, (AstOpItem, AstMethodItem)):
            line = item.use.line if isinstance(item, AstOpItem) else item.method.line
            self._show_detail(Content.assemble((printable(item.method.qualname), "bold"),
                                               f"\n{printable(item.method.file)}:{line}"),
                              [Option(Text("show this line of code (c)"), id=f"code:{item.method.file}:{line}")])
            return
        view = self.view_of(method.graph)
        target = (method.module.path, method.method.name)
        if isinstance(item, NodeItem):
            self._show_detail(*self._node_detail(item.node, view, target))
        elif isinstance(item, GraphEnd):
            names = [v.name for v in method.graph.inputs] if item.which == "inputs" else method.graph.outputs
            info = Content.assemble((f"{method.method.name}: graph {item.which}", "bold"),
                                    (f"\n{printable(method.method.schema or '')}", render.DIM))
            links = self._value_links(names, view, target, uses=item.which == "inputs")
            self._show_detail(info, links)
        else:
            info = Content.assemble((printable(method.method.name), "bold"),
                                    (f"\n{printable(method.method.schema or '')}", render.DIM))
            self._show_detail(info, [])

    def _method_of(self, node) -> MethodItem | None:
        while node is not None and not isinstance(node.data, MethodItem):
            node = node.parent
        return node.data if node is not None else None

    def _show_detail(self, info: Content, links: list[Option]) -> None:
        self.query_one("#ir-info", Static).update(info)
        options = self.query_one("#ir-links", OptionList)
        options.clear_options()
        options.add_options(links)
        options.display = bool(links)

    def _node_detail(self, node: Node, view, target: tuple) -> tuple[Content, list[Option]]:
        rows: list[Content | str] = [Content.assemble(("node ", render.DIM), (f"#{node.id} ", render.DIM),
                                                      (printable(node.kind), "bold"))]
        for out in node.outputs:
            rows.append(render.field("output", f"%{out.name} : {out.type}"))
        for name in node.inputs:
            rows.append(render.field("input", f"%{name}"))
        for key, value in node.attributes.items():
            rows.append(render.field("attribute", f"{key} = {attr_text(value)}"[:400]))
        if node.schema:
            rows.append(render.field("schema", node.schema))
        if node.scope:
            rows.append(render.field("scope", node.scope))
        links: list[Option] = []
        src = node.source
        if src is not None and src.code_file:
            rows.append(render.field("code", f"{src.code_file}:{src.code_line}"))
            origin = self._origin(src.code_file, src.code_line)
            if origin is not None and origin.file:
                rows.append(render.field("source", f"{origin.where}"))
                rows.append(render.field("", origin.text.strip()[:200]))
            links.append(Option(Text(f"show code line {src.code_file}:{src.code_line}  (c)"),
                                id=f"code:{src.code_file}:{src.code_line}"))
        elif src is not None and src.file:
            rows.append(render.field("source", f"{src.file}:{src.line}"))
        for frame in (src.stack[:6] if src else []):
            rows.append(render.field("  called from", frame))
        links += self._value_links(node.inputs, view, target, uses=False)
        links += self._value_links([v.name for v in node.outputs], view, target, uses=True)
        return render.lines(*rows), links

    def _value_links(self, names: list[str], view, target: tuple, uses: bool) -> list[Option]:
        links = []
        for name in names:
            if not uses:
                source = view.where_defined(name)
                text = Text(f"← %{printable(name)}  defined by ", end="")
                if isinstance(source, Node):
                    text.append_text(node_label(source))
                    links.append(Option(text, id=f"node:{source.id}:{target[0]}:{target[1]}"))
                else:
                    text.append(str(source or "?"), style="dim")
                    links.append(Option(text, disabled=True))
                continue
            users = view.where_used(name)
            links.append(Option(Text(f"%{printable(name)} is used {len(users)} time(s)", style="bold"),
                                disabled=True))
            for user in users[:MAX_USES]:
                if isinstance(user, Node):
                    text = Text("  → ", end="")
                    text.append_text(node_label(user))
                    links.append(Option(text, id=f"node:{user.id}:{target[0]}:{target[1]}"))
                else:
                    links.append(Option(Text(f"  → graph {user}", style="dim"), disabled=True))
        return links

    def _origin(self, code_file: str, line: int | None):
        try:
            code = self.app.loaded.code_file(code_file)
        except Exception:
            return None
        return code.origins[line - 1] if line and 0 < line <= len(code.origins) else None

    @on(OptionList.OptionSelected, "#ir-links")
    def _link(self, event: OptionList.OptionSelected) -> None:
        kind, _, rest = (event.option.id or "").partition(":")
        if kind == "code":
            file, _, line = rest.rpartition(":")
            self.app.show_code(file, int(line) if line.isdigit() else None)
        elif kind == "node":
            node_id, module, method = rest.split(":", 2)
            self.app.show_node((module, method, int(node_id)))

    # ----- actions

    def action_code(self) -> None:
        options = self.query_one("#ir-links", OptionList)
        link = next((o for o in options.options if (o.id or "").startswith("code:")), None)
        if link is None:
            self.app.notify("This line has no code location.", severity="warning")
            return
        file, _, line = link.id[5:].rpartition(":")
        self.app.show_code(file, int(line) if line.isdigit() else None)

    def action_toggle_inlined(self) -> None:
        if self.state != "loaded":
            self.app.notify("The IR is not loaded.", severity="warning")
            return
        self.inlined = not self.inlined
        self.show_ir(self.extraction)
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
        hits = []
        for module in self.extraction.ir.modules:
            for method in module.methods:
                graph = self.graph_of(module.path, method.name)
                for node, _ in graph.walk() if graph else []:
                    if q in node.kind.lower() or any(v.name.lower() == q or v.name.lower().startswith(q + ".")
                                                     for v in node.outputs):
                        hits.append((module.path, method.name, node.id))
        return hits

    def _node_path(self, graph: Graph, node_id: int) -> list | None:
        """Tree keys from the method down to the node: node, block, node, ..."""
        if id(graph) not in self._paths:
            paths: dict[int, list] = {}
            stack: list[tuple[list[Node], list]] = [(graph.nodes, [])]
            while stack:
                nodes, prefix = stack.pop()
                for node in nodes:
                    here = prefix + [("node", node.id)]
                    paths[node.id] = here
                    for i, block in enumerate(node.blocks):
                        stack.append((block.nodes, here + [("block", i)]))
            self._paths[id(graph)] = paths
        return self._paths[id(graph)].get(node_id)

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
