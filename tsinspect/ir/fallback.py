"""An ``ast`` view of ``code/`` for archives torch cannot load: every method and the ops it calls.

Which op a call stands for is tsinspect.archive.calls; this view adds what torch's compiler does to it:
constants it folds, branches it decides, builtins it inlines, and old ops it upgrades (ir.upgraders).
This needs no torch and works on any archive whose ``code/`` parses.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field

from tsinspect.archive.calls import op_of_call
from tsinspect.archive.code import CodeIndex, module_of
from tsinspect.ir.upgraders import SCALAR, TENSOR, CallArgs, may_upgrade, upgraded_ops


@dataclass
class OpUse:
    op: str  # "aten::relu", "torchvision::nms", "method forward"
    line: int


@dataclass
class AstMethod:
    owner: str | None
    name: str
    file: str
    line: int
    ops: list[OpUse] = field(default_factory=list)

    @property
    def qualname(self) -> str:
        return f"{self.owner or module_of(self.file)}.{self.name}"

    def to_json(self) -> dict:
        return {"class": self.owner, "name": self.name, "file": self.file, "line": self.line,
                "ops": [{"op": u.op, "line": u.line} for u in self.ops]}


_TYPE_NAMES = {"Optional", "Tuple", "List", "Dict", "Union", "Future", "RRef", "Await", "Final", "Any"}


def subscript_op(node: ast.Subscript, source_lines: list[str], value_is_tuple=lambda value: False) -> str | None:
    """The op a subscript in generated code stands for. TorchScript prints tensor indexing as explicit ops
    (``torch.select``) and a tuple's ``prim::TupleIndex`` as ``(t)[i]``; a list or dict item is ``x[i]``
    (``aten::__getitem__``), an expression's item ``(torch.size(x))[i]``, a list slice ``x[a:b]``."""
    value = node.value
    if not isinstance(node.ctx, ast.Load) or isinstance(value, ast.Name) and value.id in _TYPE_NAMES:
        return None  # an assignment target, or a type (Optional[Tensor], Tuple[int, int]) in an annotation
    line = source_lines[node.lineno - 1].encode("utf-8") if 0 < node.lineno <= len(source_lines) else b""
    parenthesised = line[node.col_offset:node.col_offset + 1] == b"("  # ast columns count UTF-8 bytes
    if parenthesised and (isinstance(value, (ast.Name, ast.Tuple)) or value_is_tuple(value)):
        return None  # prim::TupleIndex / prim::TupleSlice
    return "aten::slice" if isinstance(node.slice, ast.Slice) else "aten::__getitem__"


def _static_test(test: ast.expr) -> bool | None:
    """``True``, ``False``, ``torch.__is__(None, None)``, ``torch.__isnot__(None, None)``: decided when torch
    compiles the code, which then emits only the branch taken (no prim::If, no ops of the other side)."""
    if isinstance(test, ast.Constant) and isinstance(test.value, bool):
        return test.value
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and isinstance(test.func.value, ast.Name)
            and test.func.value.id == "torch" and test.func.attr in ("__is__", "__isnot__") and len(test.args) == 2
            and all(isinstance(a, ast.Constant) and a.value is None for a in test.args)):
        return test.func.attr == "__is__"
    return None


# Scalar ops torch's cleanup passes (constant propagation over immutable types) evaluate at compile time when
# every input is a constant: they leave no node, and an ``if`` on their result keeps only the side taken.
_FOLDABLE = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
             "remainder": operator.mod, "neg": operator.neg, "eq": operator.eq, "ne": operator.ne,
             "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "__is__": operator.is_,
             "__isnot__": operator.is_not, "__not__": operator.not_, "__and__": operator.and_,
             "__or__": operator.or_}
_SCALARS = (bool, int, float, str, type(None))
_ARITHMETIC = {"add", "sub", "mul", "floordiv", "remainder", "neg"}


def _small_number(v: object) -> bool:
    """An int64 or a float: what torch's arithmetic works on (never "ab" * 10**9 or a 10,000-digit int)."""
    return isinstance(v, float) or isinstance(v, int) and -(1 << 63) <= v < (1 << 63)


class _Constants:
    """Which calls of a method torch folds, and which ``if`` it decides, by a walk in statement order that
    knows the names bound to constants (TorchScript code is in SSA-like form: most names are bound once)."""

    def __init__(self, method: ast.FunctionDef):
        self.env: dict[str, object] = {}
        self.folded: set[int] = set()
        self.decided: dict[int, bool] = {}
        self.known: dict[int, tuple[bool, object]] = {}  # id(argument of a call) -> value() where it is
        try:
            self._run(method.body)
        except RecursionError:  # code nested deeper than real archives: count every op, fold nothing
            self.folded, self.decided, self.known = set(), {}, {}

    def value(self, expr: ast.expr) -> tuple[bool, object]:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, _SCALARS):
            return True, expr.value
        if isinstance(expr, ast.Name) and expr.id in self.env:
            return True, self.env[expr.id]
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
            known, v = self.value(expr.operand)
            return (True, -v) if known and isinstance(v, (int, float)) and not isinstance(v, bool) else (False, None)
        if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and isinstance(expr.func.value, ast.Name)
                and expr.func.value.id == "torch" and expr.func.attr in _FOLDABLE and not expr.keywords):
            args = [self.value(a) for a in expr.args]
            arithmetic = expr.func.attr in _ARITHMETIC
            if args and all(known and (not arithmetic or _small_number(v)) for known, v in args):
                try:
                    result = _FOLDABLE[expr.func.attr](*(v for _, v in args))
                except (TypeError, ValueError, ArithmeticError):
                    return False, None
                if isinstance(result, _SCALARS) and (not arithmetic or _small_number(result)):
                    self.folded.add(id(expr))
                    return True, result
        return False, None

    def _fold_calls(self, node: ast.AST) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                self.value(sub)
                for arg in (*sub.args, *(k.value for k in sub.keywords)):
                    self.known[id(arg)] = self.value(arg)

    def known_value(self, expr: ast.expr) -> tuple[bool, object]:
        return self.known.get(id(expr), (False, None))

    def _run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If):
                taken = _static_test(stmt.test)
                if taken is None:
                    known, v = self.value(stmt.test)
                    taken = v if known and isinstance(v, bool) else None
                self._fold_calls(stmt.test)
                if taken is not None:
                    self.decided[id(stmt)] = taken
                    self._run(stmt.body if taken else stmt.orelse)
                else:
                    before = dict(self.env)
                    self._run(stmt.body)
                    self.env = dict(before)
                    self._run(stmt.orelse)
                    self._forget(stmt, before)
            elif isinstance(stmt, (ast.For, ast.While)):
                self._forget(stmt, self.env)  # a loop rebinds its names on every trip
                self._fold_calls(stmt.iter if isinstance(stmt, ast.For) else stmt.test)
                self._run(stmt.body)
                self._forget(stmt, self.env)
            elif isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                continue
            else:
                self._fold_calls(stmt)
                bound = {}
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target, value = stmt.targets[0], stmt.value
                    pairs = [(target, value)] if isinstance(target, ast.Name) else list(zip(target.elts, value.elts)) \
                        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
                        and len(target.elts) == len(value.elts) else []
                    for name, item in pairs:  # a, b = True, x binds a to True (values before the binding)
                        known, v = self.value(item)
                        if known and isinstance(name, ast.Name):
                            bound[name.id] = v
                self._forget(stmt, self.env)
                self.env.update(bound)

    def _forget(self, stmt: ast.stmt, env: dict) -> None:
        """Names ``stmt`` binds anywhere below it are no longer known constants."""
        kept = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.env = {k: v for k, v in env.items() if k not in kept}


# What the op view knows of a value's type, enough to tell which overload a call matches (``aten::div.Tensor``
# or ``.Scalar``) when an upgrader depends on it. TorchScript's printed code annotates arguments and
# attributes; locals are typed by what they are assigned.
_SCALAR_TYPES = {"int", "float", "bool", "number", "complex", "Scalar"}
_SCALAR_RESULTS = {"dim", "len", "numel", "Int", "Float", "Bool", "ScalarImplicit", "item", "is_floating_point",
                   "__is__", "__isnot__", "__not__", "element_size", "get_device", "is_contiguous"}
# scalar in, scalar out; a tensor in, a tensor out
_POLYMORPHIC = {"add", "sub", "mul", "div", "floordiv", "remainder", "neg", "pow", "eq", "ne", "lt", "le", "gt",
                "ge", "abs", "floor", "ceil", "sqrt", "log", "exp", "__and__", "__or__", "__xor__"}


def kind_of_type(text: str) -> str | None:
    text = text.strip()
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[9:-1]
    return TENSOR if text == "Tensor" else SCALAR if text in _SCALAR_TYPES else None


class _Kinds:
    """Tensor or scalar, per expression of one method (None when the code does not say)."""

    def __init__(self, method: ast.FunctionDef, owner, own_methods: dict, classes: dict):
        self.owner, self.own_methods, self.classes = owner, own_methods, classes
        self.names: dict[str, str | None] = {}
        self.objects: dict[str, object] = {}  # local name -> the ClassInfo of the module or object it holds
        for arg in method.args.args:
            if arg.annotation is not None:
                self.names[arg.arg] = kind_of_type(ast.unparse(arg.annotation))
        assigns = sorted((n for n in ast.walk(method) if isinstance(n, ast.Assign) and len(n.targets) == 1),
                         key=lambda n: (n.lineno, n.col_offset))
        for stmt in assigns:  # printed code binds most names once: the last binding is the one that counts
            target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Name):
                self.names[target.id] = self.of(value)
                self.objects.pop(target.id, None)
                if (cls := self._object_class(value)) is not None:
                    self.objects[target.id] = cls
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                for name, item in zip(target.elts, value.elts):
                    if isinstance(name, ast.Name):
                        self.names[name.id] = self.of(item)

    def of(self, expr: ast.expr) -> str | None:
        try:
            return self._of(expr)
        except RecursionError:  # nested deeper than real code: not known
            return None

    def _of(self, expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Constant):
            return SCALAR if isinstance(expr.value, (bool, int, float, complex)) else None
        if isinstance(expr, ast.Name):
            return self.names.get(expr.id)
        if isinstance(expr, ast.UnaryOp):
            return self._of(expr.operand)
        if isinstance(expr, ast.Attribute):  # self.scale, stft.filter_length: the attribute's declared type
            owner = self._class_of(expr.value)
            if owner is None:
                return None
            if expr.attr in owner.parameters or expr.attr in owner.buffers:
                return TENSOR
            return kind_of_type(owner.attributes.get(expr.attr, ""))
        if isinstance(expr, ast.Subscript):  # an item of a shape is an int
            value = expr.value
            return SCALAR if isinstance(value, ast.Call) and _dotted(value.func) in ("ops.prim.shape", "torch.size") \
                and len(value.args) == 1 else None
        if isinstance(expr, ast.Call):
            return self._call(expr)
        return None

    def _object_class(self, expr: ast.expr):
        try:
            return self._class_of(expr)
        except RecursionError:
            return None

    def _class_of(self, expr: ast.expr):
        """The class of a module or object expression: ``self``, a local bound to ``self.stft``, ``a.b``."""
        if isinstance(expr, ast.Name):
            return self.owner if expr.id == "self" else self.objects.get(expr.id)
        if isinstance(expr, ast.Attribute):
            outer = self._class_of(expr.value)
            return self.classes.get(outer.attributes.get(expr.attr, "")) if outer is not None else None
        return None

    def _call(self, call: ast.Call) -> str | None:
        name = _dotted(call.func)
        if name in ("annotate", "unchecked_cast") and call.args:
            return kind_of_type(ast.unparse(call.args[0]))
        if name in ("int", "float", "bool", "len"):
            return SCALAR
        if name == "ops.prim.NumToTensor":
            return TENSOR
        if isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) \
                and call.func.value.id == "self" and call.func.attr in self.own_methods:
            returns = self.own_methods[call.func.attr].node.returns
            return kind_of_type(ast.unparse(returns)) if returns is not None else None
        if name is None or not name.startswith("torch.") or name.count(".") != 1:
            return None
        op = name[6:]
        if op == "size":
            return SCALAR if len(call.args) == 2 else None
        if op in _SCALAR_RESULTS:
            return SCALAR
        if op in _POLYMORPHIC:
            kinds = [self._of(a) for a in call.args]
            return TENSOR if TENSOR in kinds else SCALAR if kinds and all(k == SCALAR for k in kinds) else None
        return TENSOR  # the other aten ops printed as torch.<op> return tensors


def _dotted(func: ast.expr) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    parts.append(func.id)
    return ".".join(reversed(parts))


def _live_nodes(root: ast.AST, decided: dict[int, bool]):
    """Every node under ``root`` that torch would compile: branches decided statically are pruned."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and id(node) in decided:
            stack.extend(reversed(node.body if decided[id(node)] else node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _returns_tuple(value: ast.expr, own_methods: dict) -> bool:
    """Whether ``value`` calls a method of the same class, ``(self).m(...)``, declared to return a tuple."""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and isinstance(value.func.value, ast.Name) and value.func.value.id == "self"):
        return False
    called = own_methods.get(value.func.attr)
    returns = called.node.returns if called is not None else None
    return isinstance(returns, ast.Subscript) and isinstance(returns.value, ast.Name) and returns.value.id == "Tuple"


def ast_methods(index: CodeIndex) -> list[AstMethod]:
    out = []
    for method in index.methods:
        view = AstMethod(method.owner, method.name, method.file, method.line)
        owner = index.classes.get(method.owner) if method.owner else None
        own_methods = {m.name: m for m in owner.methods} if owner else {}
        lines = index.sources.get(method.file, "").split("\n")
        aliases = {}
        constants = _Constants(method.node)
        kinds = None  # typed only when a call may be upgraded
        nodes = list(_live_nodes(method.node, constants.decided))
        for node in nodes:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Attribute)):
                dotted = ast.unparse(node.value)
                if dotted.startswith("__torch__."):
                    aliases[node.targets[0].id] = dotted
        for node in nodes:
            op = None
            if isinstance(node, ast.Call) and id(node) not in constants.folded:
                op = op_of_call(node, aliases)
                if op and may_upgrade(op, index.file_version):  # an old archive: torch upgrades this op
                    kinds = kinds or _Kinds(method.node, owner, own_methods, index.classes)
                    upgraded = upgraded_ops(op, CallArgs(node, kinds.of, constants.known_value), index.file_version)
                    view.ops.extend(OpUse(o, node.lineno) for o in upgraded)
                    continue
            elif isinstance(node, ast.Subscript) and lines:
                op = subscript_op(node, lines, lambda value: _returns_tuple(value, own_methods))
            if op:
                view.ops.append(OpUse(op, node.lineno))
        view.ops.sort(key=lambda u: u.line)
        out.append(view)
    return out


def ast_view_json(index: CodeIndex) -> dict:
    return {"methods": [m.to_json() for m in ast_methods(index)]}


def ast_op_inventory(index: CodeIndex):
    """``op_inventory`` from code/ alone (torch did not load the archive): real ops (``ns::name``) only,
    each use with its ``code/`` line and no node id or original source."""
    from tsinspect.ir.views import OpEntry, OpUseSite

    entries: dict[str, OpEntry] = {}
    for method in ast_methods(index):
        for use in method.ops:
            if "::" in use.op:
                entry = entries.setdefault(use.op, OpEntry(use.op))
                entry.count += 1
                entry.uses.append(OpUseSite(method.owner or "", [], method.name, -1, f"{method.file}:{use.line}", None))
    return sorted(entries.values(), key=lambda e: (-e.count, e.kind))
