"""Export view: a torch.export archive's programs, each as its module tree (rebuilt from the nodes'
``nn_module_stack``, with each module's nodes and parameters/buffers), its tensors, its dynamic shapes
(``range_constraints`` and which input dimensions are symbolic) and its signature. ``enter`` on a node shows it in the
IR view, where the graph holds cond/map/while_loop subgraphs as blocks. Other formats: a line saying so.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static, Tree

from tsinspect.archive.pt2 import SHORT, Pt2Program, Pt2Tensor
from tsinspect.archive.pt2tree import (Pt2Module, Pt2Node, module_tree, program_tensors, symbol_uses,
                                       symbolic_dims)
from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.tui import render
from tsinspect.tui.widgets.lazytree import Item, LazyTree

MAX_DETAIL_ROWS = 400  # nodes or tensors listed in one detail pane


def _type(t: Pt2Tensor) -> str:
    return f"{SHORT.get(t.dtype, t.dtype)}[{', '.join(str(s) for s in t.shape)}]"


def _where(node: Pt2Node) -> str:
    return f"{node.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{node.line}" if node.file else ""


def _range(lo, hi) -> str:
    return f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


class ProgramItem(Item):
    def __init__(self, program: Pt2Program, sections: list[Item]):
        self.program, self.sections = program, sections
        self.key = ("program", program.name)

    def label(self) -> Text:
        return Text(printable(self.program.name), style="bold", end="").append(
            f"  {self.program.node_count} nodes", style="dim")

    def expandable(self) -> bool:
        return True

    def children(self) -> list[Item]:
        return self.sections


class Section(Item):
    """One part of a program: signature, modules, tensors, dynamic shapes."""

    def __init__(self, program: Pt2Program, name: str, count: str, make):
        self.program, self.name, self.count, self._make = program, name, count, make
        self.key = ("section", program.name, name)

    def label(self) -> Text:
        return Text(self.name, style="bold", end="").append(f"  {self.count}", style="dim")

    def expandable(self) -> bool:
        return True

    def children(self) -> list[Item]:
        return self._make()


class EntryItem(Item):
    def __init__(self, program: Pt2Program, side: str, index: int):
        self.program, self.side, self.index = program, side, index
        self.entry = (program.inputs if side == "input" else program.outputs)[index]
        self.key = ("entry", program.name, side, index)

    def label(self) -> Text:
        e = self.entry
        text = render.plain(e.name)
        text.append(f"  {e.kind}", style="bold" if e.kind == "user_input" else "")
        if e.type:
            text.append(f"  {e.type}", style="dim")
        if e.target:
            text.append(f"  {e.target}", style="dim")
        return text


class ModuleItem(Item):
    def __init__(self, program: Pt2Program, module: Pt2Module):
        self.program, self.module = program, module
        self.key = ("module", program.name, module.path)

    def label(self) -> Text:
        m = self.module
        text = Text(printable(m.name), style="bold", end="")
        text.append(f"  {printable(m.type.rsplit('.', 1)[-1]) or '?'}", style="")
        text.append(f"  {m.total_nodes()} nodes", style="dim")
        if m.tensors:
            text.append(f", {len(m.tensors)} tensors", style="dim")
        return text

    def expandable(self) -> bool:
        return bool(self.module.children or self.module.nodes)

    def children(self) -> list[Item]:
        return ([ModuleItem(self.program, c) for c in self.module.children]
                + [NodeItem(self.program, n) for n in self.module.nodes])


class NodeItem(Item):
    def __init__(self, program: Pt2Program, node: Pt2Node):
        self.program, self.node = program, node
        self.key = ("node", program.name, node.id)

    def label(self) -> Text:
        n = self.node
        text = Text(f"#{n.id} ", style="dim", end="")
        text.append("  " * n.depth + printable(n.kind))
        if _where(n):
            text.append(f"  {printable(_where(n))}", style="dim")
        return text


class TensorItem(Item):
    def __init__(self, program: Pt2Program, tensor: Pt2Tensor):
        self.program, self.tensor = program, tensor
        self.key = ("tensor", program.name, tensor.name)

    def label(self) -> Text:
        t = self.tensor
        text = render.plain(t.name)
        text.append(f"  {_type(t)}  {human_bytes(t.nbytes)}  {t.kind}", style="dim")
        if t.problem:
            text.append("  !", style="bold red")
        return text


class SymbolItem(Item):
    def __init__(self, program: Pt2Program, symbol: str):
        self.program, self.symbol = program, symbol
        self.key = ("symbol", program.name, symbol)

    def label(self) -> Text:
        lo, hi = self.program.range_constraints[self.symbol]
        return render.plain(self.symbol).append(f"  in {_range(lo, hi)}", style="dim")


class Root(Item):
    def __init__(self, items: list[Item]):
        self.items = items

    def expandable(self) -> bool:
        return True

    def children(self) -> list[Item]:
        return self.items


class Browsed:
    """What the view shows of one archive: its programs with their module trees (built in the view's worker:
    about 1 s for 50,000 nodes) and the tree's items."""

    def __init__(self, programs: list[Pt2Program]):
        self.programs = programs
        self._modules = {p.name: module_tree(p) for p in programs}

    def modules(self, program: Pt2Program) -> Pt2Module:
        return self._modules[program.name]

    def sections(self, p: Pt2Program) -> list[Item]:
        tensors = program_tensors(p)
        dims = symbolic_dims(p)
        return [
            Section(p, "modules", f"{p.node_count} nodes",
                    lambda: [ModuleItem(p, self.modules(p))]),
            Section(p, "tensors", f"{len(tensors)}, {human_bytes(sum(t.nbytes for t in tensors))}",
                    lambda: [TensorItem(p, t) for t in tensors]),
            Section(p, "dynamic shapes", f"{len(p.range_constraints)} symbols, {len(dims)} dynamic input dims"
                    if p.range_constraints or dims else "none: every shape is fixed",
                    lambda: [SymbolItem(p, s) for s in p.range_constraints]),
            Section(p, "signature", f"{len(p.inputs)} in, {len(p.outputs)} out",
                    lambda: [EntryItem(p, "input", i) for i in range(len(p.inputs))]
                    + [EntryItem(p, "output", i) for i in range(len(p.outputs))]),
        ]

    def root(self) -> Root:
        if len(self.programs) == 1:
            return Root(self.sections(self.programs[0]))
        return Root([ProgramItem(p, self.sections(p)) for p in self.programs])

    def chain(self, program: str, *keys) -> list:
        """The tree keys from the root down to ``keys`` (under the program's item when there are several)."""
        return ([("program", program)] if len(self.programs) > 1 else []) + list(keys)


class ExportView(Horizontal):
    DEFAULT_CSS = """
    ExportView { height: 1fr; }
    #export-tree { width: 1fr; max-width: 80; }
    #export-detail-scroll { width: 1fr; height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.browsed: Browsed | None = None

    def compose(self) -> ComposeResult:
        yield LazyTree("program", id="export-tree")
        with VerticalScroll(id="export-detail-scroll"):
            yield Static(Content.styled("Reading the archive...", render.DIM), id="export-detail")

    def _detail(self, content: Content) -> None:
        self.query_one("#export-detail", Static).update(content)
        self.query_one("#export-detail-scroll", VerticalScroll).scroll_home(animate=False)

    def show_archive(self) -> None:
        summary = self.app.loaded.summary
        tree = self.query_one("#export-tree", LazyTree)
        pt2 = summary.pt2
        if pt2 is None or not pt2.programs:
            self.browsed = None
            tree.root.set_label(Text("no exported program", style="dim"))
            self._detail(Content.styled(
                f"This {summary.format} archive holds no torch.export program (models/<name>.json)."
                if pt2 is None else "No exported program of this archive could be read: the safety view says "
                "why.", render.DIM))
            return
        tree.show_root = False
        tree.root.set_label(Text("reading the module stacks...", style="dim"))
        self.browsed = None
        self._detail(Content.styled("Rebuilding the module tree from the nodes' nn_module_stack...", render.DIM))
        self.run_worker(lambda: self.app.call_from_thread(self._show, Browsed(pt2.programs)), thread=True,
                        group="export", exit_on_error=False)

    def _show(self, browsed: Browsed) -> None:
        self.browsed = browsed
        self.query_one("#export-tree", LazyTree).show(browsed.root(), Text("programs"))
        self._detail(self._overview())

    def show_failure(self, message: str) -> None:
        self._detail(Content.styled(printable(message), render.BAD))

    def focus_main(self) -> None:
        self.query_one("#export-tree", LazyTree).focus()

    # ----- details

    def _overview(self) -> Content:
        rows: list = []
        for p in self.browsed.programs:
            rows.append(Content.styled(f"program {printable(p.name)}", render.HEAD))
            rows.append(render.field("record", p.record))
            rows.append(render.field("schema", f"{p.schema_text}, written by torch {p.torch_version or '?'}"))
            rows.append(render.field("nodes", str(p.node_count)))
            users = [f"{e.name}: {e.type}" for e in p.inputs if e.kind == "user_input"]
            rows.append(render.field("inputs", ", ".join(users) or "none"))
            rows.append(render.field("dynamic", ", ".join(f"{k} in {_range(lo, hi)}" for k, (lo, hi)
                                                           in p.range_constraints.items()) or "none"))
            if p.unknown_fields:
                rows.append(render.field("skipped", "fields of a newer schema: " + ", ".join(p.unknown_fields[:12]),))
            rows.append("")
        rows.append(Content.styled("Expand a part on the left (enter or space); enter on a node shows it in "
                                   "the IR view [g], where cond/map/while_loop hold their subgraphs.", render.DIM))
        return render.lines(*rows)

    @on(Tree.NodeHighlighted, "#export-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        item = event.node.data
        if item is not None and self.browsed is not None:
            self._detail(self.detail(item))

    @on(Tree.NodeSelected, "#export-tree")
    def _selected(self, event: Tree.NodeSelected) -> None:
        item = event.node.data
        if isinstance(item, NodeItem):
            self.app.show_node((item.program.name, "forward", item.node.id))

    def detail(self, item: Item) -> Content:
        if isinstance(item, ModuleItem):
            return self._module(item.module)
        if isinstance(item, NodeItem):
            n = item.node
            return render.lines(
                Content.styled(f"node #{n.id} {printable(n.kind)}", render.HEAD),
                render.field("name", n.name),
                render.field("source", f"{n.file}:{n.line}" if n.file else "no user line in its stack_trace"),
                render.field("modules", n.stack or "(root)"),
                render.field("nesting", "the top graph" if not n.depth else f"{counted(n.depth, 'subgraph')} deep"),
                "", Content.styled("enter: show it in the IR view", render.DIM))
        if isinstance(item, TensorItem):
            return self._tensor(item.tensor)
        if isinstance(item, SymbolItem):
            return self._symbol(item.program, item.symbol)
        if isinstance(item, EntryItem):
            e = item.entry
            return render.lines(Content.styled(f"{item.side} {printable(e.name)}", render.HEAD),
                                render.field("kind", e.kind), render.field("type", e.type or "?"),
                                render.field("binds", e.target or "-"))
        if isinstance(item, Section):
            return self._section(item)
        if isinstance(item, ProgramItem):
            return self._overview()
        return Content("")

    def _module(self, m: Pt2Module) -> Content:
        rows: list = [Content.styled(f"module {printable(m.path) or '(root)'}", render.HEAD),
                      render.field("type", m.type or "? (known from its tensors only)"),
                      render.field("nodes", f"{len(m.nodes)} of its own, {m.total_nodes()} with its submodules"),
                      render.field("submodules", str(len(m.children)))]
        if m.cut:
            rows.append(render.field("cut", Content.styled(
                f"{m.cut} module paths past 64 levels, 4096 characters or 100,000 modules were cut", render.WARN)))
        if m.tensors:
            rows += ["", Content.styled("parameters and buffers", render.HEAD)]
            rows += [render.field(t.name.rsplit(".", 1)[-1], f"{t.kind}  {_type(t)}  {human_bytes(t.nbytes)}", 20)
                     for t in m.tensors[:MAX_DETAIL_ROWS]]
        if m.nodes:
            rows += ["", Content.styled("its nodes (enter on one in the tree: the IR view)", render.HEAD)]
            rows += [Content(printable(f"#{n.id:<5} {n.kind}  {_where(n)}")) for n in m.nodes[:MAX_DETAIL_ROWS]]
            if len(m.nodes) > MAX_DETAIL_ROWS:
                rows.append(Content.styled(f"... {len(m.nodes) - MAX_DETAIL_ROWS} more", render.DIM))
        return render.lines(*rows)

    @staticmethod
    def _tensor(t: Pt2Tensor) -> Content:
        rows = [Content.styled(printable(t.name), render.HEAD), render.field("kind", t.kind),
                render.field("dtype", t.dtype), render.field("shape", render.shape(t.shape)),
                render.field("stride", render.shape(t.stride)), render.field("offset", str(t.offset)),
                render.field("bytes", f"{t.nbytes} ({human_bytes(t.nbytes)})"), render.field("device", t.device),
                render.field("grad", "requires_grad" if t.requires_grad else "no"),
                render.field("record", t.record or "?"),
                render.field("payload", "pickled: torch unpickles it when loading (never here)" if t.pickled
                             else "raw storage bytes" if t.record else "none in the archive")]
        if t.problem:
            rows.append(render.field("problem", Content.styled(printable(t.problem), render.BAD)))
        return render.lines(*rows)

    @staticmethod
    def _symbol(program: Pt2Program, symbol: str) -> Content:
        lo, hi = program.range_constraints[symbol]
        uses = symbol_uses(symbolic_dims(program), symbol)
        rows = [Content.styled(printable(symbol), render.HEAD), render.field("range", _range(lo, hi)),
                render.field("inputs", ", ".join(f"{d.input} dim {d.dim} ({d.size})" for d in uses)
                             or "no user input dimension names it (a derived or internal symbol)")]
        return render.lines(*rows)

    def _section(self, section: Section) -> Content:
        p = section.program
        if section.name == "dynamic shapes":
            dims = symbolic_dims(p)
            rows = [Content.styled("dynamic shapes", render.HEAD)]
            rows += [render.field(k, _range(lo, hi)) for k, (lo, hi) in p.range_constraints.items()]
            rows += ["", Content.styled("input dimensions", render.HEAD)]
            for e in p.inputs:
                if e.kind == "user_input":
                    mine = [f"dim {d.dim} = {d.size}" for d in dims if d.input == e.name]
                    rows.append(render.field(e.name, f"{e.type}: " + (", ".join(mine) if mine else "fixed")))
            if not p.range_constraints:
                rows += ["", Content.styled("No range_constraints: the export fixed every dimension to its "
                                            "example's size.", render.WARN)]
            return render.lines(*rows)
        if section.name == "tensors":
            tensors = program_tensors(p)
            rows = [Content.styled(f"{len(tensors)} tensors, {human_bytes(sum(t.nbytes for t in tensors))}",
                                   render.HEAD)]
            rows += [Content(printable(f"{t.kind:<10} {_type(t):<22} {human_bytes(t.nbytes):>10}  {t.name}"))
                     for t in tensors[:MAX_DETAIL_ROWS]]
            blobs = [t for t in p.weights + p.constants if t.name.startswith("(")]
            if blobs:
                rows += ["", Content.styled("stored as one pickled torch.save each (the early layout): "
                                            + ", ".join(f"{t.record} ({human_bytes(t.nbytes)})" for t in blobs)
                                            + "; shapes from the graph", render.DIM)]
            return render.lines(*rows)
        if section.name == "modules":
            return self._module(self.browsed.modules(p))
        rows = [Content.styled("signature", render.HEAD)]
        rows += [render.field(e.kind, f"{e.name}  {e.type or ''}  {e.target or ''}", 16) for e in p.inputs]
        rows += [""] + [render.field(e.kind, f"{e.name}  {e.target or ''}", 16) for e in p.outputs]
        return render.lines(*rows)

    # ----- search and jumps

    def search(self, query: str) -> list:
        """Key chains of the modules, nodes, tensors and symbols whose name or kind holds ``query``."""
        if self.browsed is None:
            return []
        q, out = query.lower(), []
        for p in self.browsed.programs:
            root = self.browsed.modules(p)
            for m in root.walk():
                chain = self._module_chain(p, m.path)
                if m.path and (q in m.path.lower() or q in m.type.lower()):
                    out.append(chain)
                out += [chain + [("node", p.name, n.id)] for n in m.nodes
                        if q in n.kind.lower() or q in n.name.lower()]
            out += [self.browsed.chain(p.name, ("section", p.name, "tensors"), ("tensor", p.name, t.name))
                    for t in program_tensors(p) if q in t.name.lower()]
            out += [self.browsed.chain(p.name, ("section", p.name, "dynamic shapes"), ("symbol", p.name, s))
                    for s in p.range_constraints if q in s.lower()]
        return out

    def _module_chain(self, p: Pt2Program, path: str) -> list:
        keys = [("section", p.name, "modules"), ("module", p.name, "")]
        parts = path.split(".") if path else []
        keys += [("module", p.name, ".".join(parts[:i + 1])) for i in range(len(parts))]
        return self.browsed.chain(p.name, *keys)

    async def jump(self, chain: list) -> bool:
        tree = self.query_one("#export-tree", LazyTree)
        node = await tree.reveal(chain)
        return node is not None
