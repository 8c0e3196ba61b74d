"""Name resolution of ``code/`` as torch's TorchScript importer does it, on ``ast`` trees, torch-free.

The importer (``import_source.cpp``) compiles each file with a fixed environment: ``torch`` is the
builtin module ``aten`` (and ``torch.autograd``, at any depth, is ``aten`` again), ``ops.<ns>`` is the
builtin module ``<ns>`` (``ops.x.autograd`` is ``aten`` too), ``__torch__.a.b.C`` names classes and
functions of ``code/`` and ``__torch__.torch.classes.<ns>.<C>`` TorchBind classes; ``fork``/``awaitable``
call their first argument; ``getattr(x, "name")`` is ``x.name``; names bound to any of these by
assignment keep meaning them, all of them when assigned several (``s = torch; s.save(...)`` is
``aten::save``). A method called on a value of unknown type is the builtin ``aten::<name>`` with that
value as ``self``, or a method of some ``code/`` class of that name. Operators and implicit calls
(``a + b``, ``with x:``, ``if obj:``) call the dunder methods of ``code/`` classes. Every call is turned
into the targets torch would emit: :class:`Op`, :class:`Code` (a method or function of ``code/``),
:class:`ByName` (every ``code/`` method of a name), :class:`Custom` (a TorchBind method),
:class:`Builtin` or :class:`Unknown`. Where the type is not known the result over-approximates, never
under.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from tsinspect.archive.code import ClassInfo, CodeIndex, MethodInfo, module_of
from tsinspect.safety.ops import CUSTOM_CLASS_PREFIX

# ir_emitter.cpp's global builtins (print, casts, len, ...): each is a prim/aten op doing arithmetic or
# conversion, or a special form handled by the compiler
BUILTINS = frozenset({
    "print", "tuple", "float", "complex", "int", "bool", "str", "getattr", "hasattr", "isinstance", "_to_tensor",
    "len", "hex", "oct", "round", "hash", "id", "min", "max", "abs", "all", "any", "divmod", "sum", "list", "dict",
    "ord", "chr", "bin", "pow", "range", "zip", "enumerate", "rangelist", "sorted", "AssertionError",
    "annotate", "unchecked_cast", "uninitialized", "isfinite", "_unwrap_optional", "interface"})
SPECIAL_CALLERS = frozenset({"fork", "awaitable"})  # call their first argument
PASS_THROUGH = frozenset({"annotate", "unchecked_cast"})  # the value is the second argument
# builtin casts that call the operand's dunder method when it is a class object
CAST_DUNDERS = {"int": "__int__", "float": "__float__", "bool": "__bool__", "str": "__str__", "print": "__str__",
                "complex": "__complex__", "len": "__len__", "hex": "__hex__", "oct": "__oct__",
                "round": "__round__", "hash": "__hash__"}
_BINOP = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
          ast.Mod: "mod", ast.Pow: "pow", ast.LShift: "lshift", ast.RShift: "rshift", ast.BitOr: "or",
          ast.BitXor: "xor", ast.BitAnd: "and", ast.MatMult: "matmul"}
_CMP = {ast.Eq: "__eq__", ast.NotEq: "__ne__", ast.Lt: "__lt__", ast.LtE: "__le__", ast.Gt: "__gt__",
        ast.GtE: "__ge__", ast.In: "__contains__", ast.NotIn: "__contains__"}
_UNARY = {ast.USub: "__neg__", ast.UAdd: "__pos__", ast.Invert: "__invert__"}


# -- sugared values (what a name or attribute means to the importer) -------------------------------------

@dataclass(frozen=True)
class BuiltinModule:
    namespace: str  # torch -> aten, ops.x -> x


@dataclass(frozen=True)
class OpsRoot:
    pass


@dataclass(frozen=True)
class Namespace:
    qualname: str  # __torch__.a.b: a package of code/ not (yet) known to be a class or function


@dataclass(frozen=True)
class ClassRef:
    info: ClassInfo


@dataclass(frozen=True)
class CustomRef:
    qualname: str  # a TorchBind class


@dataclass(frozen=True)
class Instance:
    info: ClassInfo


@dataclass(frozen=True)
class CustomInstance:
    qualname: str


@dataclass(frozen=True)
class Callable_:
    target: "Target"


@dataclass(frozen=True)
class Special:
    name: str  # fork, awaitable, a builtin


class Value:
    """A value of unknown type (a tensor, a number, a list, an object)."""


VALUE = Value()


@dataclass(frozen=True)
class Union:
    """A local name assigned several meanings (``s = torch`` here, ``s = ops.c10d`` there): all of them."""

    meanings: tuple

# -- call targets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    name: str  # aten::save


@dataclass(frozen=True)
class Code:
    method: MethodInfo


@dataclass(frozen=True)
class ByName:
    """Every method of ``code/`` called ``name`` (one target however many there are: no quadratic lists)."""

    name: str


@dataclass(frozen=True)
class Custom:
    qualname: str
    method: str


@dataclass(frozen=True)
class Builtin:
    name: str


@dataclass(frozen=True)
class Unknown:
    text: str


Target = Op | Code | ByName | Custom | Builtin | Unknown


@dataclass(frozen=True)
class CallSite:
    line: int
    text: str  # the callee as written, shortened
    targets: tuple  # of Target


def _strip_optional(annotation: str) -> str:
    while annotation.startswith("Optional[") and annotation.endswith("]"):
        annotation = annotation[len("Optional["):-1]
    return annotation


class Resolver:
    """Resolves the calls of one archive's code/; built once per CodeIndex."""

    def __init__(self, index: CodeIndex):
        self.index = index
        self.functions = {f"{module_of(f.file)}.{f.name}": f for f in index.functions}
        self.by_name: dict[str, list[MethodInfo]] = {}
        for info in index.classes.values():
            for m in info.methods:
                self.by_name.setdefault(m.name, []).append(m)
        # (id(root), id(owner)) -> [root, owner, its nodes, its calls, its calls and implicit calls]
        self._calls: dict[tuple[int, int], list] = {}
        self._members: dict[tuple[int, str], object] = {}  # (id(class info), name) -> attr of an instance
        self._selves: dict[int, Instance] = {}  # id(class info) -> its Instance (the infos live as long as the index)

    # -- values -----------------------------------------------------------------------------------------
    def typed(self, annotation: str):
        annotation = _strip_optional(annotation.strip())
        if annotation.startswith(CUSTOM_CLASS_PREFIX):
            return CustomInstance(annotation)
        info = self.index.classes.get(annotation)
        return Instance(info) if info is not None else VALUE

    def global_name(self, qualname: str):
        if qualname.startswith(CUSTOM_CLASS_PREFIX) and qualname.count(".") >= 4:
            return CustomRef(qualname)
        if qualname in self.index.classes:
            return ClassRef(self.index.classes[qualname])
        if qualname in self.functions:
            return Callable_(Code(self.functions[qualname]))
        return Namespace(qualname)

    def attr(self, base, name: str):
        if isinstance(base, Union):
            return _union(self.attr(m, name) for m in base.meanings)
        if isinstance(base, BuiltinModule):
            if name == "autograd":
                return BuiltinModule("aten")
            if name == "ops":  # not valid in the importer; the Python frontend's torch.ops.<ns>.<op>
                return OpsRoot()
            return Callable_(Op(f"{base.namespace}::{name}"))
        if isinstance(base, OpsRoot):
            return BuiltinModule(name)
        if isinstance(base, Namespace):
            return self.global_name(f"{base.qualname}.{name}")
        if isinstance(base, ClassRef):
            method = base.info.method(name)
            return Callable_(Code(method)) if method else VALUE
        if isinstance(base, Instance):  # a Sequential's forward asks for each of its thousands of members
            key = (id(base.info), name)  # the infos live as long as the index
            if key not in self._members:
                self._members[key] = self._member(base.info, name)
            return self._members[key]
        if isinstance(base, (CustomInstance, CustomRef)):
            return Callable_(Custom(base.qualname, name))
        return _MethodOf(name)

    def _member(self, info: ClassInfo, name: str):
        if any(b in ("Interface", "ModuleInterface") for b in info.bases):
            return _MethodOf(name)  # the object's own class decides: any code/ method of that name
        method = info.method(name)
        if method is not None:
            return Callable_(Code(method))
        if name in info.attributes:
            return self.typed(info.attributes[name])
        return VALUE

    def value(self, node: ast.expr, env: dict, owner: ClassInfo | None):
        """The sugared value of an expression (VALUE when it is a plain value)."""
        kind = type(node)  # the parser's classes, never subclassed: by type, as often as on a long forward
        if kind is ast.Name:
            if node.id in env:
                return env[node.id]
            return self.global_value(node.id, owner)
        if kind is ast.Attribute:
            return self.attr(self.value(node.value, env, owner), node.attr)
        if kind is ast.Call:
            fname = node.func.id if type(node.func) is ast.Name and node.func.id not in env else None
            if fname == "getattr" and len(node.args) == 2 and type(node.args[1]) is ast.Constant \
                    and isinstance(node.args[1].value, str):
                return self.attr(self.value(node.args[0], env, owner), node.args[1].value)
            if fname in PASS_THROUGH and len(node.args) == 2:
                return self.value(node.args[1], env, owner)
            callee = self.value(node.func, env, owner)
            if isinstance(callee, ClassRef):
                return Instance(callee.info)
            if isinstance(callee, CustomRef):
                return CustomInstance(callee.qualname)
            return VALUE
        if kind is ast.NamedExpr:
            return self.value(node.value, env, owner)
        return VALUE

    def global_value(self, name: str, owner: ClassInfo | None):
        if name == "self" and owner is not None:
            instance = self._selves.get(id(owner))  # one per class: a forward names self thousands of times
            if instance is None:
                instance = self._selves[id(owner)] = Instance(owner)
            return instance
        return _GLOBALS.get(name, VALUE)

    # -- calls --------------------------------------------------------------------------------------------
    def environment(self, function: ast.AST, owner: ClassInfo | None, params: bool = True,
                    nodes: list | None = None) -> dict:
        """Local names bound to sugared values anywhere in the function (flow-insensitive, like a union)."""
        env = _Lookups()
        if params and isinstance(function, ast.FunctionDef):
            for arg in function.args.args + function.args.kwonlyargs:
                if arg.annotation is not None and arg.arg != "self":
                    typed = self.typed(ast.unparse(arg.annotation))
                    if typed is not VALUE:
                        env[arg.arg] = typed
        assigns = [n for n in (nodes if nodes is not None else walk(function)) if type(n) in _ASSIGNMENTS]
        for number in range(3):  # chains of aliases: a = torch; b = a
            before = dict(env)
            for env.at, node in enumerate(assigns):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self._bind(target, node.value, env, owner)
            if env == before:  # a pass that changed nothing: the next ones would compute the same
                break
            if number == 0 and env.settled():  # the second pass would change nothing (see _Lookups)
                break
        return dict(env)

    def _bind(self, target, value, env: dict, owner) -> None:
        if value is None:
            return
        if isinstance(target, ast.Name):
            meaning = self.value(value, env, owner)
            if meaning is not VALUE and not isinstance(meaning, _MethodOf):
                previous = env.get(target.id)  # not a look-up of the value's: see _Lookups
                env[target.id] = meaning if previous is None else _union((previous, meaning))
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self._bind(t, v, env, owner)

    def calls(self, root: ast.AST, owner: ClassInfo | None, env: dict | None = None,
              implicit: bool = True) -> list[CallSite]:
        """Every call in ``root`` with its targets; ``implicit`` adds operators that call dunder methods.
        Without ``env``, cached per root and owner (do not change the list): the hazard search, the taint
        and the load-time walks ask for the same methods."""
        key = (id(root), id(owner))
        cached = self._calls.get(key) if env is None else None
        if cached is None:
            nodes = walk(root)
            scope = env
            explicit = []
            for node in nodes:  # _call right here: nesting overflows the stack where it always did (scan_code)
                if type(node) is ast.Call:
                    if scope is None:  # only calls need it (a class body's thousands of annotations have none)
                        scope = self.environment(root, owner, nodes=nodes)
                    explicit.append(self._call(node, scope, owner))
            cached = [root, owner, nodes, explicit, None]  # root and owner kept: their ids stay theirs
            if env is None:
                self._calls[key] = cached
        if not implicit:
            return cached[3]
        if cached[4] is None:
            cached[4] = self._implicit(cached[2], cached[3])
        return cached[4]

    def _implicit(self, nodes: list, explicit: list[CallSite]) -> list[CallSite]:
        """The call sites with the implicit dunder calls among them, in the order of the nodes."""
        calls = iter(explicit)
        sites = []
        for node in nodes:
            if isinstance(node, ast.Call):
                sites.append(next(calls))
            else:
                targets = tuple(ByName(d) for d in _implicit_dunders(node) if d in self.by_name)
                if targets:
                    sites.append(CallSite(getattr(node, "lineno", 0), targets[0].name, targets))
        return sites

    def _call(self, node: ast.Call, env: dict, owner) -> CallSite:
        text = _short(node.func)
        callee = self.value(node.func, env, owner)
        return CallSite(node.lineno, text, tuple(self._targets(callee, node, env, owner, text)))

    def _targets(self, callee, node: ast.Call, env: dict, owner, text: str) -> list:
        if isinstance(callee, Union):
            targets: list = []
            for meaning in callee.meanings:
                targets += [t for t in self._targets(meaning, node, env, owner, text) if t not in targets]
            return targets
        if isinstance(callee, Callable_):
            return [callee.target]
        if isinstance(callee, ClassRef):
            init = callee.info.method("__init__")
            return [Code(init)] if init else [Builtin(callee.info.qualname)]
        if isinstance(callee, CustomRef):
            return [Custom(callee.qualname, "__init__")]
        if isinstance(callee, Special):
            if callee.name in SPECIAL_CALLERS:
                inner = self.value(node.args[0], env, owner) if node.args else None
                if inner is None or isinstance(inner, Special) and inner.name in SPECIAL_CALLERS:
                    return [Unknown(text)]
                return self._targets(inner, node, env, owner, _short(node.args[0]))
            targets: list = [Builtin(callee.name)]
            dunder = CAST_DUNDERS.get(callee.name)
            if dunder in self.by_name:
                targets.append(ByName(dunder))
            return targets
        if isinstance(callee, _MethodOf):
            return self._method_of(callee)
        if isinstance(callee, Instance):  # calling an object calls its forward (modules) or __call__
            return [Code(m) for m in (callee.info.method("forward"), callee.info.method("__call__")) if m] \
                or [Unknown(text)]
        return [Unknown(text)]

    def _method_of(self, method: "_MethodOf") -> list:
        """``value.name(...)`` on a value of unknown type: the builtin method, or any code/ method of that name."""
        return [Op(f"aten::{method.name}")] + ([ByName(method.name)] if method.name in self.by_name else [])


class _Lookups(dict):
    """An environment being built, pass by pass over a function's assignments (``at``: the one whose value is
    computed now), that notes for each name the first assignment whose value looked it up (``in``: every
    look-up of ``Resolver.value`` asks that first) and the last one that bound it.

    When every name looked up was bound only by assignments before the first that looked it up (or never),
    each value of the first pass read the names' final meanings: a second pass would compute the same
    meanings again, add nothing to the unions and end the loop. ``settled`` says so, and the second pass,
    half of the time on a 10,000-line forward, is skipped with the very same result."""

    def __init__(self) -> None:
        super().__init__()
        self.at = -1  # the parameters, bound before any assignment
        self.first_read: dict[str, int] = {}
        self.last_bound: dict[str, int] = {}

    def __contains__(self, name) -> bool:
        if name not in self.first_read:
            self.first_read[name] = self.at
        return dict.__contains__(self, name)

    def __setitem__(self, name, meaning) -> None:
        self.last_bound[name] = self.at
        dict.__setitem__(self, name, meaning)

    def settled(self) -> bool:
        bound = self.last_bound
        return all(name not in bound or bound[name] < first for name, first in self.first_read.items())


@dataclass(frozen=True)
class _MethodOf:
    """``<value of unknown type>.name``."""

    name: str


_ASSIGNMENTS = frozenset({ast.Assign, ast.AnnAssign, ast.NamedExpr})
# what a name means to the importer when no local binds it (``self`` aside)
_GLOBALS = {"torch": BuiltinModule("aten"), "ops": OpsRoot(), "__torch__": Namespace("__torch__"),
            **{name: Special(name) for name in SPECIAL_CALLERS | BUILTINS}}


def _union(meanings) -> object:
    flat: list = []
    for m in meanings:
        for item in (m.meanings if isinstance(m, Union) else (m,)):
            if item not in flat:
                flat.append(item)
    return flat[0] if len(flat) == 1 else Union(tuple(flat))


def _implicit_dunders(node: ast.AST) -> list[str]:
    if isinstance(node, ast.BinOp):
        name = _BINOP.get(type(node.op))
        return [f"__{name}__", f"__r{name}__"] if name else []
    if isinstance(node, ast.AugAssign):
        name = _BINOP.get(type(node.op))
        return [f"__i{name}__", f"__{name}__"] if name else []
    if isinstance(node, ast.Compare):
        return [_CMP[type(op)] for op in node.ops if type(op) in _CMP]
    if isinstance(node, ast.UnaryOp):
        return [_UNARY[type(node.op)]] if type(node.op) in _UNARY else ["__bool__"]
    if isinstance(node, ast.Subscript):
        return ["__getitem__", "__setitem__", "__delitem__"]
    if isinstance(node, (ast.With,)):
        return ["__enter__", "__exit__"]
    if isinstance(node, (ast.For, ast.comprehension)):
        return ["__iter__", "__next__", "__len__", "__getitem__"]
    if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.BoolOp, ast.Assert)):
        return ["__bool__", "__len__"]
    if isinstance(node, ast.FormattedValue):
        return ["__str__", "__format__"]
    return []


def walk(root: ast.AST) -> list[ast.AST]:
    """``ast.walk``'s nodes in its (breadth-first) order but the ``ctx`` leaves (Load, Store, Del: a third
    of the nodes, never a call or an assignment), without a generator per node and without looking into the
    fields that never hold a node (:func:`node_fields`): 4.5x faster than ``ast.walk`` on the 10,000-line
    forward of a Sequential of 5,000 modules."""
    out = [root]
    _children(out, out)  # the list grows while it is read
    return out


def within_depth(root: ast.AST, limit: int) -> bool:
    """Whether no node lies more than ``limit`` levels below ``root`` (the ``ctx`` leaves aside), found without
    recursion."""
    level = [root]
    for _ in range(limit + 1):
        below: list[ast.AST] = []
        _children(level, below)
        if not below:
            return True
        level = below
    return False


def _children(nodes: list[ast.AST], out: list[ast.AST]) -> None:
    """Append the child nodes of each of ``nodes`` to ``out``, in field order, the ``ctx`` leaves aside."""
    append = out.append
    fields_of = _NODE_FIELDS
    for node in nodes:
        fields = fields_of.get(type(node))
        if fields is None:
            fields = node_fields(type(node))
        for name in fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                append(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        append(item)


# fields whose value is never a node in the ast grammar (identifiers, strings, ints, constants), and ctx:
# tests/test_ir_codescan.py checks them against the running Python's node classes
NOT_NODES = frozenset({"ctx", "id", "attr", "arg", "kind", "type_comment", "level", "module", "is_async",
                       "conversion"})
_NODE_FIELDS: dict[type, tuple[str, ...]] = {}


def node_fields(kind: type) -> tuple[str, ...]:
    """The fields of a node class that may hold nodes (a Constant's ``value`` is a constant), in order."""
    fields = tuple(f for f in kind._fields if f not in NOT_NODES and not (kind is ast.Constant and f == "value"))
    _NODE_FIELDS[kind] = fields
    return fields


def _short(node: ast.expr) -> str:
    text = _dotted(node) or ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(node: ast.expr) -> str | None:
    """``ast.unparse`` of a name or of a short chain of attributes of a name (``a.b.c``), without its
    unparser. Longer chains go to ``ast.unparse``, which overflows the stack where it always did: code
    nested too deeply to judge stays unsafe (scan_code)."""
    attrs = []
    while isinstance(node, ast.Attribute) and len(attrs) < 8:
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(attrs)])
