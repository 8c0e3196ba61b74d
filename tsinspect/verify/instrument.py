"""The scripted model's code behind each finding, recorded and frozen (the verification child only: uses torch).

A *site* is what a finding is about, found by its source file and line in the inlined graph of the scripted
method (every instance: a library ``if`` inlined once per layer is one instance per layer):

- ``if`` (dropped_branch, per_iteration_branch): the ``prim::If`` nodes of the statement at that line (the
  short-circuit ``If`` nodes of ``a and b`` feed it and are left out). Recorded: each decision.
- ``loop`` (unrolled_loop): the ``prim::Loop`` nodes at the header's line. Recorded: each run's trip count.
- ``value`` (baked_constant): the scalar, int-list and optional arguments of the ops at that line that are
  computed (not constants). Recorded: each one's value (``None``/``not None`` for optional tensors); the
  child then keeps the *slots* that hold the traced constant on the example's shapes.

``Instrumented.recording()`` returns a function of (self, *args) giving (output, records); ``frozen()`` one
giving the output with sites set the traced way: each ``if`` instance to its traced side, the loop to the
traced trip count, the slots to the traced values. Comparing the frozen run with the plain scripted run on
an input tells whether that finding alone (or those findings together) changes the result there.
"""

from __future__ import annotations

import math

from tsinspect.ir.sourcerange import parse_source

MAX_RECORDS = 100_000  # entries per run; a run recording more is treated as not recorded (unknown)
_SKIP = {"prim::Constant", "prim::If", "prim::Loop", "prim::GetAttr", "prim::unchecked_cast", "prim::RaiseException"}


def inlined(torch, method):
    """A fresh copy of ``method``'s graph with every call inlined. With graph optimization off (the child's
    setting) torch inlines one level only, so it is switched on while the copy is made."""
    before = torch._C._get_graph_executor_optimize()
    torch._C._set_graph_executor_optimize(True)
    try:
        return method.inlined_graph
    finally:
        torch._C._set_graph_executor_optimize(before)


def _nodes(block):
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _nodes(sub)


def _default(torch, node, index: int) -> tuple[bool, object]:
    """(has one, value): the schema's default for the node's argument ``index``."""
    try:
        schema = node.schema()
        if schema == "(no schema)":
            return False, None
        arg = torch._C.parse_schema(schema).arguments[index]
        return arg.has_default_value(), arg.default_value
    except (RuntimeError, IndexError):
        return False, None


def _where(node) -> tuple[str, int] | None:
    src = parse_source(node.sourceRange())
    return (src["file"], src["line"]) if src and src.get("file") else None


def _slot_kind(torch, value) -> str | None:
    """How to record an argument: "value" (int, float, bool, int list, their optionals), "none" (an optional
    of anything else: only whether it is None), or None (not recordable)."""
    t = value.type()
    C = torch._C
    if isinstance(t, C.OptionalType):
        inner = t.getElementType()
        return "value" if isinstance(inner, (C.IntType, C.FloatType, C.BoolType)) else "none"
    if isinstance(t, (C.IntType, C.FloatType, C.BoolType)):
        return "value"
    if isinstance(t, C.ListType) and isinstance(t.getElementType(), C.IntType):
        return "value"
    return None


def _computed(value) -> bool:
    """Whether a value can vary from run to run: not a constant, not a module attribute other than
    ``training`` (configuration cannot change; the mode can)."""
    node = value.node()
    if node.kind() == "prim::Constant":
        return False
    return node.kind() != "prim::GetAttr" or node.s("name") == "training"


def locate(torch, graph, sites: list[dict]) -> tuple[list[list], list[bool]]:
    """Per site, its instances in ``graph`` by position in walk order (``_nodes``: the same in every copy of
    the graph): If/Loop node positions, or value slots (node position, input index, slot kind, (has a
    default, the schema's default)); and per site whether any op is at its line."""
    wanted = {(s["file"], s["line"]) for s in sites}
    marks = {f", line {line}" for _, line in wanted}
    at: dict[tuple[str, int], list] = {}
    lists: dict[int, int] = {}  # a list value -> position of the ListConstruct making it
    for pos, node in enumerate(_nodes(graph.block())):
        if node.kind() == "prim::ListConstruct":
            lists[node.output().unique()] = pos
        if node.kind() == "prim::Constant":
            continue
        text = node.sourceRange()
        first = text.split("\n", 1)[0]
        if not any(first.endswith(mark) for mark in marks):  # parse only the candidates: big graphs
            continue
        where = _where(node)
        if where in wanted:
            at.setdefault(where, []).append((pos, node))
    out = []
    for site in sites:
        nodes = at.get((site["file"], site["line"]), [])
        if site["kind"] == "if":
            ifs = [(p, n) for p, n in nodes if n.kind() == "prim::If"]
            conds = {n.input().unique() for _, n in ifs}
            out.append([p for p, n in ifs if not any(o.unique() in conds for o in n.outputs())])
        elif site["kind"] == "loop":
            out.append([p for p, n in nodes if n.kind() == "prim::Loop"])
        else:
            slots = []
            for p, n in nodes:
                if n.kind() in _SKIP:
                    continue
                for i, value in enumerate(n.inputs()):
                    kind = _slot_kind(torch, value)
                    if kind and value.unique() in lists:  # a list built elsewhere: its elements too
                        slots += [(lists[value.unique()], j, "value", (False, None))
                                  for j, item in enumerate(value.node().inputs())
                                  if _computed(item) and _slot_kind(torch, item) == "value"]
                    if kind and _computed(value):
                        slots.append((p, i, kind, _default(torch, n, i)))
            out.append(slots)
    return out, [bool(at.get((site["file"], site["line"]))) for site in sites]


class Instrumented:
    """The inlined graph of one scripted method with its sites located once; ``recording()`` and ``frozen()``
    build functions of (self, *args) from copies of it (no re-parsing of source ranges: big graphs)."""

    def __init__(self, torch, method, sites: list[dict]):
        self.torch, self.sites = torch, sites
        self.base = inlined(torch, method)
        self.instances, self.present = locate(torch, self.base, sites)
        # per site and instance: (kind: "if", "loop", or a value slot's "value"/"none"; (has a default, it))
        self.layout = [[item[2:] if site["kind"] == "value" else (site["kind"], (False, None)) for item in items]
                       for site, items in zip(sites, self.instances)]

    def _copy(self):
        graph = self.base.copy()
        nodes = list(_nodes(graph.block()))
        graph.setInsertPoint(nodes[0] if nodes else graph.return_node())
        return graph, nodes

    def recording(self):
        """(output, list of "site.instance=value" records) for (self, *args)."""
        C = self.torch._C
        graph, nodes = self._copy()
        rec = graph.insertNode(graph.create("prim::ListConstruct")).output()
        rec.setType(C.ListType(C.StringType.get()))

        def append(where, tag: str, value=None, is_none: bool = False):
            if isinstance(where, C.Block):  # at the start of a loop body
                inside = list(where.nodes())
                graph.setInsertPoint(inside[0] if inside else where.returnNode())
            else:
                graph.setInsertPoint(where)
            text = graph.insertConstant(tag)
            if value is not None:
                if is_none:
                    value = graph.insert("aten::__is__", [value, graph.insertConstant(None)])
                text = graph.insert("aten::add", [text, graph.insert("aten::str", [value])])
            graph.insert("aten::append", [rec, text])

        for s, (site, items) in enumerate(zip(self.sites, self.instances)):
            for k, item in enumerate(items):
                if site["kind"] == "if":
                    append(nodes[item], f"{s}.{k}=", nodes[item].input())
                elif site["kind"] == "loop":
                    append(nodes[item], f"{s}.{k}^")
                    append(list(nodes[item].blocks())[0], f"{s}.{k}+")
                else:
                    pos, index, kind, _ = item
                    append(nodes[pos], f"{s}.{k}=", nodes[pos].inputsAt(index), is_none=kind == "none")
        ret = graph.return_node()
        out = ret.input()
        graph.setInsertPoint(ret)
        pair = graph.insertNode(graph.create("prim::TupleConstruct", [out, rec]))
        pair.output().setType(C.TupleType([out.type(), rec.type()]))
        ret.replaceInput(0, pair.output())
        return C._create_function_from_graph("tsinspect_recorded", graph)

    def frozen(self, parts: list[tuple[int, dict, dict[int, object]]]):
        """The method with each site of ``parts`` (index, site, values) set the traced way: an ``if``'s
        instances to ``site["sides"]`` (instance -> bool; the others to the ``kept`` side), a loop to the
        traced trip count, the value slots in ``values`` (instance -> value) to those values."""
        graph, nodes = self._copy()
        for index, site, values in parts:
            items = self.instances[index]
            if site["kind"] == "if" and site["kept"] is None:  # per iteration: the reference run's decisions
                for k, decisions in (site.get("sequences") or {}).items():
                    self._replay(graph, nodes[items[k]], decisions)
            elif site["kind"] == "if":
                sides = site.get("sides") or {}
                for k, pos in enumerate(items):
                    nodes[pos].replaceInput(0, graph.insertConstant(bool(sides.get(k, site["kept"] == "then"))))
            elif site["kind"] == "loop":
                count = graph.insertConstant(int(site["count"]))
                for pos in items:
                    nodes[pos].replaceInput(0, count)
            else:
                for k, value in values.items():
                    pos, slot = items[k][:2]
                    nodes[pos].replaceInput(slot, graph.insertConstant(value))
        return self.torch._C._create_function_from_graph("tsinspect_frozen", graph)

    def _replay(self, graph, node, decisions: list[bool]) -> None:
        """Make the If ``node`` decide its n-th run as ``decisions[n]`` (past their end, as it would)."""
        C = self.torch._C
        const = graph.insertConstant
        count = graph.insertNode(graph.create("prim::ListConstruct", [const(0)])).output()
        count.setType(C.ListType(C.IntType.get()))
        table = const(list(decisions))
        graph.setInsertPoint(node)
        n = graph.insert("aten::__getitem__", [count, const(0)])
        graph.insert("aten::_set_item", [count, const(0), graph.insert("aten::add", [n, const(1)])])
        known = graph.insert("aten::lt", [n, const(len(decisions))])
        recorded = graph.insert("aten::__getitem__", [table, graph.insert("prim::min", [n, const(len(decisions) - 1)])])
        own = graph.insert("aten::__and__", [graph.insert("aten::__not__", [known]), node.input()])
        node.replaceInput(0, graph.insert("aten::__or__", [graph.insert("aten::__and__", [known, recorded]), own]))
        graph.setInsertPoint(next(iter(graph.nodes())))


def parse_records(records: list[str], sites: list[dict]) -> dict[int, dict[int, list]] | None:
    """site -> instance -> what it did in one run: If decisions (bools), loop trip counts per run (ints),
    value texts ("True", "4", "[2, 4]"; for an optional tensor "True" when it was None). None past
    MAX_RECORDS entries."""
    if len(records) > MAX_RECORDS:
        return None
    out: dict[int, dict[int, list]] = {}
    for entry in records:
        head, sep, value = entry.partition("=")
        if not sep:
            s, k, mark = int(entry.split(".")[0]), int(entry.split(".")[1][:-1]), entry[-1]
            runs = out.setdefault(s, {}).setdefault(k, [])
            if mark == "^":
                runs.append(0)
            elif runs:
                runs[-1] += 1
            continue
        s, k = (int(p) for p in head.split("."))
        out.setdefault(s, {}).setdefault(k, []).append(value == "True" if sites[s]["kind"] == "if" else value)
    return out


def parse_value(text: str, kind: str) -> tuple[bool, object]:
    """(ok, the Python value) of a recorded text, to set a slot to; not ok when it cannot be rebuilt (an
    optional tensor that was not None)."""
    if kind == "none":
        return text == "True", None
    if text in ("True", "False"):
        return True, text == "True"
    for convert in (int, float):
        try:
            number = convert(text)
            return math.isfinite(number), number
        except ValueError:
            pass
    if text.startswith("[") and text.endswith("]"):
        try:
            return True, [int(p) for p in text[1:-1].split(",") if p.strip()]
        except ValueError:
            pass
    return False, None
