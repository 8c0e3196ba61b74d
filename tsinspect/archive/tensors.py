"""Tensors described by a pickle: dtype, shape, stride and storage, checked against their records.

A tensor in a PyTorch pickle is ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` where the storage is
the persistent id ``('storage', torch.<Dtype>Storage, key, device, numel)`` naming record ``<dir>/<key>``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from tsinspect.archive.pickles import Call, Global, PDict, PersistentRef, PList, PTuple
from tsinspect.archive.pickletree import is_container
from tsinspect.archive.text import printable

# storage class -> (dtype, bytes per element, struct code or None)
STORAGE_DTYPES: dict[str, tuple[str, int, str | None]] = {
    "FloatStorage": ("float32", 4, "f"), "DoubleStorage": ("float64", 8, "d"), "HalfStorage": ("float16", 2, "e"),
    "BFloat16Storage": ("bfloat16", 2, None), "LongStorage": ("int64", 8, "q"), "IntStorage": ("int32", 4, "i"),
    "ShortStorage": ("int16", 2, "h"), "CharStorage": ("int8", 1, "b"), "ByteStorage": ("uint8", 1, "B"),
    "BoolStorage": ("bool", 1, "?"), "ComplexFloatStorage": ("complex64", 8, None),
    "ComplexDoubleStorage": ("complex128", 16, None), "ComplexHalfStorage": ("complex32", 4, None),
    "QInt8Storage": ("qint8", 1, "b"), "QUInt8Storage": ("quint8", 1, "B"), "QInt32Storage": ("qint32", 4, "i"),
    "QUInt4x2Storage": ("quint4x2", 1, None), "QUInt2x4Storage": ("quint2x4", 1, None),
    "UInt16Storage": ("uint16", 2, "H"), "UInt32Storage": ("uint32", 4, "I"), "UInt64Storage": ("uint64", 8, "Q"),
    "Float8_e4m3fnStorage": ("float8_e4m3fn", 1, None), "Float8_e5m2Storage": ("float8_e5m2", 1, None),
    "UntypedStorage": ("uint8", 1, "B"),
}
_REBUILD = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_qtensor"}
MAX_DIMS = 64
# Calls that wrap a value without changing what it is: follow their first argument without a name segment.
_WRAPPERS = {"torch.jit._pickle.restore_type_tag", "torch.jit._pickle.build_tensorlist",
             "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}


@dataclass(slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: list[int]  # shape and stride lists may be shared by many tensors (archive.torchstate): read only
    stride: list[int]
    offset: int
    storage_key: str
    storage_numel: int
    device: str
    itemsize: int
    requires_grad: bool | None = None
    quantization: str | None = None  # e.g. "per_tensor_affine scale=0.1 zero_point=0"
    # the same as data: scheme, scale and zero_point (per tensor) or axis and the names of the tensors
    # holding the scales and zero points (per channel; listed as tensors <name>.q_per_channel_scales ...)
    qparams: dict | None = None
    record: str | None = None  # storage record name, when found
    aliases: list[str] = field(default_factory=list)  # other names of this same tensor (tied weights)
    problem: str | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def storage_nbytes(self) -> int:
        return self.storage_numel * self.itemsize

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "scalar"
        where = f" {self.device}" if self.device != "cpu" else ""
        return f"Tensor {self.dtype}[{shape}]{where}"

    def to_json(self, **more) -> dict:
        """The JSON object; ``more`` keys (the summary's ``kind``) come last."""
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape, "stride": self.stride,
                "offset": self.offset, "nbytes": self.nbytes, "storage": {
                    "key": self.storage_key, "record": self.record, "numel": self.storage_numel,
                    "nbytes": self.storage_nbytes}, "device": self.device, "requires_grad": self.requires_grad,
                "quantization": self.quantization, "quantization_params": self.qparams, "aliases": self.aliases,
                "problem": self.problem, **more}


def is_tensor(value: Any) -> bool:
    """Whether :func:`tensor_from` gives a TensorInfo for ``value`` (without building it)."""
    return isinstance(value, Call) and value.func_name in _REBUILD


def tensor_from(value: Any, name: str = "") -> TensorInfo | None:
    """A TensorInfo when ``value`` is a tensor rebuild call, else None. Malformed calls give a problem."""
    if not isinstance(value, Call) or value.func_name not in _REBUILD:
        return None
    return _tensor(value, value.func_name, name)


def _tensor(value: Call, func_name: str, name: str) -> TensorInfo:
    args = value.arg_list
    storage = args[0] if args else None
    pid = storage.pid.items if isinstance(storage, PersistentRef) and isinstance(storage.pid, PTuple) else []
    offset = args[1] if len(args) > 1 and _is_int(args[1]) else 0
    shape = _ints(args[2]) if len(args) > 2 else None
    stride = _ints(args[3]) if len(args) > 3 else None
    info = tensor_info(name, pid, offset, shape, stride)
    if func_name.endswith("_rebuild_qtensor"):
        if len(args) == 8:  # torch 1.3: (storage, offset, size, stride, scale, zero_point, requires_grad, hooks)
            info.qparams = _per_tensor("per_tensor_affine", args[4], args[5])
            grad = args[6]
        else:  # (storage, offset, size, stride, quantizer params, requires_grad, hooks)
            info.qparams = _qparams(args[4] if len(args) > 4 else None)
            grad = args[5] if len(args) > 5 else None
            if info.qparams and "axis" in info.qparams:  # until collect() names them: what they are
                for key, (_, part) in zip(("scales", "zero_points"), _per_channel_tensors(value)):
                    # scales and zero points are plain tensors: never recurse into a quantized one
                    quantized = isinstance(part, Call) and part.func_name.endswith("_rebuild_qtensor")
                    sub = None if quantized else tensor_from(part)
                    info.qparams[key] = f"{sub.describe()} storage {sub.storage_key}" if sub else None
        info.requires_grad = grad if isinstance(grad, bool) else None
        info.quantization = _quantization_text(info.qparams)
    elif func_name == "torch._utils._rebuild_tensor":  # torch < 0.4: no autograd flag, so False
        info.requires_grad = False
    else:
        info.requires_grad = args[4] if len(args) > 4 and isinstance(args[4], bool) else None
    info.problem = info.problem or _view_problem(info)
    return info


def tensor_info(name: str, pid: list, offset: int, shape: list[int] | None, stride: list[int] | None) -> TensorInfo:
    """The TensorInfo of a rebuild call's persistent id items, offset and size and stride (``_ints`` of the
    call's tuples), with the problem they have (``problem`` still None when the view is to be checked)."""
    dtype, itemsize = "?", 1
    key, device, numel = "?", "?", 0
    problem = None
    if len(pid) >= 5 and pid[0] == "storage":
        cls = pid[1].name if isinstance(pid[1], Global) else "?"
        dtype, itemsize, _ = STORAGE_DTYPES.get(cls) or (printable(cls), 1, None)
        key, device, numel = pid[2], pid[3], pid[4]
        if not (type(key) is str and key.isascii() and key.isprintable()):  # else _text() gives it back
            key = _text(key)
        if not (type(device) is str and device.isascii() and device.isprintable()):
            device = _text(device)
        if not (type(numel) is int and _LOW <= numel < _HIGH):  # _is_int(), in line
            numel = numel if _is_int(numel) else 0
    else:
        problem = "storage is not a ('storage', type, key, device, numel) persistent id"
    if shape is None or stride is None or len(shape) != len(stride):
        problem = problem or "size and stride are not matching integer tuples"
        shape, stride = shape or [], stride or []
    if len(shape) > MAX_DIMS:  # the element count of 10,000 dimensions would not even print
        problem = problem or f"{len(shape)} dimensions"
        shape, stride = [], []
    info = TensorInfo(name, dtype, shape, stride, offset, key, numel, device, itemsize)
    info.problem = problem
    return info


def _view_problem(t: TensorInfo) -> str | None:
    offset, shape, strides, numel = t.offset, t.shape, t.stride, t.storage_numel
    if offset < 0 or (shape and min(shape) < 0) or (strides and min(strides) < 0):
        return "negative size, stride or offset"
    if 0 in shape:  # no element
        return None
    last = offset
    for size, stride in zip(shape, strides):
        last += (size - 1) * stride
    if last >= numel:
        return f"view reaches element {last} of a storage of {numel} elements"
    return None


def _per_tensor(scheme: str, scale: Any, zero_point: Any) -> dict:
    return {"scheme": scheme, "scale": scale if isinstance(scale, float) else None,
            "zero_point": zero_point if _is_int(zero_point) else None}


def _qparams(params: Any) -> dict | None:
    """``(qscheme, scale, zero_point)`` or ``(qscheme, scales tensor, zero points tensor, axis)``."""
    if not isinstance(params, PTuple) or not params.items:
        return None
    scheme = params.items[0]
    name = scheme.name if isinstance(scheme, Global) else _text(scheme)
    rest = params.items[1:]
    if name.startswith("per_channel"):
        axis = rest[2] if len(rest) > 2 and _is_int(rest[2]) else None
        return {"scheme": name, "axis": axis, "scales": None, "zero_points": None}
    if len(rest) >= 2 and not is_container(rest[0]):
        return _per_tensor(name, rest[0], rest[1])
    return {"scheme": name}


def _per_channel_tensors(call: Call) -> list[tuple[str, Any]]:
    """The (name segment, rebuild call) of a per-channel quantized tensor's scales and zero points."""
    args = call.arg_list
    params = args[4] if call.func_name.endswith("_rebuild_qtensor") and len(args) == 7 else None
    if not isinstance(params, PTuple) or len(params.items) < 3:
        return []
    return [("q_per_channel_scales", params.items[1]), ("q_per_channel_zero_points", params.items[2])]


def _quantization_text(q: dict | None) -> str | None:
    if q is None:
        return None
    if "axis" in q:
        return f"{q['scheme']} axis={q['axis']} scales={q['scales']} zero_points={q['zero_points']}"
    if "scale" in q:
        return f"{q['scheme']} scale={q['scale']} zero_point={q['zero_point']}"
    return q["scheme"]


def _is_int(v: Any) -> bool:
    # sizes, strides, offsets and numels are int64 in torch; bigger ones (a LONG1 of 2**2000) are malformed,
    # and their products would not even print (more than 4300 digits)
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < (1 << 63)


_INT64 = range(-(1 << 63), 1 << 63)


def _ints(v: Any) -> list[int] | None:
    if not isinstance(v, (PTuple, PList)):
        return None
    items = v.items  # a walk's integers are plain ints (bool is not one here), the big ones Opaque
    if len(items) <= 8:  # a tensor's few dimensions: a loop is cheaper than the set below
        for i in items:
            if type(i) is not int or not _LOW <= i < _HIGH:
                return None
        return list(items)
    if set(map(type, items)) == _JUST_INT and min(items) in _INT64 and max(items) in _INT64:
        return list(items)
    return None


_LOW, _HIGH = -(1 << 63), 1 << 63


_JUST_INT = {int}


def _text(v: Any) -> str:
    return printable(v) if isinstance(v, str) else printable(repr(v))


# Bounds on the names collect() gives: how deep it looks, how long a key segment and a whole name can be,
# and how many other names of one tensor it keeps. Real archives are far inside them; a hostile pickle
# (a 1 MB dict key over thousands of items, a million nested tuples) would otherwise cost memory and time
# quadratic in its size.
MAX_DEPTH = 1000
MAX_SEGMENT = 200
MAX_NAME = 1000
MAX_ALIASES = 100
MAX_ALIASES_TOTAL = 1000  # over all tensors: 3,000 tensors each reached 101 times at depth 990 stay cheap


def collect(root: Any, storage_dir: str, prefix: str = "") -> list[TensorInfo]:
    """Every tensor reachable from ``root``, named by its path (``proj.weight``, ``c0``, ``forward[0]``).

    Shared references to one tensor are listed once, with the other paths as aliases.
    """
    found: dict[int, TensorInfo] = {}
    out: list[TensorInfo] = []
    seen: set[int] = set()
    # a path is built only for the tensors found: on the stack it is (parent path, segment), or the prefix
    stack: list[tuple[Any, Any, int]] = [(prefix, root, 0)]
    alias_budget = MAX_ALIASES_TOTAL
    parents: dict[int, tuple[Any, str]] = {}  # id(parent path) -> (it, its text): siblings share one walk up

    def path_text(path: Any) -> str:
        if not isinstance(path, tuple):
            return path
        parent, part = path
        known = parents.get(id(parent))
        if known is None or known[0] is not parent:
            known = parents[id(parent)] = (parent, _path_text(parent))
        head = known[1]  # what _path_text((head, part)) gives, without its loop
        text = head + part if not head or part.startswith("[") else f"{head}.{part}"
        return text if len(text) <= MAX_NAME else text[:MAX_NAME] + "..."

    while stack:
        path, value, depth = stack.pop()
        if not is_container(value) or depth > MAX_DEPTH:
            continue
        if id(value) in found:
            aliases = found[id(value)].aliases
            if len(aliases) < MAX_ALIASES and alias_budget > 0:
                alias_budget -= 1
                aliases.append(path_text(path))
            continue
        func_name = value.func_name if type(value) is Call else None
        if func_name in _REBUILD:
            info = _tensor(value, func_name, path_text(path))
            found[id(value)] = info
            out.append(info)
            parts = _per_channel_tensors(value) if info.qparams and "axis" in info.qparams else None
            if parts:
                info.qparams["scales"], info.qparams["zero_points"] = (f"{info.name}.{seg}" for seg, _ in parts)
                info.quantization = _quantization_text(info.qparams)
                stack.extend(((path, seg), child, depth + 1) for seg, child in reversed(parts))
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        children: list = []
        _children(value, path, depth + 1, children)
        stack.extend(reversed(children))
    for info in out:
        info.record = f"{storage_dir}/{info.storage_key}" if storage_dir else info.storage_key
    return out


def _path_text(path: Any) -> str:
    parts: list[str] = []
    while isinstance(path, tuple):
        path, part = path
        parts.append(part)
    pieces, length = [path], len(path)
    for part in reversed(parts):  # joined once: a path 990 levels deep must not cost 990 string copies
        piece = part if part.startswith("[") or not length else "." + part
        pieces.append(piece)
        length += len(piece)
        if length > MAX_NAME:
            return "".join(pieces)[:MAX_NAME] + "..."
    return "".join(pieces)


def _segment(key: Any) -> str:
    text = printable(key) if isinstance(key, str) else f"[{_text(key)}]"
    return text if len(text) <= MAX_SEGMENT else text[:MAX_SEGMENT] + "..."


def _children(value: Any, path: Any, depth: int, out: list) -> None:
    """Append ``(path, child, depth)`` for each child of ``value`` that is a container, in pickle order; the
    child's path is ``(path, name segment)``, or ``path`` when it shares the parent's name."""
    if isinstance(value, Call):
        pairs = _ordered_dict_pairs(value)
        if pairs is not None:
            out += [((path, _segment(k)), v, depth) for k, v in pairs if is_container(v)]
            return
        if value.func_name in _WRAPPERS:
            if value.arg_list and is_container(value.arg_list[0]):
                out.append((path, value.arg_list[0], depth))
            return
        for state in value.states:
            if isinstance(state, (PDict, PList, PTuple)):
                _children(state, path, depth, out)
            elif is_container(state):
                out.append((path, state, depth))
        if value.kind != "new" or value.arg_list:
            out += [((path, f"[{i}]"), arg, depth) for i, arg in enumerate(value.arg_list) if is_container(arg)]
    elif isinstance(value, PDict):
        out += [((path, k if type(k) is str and len(k) <= MAX_SEGMENT and k.isascii() and k.isprintable()
                  else _segment(k)), v, depth) for k, v in value.items if is_container(v)]
    elif isinstance(value, (PList, PTuple)):
        out += [((path, f"[{i}]"), item, depth) for i, item in enumerate(value.items) if is_container(item)]


def _ordered_dict_pairs(call: Call) -> list | None:
    """``OrderedDict([[key, value], ...])`` (how older torch.save pickled state dicts) as its pairs."""
    if call.func_name != "collections.OrderedDict" or len(call.arg_list) != 1:
        return None
    items = call.arg_list[0]
    if not isinstance(items, (PList, PTuple)):
        return None
    pairs = [p.items for p in items.items if isinstance(p, (PList, PTuple)) and len(p.items) == 2]
    return pairs if len(pairs) == len(items.items) else None


def decode_values(data: bytes, dtype: str, byteorder: str = "little") -> list | None:
    """Numbers from raw storage bytes, for the dtypes with a fixed layout; None when not decodable."""
    for storage_dtype, size, code in STORAGE_DTYPES.values():
        if storage_dtype == dtype:
            break
    else:
        return None
    order = "<" if byteorder == "little" else ">"
    count = len(data) // size
    if dtype == "bfloat16":
        halves = struct.unpack(f"{order}{count}H", data[:count * 2])
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    if code is None:
        return None
    return list(struct.unpack(f"{order}{count}{code}", data[:count * size]))
