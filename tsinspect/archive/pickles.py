"""A symbolic pickle walker: reads any pickle into plain values and inert placeholders.

Nothing is imported and nothing is called. ``GLOBAL torch._utils _rebuild_tensor_v2`` becomes
``Global("torch._utils", "_rebuild_tensor_v2")``, ``REDUCE`` becomes ``Call(func, args)``, ``BUILD`` sets
``Call.state``, ``BINPERSID`` becomes ``PersistentRef(pid)``. Containers are small node objects compared
by identity, so a value the memo hands out twice is the same object twice: renderers show it as a
reference, not a copy, and cycles cannot make them loop. Opcodes, memo size, MARK depth and argument
length are capped; a bad or hostile pickle raises :class:`PickleError` with the byte offset. A memoized
value is never copied (one 8 MB string behind 300 ``STACK_GLOBAL`` s is one string), and what consumers
copy per use is cut: a global's module and name to :data:`MAX_GLOBAL_NAME` characters.
"""

from __future__ import annotations

import io
import pickletools
import struct
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True)
class Limits:
    max_ops: int = 5_000_000
    max_memo: int = 2_000_000
    max_marks: int = 10_000
    max_arg: int = 64 * 1024 * 1024
    max_long_bytes: int = 1024


DEFAULT_LIMITS = Limits()


class PickleError(Exception):
    """A pickle that cannot be walked; ``str()`` is one line naming the offset and the cause."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        # what the walk saw before it broke (a real unpickler would have run those calls already)
        self.globals: list = []
        self.calls: list = []
        super().__init__(f"{message} at byte {offset}" if offset is not None else message)


MAX_GLOBAL_NAME = 1024  # chars of a GLOBAL's module or name kept; no importable name is this long


@dataclass(frozen=True)
class Global:
    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name


class Node:
    """Base of the identity-compared nodes a walk produces."""

    __slots__ = ()


class PList(Node):
    __slots__ = ("items",)

    def __init__(self, items: list | None = None):
        self.items = items if items is not None else []


class PTuple(Node):
    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


class PSet(Node):
    __slots__ = ("items", "frozen")

    def __init__(self, items: list | None = None, frozen: bool = False):
        self.items = items if items is not None else []
        self.frozen = frozen


class PDict(Node):
    """A dict as ordered (key, value) pairs: keys may be placeholders, and duplicates stay visible."""

    __slots__ = ("items",)

    def __init__(self, items: list | None = None):
        self.items = items if items is not None else []

    def get(self, key: Any, default: Any = None) -> Any:
        for k, v in reversed(self.items):
            if k == key and type(k) is type(key):
                return v
        return default


class Call(Node):
    """``func(*args)`` as the pickle asked for it (REDUCE, NEWOBJ, OBJ, INST), plus any BUILD state."""

    __slots__ = ("func", "args", "kwargs", "kind", "states")

    def __init__(self, func: Any, args: Any, kind: str = "reduce", kwargs: Any = None):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.kind = kind
        self.states: list = []

    @property
    def state(self) -> Any:
        return self.states[-1] if self.states else None

    @property
    def func_name(self) -> str:
        return self.func.qualname if isinstance(self.func, Global) else "<computed>"

    @property
    def arg_list(self) -> list:
        return self.args.items if isinstance(self.args, PTuple) else [self.args]


class Build(Node):
    """BUILD applied to something that is not a constructed object."""

    __slots__ = ("obj", "state")

    def __init__(self, obj: Any, state: Any):
        self.obj = obj
        self.state = state


class PersistentRef(Node):
    __slots__ = ("pid",)

    def __init__(self, pid: Any):
        self.pid = pid


class Opaque(Node):
    """A value the walker does not model (out-of-band buffer, extension code, a too-long integer)."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what


@dataclass
class WalkResult:
    value: Any
    ops: int
    protocol: int
    globals: list[tuple[Global, int]]  # every GLOBAL/STACK_GLOBAL/INST with its byte offset
    calls: list[tuple[str, int]]  # every call site: (callable's name, offset)
    persistent_ids: int


def walk(data: bytes, limits: Limits = DEFAULT_LIMITS) -> WalkResult:
    """Run the pickle ``data`` symbolically and return its top value."""
    stack: list = []
    marks: list[list] = []
    memo: dict[int, Any] = {}
    globals_seen: list[tuple[Global, int]] = []
    calls: list[tuple[str, int]] = []
    protocol = 0
    persistent = 0
    ops = 0
    pos = 0

    def pop_mark() -> list:
        nonlocal stack
        if not marks:
            raise PickleError("an opcode needs a MARK but none is open", pos)
        items = stack
        stack = marks.pop()
        return items

    def push(value: Any) -> None:
        stack.append(value)  # looked up at call time: MARK handling rebinds ``stack``

    def pop() -> Any:
        if not stack:
            raise PickleError("stack underflow", pos)
        return stack.pop()

    def top() -> Any:
        if not stack:
            raise PickleError("stack underflow", pos)
        return stack[-1]

    def add_call(func: Any, args: Any, kind: str, kwargs: Any = None) -> Call:
        call = Call(func, args, kind, kwargs)
        calls.append((call.func_name, pos))
        return call

    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if ops > limits.max_ops:
                raise PickleError(f"more than {limits.max_ops} opcodes", pos)
            name = opcode.name
            if isinstance(arg, (str, bytes, bytearray)) and len(arg) > limits.max_arg:
                raise PickleError(f"{name} argument of {len(arg)} bytes is over the cap of {limits.max_arg}", pos)
            if name in ("PROTO",):
                protocol = arg
            elif name in ("FRAME",):
                pass  # framing only groups opcodes; genops reads through frames
            elif name == "STOP":
                value = pop()
                return WalkResult(value, ops, protocol, globals_seen, calls, persistent)
            elif name == "MARK":
                if len(marks) >= limits.max_marks:
                    raise PickleError(f"more than {limits.max_marks} nested MARKs", pos)
                marks.append(stack)
                stack = []
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT",
                          "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                          "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                if isinstance(arg, int) and not isinstance(arg, bool) and name.startswith("LONG") \
                        and arg.bit_length() > 8 * limits.max_long_bytes:
                    push(Opaque(f"int of {arg.bit_length()} bits"))
                else:
                    push(arg)
            elif name == "BYTEARRAY8":
                push(bytes(arg))
            elif name == "NONE":
                push(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                push(name == "NEWTRUE")
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                if name == "NEXT_BUFFER":
                    push(Opaque("out-of-band buffer"))
            elif name == "EMPTY_LIST":
                push(PList())
            elif name == "EMPTY_TUPLE":
                push(PTuple([]))
            elif name == "EMPTY_DICT":
                push(PDict())
            elif name == "EMPTY_SET":
                push(PSet())
            elif name == "LIST":
                push(PList(pop_mark()))
            elif name == "TUPLE":
                push(PTuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [pop() for _ in range(n)][::-1]
                push(PTuple(items))
            elif name == "DICT":
                items = pop_mark()
                push(PDict(list(zip(items[::2], items[1::2]))))
            elif name == "FROZENSET":
                push(PSet(pop_mark(), frozen=True))
            elif name == "APPEND":
                item = pop()
                _append(top(), [item], pos)
            elif name == "APPENDS":
                items = pop_mark()
                _append(top(), items, pos)
            elif name == "SETITEM":
                value = pop()
                key = pop()
                _setitems(top(), [key, value], pos)
            elif name == "SETITEMS":
                items = pop_mark()
                _setitems(top(), items, pos)
            elif name == "ADDITEMS":
                items = pop_mark()
                target = top()
                if not isinstance(target, PSet):
                    raise PickleError("ADDITEMS on a value that is not a set", pos)
                target.items.extend(items)
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                push(top())
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else arg
                if index not in memo and len(memo) >= limits.max_memo:
                    raise PickleError(f"memo grows past {limits.max_memo} entries", pos)
                memo[index] = top()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise PickleError(f"memo key {arg} read before it was written", pos)
                push(memo[arg])
            elif name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                glob = _global(module, attr)
                globals_seen.append((glob, pos))
                push(glob)
            elif name == "STACK_GLOBAL":
                attr = pop()
                module = pop()
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise PickleError("STACK_GLOBAL needs two strings", pos)
                glob = _global(module, attr)
                globals_seen.append((glob, pos))
                push(glob)
            elif name == "INST":
                module, _, attr = arg.partition(" ")
                glob = _global(module, attr)
                globals_seen.append((glob, pos))
                push(add_call(glob, PTuple(pop_mark()), "inst"))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise PickleError("OBJ without a class", pos)
                push(add_call(items[0], PTuple(items[1:]), "obj"))
            elif name == "REDUCE":
                args = pop()
                func = pop()
                push(add_call(func, args, "reduce"))
            elif name == "NEWOBJ":
                args = pop()
                cls = pop()
                push(add_call(cls, args, "new"))
            elif name == "NEWOBJ_EX":
                kwargs = pop()
                args = pop()
                cls = pop()
                push(add_call(cls, args, "new", kwargs))
            elif name == "BUILD":
                state = pop()
                obj = top()
                if isinstance(obj, Call):
                    obj.states.append(state)
                else:
                    stack[-1] = Build(obj, state)
                calls.append(("BUILD", pos))
            elif name == "PERSID":
                persistent += 1
                push(PersistentRef(arg))
            elif name == "BINPERSID":
                persistent += 1
                push(PersistentRef(pop()))
            elif name in ("EXT1", "EXT2", "EXT4"):
                push(Opaque(f"extension code {arg}"))
            else:
                raise PickleError(f"unsupported opcode {name}", pos)
    except PickleError as exc:
        error = exc
    except (ValueError, EOFError, OverflowError, MemoryError, struct.error) as exc:
        error = PickleError(f"malformed pickle ({_one_line(exc)})", pos)
    else:
        error = PickleError("pickle ends without STOP", pos)
    error.globals, error.calls = globals_seen, calls
    raise error from None


def _global(module: str, name: str) -> Global:
    if len(module) <= MAX_GLOBAL_NAME and len(name) <= MAX_GLOBAL_NAME:
        return Global(module, name)
    return Global(_cut(module), _cut(name))  # "...(N chars)" marks the cut; no module has such a name


def _cut(text: str) -> str:
    return text if len(text) <= MAX_GLOBAL_NAME else f"{text[:MAX_GLOBAL_NAME]}...({len(text)} chars)"


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _append(target: Any, items: list, pos: int) -> None:
    if isinstance(target, PList):
        target.items.extend(items)
    elif isinstance(target, Call):  # list subclass built by reduce: keep the items visible
        target.states.append(PList(list(items)))
    else:
        raise PickleError("APPEND on a value that is not a list", pos)


def _setitems(target: Any, items: list, pos: int) -> None:
    if len(items) % 2:
        raise PickleError("SETITEMS with an odd number of items", pos)
    pairs = list(zip(items[::2], items[1::2]))
    if isinstance(target, PDict):
        target.items.extend(pairs)
    elif isinstance(target, Call):  # OrderedDict() and other dict subclasses built by REDUCE
        target.states.append(PDict(pairs))
    else:
        raise PickleError("SETITEM on a value that is not a dict", pos)


@dataclass(frozen=True)
class Op:
    offset: int
    name: str
    arg: str


def disassemble(data: bytes, limits: Limits = DEFAULT_LIMITS, max_arg_chars: int = 120) -> Iterator[Op]:
    """The pickle's opcodes with printable, shortened arguments; PickleError where it breaks."""
    from tsinspect.archive.text import printable

    ops = 0
    pos = 0
    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if ops > limits.max_ops:
                raise PickleError(f"more than {limits.max_ops} opcodes", pos)
            if arg is None:
                text = ""
            elif isinstance(arg, int) and arg.bit_length() > 64:
                text = f"<int of {arg.bit_length()} bits>"
            else:
                text = printable(repr(arg))
            if len(text) > max_arg_chars:
                text = text[:max_arg_chars] + f"... ({len(text)} chars)"
            yield Op(pos, opcode.name, text)
    except (ValueError, EOFError, OverflowError, MemoryError) as exc:
        raise PickleError(f"malformed pickle ({_one_line(exc)})", pos) from None
