"""Ground truth for benchmarks/fidelity.py, computed with torch: ``python fidelity_truth.py [--fast] FILE...``.

Runs only as a child process of the checker (the checker itself never imports torch) and prints one JSON
object per archive on stdout. Everything comes from torch's own code:
- tensors: each pickle record read with torch's zip reader (``torch._C.PyTorchFileReader``), unpickled with
  its storages as real torch storages and torch's own rebuild functions (``torch._utils._rebuild_tensor_v2``,
  ``_rebuild_qtensor`` ...); ``__torch__`` objects become inert holders of their state. Legacy (pre-zip)
  files: ``torch.load`` itself. Names follow the paths tsinspect prints (``proj.weight``, ``c3[0]``).
- the module tree, training flags and methods: ``torch.jit.load`` (or ``_load_for_lite_interpreter``);
- graph node counts and op counts: every method graph of every module type, not inlined;
- blame: for every node, its code line and column and the original file:line torch's source range gives;
- records: every record torch's zip reader lists, and its bytes; lite archives: the operator tables of
  ``bytecode.pkl`` as torch's mobile reader reads them (``torch._C._get_model_ops_and_info``).
This loads the archives: run it only on files from known sources.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import sys
import warnings
import zipfile

import torch

warnings.filterwarnings("ignore")

_SERIALIZED = re.compile(r'Serialized\s+File "([^"]*)", line (\d+)\n')
_ORIGINAL = re.compile(r'\s*File "([^"]*)", line (\d+)')
_FRAME = re.compile(r"^(.*)\((\d+)\): ")
_STORAGE_DIRS = {"data.pkl": "data", "constants.pkl": "constants", "bytecode.pkl": "constants",
                 "traced_inputs.pkl": "traced_inputs"}


class Holder:
    """Stands in for a ``__torch__`` class: keeps whatever state the pickle gives it."""

    def __init__(self, *args):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


def _holder_class(module: str, name: str) -> type:
    return type(name, (Holder,), {"qualname": f"{module}.{name}"})


class _Reader:
    """Unpickles one pickle record of an archive with torch's reader and rebuild functions."""

    def __init__(self, reader, prefix: str, names: set[str]):
        self.reader, self.prefix, self.names = reader, prefix, names
        self.storage_of: dict[int, str] = {}  # id(tensor) -> storage record name
        self.record_of_storage: dict[int, str] = {}
        self.qparams: dict[int, tuple] = {}  # id(q tensor) -> the quantizer params it was rebuilt with
        self.storages: dict[str, object] = {}

    def _record(self, folder: str, key: str) -> str | None:
        for name in (f"{folder}/{key}", f"constants/{key}.storage", f"{folder}/{key}.storage",
                     f".data/{key}.storage"):
            if name in self.names:
                return name
        return None

    def load(self, name: str):
        data = self.reader.get_record(name)
        folder = _STORAGE_DIRS.get(name, "data")
        rd = self

        def rebuild(fn):
            def wrapped(storage, *args):
                if fn is torch._utils._rebuild_qtensor and len(args) == 7:
                    # torch 1.3 wrote (offset, size, stride, scale, zero_point, requires_grad, hooks): the
                    # per-tensor affine quantizer of today's (offset, size, stride, params, grad, hooks)
                    args = (*args[:3], (torch.per_tensor_affine, args[3], args[4]), *args[5:])
                tensor = fn(storage, *args)
                rd.storage_of[id(tensor)] = rd.record_of_storage.get(id(storage))
                if fn is torch._utils._rebuild_qtensor:
                    rd.qparams[id(tensor)] = args[3]
                return tensor
            return wrapped

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, cls):
                if module == "torch._utils" and cls in ("_rebuild_tensor_v2", "_rebuild_qtensor", "_rebuild_tensor"):
                    return rebuild(getattr(torch._utils, cls))
                if module.startswith("__torch__"):
                    return _holder_class(module, cls)
                return super().find_class(module, cls)

            def persistent_load(self, pid):
                _, cls, key, _device, numel = pid[:5]
                record = rd._record(folder, key)
                dtype = cls.dtype if hasattr(cls, "dtype") else cls(0).dtype
                if record not in rd.storages:
                    raw = rd.reader.get_record(record) if record and numel else b""
                    untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                    rd.storages[record] = untyped
                storage = torch.storage.TypedStorage(wrap_storage=rd.storages[record], dtype=dtype, _internal=True)
                rd.record_of_storage[id(storage)] = record
                return storage

        return Unpickler(io.BytesIO(data)).load()


def _dtype(t) -> str:
    return str(t.dtype).replace("torch.", "")


def tensors_of(root, prefix: str, storage_of: dict, qparams: dict) -> list[dict]:
    """Every tensor reachable from ``root`` in pickle order, once, named like tsinspect names them."""
    out, seen_tensors, seen = [], {}, set()
    stack = [(prefix, root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, torch.Tensor):
            if id(value) in seen_tensors:
                seen_tensors[id(value)]["aliases"].append(path)
                continue
            entry = _tensor_entry(path, value, storage_of, qparams)
            seen_tensors[id(value)] = entry
            out.append(entry)
            params = qparams.get(id(value))
            if params is not None and params[0] in (torch.per_channel_affine, torch.per_channel_affine_float_qparams):
                stack.append((f"{path}.q_per_channel_zero_points", params[2]))
                stack.append((f"{path}.q_per_channel_scales", params[1]))
            continue
        if id(value) in seen:
            continue
        children = []
        if isinstance(value, Holder):
            seen.add(id(value))
            state = value.state
            if isinstance(state, dict):
                children = [(_join(path, k), v) for k, v in state.items()]
            elif isinstance(state, (list, tuple)):
                children = [(f"{path}[{i}]", v) for i, v in enumerate(state)]
            elif state is not None:
                children = [(path, state)]
        elif isinstance(value, dict):
            seen.add(id(value))
            children = [(_join(path, k) if isinstance(k, str) else f"{path}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            seen.add(id(value))
            children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        stack.extend(reversed(children))
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _tensor_entry(path, t, storage_of, qparams) -> dict:
    entry = {"name": path, "dtype": _dtype(t), "shape": list(t.shape), "stride": list(t.stride()),
             "offset": t.storage_offset(), "record": storage_of.get(id(t)),
             "storage_nbytes": t.untyped_storage().nbytes(), "requires_grad": t.requires_grad,
             "quantization": None, "aliases": []}
    if t.is_quantized:
        scheme = t.qscheme()
        if scheme == torch.per_tensor_affine:
            entry["quantization"] = {"scheme": "per_tensor_affine", "scale": t.q_scale(),
                                     "zero_point": t.q_zero_point()}
        else:
            entry["quantization"] = {"scheme": str(scheme).replace("torch.", ""), "axis": t.q_per_channel_axis(),
                                     "scales": f"{path}.q_per_channel_scales",
                                     "zero_points": f"{path}.q_per_channel_zero_points"}
    return entry


def _storage_digests(reader, records) -> dict:
    return {r: hashlib.sha1(reader.get_record(r)).hexdigest() for r in sorted(records) if r}


def zip_tensors(path: str) -> dict:
    reader = torch._C.PyTorchFileReader(path)
    names = set(reader.get_all_records())
    out = {}
    rd = _Reader(reader, "", names)
    for pkl, key, start in (("data.pkl", "tensors", ""), ("constants.pkl", "constants", None),
                            ("bytecode.pkl", "bytecode", "bytecode"), ("traced_inputs.pkl", "traced_inputs", "")):
        if pkl not in names:
            continue
        value = rd.load(pkl)
        if start is None:  # constants.pkl: a tuple the code reads as CONSTANTS.c<i>
            found = []
            for i, item in enumerate(value):
                found += tensors_of(item, f"c{i}", rd.storage_of, rd.qparams)
        else:
            found = tensors_of(value, start, rd.storage_of, rd.qparams)
        out[key] = found
    used = {t["record"] for group in out.values() for t in group}
    out["storages"] = {r: len(reader.get_record(r)) for r in used if r}
    out["digests"] = _storage_digests(reader, used)
    return out


def legacy_tensors(path: str) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    found = tensors_of(obj, "", {}, {})
    for t in found:
        t["record"] = None
    seen = {}
    stack = [obj]
    while stack:  # one digest per distinct storage, keyed by the first tensor using it
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            ptr = value.untyped_storage().data_ptr()
            if ptr not in seen:
                seen[ptr] = hashlib.sha1(bytes(value.untyped_storage())).hexdigest()
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return {"tensors": found, "storage_hashes": sorted(seen.values())}


def walk_nodes(block):
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from walk_nodes(sub)


def node_origin(text: str):
    """(code file, code line, column, original file, original line) from Node.sourceRange(), or None."""
    ser = _SERIALIZED.search(text)
    if not ser:
        return None
    column = None
    for line in text[ser.end():].splitlines():
        stripped = line.rstrip()
        if stripped.lstrip().startswith("~") and set(stripped.strip().split(" ")[0]) == {"~"}:
            column = len(stripped) - len(stripped.lstrip())
            break
    head = text[:ser.start()]
    orig = _ORIGINAL.match(head)
    if orig:
        file, line = orig.group(1), int(orig.group(2))
    else:
        frame = _FRAME.match(head)
        if not frame:
            return None
        file, line = frame.group(1), int(frame.group(2))
    return ser.group(1), int(ser.group(2)), column, file, line


# Schemas of torchvision ops (torchvision/csrc/ops/*.cpp) so that archives calling them compile: loading
# needs only the schema, never a kernel. PyPI's torchvision does not work with this torch.
_TORCHVISION = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")
_LIBRARIES = []


def _define_torchvision() -> None:
    if not _LIBRARIES:
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _TORCHVISION:
            lib.define(schema)
        _LIBRARIES.append(lib)


def script_truth(path: str, fast: bool) -> dict:
    _define_torchvision()
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - reported as what torch said
        return {"load_error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
    modules, types = [], {}
    for name, mod in module.named_modules():
        qual = mod._c._type().qualified_name()
        modules.append({"path": name, "type": qual, "training": getattr(mod, "training", None)})
        types.setdefault(qual, mod)
    methods, blame, nodes, ops = {}, {}, {}, {}
    for qual, mod in types.items():
        names = sorted(mod._c._method_names())
        methods[qual] = names
        for name in names:
            graph = mod._c._get_method(name).graph
            count = 0
            counts: dict[str, int] = {}
            for node in walk_nodes(graph):
                count += 1
                if not node.kind().startswith("prim::"):
                    counts[node.kind()] = counts.get(node.kind(), 0) + 1
                # a constant's range is that of whichever equal constant survived pooling, maybe from
                # another statement (or the only node left of a folded one): it says nothing about its line
                where = None if node.kind() == "prim::Constant" else node_origin(node.sourceRange())
                if where and where[3]:
                    code_file, code_line, column, file, line = where
                    blame.setdefault(code_file, {}).setdefault(str(code_line), []).append(
                        [column if column is not None else 10**6, file, line, node.kind()])
            nodes[f"{qual}.{name}"] = count
            ops[f"{qual}.{name}"] = counts
    return {"modules": modules, "methods": methods, "nodes": nodes, "ops": ops, "blame": blame}


def records_truth(path: str) -> dict:
    """Every record torch's zip reader finds, with the SHA-1 of the bytes it reads."""
    reader = torch._C.PyTorchFileReader(path)
    return {"records": {name: hashlib.sha1(reader.get_record(name)).hexdigest() for name in reader.get_all_records()}}


def bytecode_truth(path: str) -> dict:
    """A lite archive's operator tables as torch's mobile reader reads them (op names without overloads)."""
    try:
        ops = torch._C._get_model_ops_and_info(path)
    except Exception as exc:  # noqa: BLE001 - reported as what torch said
        return {"bytecode_error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"}
    return {"bytecode_ops": sorted({name.split(".")[0] for name in ops})}


def pickled_truth(path: str) -> dict:
    """What Python's own unpickler makes of the archive, for archives torch cannot load (checked against
    torch.jit.load and the mobile reader on the ones it can): the module tree of data.pkl (a module is an
    object of a class ``code/`` declares as ``class X(Module)``; ``training`` when the state is a dict) and
    the op names of bytecode.pkl's operator tables."""
    import ast

    reader = torch._C.PyTorchFileReader(path)
    names = set(reader.get_all_records())
    module_classes = set()
    for name in names:
        if name.startswith("code/") and name.endswith(".py"):
            prefix = name[len("code/"):-3].replace("/", ".")
            for stmt in ast.parse(reader.get_record(name).decode("utf-8")).body:
                if isinstance(stmt, ast.ClassDef) and any(ast.unparse(b) == "Module" for b in stmt.bases):
                    module_classes.add(f"{prefix}.{stmt.name}")
    rd = _Reader(reader, "", names)
    out: dict = {}
    if "data.pkl" in names:
        modules, stack = [], [("", rd.load("data.pkl"))]
        while stack:
            path_, obj = stack.pop()
            state = obj.state if isinstance(obj.state, dict) else {}
            training = state.get("training") if isinstance(state.get("training"), bool) else None
            modules.append({"path": path_, "type": obj.qualname, "training": training})
            children = [(f"{path_}.{k}" if path_ else k, v) for k, v in state.items()
                        if isinstance(v, Holder) and v.qualname in module_classes]
            stack.extend(reversed(children))
        out["pickled_modules"] = modules
    if "bytecode.pkl" in names:
        value = rd.load("bytecode.pkl")
        ops = set()
        for function in value[1:]:
            table = dict(function[1])
            ops.update(op[0] for op in table["operators"])
        out["pickled_bytecode_ops"] = sorted(ops)
    return out


def truth(path: str, fast: bool) -> dict:
    out: dict = {"path": path}
    if not zipfile.is_zipfile(path):
        out["kind"] = "legacy"
        out.update(legacy_tensors(path))
        return out
    out["kind"] = "zip"
    out.update(records_truth(path))
    if "model.json" in out["records"] and "data.pkl" not in out["records"]:
        out["model_json"] = True  # before torch 1.4: tensors in model.json, which torch 2.13 no longer reads
    if "bytecode.pkl" in out["records"]:
        out.update(bytecode_truth(path))
    out.update(zip_tensors(path))
    out.update(script_truth(path, fast))
    try:
        out.update(pickled_truth(path))
    except Exception as exc:  # noqa: BLE001
        out["pickled_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def main() -> None:
    args = sys.argv[1:]
    fast = "--fast" in args
    for path in [a for a in args if a != "--fast"]:
        try:
            result = truth(path, fast)
        except Exception as exc:  # noqa: BLE001
            result = {"path": path, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
