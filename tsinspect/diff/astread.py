"""The torch-free reader: a Program from ``code/`` (parsed with ``ast``) and ``*.debug_pkl``.

Each call in the generated code is located by the debug record covering its first byte: scripted
records give the original line, traced ones the Python call stack. ``if``/``for``/``while`` statements
keep their structure; a traced archive has none left.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import replace

from tsinspect.archive.code import module_of
from tsinspect.archive.debuginfo import SourceMap, line_starts, load_source_map, origin_of
from tsinspect.archive.modules import short_type
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import Archive
from tsinspect.archive.summary import ArchiveSummary
from tsinspect.archive.tensors import decode_values
from tsinspect.diff.program import GRAD, NO_DEPS, TRAINING, Arg, Function, If, Item, Loc, Loop, Op, Program
from tsinspect.ir.fallback import op_of_call

MAX_DEPTH = 200  # nesting of generated statements we follow
# calls that test a type, a dtype or a device, which the trace's example fixed (its inputs are tensors of one
# dtype and device): a value computed from them varies with no input the traced model is meant to take
TYPE_TESTS = {"isinstance", "ops.prim.dtype", "ops.prim.device", "torch.is_floating_point", "ops.prim.is_cuda",
              "ops.prim.is_nested", "torch.is_complex"}
_DEF = re.compile(r"\s*(?:async\s+)?def\s+(\w+)")


def read_program(archive: Archive, summary: ArchiveSummary) -> Program:
    program = Program(archive.path, root_type=short_type(summary.modules.type) if summary.modules else None)
    constants = constant_texts(archive, summary)
    for t in summary.traced_inputs:
        program.traced_inputs[t.name] = list(t.shape)
        program.input_dtypes[t.name] = t.dtype
    for module in summary.modules.walk() if summary.modules else ():
        program.module_methods[module.path] = set(module.methods)
        program.module_types[module.path] = short_type(module.type)
    index = summary.code
    for file, tree in index.trees.items():
        source_map = None
        try:
            source_map = load_source_map(archive, file)
        except ArchiveError as exc:
            archive.problems.append(Problem("bad_debug_info", file + ".debug_pkl", str(exc)))
        if source_map is not None:
            _collect_sources(program, source_map)
        reader = _FileReader(file, index.sources[file].encode("utf-8"), source_map, constants)
        for method in index.methods_of(file):
            fn = Function(short_type(method.owner) if method.owner else None, method.name,
                          f"{file}:{method.line}", [a for a in method.args if a != "self"])
            if method.owner is None:
                fn.module = short_type(module_of(file))
            fn.optional = {a.arg for a in method.node.args.args + method.node.args.kwonlyargs
                           if a.annotation is not None and _unparse(a.annotation).startswith("Optional[")}
            reader.scope = _Scope(method.node, fn.args, method.owner, index.classes)
            fn.body = reader.block(method.node.body, fn, 0)
            program.functions.append(fn)
    return program


def constant_texts(archive: Archive, summary: ArchiveSummary, max_numel: int = 16) -> dict[str, str]:
    """``c0`` -> ``-1.0`` for the small tensor constants of ``constants.pkl``."""
    out = {}
    for t in summary.constants:
        if t.record is None or t.numel > max_numel or t.problem:
            continue
        try:
            data = archive.read(t.record, 1 << 16)
        except ArchiveError:
            continue
        values = decode_values(data[t.offset * t.itemsize:(t.offset + t.numel) * t.itemsize], t.dtype)
        if values is not None:
            out[t.name] = str(values[0]) if not t.shape else str(values)
    return out


def _collect_sources(program: Program, source_map: SourceMap) -> None:
    seen = set()
    for record in source_map.records:
        src = record.source
        if src is None or id(src) in seen or not src.filename:
            continue
        seen.add(id(src))
        origin = origin_of(record)
        if origin is None or origin.stack:  # a traced call stack holds no source text
            continue
        lines = src.text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        table = program.sources.setdefault(src.filename, {})
        for i, text in enumerate(lines):
            table.setdefault(src.start_line + i, text)
        skip = next((i for i, text in enumerate(lines) if not text.lstrip().startswith("@")), len(lines))
        match = _DEF.match(lines[skip]) if skip < len(lines) else None
        if match:
            entry = (src.start_line + skip, src.start_line + len(lines) - 1, match.group(1))
            defs = program.defs.setdefault(src.filename, [])
            if entry not in defs:
                defs.append(entry)


class _FileReader:
    """Turns the statements of one code file into program items."""

    def __init__(self, file: str, code: bytes, source_map: SourceMap | None, constants: dict[str, str]):
        self.file = file
        self.source_map = source_map
        self.constants = constants
        self.scope = _Scope(None, [], None, {})
        self.line_starts = line_starts(code)

    def where(self, node: ast.AST) -> tuple[Loc | None, tuple[Loc, ...]]:
        if self.source_map is None:
            return None, ()
        line = node.lineno - 1
        offset = (self.line_starts[line] if line < len(self.line_starts) else 0) + node.col_offset
        origin = self.source_map.origin_at(offset)
        if origin is None or origin.file is None or origin.line is None:
            return None, ()
        stack = tuple((f, n) for f, n, _ in origin.stack) or ((origin.file, origin.line),)
        return (origin.file, origin.line), stack

    def code(self, node: ast.AST) -> str:
        return f"{self.file}:{node.lineno}"

    def block(self, stmts: list[ast.stmt], fn: Function, depth: int) -> list[Item]:
        items: list[Item] = []
        if depth > MAX_DEPTH:
            return items
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                loc, _ = self.where(stmt)
                items.append(If(loc, self.code(stmt), self.ops(stmt.test, fn), self.block(stmt.body, fn, depth + 1),
                                self.block(stmt.orelse, fn, depth + 1), _reads_training(stmt.test, fn),
                                _unparse(stmt.test), self.scope.deps(stmt.test), self.scope.identity(stmt.test),
                                self.scope.none_check(stmt.test)))
            elif isinstance(stmt, (ast.For, ast.While)):
                loc, _ = self.where(stmt)
                head = stmt.iter if isinstance(stmt, ast.For) else stmt.test
                items.append(Loop(loc, self.code(stmt), self.ops(head, fn),
                                  self.block(stmt.body + stmt.orelse, fn, depth + 1), _unparse(head), _trip(head),
                                  self.scope.deps(head)))
            else:
                if isinstance(stmt, ast.Assign) and _is_self_training(stmt.value):
                    fn.training_names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
                items.extend(self.ops(stmt, fn))
        return items

    def ops(self, node: ast.AST, fn: Function) -> list[Op]:
        out = []
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            kind = op_of_call(call, self.scope.aliases)
            if kind is None:
                continue
            callee = None
            if kind.startswith(("method ", "call ")):
                target = kind.split(" ", 1)[1]
                prefix, _, name = target.rpartition(".")
                if isinstance(call.func, ast.Attribute) and _is_self(call.func.value):
                    fn.calls.add(name)
                    callee = f"{fn.owner}.{name}" if fn.owner else None
                elif isinstance(call.func, ast.Attribute):
                    owner = self.scope.type_of(call.func.value)
                    callee = f"{short_type(owner)}.{name}" if owner else None
                elif prefix.startswith("__torch__"):
                    callee = f"{short_type(prefix)}.{name}"
                kind = f"call {name}"
            loc, stack = self.where(call)
            args, consts = self.args(call)
            out.append(Op(kind, loc, stack, self.code(call), args, consts, self.argv(call), callee))
        return out

    def argv(self, call: ast.Call) -> tuple[Arg, ...]:
        return tuple(self.arg(a) for a in call.args) + tuple(self.arg(k.value, k.arg) for k in call.keywords)

    def arg(self, node: ast.expr, name: str | None = None) -> Arg:
        literal = self.scope.single.get(node.id) if isinstance(node, ast.Name) else None
        if isinstance(literal, (ast.List, ast.Tuple)):  # a list built once, just before: its elements
            return self.arg(literal, name)
        if literal is not None and re.fullmatch(r"_\d+", node.id):  # a temporary: say what it holds
            return replace(self.arg(literal, name), nulls=self.scope.nulls(node))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = tuple(self.arg(e) for e in node.elts)
            const = (f"[{', '.join(i.const for i in items)}]" if all(i.const is not None for i in items)
                     else None)
            return Arg(_unparse(node)[:80], const, frozenset().union(*(i.deps for i in items)), items, name)
        return Arg(_unparse(node)[:80], self.const(node), self.scope.deps(node), None, name, self.scope.nulls(node))

    def args(self, call: ast.Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
        args, consts = [], []
        for arg in list(call.args) + [k.value for k in call.keywords]:
            for part in (arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]):
                value = self.const(part)
                args.append("const" if value is not None else _unparse(part)[:80])
                if value is not None:
                    consts.append(value)
        return tuple(args), tuple(consts)

    def const(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return "-" + repr(node.operand.value)
        if isinstance(node, ast.Constant):
            return repr(node.value)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "CONSTANTS":
            return self.constants.get(node.attr, f"CONSTANTS.{node.attr}")
        return None


class _Scope:
    """What the values of one generated function depend on, for the diff to tell values that inputs can change
    from values fixed by the configuration (``dynamic``). Per local name, found by a fixpoint over every
    assignment: its sources (the function's parameters, ``self.training``, grad mode), counting the condition
    of an ``if`` whose two sides set it differently; and the parameters that decide whether it is None.
    Also the function aliases (``_0 = __torch__.torch.nn.functional.dropout``) and the types of the submodules
    read from ``self``, so that a call names the function it calls."""

    def __init__(self, node: ast.FunctionDef | None, params: list[str], owner: str | None, classes: dict):
        self.env: dict[str, frozenset] = {p: frozenset({p}) for p in params}
        self.null_env: dict[str, frozenset] = dict(self.env)
        self.aliases: dict[str, str] = {}
        self.classes = classes
        self.local_types: dict[str, str] = {"self": owner} if owner else {}  # local -> its class (submodules)
        # (name, value, conditions that choose it, conditions that choose whether it is None)
        assigns: list[tuple[str, ast.expr, list[ast.expr], list[ast.expr]]] = []
        todo = [(node.body, [])] if node is not None else []
        while todo:
            stmts, conds = todo.pop()
            for stmt in stmts:
                if isinstance(stmt, ast.If):
                    todo.append((stmt.body + stmt.orelse, conds + [(stmt.test, *_chosen(stmt))]))
                elif isinstance(stmt, (ast.For, ast.While)):
                    head = stmt.iter if isinstance(stmt, ast.For) else stmt.test
                    if isinstance(stmt, ast.For):
                        assigns.extend((n, head, [], []) for n in _names(stmt.target))
                    todo.append((stmt.body + stmt.orelse, conds + [(head, None, ())]))
                elif isinstance(stmt, (ast.With, ast.Try)):
                    todo.append((stmt.body, conds))
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and stmt.value is not None:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    if len(targets) == 1 and isinstance(targets[0], ast.Name):
                        text = _dotted(stmt.value)
                        if text.startswith("__torch__.") and isinstance(stmt.value, ast.Attribute):
                            self.aliases[targets[0].id] = text
                        elif self.type_of(stmt.value):
                            self.local_types[targets[0].id] = self.type_of(stmt.value)
                    for target in targets:
                        for name, value in _pairs(target, stmt.value):
                            chosen = [c for c, names, _ in conds if names is None or name in names]
                            nulls = [c for c, _, names in conds if name in names]
                            assigns.append((name, value, chosen, nulls))
        once = Counter(name for name, *_ in assigns)
        self.single = {name: value for name, value, *_ in assigns if once[name] == 1}  # temporaries
        for _ in range(50):  # converges in a few rounds; bounded whatever the code
            changed = False
            for name, value, chosen, nulls in assigns:
                deps = self.deps(value).union(*(self.deps(c) for c in chosen))
                null = self.nulls(value).union(*(self.deps(c) for c in nulls))
                for env, new in ((self.env, deps), (self.null_env, null)):
                    old = env.get(name, NO_DEPS)
                    if not new <= old:
                        env[name] = old | new
                        changed = True
            if not changed:
                break

    def deps(self, node: ast.expr) -> frozenset:
        out: set[str] = set()
        todo = [node]
        while todo:
            n = todo.pop()
            if isinstance(n, ast.Name):
                out |= self.env.get(n.id, NO_DEPS)
            elif isinstance(n, ast.Attribute) and _is_self(n.value):
                if n.attr == "training":
                    out.add(TRAINING)
            elif isinstance(n, ast.Call) and _dotted(n.func) == "torch.is_grad_enabled":
                out.add(GRAD)
            elif isinstance(n, ast.Call) and _dotted(n.func) in TYPE_TESTS or (
                    isinstance(n, ast.Attribute) and n.attr in ("dtype", "device", "is_cuda", "is_nested")):
                pass  # a type test: every input of a trace is a tensor of its example's dtype and device
            else:
                todo.extend(ast.iter_child_nodes(n))
        return frozenset(out)

    def nulls(self, node: ast.expr) -> frozenset:
        """The parameters that decide whether ``node`` is None: operators never return None; a function call
        may pass an argument's None-ness on."""
        if isinstance(node, ast.Name):
            return self.null_env.get(node.id, NO_DEPS)
        if isinstance(node, ast.Call):
            kind = op_of_call(node, self.aliases) or ""
            if _dotted(node.func) == "unchecked_cast" and len(node.args) == 2:
                return self.nulls(node.args[1])
            if kind.startswith("call "):
                return frozenset().union(*(self.nulls(a) for a in node.args))
        return NO_DEPS

    def _leaves(self, test: ast.expr) -> list[ast.expr]:
        """The tests a condition is made of, through not/and/or and the temporaries holding them."""
        out, parts = [], [test]
        while parts and len(out) < 1000:
            n = parts.pop()
            if isinstance(n, ast.BoolOp):
                parts.extend(n.values)
            elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
                parts.append(n.operand)
            elif isinstance(n, ast.Name) and n.id in self.single:
                parts.append(self.single[n.id])
            elif isinstance(n, ast.Call) and _dotted(n.func) == "torch.__not__" and len(n.args) == 1:
                parts.append(n.args[0])
            else:
                out.append(n)
        return out

    def none_check(self, test: ast.expr) -> frozenset | None:
        """For a condition made only of ``x is None`` tests: the parameters that decide their outcome."""
        out: set[str] = set()
        for n in self._leaves(test):
            if not (_is_test(n) and any(_is_none(a) for a in n.args)):
                return None
            out |= self.nulls(next((a for a in n.args if not _is_none(a)), n.args[0]))
        return frozenset(out)

    def identity(self, test: ast.expr) -> bool:
        """A condition made only of ``a is b`` tests between objects, none of them a constant (None)."""
        return all(_is_test(n) and not any(isinstance(a, ast.Constant) for a in n.args) for n in self._leaves(test))

    def type_of(self, node: ast.expr) -> str | None:
        """The class of a submodule (``self.attr``, ``getattr(self.layers, "0")``, a local holding one), from
        the classes' attribute annotations."""
        if isinstance(node, ast.Name):
            return self.local_types.get(node.id)
        if isinstance(node, ast.Attribute):
            owner, attr = self.type_of(node.value), node.attr
        elif (isinstance(node, ast.Call) and _dotted(node.func) == "getattr" and len(node.args) == 2
              and isinstance(node.args[1], ast.Constant)):
            owner, attr = self.type_of(node.args[0]), str(node.args[1].value)
        else:
            return None
        info = self.classes.get(owner) if owner else None
        return info.attributes.get(attr) if info else None


def _dotted(node: ast.expr) -> str:
    """``torch.__is__`` for a name or attribute chain (cheaper than unparsing); "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(node.id)
    return ".".join(reversed(parts))


def _is_test(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and _dotted(node.func) in ("torch.__is__", "torch.__isnot__")
            and len(node.args) == 2)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _pairs(target: ast.expr, value: ast.expr):
    """(name, value) for an assignment; ``a, b = x, y`` element by element."""
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        for t, v in zip(target.elts, value.elts):
            yield from _pairs(t, v)
    else:
        for name in _names(target):
            yield name, value


def _chosen(stmt: ast.If) -> tuple[set[str], set[str]]:
    """The names both sides of an ``if`` assign, to values written differently (the ``if`` chooses their
    value), and those of them one side sets to None (the ``if`` chooses whether they are None)."""
    sides = []
    for body in (stmt.body, stmt.orelse):
        values: dict[str, set[str]] = {}
        for sub in (n for s in body for n in ast.walk(s)):
            if isinstance(sub, ast.Assign):
                for target in sub.targets:
                    for name, value in _pairs(target, sub.value):
                        values.setdefault(name, set()).add(_unparse(value))
        sides.append(values)
    then, orelse = sides
    chosen = {name for name in then.keys() & orelse.keys() if then[name] != orelse[name]}
    return chosen, {name for name in chosen if ("None" in then[name]) != ("None" in orelse[name])}


def _names(target: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_self_training(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "training" and _is_self(node.value)


def _reads_training(test: ast.expr, fn: Function) -> bool:
    return any(_is_self_training(n) or isinstance(n, ast.Name) and n.id in fn.training_names
               for n in ast.walk(test))


def _trip(head: ast.expr) -> tuple[str, int] | None:
    """``range(torch.size(x, 0))`` -> ("x", 0); ``range(len(x))`` -> ("x", 0)."""
    if isinstance(head, ast.Call) and isinstance(head.func, ast.Name) and head.func.id == "range" and head.args:
        head = head.args[-1] if len(head.args) == 1 else head.args[1]
    if not isinstance(head, ast.Call) or not head.args or not isinstance(head.args[0], ast.Name):
        return None
    name = _unparse(head.func)
    if name == "len":
        return head.args[0].id, 0
    if name == "torch.size" and len(head.args) == 2 and isinstance(head.args[1], ast.Constant):
        return head.args[0].id, head.args[1].value
    return None


def _unparse(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except (ValueError, RecursionError):
        return "?"
