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
import re
import struct
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property  # asked once per call site: 25,000 times in a model of 10,000 tensors
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


_OPCODES = {ord(op.code): op for op in pickletools.opcodes}
_U2 = struct.Struct("<H").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U4 = struct.Struct("<I").unpack_from


def _read_op(stream: io.BytesIO, pos: int) -> tuple[pickletools.OpcodeInfo, Any, int]:
    """The opcode at ``pos``, its argument and the next position, read as ``pickletools.genops`` reads them
    (the same values, the same errors)."""
    stream.seek(pos)
    code = stream.read(1)
    opcode = _OPCODES.get(code[0]) if code else None
    if opcode is None:
        if not code:
            raise ValueError("pickle exhausted before seeing STOP")
        raise ValueError(f"at position {pos}, opcode {code!r} unknown")
    arg = None if opcode.arg is None else opcode.arg.reader(stream)
    return opcode, arg, stream.tell()


def walk(data: bytes, limits: Limits = DEFAULT_LIMITS, fast: bool = True) -> WalkResult:
    """Run the pickle ``data`` symbolically and return its top value (bytes after STOP are ignored).

    The opcodes torch writes most are decoded in line (the walk takes a third of the time it took through
    ``pickletools.genops``); the others, and any opcode whose argument would run past the end or not decode,
    go through pickletools' own readers.
    ``fast=False`` sends every opcode that way: the reference the in-line path is tested against.
    """
    stack: list = []
    marks: list[list] = []
    memo: dict[int, Any] = {}
    globals_seen: list[tuple[Global, int]] = []
    calls: list[tuple[str, int]] = []
    protocol = 0
    persistent = 0
    ops = 0
    pos = 0  # where the next opcode starts
    at = 0  # where the current one started: errors name it
    last = 0  # where the one before started: a read error names it, as genops's caller saw it
    size = len(data)
    max_ops, max_memo, max_marks, max_arg = limits.max_ops, limits.max_memo, limits.max_marks, limits.max_arg
    fast_ops = max_ops if fast else 0
    stream: io.BytesIO | None = None

    def pop_mark() -> list:  # rebinds ``stack``: never call it inside ``stack.append(...)``
        nonlocal stack
        if not marks:
            raise PickleError("an opcode needs a MARK but none is open", at)
        items = stack
        stack = marks.pop()
        return items

    def add_call(func: Any, args: Any, kind: str, kwargs: Any = None) -> Call:
        call = Call(func, args, kind, kwargs)
        calls.append((call.func_name, at))
        return call

    try:
        while True:
            last, at = at, pos
            ops += 1
            code = data[pos] if pos < size else -1
            if ops <= fast_ops:  # in line: what torch writes, in the order of how often it does
                if code == 0x68 or code == 0x6A:  # BINGET, LONG_BINGET, then MARK: a torch tensor, as a whole?
                    after = pos + (2 if code == 0x68 else 5)
                    if after < size and data[after] == 0x28 and len(memo) + 2 < max_memo \
                            and len(marks) + 2 <= max_marks:
                        found = _torch_tensor(data, pos, memo, calls, stack, max_ops + 1 - ops, max_arg)
                        if found is not None:
                            pos, count, refs = found
                            ops += count - 1
                            persistent += refs
                            at = pos - 1  # the last REDUCE's
                            continue
                if code == 0x68 and pos + 2 <= size:  # BINGET
                    key = data[pos + 1]
                    pos += 2
                    if key not in memo:
                        raise PickleError(f"memo key {key} read before it was written", at)
                    stack.append(memo[key])
                    continue
                if code == 0x4B and pos + 2 <= size:  # BININT1
                    stack.append(data[pos + 1])
                    pos += 2
                    continue
                if code == 0x28:  # MARK
                    pos += 1
                    if len(marks) >= max_marks:
                        raise PickleError(f"more than {max_marks} nested MARKs", at)
                    marks.append(stack)
                    stack = []
                    continue
                if code == 0x74 and marks:  # TUPLE
                    pos += 1
                    items = stack
                    stack = marks.pop()
                    stack.append(PTuple(items))
                    continue
                if (code == 0x72 and pos + 5 <= size) or (code == 0x71 and pos + 2 <= size) or code == 0x94:
                    # LONG_BINPUT, BINPUT, MEMOIZE
                    if code == 0x72:
                        index = _U4(data, pos + 1)[0]
                        pos += 5
                    elif code == 0x71:
                        index = data[pos + 1]
                        pos += 2
                    else:
                        index = len(memo)
                        pos += 1
                    if index not in memo and len(memo) >= max_memo:
                        raise PickleError(f"memo grows past {max_memo} entries", at)
                    memo[index] = stack[-1]
                    continue
                if code == 0x52:  # REDUCE
                    pos += 1
                    args = stack.pop()
                    stack[-1] = add_call(stack[-1], args, "reduce")
                    continue
                if code == 0x29:  # EMPTY_TUPLE
                    pos += 1
                    stack.append(PTuple([]))
                    continue
                if (code == 0x58 and pos + 5 <= size) or (code == 0x8C and pos + 2 <= size):
                    # BINUNICODE, SHORT_BINUNICODE
                    if code == 0x58:
                        begin = pos + 5
                        end = begin + _U4(data, pos + 1)[0]
                    else:
                        begin = pos + 2
                        end = begin + data[pos + 1]
                    if end <= size:
                        try:
                            text = str(data[begin:end], "utf-8", "surrogatepass")
                        except UnicodeDecodeError:
                            text = None  # pickletools' reader says so
                        if text is not None:
                            pos = end
                            if len(text) > max_arg:
                                raise PickleError(f"{_OPCODES[code].name} argument of {len(text)} bytes is over "
                                                  f"the cap of {max_arg}", at)
                            stack.append(text)
                            continue
                elif code == 0x51:  # BINPERSID
                    pos += 1
                    persistent += 1
                    stack[-1] = PersistentRef(stack[-1])
                    continue
                elif code == 0x88 or code == 0x89:  # NEWTRUE, NEWFALSE
                    pos += 1
                    stack.append(code == 0x88)
                    continue
                elif code == 0x4E:  # NONE
                    pos += 1
                    stack.append(None)
                    continue
                elif code == 0x81:  # NEWOBJ
                    pos += 1
                    args = stack.pop()
                    stack[-1] = add_call(stack[-1], args, "new")
                    continue
                elif code == 0x7D:  # EMPTY_DICT
                    pos += 1
                    stack.append(PDict())
                    continue
                elif code == 0x75:  # SETITEMS
                    pos += 1
                    items = pop_mark()
                    _setitems(stack[-1], items, at)
                    continue
                elif code == 0x62:  # BUILD
                    pos += 1
                    state = stack.pop()
                    obj = stack[-1]
                    if isinstance(obj, Call):
                        obj.states.append(state)
                    else:
                        stack[-1] = Build(obj, state)
                    calls.append(("BUILD", at))
                    continue
                elif 0x85 <= code <= 0x87 and len(stack) >= code - 0x84:  # TUPLE1, TUPLE2, TUPLE3
                    pos += 1
                    n = code - 0x84
                    items = stack[-n:]
                    del stack[-n:]
                    stack.append(PTuple(items))
                    continue
                elif code == 0x4D and pos + 3 <= size:  # BININT2
                    stack.append(_U2(data, pos + 1)[0])
                    pos += 3
                    continue
                elif code == 0x4A and pos + 5 <= size:  # BININT
                    stack.append(_I4(data, pos + 1)[0])
                    pos += 5
                    continue
                elif code == 0x6A and pos + 5 <= size:  # LONG_BINGET
                    key = _U4(data, pos + 1)[0]
                    pos += 5
                    if key not in memo:
                        raise PickleError(f"memo key {key} read before it was written", at)
                    stack.append(memo[key])
                    continue
                elif code == 0x5D:  # EMPTY_LIST
                    pos += 1
                    stack.append(PList())
                    continue
                elif code == 0x65:  # APPENDS
                    pos += 1
                    items = pop_mark()
                    _append(stack[-1], items, at)
                    continue
            # every other opcode, the same way genops reads it
            if stream is None:
                stream = io.BytesIO(data)
            try:
                opcode, arg, pos = _read_op(stream, at)
            except (ValueError, EOFError, OverflowError, MemoryError, struct.error) as exc:
                raise PickleError(f"malformed pickle ({_one_line(exc)})", last) from None
            if ops > max_ops:
                raise PickleError(f"more than {max_ops} opcodes", at)
            name = opcode.name
            if isinstance(arg, (str, bytes, bytearray)) and len(arg) > max_arg:
                raise PickleError(f"{name} argument of {len(arg)} bytes is over the cap of {max_arg}", at)
            if name == "PROTO":
                protocol = arg
            elif name == "FRAME":
                pass  # framing only groups opcodes; they are read through frames
            elif name == "STOP":
                value = stack.pop()
                return WalkResult(value, ops, protocol, globals_seen, calls, persistent)
            elif name == "MARK":
                if len(marks) >= max_marks:
                    raise PickleError(f"more than {max_marks} nested MARKs", at)
                marks.append(stack)
                stack = []
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT",
                          "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                          "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                if isinstance(arg, int) and not isinstance(arg, bool) and name.startswith("LONG") \
                        and arg.bit_length() > 8 * limits.max_long_bytes:
                    stack.append(Opaque(f"int of {arg.bit_length()} bits"))
                else:
                    stack.append(arg)
            elif name == "BYTEARRAY8":
                stack.append(bytes(arg))
            elif name == "NONE":
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                if name == "NEXT_BUFFER":
                    stack.append(Opaque("out-of-band buffer"))
            elif name == "EMPTY_LIST":
                stack.append(PList())
            elif name == "EMPTY_TUPLE":
                stack.append(PTuple([]))
            elif name == "EMPTY_DICT":
                stack.append(PDict())
            elif name == "EMPTY_SET":
                stack.append(PSet())
            elif name == "LIST":
                items = pop_mark()
                stack.append(PList(items))
            elif name == "TUPLE":
                items = pop_mark()
                stack.append(PTuple(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [stack.pop() for _ in range(n)][::-1]
                stack.append(PTuple(items))
            elif name == "DICT":
                items = pop_mark()
                stack.append(PDict(list(zip(items[::2], items[1::2]))))
            elif name == "FROZENSET":
                items = pop_mark()
                stack.append(PSet(items, frozen=True))
            elif name == "APPEND":
                item = stack.pop()
                _append(stack[-1], [item], at)
            elif name == "APPENDS":
                items = pop_mark()
                _append(stack[-1], items, at)
            elif name == "SETITEM":
                value = stack.pop()
                key = stack.pop()
                _setitems(stack[-1], [key, value], at)
            elif name == "SETITEMS":
                items = pop_mark()
                _setitems(stack[-1], items, at)
            elif name == "ADDITEMS":
                items = pop_mark()
                target = stack[-1]
                if not isinstance(target, PSet):
                    raise PickleError("ADDITEMS on a value that is not a set", at)
                target.items.extend(items)
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else arg
                if index not in memo and len(memo) >= max_memo:
                    raise PickleError(f"memo grows past {max_memo} entries", at)
                memo[index] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise PickleError(f"memo key {arg} read before it was written", at)
                stack.append(memo[arg])
            elif name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                glob = _global(module, attr)
                globals_seen.append((glob, at))
                stack.append(glob)
            elif name == "STACK_GLOBAL":
                attr = stack.pop()
                module = stack.pop()
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise PickleError("STACK_GLOBAL needs two strings", at)
                glob = _global(module, attr)
                globals_seen.append((glob, at))
                stack.append(glob)
            elif name == "INST":
                module, _, attr = arg.partition(" ")
                glob = _global(module, attr)
                globals_seen.append((glob, at))
                items = pop_mark()
                stack.append(add_call(glob, PTuple(items), "inst"))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise PickleError("OBJ without a class", at)
                stack.append(add_call(items[0], PTuple(items[1:]), "obj"))
            elif name == "REDUCE":
                args = stack.pop()
                func = stack.pop()
                stack.append(add_call(func, args, "reduce"))
            elif name == "NEWOBJ":
                args = stack.pop()
                cls = stack.pop()
                stack.append(add_call(cls, args, "new"))
            elif name == "NEWOBJ_EX":
                kwargs = stack.pop()
                args = stack.pop()
                cls = stack.pop()
                stack.append(add_call(cls, args, "new", kwargs))
            elif name == "BUILD":
                state = stack.pop()
                obj = stack[-1]
                if isinstance(obj, Call):
                    obj.states.append(state)
                else:
                    stack[-1] = Build(obj, state)
                calls.append(("BUILD", at))
            elif name == "PERSID":
                persistent += 1
                stack.append(PersistentRef(arg))
            elif name == "BINPERSID":
                persistent += 1
                stack.append(PersistentRef(stack.pop()))
            elif name in ("EXT1", "EXT2", "EXT4"):
                stack.append(Opaque(f"extension code {arg}"))
            else:
                raise PickleError(f"unsupported opcode {name}", at)
    except PickleError as exc:
        error = exc
    except IndexError:  # a pop or a look at the top of an empty stack
        error = PickleError("stack underflow", at)
    except (ValueError, EOFError, OverflowError, MemoryError, struct.error) as exc:
        error = PickleError(f"malformed pickle ({_one_line(exc)})", at)
    error.globals, error.calls = globals_seen, calls
    raise error from None


# The bytes torch's own pickler (TorchScript's data.pkl, constants.pkl) writes for most tensors once the
# rebuild function, the storage class, 'storage', the device and OrderedDict are in the memo:
#   <get _rebuild_tensor_v2> MARK
#     ( MARK <get 'storage'> <get storage class> <key: BINUNICODE of digits | get> [put] <get device>
#       <numel> TUPLE BINPERSID [put]  |  <get of that persistent id, a view of a storage seen before> )
#     <offset> <size: EMPTY_TUPLE | MARK ints TUPLE> <stride: the same> NEWTRUE|NEWFALSE
#     <get OrderedDict> EMPTY_TUPLE REDUCE
#   TUPLE REDUCE
# with gets and puts in their 1- or 4-byte forms and ints as BININT1, BININT2 or BININT. Opcode bytes and
# argument lengths are fixed per alternative and every alternative starts with another byte, so a match is
# the one way the opcodes decode from its first byte; the key's digits must be as many as its length says.
_GET = rb"(h.|j....)"
_INT = rb"(K.|M..|J....)"
_INTS = rb"(\)|\((?:K.|M..|J....)*t)"
_TENSOR = re.compile(
    _GET + rb"\((?:\(" + _GET + _GET + rb"(?:X(.)\x00\x00\x00([0-9]+)|" + _GET + rb")(q.|r....)?" + _GET + _INT
    + rb"tQ(q.|r....)?|" + _GET + rb")" + _INT + _INTS + _INTS + rb"([\x88\x89])" + _GET + rb"\)RtR", re.S)


def _torch_tensor(data: bytes, pos: int, memo: dict, calls: list, stack: list, room: int, max_arg: int) -> tuple | None:
    """Walk the tensor at ``pos`` in the form above in one step, as its opcodes would (memo puts, call sites,
    its value on the stack): (end, opcodes, persistent ids). None, and nothing changed, when the bytes
    differ, when the walk would not get through (a get of a key not written, more than ``room`` opcodes, a
    key longer than ``max_arg``) or when a get would read a put of the same tensor: the opcode walk goes on.
    The caller checks the memo and MARK limits, which two puts and two nested MARKs cannot pass."""
    m = _TENSOR.match(data, pos)
    if m is None:
        return None
    (func, name, cls, key_len, key_text, key_get, key_put, device, numel, ref_put, ref_get, offset, size, stride,
     grad, ordered) = m.groups()
    ordered = ordered[1] if len(ordered) == 2 else _U4(ordered, 1)[0]
    try:
        func = memo[func[1] if len(func) == 2 else _U4(func, 1)[0]]
        if ref_get is None:
            if key_text is None:
                key = memo[key_get[1] if len(key_get) == 2 else _U4(key_get, 1)[0]]
            elif len(key_text) == key_len[0] <= max_arg:
                key = key_text.decode("ascii")
            else:
                return None
            device = device[1] if len(device) == 2 else _U4(device, 1)[0]
            if key_put is not None:
                key_put = key_put[1] if len(key_put) == 2 else _U4(key_put, 1)[0]
                if key_put == device or key_put == ordered:
                    return None
            ref = PersistentRef(PTuple([memo[name[1] if len(name) == 2 else _U4(name, 1)[0]],
                                        memo[cls[1] if len(cls) == 2 else _U4(cls, 1)[0]], key, memo[device],
                                        _int(numel)]))
            if ref_put is not None:
                ref_put = ref_put[1] if len(ref_put) == 2 else _U4(ref_put, 1)[0]
                if ref_put == ordered:
                    return None
            ops, persistent = 10 + (key_put is not None) + (ref_put is not None), 1
        else:  # the pattern has no puts on this side
            ref = memo[ref_get[1] if len(ref_get) == 2 else _U4(ref_get, 1)[0]]
            ops, persistent = 3, 0
        ordered = memo[ordered]
    except KeyError:
        return None
    sizes, strides = _ints(size), _ints(stride)
    ops += 7 + (len(sizes) + 2 if len(size) > 1 else 1) + (len(strides) + 2 if len(stride) > 1 else 1)
    if ops > room:
        return None
    if key_put is not None:
        memo[key_put] = key
    if ref_put is not None:
        memo[ref_put] = ref
    end = m.end()
    hooks = Call(ordered, PTuple([]))
    call = Call(func, PTuple([ref, _int(offset), PTuple(sizes), PTuple(strides), grad == b"\x88", hooks]))
    calls.append((ordered.qualname if isinstance(ordered, Global) else "<computed>", end - 3))
    calls.append((func.qualname if isinstance(func, Global) else "<computed>", end - 1))
    stack.append(call)
    return end, ops, persistent


def _int(op: bytes) -> int:
    return op[1] if len(op) == 2 else _U2(op, 1)[0] if len(op) == 3 else _I4(op, 1)[0]


def _ints(span: bytes) -> list[int]:
    """The integers of ``)`` or ``( <ints> t``."""
    inner = span[1:-1]
    values = inner[1::2]
    if inner[::2] == b"K" * len(values) and len(inner) % 2 == 0:  # all BININT1 (or none)
        return list(values)
    out, i = [], 0
    while i < len(inner):
        step = 2 if inner[i] == 0x4B else 3 if inner[i] == 0x4D else 5
        out.append(_int(inner[i:i + step]))
        i += step
    return out


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
