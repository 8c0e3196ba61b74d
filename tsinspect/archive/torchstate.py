"""The tensors and module tree of a ``data.pkl`` in the layout torch's C++ pickler writes, read from its bytes.

``summarize`` gets them from the symbolic walk (``pickles.walk``), then ``tensors.collect`` and
``modules.module_tree`` over its nodes: three passes of Python work per tensor and per module. A TorchScript
archive's ``data.pkl`` uses few opcodes: module objects (a class, EMPTY_TUPLE NEWOBJ, a BUILD of a dict of
attributes), tensors (``_rebuild_tensor_v2`` of a persistent id, mostly in the run ``pickles._TENSOR``
matches at once) and plain attributes. :func:`read_state` reads exactly that language with values that are
not pickle nodes and builds the same ``TensorInfo`` list and ``ModuleInfo`` tree. Nothing is called or
imported; it only recognises. Anything else (another opcode, a memo get of a tensor, module or container:
a shared value; a quantized tensor, a custom class, a key to escape or cut, limits within reach) gives
None, and the caller walks the pickle as always. ``tests/test_torch_state.py`` compares both ways.
"""

from __future__ import annotations

import re
import struct

from tsinspect.archive.code import CodeIndex
from tsinspect.archive.modules import MAX_DEPTH as MAX_MODULE_DEPTH
from tsinspect.archive.modules import ModuleInfo, declared_names
from tsinspect.archive.pickles import _TENSOR, DEFAULT_LIMITS, _I4, _U2, _U4, Global, _ints
from tsinspect.archive.pickletree import inline, label
from tsinspect.archive.tensors import TensorInfo, _view_problem, tensor_info

_F8 = struct.Struct(">d").unpack_from
_GLOBAL = re.compile(rb"c([A-Za-z0-9_.]{1,200})\n([A-Za-z0-9_]{1,200})\n")
_REBUILD = "torch._utils._rebuild_tensor_v2"
_ORDERED = "collections.OrderedDict"
MAX_NAME = 900  # paths longer than this, or keys over 200 characters, are cut by the walk's readers: None


class _Module:
    __slots__ = ("cls", "items")

    def __init__(self, cls: Global):
        self.cls = cls
        self.items: list | None = None  # the BUILD state's (key, value) pairs


class _Tensor:
    """``_rebuild_tensor_v2(persistent id, offset, size, stride, requires_grad, OrderedDict())``."""

    __slots__ = ("pid", "offset", "shape", "stride", "grad")

    def __init__(self, pid: list, offset: int, shape: list, stride: list, grad: bool):
        self.pid, self.offset, self.shape, self.stride, self.grad = pid, offset, shape, stride, grad


class _Pid(list):
    """A persistent id's items."""


class _Dict(list):
    """A dict's (key, value) pairs."""


_HOOKS = object()  # OrderedDict(): the hooks argument of a tensor rebuild
_PLAIN = frozenset({str, Global, int, float, bool, type(None)})  # values a walk gives as themselves (or a Global)
_SHAREABLE = _PLAIN | {_Pid}  # memo gets of anything else (a tensor, module, dict, tuple): a node shared


class _Unread(Exception):
    """Not in the language read here."""


def read_state(data: bytes, code: CodeIndex, storage_dir: str) -> tuple[list[TensorInfo], ModuleInfo] | None:
    """``(collect(root, storage_dir), module_tree(root, code))`` of the walked ``data``, or None."""
    limits = DEFAULT_LIMITS  # what Archive.pickle walks with: far from reach below these sizes
    if not data.startswith(b"\x80\x02") or len(data) >= min(limits.max_ops, 2 * limits.max_memo, limits.max_arg):
        return None
    try:
        root = _parse(data, min(limits.max_marks, 1000))
        return _build(root, code, storage_dir)
    except (_Unread, IndexError, KeyError, UnicodeDecodeError, struct.error):
        return None


def _parse(data: bytes, max_marks: int):
    stack: list = []
    marks: list[list] = []
    memo: dict[int, object] = {}
    dims: dict[bytes, list[int]] = {}  # a size or stride's opcodes -> its ints, one list for all its tensors
    size = len(data)
    pos = 2
    tensor = _TENSOR.match
    while pos < size:
        code = data[pos]
        if code == 0x68 or code == 0x6A:  # BINGET, LONG_BINGET: a tensor's run, or a get
            m = tensor(data, pos) if pos + 5 < size and data[pos + (2 if code == 0x68 else 5)] == 0x28 else None
            if m is not None:
                found = _tensor_run(m, memo, dims)
                if found is not None:
                    stack.append(found)
                    pos = m.end()
                    continue
            key = data[pos + 1] if code == 0x68 else _U4(data, pos + 1)[0]
            pos += 2 if code == 0x68 else 5
            value = memo[key]
            if type(value) not in _SHAREABLE:
                raise _Unread
            stack.append(value)
        elif code > 0x60:  # b c q r t u } and up (BINGET above): fewer tests per opcode than one chain
            if code == 0x71 or code == 0x72:  # BINPUT, LONG_BINPUT
                memo[data[pos + 1] if code == 0x71 else _U4(data, pos + 1)[0]] = stack[-1]
                pos += 2 if code == 0x71 else 5
            elif code == 0x7D:  # EMPTY_DICT
                stack.append(_Dict())
                pos += 1
            elif code == 0x81:  # NEWOBJ: a module object of a TorchScript class
                args = stack.pop()
                cls = stack[-1]
                if args != () or type(cls) is not Global or not cls.module.startswith("__torch__") \
                        or cls.module.startswith("__torch__.torch.classes."):
                    raise _Unread
                stack[-1] = _Module(cls)
                pos += 1
            elif code == 0x75:  # SETITEMS
                items = stack
                stack = marks.pop()
                target = stack[-1]
                if type(target) is not _Dict or len(items) % 2:
                    raise _Unread
                target.extend(zip(items[::2], items[1::2]))
                pos += 1
            elif code == 0x62:  # BUILD
                state = stack.pop()
                obj = stack[-1]
                if type(obj) is not _Module or obj.items is not None or type(state) is not _Dict:
                    raise _Unread
                obj.items = state
                pos += 1
            elif code == 0x88 or code == 0x89:  # NEWTRUE, NEWFALSE
                stack.append(code == 0x88)
                pos += 1
            elif code == 0x74:  # TUPLE
                items = stack
                stack = marks.pop()
                stack.append(tuple(items))
                pos += 1
            elif code == 0x63:  # GLOBAL
                m = _GLOBAL.match(data, pos)
                if m is None:
                    raise _Unread
                stack.append(Global(m[1].decode("ascii"), m[2].decode("ascii")))
                pos = m.end()
            else:
                raise _Unread
        elif code == 0x28:  # MARK
            if len(marks) >= max_marks:
                raise _Unread
            marks.append(stack)
            stack = []
            pos += 1
        elif code == 0x29:  # EMPTY_TUPLE
            stack.append(())
            pos += 1
        elif code == 0x58:  # BINUNICODE
            end = pos + 5 + _U4(data, pos + 1)[0]  # past the end: cut short, and no STOP after it
            stack.append(str(data[pos + 5:end], "utf-8", "surrogatepass"))
            pos = end
        elif code == 0x4E:  # NONE
            stack.append(None)
            pos += 1
        elif code == 0x4B:  # BININT1
            stack.append(data[pos + 1])
            pos += 2
        elif code == 0x4D:  # BININT2
            stack.append(_U2(data, pos + 1)[0])
            pos += 3
        elif code == 0x4A:  # BININT
            stack.append(_I4(data, pos + 1)[0])
            pos += 5
        elif code == 0x47:  # BINFLOAT
            stack.append(_F8(data, pos + 1)[0])
            pos += 9
        elif code == 0x51:  # BINPERSID
            pid = stack[-1]
            if type(pid) is not tuple or any(type(item) not in _PLAIN for item in pid):
                raise _Unread  # what the view of a node would show otherwise (tensor_info repr()s odd items)
            stack[-1] = _Pid(pid)
            pos += 1
        elif code == 0x52:  # REDUCE: OrderedDict(), or a tensor
            args = stack.pop()
            func = stack[-1]
            name = func.qualname if type(func) is Global else None
            if name == _ORDERED:  # the hooks of a tensor (nothing reads them, nor what they were given)
                stack[-1] = _HOOKS
            elif name == _REBUILD and type(args) is tuple and type(args[0]) is _Pid \
                    and type(args[1]) is int and type(args[2]) is tuple and type(args[3]) is tuple \
                    and type(args[4]) is bool and args[5] is _HOOKS:
                shape, stride = list(args[2]), list(args[3])
                if not set(map(type, shape + stride)) <= {int}:
                    raise _Unread
                stack[-1] = _Tensor(args[0], args[1], shape, stride, args[4])
            else:
                raise _Unread
            pos += 1
        elif code == 0x2E:  # STOP
            if len(stack) != 1 or marks or type(stack[0]) is not _Module:
                raise _Unread
            return stack[0]
        else:
            raise _Unread
    raise _Unread


def _tensor_run(m: re.Match, memo: dict, dims: dict) -> _Tensor | None:
    """The tensor of a ``_TENSOR`` match, as ``pickles._torch_tensor`` reads it, with its memo puts made;
    None (nothing changed) where that one would let the opcodes decide."""
    (func, name, cls, key_len, key_text, key_get, key_put, device, numel, ref_put, ref_get, offset, size, stride,
     grad, ordered) = m.groups()
    func = memo[func[1] if len(func) == 2 else _U4(func, 1)[0]]
    ordered_key = ordered[1] if len(ordered) == 2 else _U4(ordered, 1)[0]
    if type(func) is not Global or func.qualname != _REBUILD:
        return None
    if ref_get is None:
        if key_text is None:
            key = memo[key_get[1] if len(key_get) == 2 else _U4(key_get, 1)[0]]
        elif len(key_text) == key_len[0]:
            key = key_text.decode("ascii")
        else:
            return None
        device_key = device[1] if len(device) == 2 else _U4(device, 1)[0]
        key_put = None if key_put is None else key_put[1] if len(key_put) == 2 else _U4(key_put, 1)[0]
        ref_put = None if ref_put is None else ref_put[1] if len(ref_put) == 2 else _U4(ref_put, 1)[0]
        if key_put is not None and key_put == device_key:  # the device's get reads this key: op by op
            return None
        storage = memo[name[1] if len(name) == 2 else _U4(name, 1)[0]]
        cls = memo[cls[1] if len(cls) == 2 else _U4(cls, 1)[0]]
        device = memo[device_key]
        if type(storage) not in _PLAIN or type(cls) not in _PLAIN or type(key) not in _PLAIN \
                or type(device) not in _PLAIN:
            raise _Unread
        pid = _Pid((storage, cls, key, device, _int(numel)))
    else:
        pid = memo[ref_get[1] if len(ref_get) == 2 else _U4(ref_get, 1)[0]]
        key_put = ref_put = None
        if type(pid) is not _Pid:
            raise _Unread
    memo[ordered_key]  # written before (the hooks' class: nothing reads it)
    if key_put is not None:
        memo[key_put] = key
    if ref_put is not None:
        memo[ref_put] = pid
    shape = dims.get(size)
    if shape is None:
        shape = dims[size] = _ints(size)
    strides = dims.get(stride)
    if strides is None:
        strides = dims[stride] = _ints(stride)
    return _Tensor(pid, _int(offset), shape, strides, grad == b"\x88")


def _int(op: bytes) -> int:
    return op[1] if len(op) == 2 else _U2(op, 1)[0] if len(op) == 3 else _I4(op, 1)[0]


def _build(root: _Module, code: CodeIndex, storage_dir: str) -> tuple[list[TensorInfo], ModuleInfo]:
    """What ``collect`` and ``module_tree`` give for the tree under ``root`` (each value in it once):
    depth first in pickle order, a submodule's tensors where it stands among its parent's attributes."""
    tensors: list[TensorInfo] = []
    declared: dict[str, tuple] = {}
    top = ModuleInfo("", root.cls.qualname)
    stack = [_enter(root, top, code, declared)]
    modules = 1
    plain: set[str] = set()  # keys that passed the test below (a few names repeat in every module)
    forms: dict[tuple, tuple] = {}  # see _tensor
    while stack:
        items, info, head, parameters, buffers = stack[-1]
        for key, value in items:
            if type(key) is not str or key not in plain:
                if type(key) is not str or len(key) > 200 or key.startswith("[") \
                        or not (key.isascii() and key.isprintable()):
                    raise _Unread  # a name collect() or module_tree() would write otherwise
                plain.add(key)
            path = head + key
            if len(path) > MAX_NAME:
                raise _Unread
            kind = type(value)
            if kind is _Tensor:
                tensors.append(_tensor(path, value, storage_dir, forms))
                held = info.parameters if key in parameters else info.buffers if key in buffers else info.tensors
                held.append(path)  # info.add_tensor(key, path, parameters, buffers), in line
            elif kind is _Module:
                modules += 1
                if len(stack) >= MAX_MODULE_DEPTH - 10 or modules >= 100_000:
                    raise _Unread  # module_tree's bounds within reach
                child = ModuleInfo(path, value.cls.qualname)
                info.children.append(child)
                stack.append(_enter(value, child, code, declared))
                break  # its attributes first, then the rest of these
            elif key == "training" and kind is bool:
                info.training = value
            elif value is None or kind is bool or kind is int or kind is float or kind is str:
                if key != "_is_full_backward_hook":
                    info.attributes[key] = inline(value, 120) or label(value)
            else:
                raise _Unread
        else:
            stack.pop()
    return tensors, top


def _enter(module: _Module, info: ModuleInfo, code: CodeIndex, declared: dict) -> tuple:
    if module.items is None:
        raise _Unread
    parameters, buffers = declared_names(info, code, declared)
    return iter(module.items), info, info.path + "." if info.path else "", parameters, buffers


def _tensor(name: str, t: _Tensor, storage_dir: str, forms: dict) -> TensorInfo:
    """``tensor_info`` of the tensor, with its flag, view check and record. What all but the name and storage
    key give (dtype, shape, view problem...) is worked out once per form: thousands of tensors share a few.
    A form is keyed by its values, or by identity for the shape and stride lists (``_parse`` gives one list to
    every tensor of a span) and the storage class (a ``Global``, alive in the tree while ``_build`` runs)."""
    pid, shape, stride = t.pid, t.shape, t.stride
    if len(pid) != 5 or pid[0] != "storage" or type(pid[3]) is not str or type(pid[4]) is not int:
        return _new_tensor(name, t, storage_dir)  # (storage key "?" without "storage")
    form_key = (id(pid[1]), pid[3], pid[4], t.offset, id(shape), id(stride))
    form = forms.get(form_key)
    key = pid[2]
    if form is None or not (type(key) is str and key.isascii() and key.isprintable()):
        info = _new_tensor(name, t, storage_dir)
        if form is None:  # the objects keyed by identity kept with it
            forms[form_key] = (pid[1], shape, stride, info.dtype, info.shape, info.stride, info.storage_numel,
                               info.device, info.itemsize, info.problem)
        return info
    _, _, _, dtype, shape, stride, numel, device, itemsize, problem = form
    return TensorInfo(name, dtype, shape, stride, t.offset, key, numel, device, itemsize, t.grad,
                      record=f"{storage_dir}/{key}" if storage_dir else key, problem=problem)


def _new_tensor(name: str, t: _Tensor, storage_dir: str) -> TensorInfo:
    info = tensor_info(name, t.pid, t.offset, t.shape, t.stride)
    info.requires_grad = t.grad
    info.problem = info.problem or _view_problem(info)
    info.record = f"{storage_dir}/{info.storage_key}" if storage_dir else info.storage_key
    return info
