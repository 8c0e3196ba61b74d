"""What the diff compares: each archive's functions as trees of ops, ``if`` s and loops, located in the
user's original source. Built torch-free from ``code/`` + debug info (``astread``) or from the IR
(``irread``); the alignment (``align``) only sees these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

Loc = tuple[str, int]  # (original file, line)
# sources a value can depend on besides the function's parameters: the module's mode and autograd's
TRAINING, GRAD = "@training", "@grad"
NO_DEPS: frozenset = frozenset()


@dataclass(frozen=True)
class Arg:
    """One argument of a call as the code passes it."""

    text: str  # as the code writes it ("torch.size(x, 1)", "self.training")
    const: str | None = None  # the value when the argument is a constant ("2", "None", "[2, 4]")
    deps: frozenset = NO_DEPS  # parameters of the enclosing function (and TRAINING/GRAD) it is computed from
    items: tuple["Arg", ...] | None = None  # a list or tuple literal's elements
    name: str | None = None  # the keyword, for a keyword argument
    nulls: frozenset = NO_DEPS  # parameters whose being None decides whether this argument is None


@dataclass
class Op:
    """One operator use or call. ``args``: per flattened argument, "const" or the argument's code text."""

    kind: str  # "aten::add", "prim::NumToTensor", "call forward" (method), "call pick" (function)
    loc: Loc | None  # scripted: where it came from; traced: innermost frame
    stack: tuple[Loc, ...] = ()  # traced: every frame, innermost first
    code: str = ""  # "code/__torch__/models.py:12"
    args: tuple[str, ...] = ()
    consts: tuple[str, ...] = ()  # values of the constant arguments, as text
    argv: tuple[Arg, ...] = ()  # the arguments as passed (lists not flattened), with what they depend on
    callee: str | None = None  # calls: the qualname of the called function when known ("pkg.Cls.forward")

    @property
    def is_call(self) -> bool:
        return self.kind.startswith("call ")


@dataclass
class If:
    loc: Loc | None  # the line of the condition
    code: str
    cond: list[Op] = field(default_factory=list)
    then: list["Item"] = field(default_factory=list)
    orelse: list["Item"] = field(default_factory=list)
    reads_training: bool = False
    cond_text: str = ""  # the condition as generated code
    deps: frozenset = NO_DEPS  # what the condition is computed from (as Arg.deps)
    identity: bool = False  # the condition only compares objects by identity (``k is v``), never with None
    none_check: frozenset | None = None  # a condition made only of ``x is None`` tests: what decides x's None-ness


@dataclass
class Loop:
    loc: Loc | None  # the loop header
    code: str
    header: list[Op] = field(default_factory=list)
    body: list["Item"] = field(default_factory=list)
    header_text: str = ""
    trip: tuple[str, int] | None = None  # (argument name, dim) when the trip count is arg.size(dim) / len(arg)
    deps: frozenset = NO_DEPS  # what the trip count (or the while condition) is computed from (as Arg.deps)


Item = Union[Op, If, Loop]


@dataclass
class Function:
    """A method or free function of an archive."""

    owner: str | None  # short class name ("models.Gate"), None for a free function
    name: str
    code: str  # "code/__torch__/models.py:8"
    args: list[str] = field(default_factory=list)
    optional: set[str] = field(default_factory=set)  # the arguments typed Optional (that may be None)
    body: list[Item] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)  # names of self.<method>(...) calls
    training_names: set[str] = field(default_factory=set)  # locals assigned from self.training
    module: str | None = None  # free functions: the module they were defined in ("models")

    @property
    def qualname(self) -> str:
        prefix = self.owner or self.module
        return f"{prefix}.{self.name}" if prefix else self.name


@dataclass
class Program:
    """One archive seen by the diff."""

    path: str
    functions: list[Function] = field(default_factory=list)
    sources: dict[str, dict[int, str]] = field(default_factory=dict)  # file -> line -> original text
    defs: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # file -> [(first, last, name)]
    traced_inputs: dict[str, list[int]] = field(default_factory=dict)  # "forward[0]" -> shape
    input_dtypes: dict[str, str] = field(default_factory=dict)
    root_type: str | None = None
    module_methods: dict[str, set[str]] = field(default_factory=dict)  # module path -> method names
    module_types: dict[str, str] = field(default_factory=dict)  # module path -> short type
    origin: str = "ast"  # "ast" or "ir"

    def def_at(self, loc: Loc) -> tuple[int, int, str] | None:
        """The innermost recorded def that holds ``loc``."""
        best = None
        for first, last, name in self.defs.get(loc[0], ()):
            if first <= loc[1] <= last and (best is None or first >= best[0]):
                best = (first, last, name)
        return best


def walk(items: list[Item]) -> Iterator[Item]:
    """Every item in ``items`` and below, depth first, without recursion."""
    stack = [iter(items)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        yield item
        if isinstance(item, If):
            stack.append(iter(item.cond + item.then + item.orelse))
        elif isinstance(item, Loop):
            stack.append(iter(item.header + item.body))


def ops_in(items: list[Item]) -> list[Op]:
    return [item for item in walk(items) if isinstance(item, Op)]
