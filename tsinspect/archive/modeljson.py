"""TorchScript archives of torch 1.0-1.3: ``model.json`` (torch.proto's ModelDef as protobuf JSON).

Before file format 2 had ``data.pkl``, ``torch.jit.save`` wrote the module tree as JSON: each ModuleDef has
its submodules, its parameters (``{"name", "tensorId", "isBuffer"}``, an index into the top-level tensor
table), its attributes (``{"type", "name", "id"}``, an index into the list ``attributes.pkl`` holds) and the
code record of its methods. The tensor table holds each tensor's dims, strides, storage offset, dtype (a
caffe2 ``TensorProto.DataType`` name) and storage record (``tensors/<n>``). torch 2.x refuses these archives
("Legacy model format is not supported"); this reads them as data only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tsinspect.archive.modules import ModuleInfo
from tsinspect.archive.pickles import Call, PList, PTuple
from tsinspect.archive.problems import Problem
from tsinspect.archive.tensors import TensorInfo
from tsinspect.archive.text import printable

MODEL_JSON_CAP = 64 * 1024 * 1024
MAX_MODULES = 100_000
# caffe2 TensorProto.DataType -> (dtype, bytes per element)
_DATA_TYPES = {
    "FLOAT": ("float32", 4), "INT32": ("int32", 4), "BYTE": ("uint8", 1), "BOOL": ("bool", 1),
    "UINT8": ("uint8", 1), "INT8": ("int8", 1), "UINT16": ("uint16", 2), "INT16": ("int16", 2),
    "INT64": ("int64", 8), "FLOAT16": ("float16", 2), "DOUBLE": ("float64", 8),
}
_BUILD_TENSOR = "torch.jit._pickle.build_tensor_from_id"
NOTE = "a TorchScript archive of torch 1.0-1.3 (model.json), which torch 2.x refuses to load"
REFUSAL = 'torch 2.x refuses TorchScript archives of torch 1.0-1.3 (model.json): "Legacy model format is not supported"'


@dataclass
class ModelJson:
    """What model.json says: the module tree, its tensors by name, and who wrote it."""
    modules: ModuleInfo
    tensors: list[TensorInfo] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # tensor name -> parameter / buffer / attribute
    constants: list[TensorInfo] = field(default_factory=list)  # table entries code reads as CONSTANTS.c<i>
    producer: str = ""


def read_model_json(archive) -> ModelJson | None:
    """The model.json of ``archive``, or None when it has none; a malformed one is a problem, not an error."""
    record = archive.lookup("model.json")
    if record is None:
        return None
    try:
        doc = json.loads(archive.read(record, MODEL_JSON_CAP))
    except (ValueError, RecursionError) as exc:
        archive.problems.append(Problem("model_json", "model.json", f"model.json is not readable JSON ({exc})"))
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("mainModule"), dict):
        archive.problems.append(Problem("model_json", "model.json", "model.json has no mainModule"))
        return None
    table = doc.get("tensors") if isinstance(doc.get("tensors"), list) else []
    attributes = _attribute_values(archive)
    result = ModelJson(ModuleInfo("", ""), producer=" ".join(
        printable(str(doc.get(k))) for k in ("producerName", "producerVersion") if doc.get(k) is not None))
    named: set[int] = set()
    work = [(doc["mainModule"], "", None)]
    count = 0
    while work and count < MAX_MODULES:
        module_def, path, parent = work.pop()
        count += 1
        info = ModuleInfo(path, printable(str(module_def.get("name", "?"))))
        (parent.children if parent else []).append(info)
        if parent is None:
            result.modules = info
        for param in _dicts(module_def.get("parameters")):
            name = _join(path, param.get("name"))
            tensor = _tensor(table, param.get("tensorId"), name, archive, named)
            if tensor is None:
                continue
            result.tensors.append(tensor)
            kind = "buffer" if param.get("isBuffer") else "parameter"
            (info.buffers if kind == "buffer" else info.parameters).append(name)
            result.kinds[name] = kind
        for attr in _dicts(module_def.get("attributes")):
            name = _join(path, attr.get("name"))
            value = attributes.get(_int(attr.get("id")))
            if attr.get("type") == "Tensor" and isinstance(value, Call) and value.func_name == _BUILD_TENSOR:
                tensor = _tensor(table, value.arg_list[0] if value.arg_list else None, name, archive, named)
                if tensor is not None:
                    result.tensors.append(tensor)
                    info.tensors.append(name)
                    result.kinds[name] = "attribute"
            else:
                info.attributes[printable(str(attr.get("name")))] = printable(str(attr.get("type", "?")))
        children = list(_dicts(module_def.get("submodules")))
        for child in reversed(children):
            work.append((child, _join(path, child.get("name")), info))
    # the code reads the table's other entries as CONSTANTS.c<i> (one table for constants and attributes)
    result.constants = [_tensor(table, i, f"c{i}", archive, named) for i in range(len(table)) if i not in named]
    if work:
        archive.problems.append(Problem("model_json", "model.json", f"more than {MAX_MODULES:,} modules; the rest "
                                                                    "are not shown"))
    return result


def _tensor(table: list, tensor_id, name: str, archive, named: set[int]) -> TensorInfo | None:
    index = _int(tensor_id)
    if index is None or not 0 <= index < len(table):
        archive.problems.append(Problem("model_json", "model.json",
                                        f"{printable(name)} names tensor {printable(str(tensor_id))}, which the "
                                        f"table of {len(table)} tensors does not hold"))
        return None
    named.add(index)
    entry = table[index] if isinstance(table[index], dict) else {}
    dtype, itemsize = _DATA_TYPES.get(str(entry.get("dataType", "FLOAT")), (printable(str(entry.get("dataType"))), 1))
    key = (entry.get("data") or {}).get("key") if isinstance(entry.get("data"), dict) else None
    record = archive.lookup(key) if isinstance(key, str) else None
    info = TensorInfo(name, dtype, _ints(entry.get("dims")), _ints(entry.get("strides")),
                      _int(entry.get("offset")) or 0, printable(str(key)), record.size // itemsize if record else 0,
                      printable(str(entry.get("device", "cpu"))), itemsize,
                      requires_grad=bool(entry.get("requiresGrad", False)),
                      record=record.name if record else None)
    if entry.get("isQuantized"):
        info.quantization = f"per_tensor_affine scale={entry.get('scale')} zero_point={entry.get('zeroPoint')}"
    if record is None:
        info.problem = f"storage record {printable(str(key))} is missing"
    elif info.numel and info.offset + _extent(info) > info.storage_numel:
        info.problem = f"the view reaches past its storage ({info.storage_numel} elements)"
    return info


def _attribute_values(archive) -> dict[int, object]:
    """attributes.pkl's list (a tuple or list of values), by position."""
    walked = archive.pickle_optional("attributes.pkl")
    value = walked.value if walked else None
    items = value.items if isinstance(value, (PTuple, PList)) else []
    return dict(enumerate(items))


def _extent(t: TensorInfo) -> int:
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride) if size > 0)


def _dicts(value):
    return (v for v in value if isinstance(v, dict)) if isinstance(value, list) else ()


def _join(path: str, name) -> str:
    name = printable(str(name))
    return f"{path}.{name}" if path else name


def _int(value) -> int | None:
    """protobuf JSON writes int64 as strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ints(value) -> list[int]:
    return [n for n in (_int(v) for v in value) if n is not None][:64] if isinstance(value, list) else []
