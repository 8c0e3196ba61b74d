"""A Program (the diff's view of an archive) built from the IR the extraction child printed.

Scripted archives: the non-inlined graph of every method of every module type, plus the free functions and
TorchScript class methods they call (``IR.functions``), so that call sites keep their own lines (an inlined
graph only knows the callee's lines) and helpers stay functions of their own. ``prim::If`` becomes an
``If`` (its line is the condition's), ``prim::Loop`` a ``Loop`` (its line is the header's; the trip count
names the argument and dimension when it is ``aten::size``/``aten::len`` of an argument),
``prim::CallMethod``/``CallFunction`` a call, every other node with a line an op. Ops on the line of an
``If``/``Loop`` right before it are its condition/header, as in the code.

Traced archives: the inlined graph of each method of the root module, so every op appears as often as it
ran (a submodule called three times contributes its ops three times), each with its recorded call stack.

Arguments are rendered as the generated code would write them (``torch.sqrt(torch.size(x, 1))``,
``self.training``), constants by value, so the alignment treats both readers alike.
"""

from __future__ import annotations

import ast
import re

from tsinspect.archive.code import CodeIndex, module_of
from tsinspect.archive.modules import short_type
from tsinspect.diff.program import GRAD, NO_DEPS, TRAINING, Arg, Function, If, Item, Loc, Loop, Op, Program
from tsinspect.ir.model import IR, Graph, Node, Source

# nodes that are no call in the generated code: never ops of their own (they show in their users' arguments)
STRUCTURAL = {"prim::Constant", "prim::GetAttr", "prim::SetAttr", "prim::ListConstruct", "prim::TupleConstruct",
              "prim::DictConstruct", "prim::ListUnpack", "prim::TupleUnpack", "prim::TupleIndex", "prim::Return",
              "prim::CreateObject"}
BUILTINS = {"aten::Bool": "bool", "aten::Int": "int", "aten::Float": "float", "aten::str": "str"}  # as the code
INT_MAX = 9223372036854775807  # a while loop's trip count
MAX_DEPTH = 200  # block nesting we follow
MAX_ROUNDS = 50  # of the dependency fixpoint (a few suffice)
# nodes whose value is fixed for a trace: constants, and tests of a type, dtype or device (a trace's inputs are
# tensors of its example's dtype and device)
TYPE_TESTS = {"prim::Constant", "prim::isinstance", "prim::dtype", "prim::device", "aten::is_floating_point",
              "prim::is_cuda", "prim::is_nested", "aten::is_complex", "prim::layout"}
_SUFFIX = re.compile(r"\.\d+$")


def program_from_ir(ir: IR, index: CodeIndex, base: Program, traced: bool) -> Program:
    """``base`` is the torch-free Program of the same archive: it gives what the IR does not carry (the
    embedded source text and defs, traced_inputs.pkl, the module tree)."""
    program = Program(base.path, sources=base.sources, defs=base.defs, traced_inputs=base.traced_inputs,
                      input_dtypes=base.input_dtypes, root_type=base.root_type, module_methods=base.module_methods,
                      module_types=base.module_types, origin="ir")
    where = {(m.owner or module_of(m.file), m.name): f"{m.file}:{m.line}" for m in index.methods}
    root = ir.modules[0].type if ir.modules else None
    for type_name, methods in ir.types.items():
        if traced and type_name != root:
            continue  # the root's inlined graphs hold every op that ran
        for method in methods:
            graph = (method.inlined or method.graph) if traced else method.graph
            if graph is not None:
                fn = Function(short_type(type_name), method.name, where.get((type_name, method.name), ""))
                program.functions.append(_GraphReader(graph, fn, traced, has_self=True).read())
    for qualname, method in ({} if traced else ir.functions).items():
        if method.graph is not None:
            prefix, _, name = qualname.rpartition(".")  # the module of a function, the class of a method
            is_method = bool(method.graph.inputs) and method.graph.inputs[0].type == prefix
            fn = Function(short_type(prefix) if is_method else None, name, where.get((prefix, name), ""),
                          module=None if is_method else short_type(prefix))
            program.functions.append(_GraphReader(method.graph, fn, traced, has_self=is_method).read())
    return program


def _strip(name: str) -> str:
    return _SUFFIX.sub("", name)


def constant_text(node: Node) -> str:
    """A prim::Constant's value as the code would write it (tensors: their value when the IR has it)."""
    if "value" not in node.attributes:
        return node.attributes.get("name", "None")  # None, or a function's name
    value = node.attributes["value"]
    if isinstance(value, dict) and "tensor" in value:
        t = value["tensor"]
        return str(t["value"]) if "value" in t else f"tensor({t.get('dtype')}{t.get('shape')})"
    if node.outputs and node.outputs[0].type == "bool" and isinstance(value, int):
        return repr(bool(value))
    return repr(value)


def schema_defaults(schema: str) -> list[str | None]:
    """Per parameter of an operator schema, its default as written (``"1"``, ``"None"``), or None."""
    start = schema.find("(")
    params, depth, current, quote = [], 0, "", ""
    for char in schema[start + 1:] if start >= 0 else "":
        if quote or char in "'\"":
            quote = "" if char == quote else quote or char
        elif char in "([":
            depth += 1
        elif char in ")]":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0 and not quote:
            params.append(current.strip())
            current = ""
        else:
            current += char
    params.append(current.strip())
    return [p.split("=", 1)[1].strip() if "=" in p else None for p in params if p and p != "*"]


def _equal(constant: Node, default: str) -> bool:
    try:
        wanted = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return False
    value = constant.attributes.get("value")  # absent: None
    return not isinstance(value, dict) and isinstance(value, str) == isinstance(wanted, str) and value == wanted


class _GraphReader:
    def __init__(self, graph: Graph, fn: Function, traced: bool, has_self: bool):
        self.graph, self.fn, self.traced = graph, fn, traced
        self.defs: dict[str, Node] = {}
        self.types: dict[str, str] = {v.name: v.type for v in graph.inputs}
        for node, _ in graph.walk():
            for value in node.outputs:
                self.defs[value.name] = node
                self.types[value.name] = value.type
        self._deps: dict[str, frozenset] | None = None
        inputs = graph.inputs[1:] if has_self else graph.inputs
        self.self_name = graph.inputs[0].name if has_self and graph.inputs else None
        self.args = {v.name for v in inputs}
        fn.args = [_strip(v.name) for v in inputs]
        fn.optional = {_strip(v.name) for v in inputs if v.type.endswith("?") or v.type.startswith("Optional[")}

    def read(self) -> Function:
        self.fn.body = self.block(self.graph.nodes, 0)
        return self.fn

    # -- structure ---------------------------------------------------------------------------------
    def block(self, nodes: list[Node], depth: int) -> list[Item]:
        items: list[Item] = []
        if depth > MAX_DEPTH:
            return items
        for node in nodes:
            if node.kind == "prim::If" and len(node.blocks) == 2 and not self.traced:
                loc = self.loc(node.source)
                cond = node.inputs[0] if node.inputs else ""
                items.append(If(loc, self.code(node.source), self._leading(items, loc),
                                self.block(node.blocks[0].nodes, depth + 1),
                                self.block(node.blocks[1].nodes, depth + 1),
                                self._reads_training(cond), self.render(cond), self.deps(cond),
                                self._identity(cond), self._none_check(cond)))
            elif node.kind == "prim::Loop" and node.blocks and not self.traced:
                loc = self.loc(node.source)
                items.append(Loop(loc, self.code(node.source), self._leading(items, loc),
                                  self.block(node.blocks[0].nodes, depth + 1), self._header(node),
                                  self._trip(node), self._loop_deps(node)))
            elif node.kind not in STRUCTURAL:
                items.append(self.op(node))
                for block in node.blocks:  # prim::With, prim::Closure: their ops run in place
                    items.extend(self.block(block.nodes, depth + 1))
        return items

    @staticmethod
    def _leading(items: list[Item], loc: Loc | None) -> list[Op]:
        """Move the ops right before an if/loop on its own line out of ``items``: its condition/header."""
        n = len(items)
        while loc is not None and n and isinstance(items[n - 1], Op) and items[n - 1].loc == loc:
            n -= 1
        leading = items[n:]
        del items[n:]
        return leading

    def op(self, node: Node) -> Op:
        inputs = node.inputs
        kind = node.kind
        callee = None
        if kind == "prim::CallMethod":
            name = node.attributes.get("name", "?")
            if inputs and inputs[0] == self.self_name:
                self.fn.calls.add(name)
            owner = self.types.get(inputs[0]) if inputs else None
            callee = f"{short_type(owner)}.{name}" if owner else None
            kind, inputs = f"call {name}", inputs[1:]
        elif kind == "prim::CallFunction":
            target = self.defs.get(inputs[0]) if inputs else None
            name = target.outputs[0].type if target is not None and target.outputs else "?"
            prefix, _, short = name.rpartition(".")
            callee = f"{short_type(prefix)}.{short}" if prefix else None
            kind, inputs = f"call {short}", inputs[1:]
        loc, stack = self.loc(node.source), self.stack(node.source)
        args, consts = [], []
        for value in self._flat(self._explicit(node, inputs)):
            target = self.defs.get(value)
            if target is not None and target.kind == "prim::Constant":
                args.append("const")
                consts.append(constant_text(target))
            else:
                args.append(self.render(value)[:80])
        argv = tuple(self.arg(v) for v in (inputs if callee else self._explicit(node, inputs)))
        return Op(kind, loc, stack, self.code(node.source), tuple(args), tuple(consts), argv, callee)

    def arg(self, value: str) -> Arg:
        target = self.defs.get(value)
        if target is not None and target.kind == "prim::Constant":
            return Arg(constant_text(target), constant_text(target))
        if target is not None and target.kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            items = tuple(self.arg(v) for v in target.inputs)
            const = (f"[{', '.join(i.const for i in items)}]" if all(i.const is not None for i in items)
                     else None)
            return Arg(self.render(value)[:80], const, frozenset().union(*(i.deps for i in items)), items)
        if self.traced:  # what a traced value depends on is never asked: only the script's values can vary
            return Arg(self.render(value)[:80])
        return Arg(self.render(value)[:80], None, self.deps(value), nulls=self.nulls(value))

    def nulls(self, value: str, depth: int = 0) -> frozenset:
        """The parameters that decide whether ``value`` is None: operators never return None; a call may pass
        an argument's None-ness on; an if chooses it when one side gives None."""
        if value in self.args:
            return frozenset({_strip(value)})
        node = self.defs.get(value)
        if node is None or depth > 50:
            return NO_DEPS
        if node.kind == "prim::unchecked_cast" and node.inputs:
            return self.nulls(node.inputs[0], depth + 1)
        if node.kind in ("prim::CallFunction", "prim::CallMethod"):
            return frozenset().union(*(self.nulls(v, depth + 1) for v in node.inputs[1:]))
        if node.kind == "prim::If" and len(node.blocks) == 2:
            i = next((i for i, v in enumerate(node.outputs) if v.name == value), 0)
            outs = [b.outputs[i] for b in node.blocks if i < len(b.outputs)]
            out = frozenset().union(*(self.nulls(v, depth + 1) for v in outs))
            if len(outs) == 2 and self._is_none(outs[0]) != self._is_none(outs[1]):
                out |= self.deps(node.inputs[0])
            return out
        return NO_DEPS

    def _is_none(self, value: str) -> bool:
        node = self.defs.get(value)
        return node is not None and node.kind == "prim::Constant" and "value" not in node.attributes \
            and node.outputs[0].type in ("NoneType", "None")

    def _none_check(self, value: str, depth: int = 0) -> frozenset | None:
        """For a condition made only of ``x is None`` tests (and not/and/or of them): what decides them."""
        node = self.defs.get(value)
        if node is None or depth > 20:
            return None
        if node.kind == "aten::__not__" and node.inputs:
            return self._none_check(node.inputs[0], depth + 1)
        if node.kind in ("aten::__is__", "aten::__isnot__") and len(node.inputs) == 2:
            none = [v for v in node.inputs if self._is_none(v)]
            other = [v for v in node.inputs if not self._is_none(v)]
            return self.nulls(other[0]) if none and other else None
        if node.kind == "prim::If" and len(node.blocks) == 2:  # a and b, a or b
            i = next((i for i, v in enumerate(node.outputs) if v.name == value), 0)
            parts = [node.inputs[0]] + [b.outputs[i] for b in node.blocks if i < len(b.outputs)]
            out: set[str] = set()
            for part in parts:
                target = self.defs.get(part)
                if target is not None and target.kind == "prim::Constant":
                    continue
                got = self._none_check(part, depth + 1)
                if got is None:
                    return None
                out |= got
            return frozenset(out)
        return None

    def deps(self, value: str) -> frozenset:
        """What a value is computed from: the function's parameters, self.training, grad mode."""
        if self._deps is None:
            self._deps = self._all_deps()
        return self._deps.get(value, NO_DEPS)

    def _all_deps(self) -> dict[str, frozenset]:
        """Every value's sources, by a fixpoint over the graph (loops carry values around): a node's outputs
        depend on its inputs, an if's and a loop's also on what their blocks return, a block's inputs on its
        owner's inputs and on what the block returns."""
        deps: dict[str, frozenset] = {v: frozenset({_strip(v)}) for v in self.args}
        nodes = [node for node, _ in self.graph.walk()]
        for _ in range(MAX_ROUNDS):
            changed = False
            for node in nodes:
                if node.kind in TYPE_TESTS:
                    continue
                if node.kind == "prim::GetAttr":
                    own = {TRAINING} if node.attributes.get("name") == "training" else set()
                    sources = [] if node.inputs and node.inputs[0] == self.self_name else node.inputs
                else:
                    own = {GRAD} if node.kind == "aten::is_grad_enabled" else set()
                    sources = node.inputs + [v for block in node.blocks for v in block.outputs]
                value = frozenset(own).union(*(deps.get(v, NO_DEPS) for v in sources))
                targets = [o.name for o in node.outputs] + [v.name for b in node.blocks for v in b.inputs]
                for name in targets:
                    old = deps.get(name, NO_DEPS)
                    if not value <= old:
                        deps[name] = old | value
                        changed = True
            if not changed:
                break
        return deps

    def _loop_deps(self, node: Node) -> frozenset:
        """A loop's trip count, first condition and the condition its body computes for the next round."""
        values = node.inputs[:2] + [b.outputs[0] for b in node.blocks[:1] if b.outputs]
        return frozenset().union(*(self.deps(v) for v in values))

    def _identity(self, value: str) -> bool:
        """The condition only compares two objects by identity (``k is v``), neither of them None."""
        node = self.defs.get(value)
        if node is not None and node.kind == "aten::__not__" and node.inputs:
            node = self.defs.get(node.inputs[0])
        if node is None or node.kind not in ("aten::__is__", "aten::__isnot__"):
            return False
        return not any((d := self.defs.get(v)) is not None and d.kind == "prim::Constant" for v in node.inputs)

    def _explicit(self, node: Node, inputs: list[str]) -> list[str]:
        """``inputs`` without the trailing ones that equal their schema default, which the code omits."""
        defaults = schema_defaults(node.schema) if node.schema else []
        n = len(inputs)
        while 0 < n <= len(defaults) and defaults[n - 1] is not None:
            target = self.defs.get(inputs[n - 1])
            if target is None or target.kind != "prim::Constant" or not _equal(target, defaults[n - 1]):
                break
            n -= 1
        return inputs[:n]

    def _flat(self, values: list[str]) -> list[str]:
        """List and tuple literals count element by element, as the code writes them."""
        out = []
        for value in values:
            target = self.defs.get(value)
            if target is not None and target.kind in ("prim::ListConstruct", "prim::TupleConstruct"):
                out.extend(target.inputs)
            else:
                out.append(value)
        return out

    # -- locations ---------------------------------------------------------------------------------
    def loc(self, source: Source | None) -> Loc | None:
        if self.traced:
            stack = self.stack(source)
            return stack[0] if stack else None
        return (source.file, source.line) if source and source.file and source.line is not None else None

    def stack(self, source: Source | None) -> tuple[Loc, ...]:
        if source is None or not self.traced:
            return ()
        frames = []
        for frame in source.stack:
            file, _, line = frame.rpartition(":")
            if file and line.isdigit():
                frames.append((file, int(line)))
        if not frames and source.file and source.line is not None:
            frames.append((source.file, source.line))
        return tuple(frames)

    @staticmethod
    def code(source: Source | None) -> str:
        return (source.code_where or "") if source else ""

    # -- values ------------------------------------------------------------------------------------
    def render(self, value: str, depth: int = 0) -> str:
        """A value as generated code would write it: ``torch.sqrt(torch.size(x, 1))``, ``self.training``."""
        node = self.defs.get(value)
        if node is None:
            return _strip(value)
        if depth > 4:
            return "..."
        if node.kind == "prim::Constant":
            return constant_text(node)
        if depth and not _strip(value).isdigit():
            return _strip(value)  # a named local of the code
        args = ", ".join(self.render(v, depth + 1) for v in self._explicit(node, node.inputs))
        if node.kind == "prim::GetAttr":
            return f"{self.render(node.inputs[0], depth + 1)}.{node.attributes.get('name', '?')}"
        if node.kind == "prim::ListConstruct":
            return f"[{args}]"
        if node.kind == "prim::TupleConstruct":
            return f"({args})"
        if node.kind == "prim::CallMethod" and node.inputs:
            rest = ", ".join(self.render(v, depth + 1) for v in node.inputs[1:])
            return f"({self.render(node.inputs[0], depth + 1)}).{node.attributes.get('name', '?')}({rest})"
        if node.kind == "prim::CallFunction" and node.inputs:
            target = self.defs.get(node.inputs[0])
            name = target.outputs[0].type.rsplit(".", 1)[-1] if target is not None and target.outputs else "?"
            return f"{name}({', '.join(self.render(v, depth + 1) for v in node.inputs[1:])})"
        if node.kind in BUILTINS:
            return f"{BUILTINS[node.kind]}({args})"
        if node.kind == "prim::If" and len(node.blocks) == 2 and node.inputs:
            return self._choice(node, value, depth)
        namespace, _, name = node.kind.partition("::")
        return f"torch.{name}({args})" if namespace == "aten" else f"ops.{namespace}.{name}({args})"

    def _choice(self, node: Node, value: str, depth: int) -> str:
        """A value an ``if`` chooses: ``a and b``, ``a or b`` (how the code's short-circuits compile), or
        ``x if c else y``."""
        i = next((i for i, v in enumerate(node.outputs) if v.name == value), 0)
        then, orelse = (self.render(b.outputs[i], depth + 1) if i < len(b.outputs) else "?" for b in node.blocks)
        cond = self.render(node.inputs[0], depth + 1)
        text = (f"{cond} or {orelse}" if then == "True" else f"{cond} and {then}" if orelse == "False"
                else f"{then} if {cond} else {orelse}")
        return f"({text})" if depth else text

    def _reads_training(self, value: str) -> bool:
        todo, seen = [value], set()
        while todo and len(seen) < 200:
            node = self.defs.get(todo.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.kind == "prim::GetAttr" and node.attributes.get("name") == "training":
                return True
            todo.extend(node.inputs)
        return False

    def _header(self, node: Node) -> str:
        trip = node.inputs[0] if node.inputs else ""
        target = self.defs.get(trip)
        if target is not None and target.kind == "prim::Constant" and target.attributes.get("value") == INT_MAX:
            return f"while {self.render(node.inputs[1])}" if len(node.inputs) > 1 else "while ..."
        return f"range({self.render(trip)})"

    def _trip(self, node: Node) -> tuple[str, int] | None:
        """("x", 0) when the trip count is ``aten::size(x, 0)`` or ``aten::len(x)`` of an argument."""
        target = self.defs.get(node.inputs[0]) if node.inputs else None
        if target is None or not target.inputs or target.inputs[0] not in self.args:
            return None
        name = _strip(target.inputs[0])
        if target.kind == "aten::len":
            return name, 0
        if target.kind == "aten::size" and len(target.inputs) == 2:
            dim = self.defs.get(target.inputs[1])
            value = dim.attributes.get("value") if dim is not None and dim.kind == "prim::Constant" else None
            return (name, value) if isinstance(value, int) else None
        return None
