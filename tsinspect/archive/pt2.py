"""torch.export archives (``torch.export.save``, ``.pt2``) read as data: never imported, never unpickled.

Layout (torch/csrc/export/pt2_archive_constants.h, archive_version 0):

- ``models/<name>.json``: the serialized ExportedProgram (torch/_export/serde/schema.py): the graph (nodes
  with targets, named arguments, outputs and metadata such as ``stack_trace`` and ``nn_module_stack``),
  ``tensor_values`` (dtype, sizes that may be symbols, strides), the signature telling parameters, buffers,
  tensor constants, custom objects and user inputs apart, ``range_constraints`` of the symbols, versions.
- ``data/weights/<name>_weights_config.json`` and ``data/constants/<name>_constants_config.json``: FQN ->
  payload (``path_name`` in the folder, ``use_pickle``, ``tensor_meta``). Raw payloads are storage bytes;
  pickled ones (``use_pickle``, ``custom_obj_*``, ``opaque_obj_*``) are code when torch loads them.
- ``data/weights/<name>.pt`` / ``data/constants/<name>.pt``: the legacy layout (a torch.save per model).
- ``data/sample_inputs/<name>.pt``: a nested torch.save zip of the example inputs.
- ``data/aotinductor/<name>/...``: AOTInductor compiled code (shared libraries); ``extra/``: user files.

Every JSON field is read as optional: a field an older schema lacks gets torch's default, and a field this
reader does not know (a newer schema) is listed, so "what a newer version carries that we skip" is said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tsinspect.archive import records as rk
from tsinspect.archive.problems import Problem
from tsinspect.archive.reader import Archive, Record
from tsinspect.archive.tensors import TensorInfo
from tsinspect.archive.text import printable

KNOWN_SCHEMA = (8, 20)  # torch 2.13's torch/_export/serde/schema.py SCHEMA_VERSION
KNOWN_ARCHIVE_VERSION = "0"
JSON_CAP = 256 * 1024 * 1024
MAX_NODES = 2_000_000  # over all graphs of one program: a bound for hostile JSON
MAX_DEPTH = 64  # nested subgraphs (cond inside map inside ...)

# ScalarType enum values -> (torch short name, itemsize); schema.py ScalarType
DTYPES = {0: ("unknown", 0), 1: ("uint8", 1), 2: ("int8", 1), 3: ("int16", 2), 4: ("int32", 4), 5: ("int64", 8),
          6: ("float16", 2), 7: ("float32", 4), 8: ("float64", 8), 9: ("complex32", 4), 10: ("complex64", 8),
          11: ("complex128", 16), 12: ("bool", 1), 13: ("bfloat16", 2), 28: ("uint16", 2),
          29: ("float8_e4m3fn", 1), 30: ("float8_e5m2", 1), 31: ("float8_e4m3fnuz", 1), 32: ("float8_e5m2fnuz", 1),
          33: ("float8_e8m0fnu", 1), 34: ("uint32", 4), 35: ("uint64", 8)}
# torch's own short names in printed graphs ("f32[s77, 3]")
SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "int64": "i64", "int32": "i32",
         "int16": "i16", "int8": "i8", "uint8": "u8", "bool": "b8", "complex64": "c64", "complex128": "c128"}

# Fields of each schema dataclass torch 2.13 writes (schema 8.20); anything else is from a newer schema.
# Older schemas' fields are known too (docs/archive-format.md, "Schema versions"): ``dialect`` (5.x) and
# ``verifier`` (7.x) before ``verifiers``, ``equality_constraints`` and ``call_spec`` (schema 1, torch 2.1).
_KNOWN_FIELDS = {
    "program": {"graph_module", "opset_version", "range_constraints", "schema_version", "verifiers",
                "torch_version", "guards_code", "dialect", "verifier", "equality_constraints"},
    "graph_module": {"graph", "signature", "module_call_graph", "metadata", "treespec_namedtuple_fields",
                     "call_spec"},
    "graph": {"inputs", "outputs", "nodes", "tensor_values", "sym_int_values", "sym_bool_values",
              "is_single_tensor_return", "custom_obj_values", "sym_float_values"},
    "node": {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"},
}
INPUT_KINDS = {"user_input": "user_input", "parameter": "parameter", "buffer": "buffer",
               "tensor_constant": "constant", "custom_obj": "custom_object", "token": "token",
               "constant_input": "constant_input"}


@dataclass
class Pt2Tensor:
    """A weight or constant payload described by a config (or a tensor of the graph's signature)."""

    name: str  # FQN: "sub.lin.weight"
    kind: str  # parameter / buffer / constant / custom_object
    dtype: str
    shape: list
    stride: list
    offset: int | str
    requires_grad: bool
    device: str
    record: str | None  # "data/weights/weight_0"
    nbytes: int  # bytes the view covers (0 when a size is symbolic or unknown)
    pickled: bool = False
    problem: str | None = None

    def to_json(self) -> dict:
        return {"name": printable(self.name), "kind": self.kind, "dtype": self.dtype, "shape": self.shape,
                "stride": self.stride, "offset": self.offset, "requires_grad": self.requires_grad,
                "device": self.device, "record": self.record, "nbytes": self.nbytes, "pickled": self.pickled,
                "problem": self.problem}


@dataclass
class SignatureEntry:
    """One graph input or output and what it stands for."""

    name: str  # the graph value ("p_sub_lin_weight", "x")
    kind: str  # user_input / parameter / buffer / constant / ... ; outputs: user_output / buffer_mutation / ...
    target: str | None = None  # the FQN it binds ("sub.lin.weight"), or the constant's value
    type: str | None = None  # "f32[s77, 4]" from the graph's tensor_values

    def to_json(self) -> dict:
        return {"name": printable(self.name), "kind": self.kind, "type": self.type,
                "target": printable(self.target) if self.target is not None else None}


@dataclass
class Pt2Program:
    """One ``models/<name>.json``."""

    name: str
    record: str
    schema_version: tuple[int, int] | None
    torch_version: str | None
    opset_version: dict[str, int]
    verifiers: list[str]
    range_constraints: dict[str, tuple[int | None, int | None]]
    inputs: list[SignatureEntry]
    outputs: list[SignatureEntry]
    graph: dict = field(repr=False)  # the serialized graph, read by ``build_graph``
    node_count: int = 0
    weights: list[Pt2Tensor] = field(default_factory=list)
    constants: list[Pt2Tensor] = field(default_factory=list)
    sample_inputs: str | None = None  # record name
    module_paths: list[str] = field(default_factory=list)  # from module_call_graph: the modules exported
    unknown_fields: list[str] = field(default_factory=list)  # fields of a newer schema this reader skips

    @property
    def schema_text(self) -> str:
        return f"{self.schema_version[0]}.{self.schema_version[1]}" if self.schema_version else "?"

    def to_json(self) -> dict:
        return {"name": printable(self.name), "record": printable(self.record),
                "schema_version": self.schema_text, "torch_version": self.torch_version,
                "opset_version": self.opset_version, "verifiers": self.verifiers,
                "range_constraints": {printable(k): {"min": lo, "max": hi}
                                      for k, (lo, hi) in self.range_constraints.items()},
                "inputs": [e.to_json() for e in self.inputs], "outputs": [e.to_json() for e in self.outputs],
                "nodes": self.node_count, "weights": [t.to_json() for t in self.weights],
                "constants": [t.to_json() for t in self.constants],
                "sample_inputs": self.sample_inputs, "modules": [printable(m) for m in self.module_paths],
                "unknown_fields": self.unknown_fields}


@dataclass
class Pt2Contents:
    archive_version: str | None
    programs: list[Pt2Program]
    aoti: list[str]  # records under data/aotinductor/
    native: list[str]  # of those, shared libraries (native code torch would dlopen)
    layout: str = "pt2"  # "pt2" (the package format) or "legacy" (the earlier zip: serialized_exported_program.json)

    def facts(self) -> list[tuple[str, str]]:
        """(label, text) rows for the summaries of reports and the TUI: each program, its dynamic shapes."""
        out = []
        for p in self.programs:
            users = [f"{e.name}: {e.type}" for e in p.inputs if e.kind == "user_input"]
            out.append(("program", f"{p.name}: schema {p.schema_text}, torch {p.torch_version}, "
                                   f"{p.node_count} nodes; inputs {', '.join(users) or 'none'}"))
            out.append(("dynamic", ", ".join(f"{k} in [{lo}, {'inf' if hi is None else hi}]"
                                             for k, (lo, hi) in p.range_constraints.items())
                        or "none: every shape is fixed"))
        if self.native:
            out.append(("native code", f"{len(self.native)} AOTInductor shared libraries (never loaded)"))
        return out

    def to_json(self) -> dict:
        return {"archive_version": self.archive_version, "layout": self.layout,
                "programs": [p.to_json() for p in self.programs],
                "aotinductor": [printable(n) for n in self.aoti],
                "native_libraries": [printable(n) for n in self.native]}


# ------------------------------------------------------------------------------------------------ reading


def read_pt2(archive: Archive) -> Pt2Contents:
    """Everything the views show, from the JSON records; problems go to ``archive.problems``."""
    if archive.export_zip:
        return _read_export_zip(archive)
    names = [r.name for r in archive.torch_records()]
    version_record = archive.by_name.get("archive_version")
    version = None
    if version_record is not None:
        raw = archive.read_optional(version_record, 64)
        version = printable(raw.decode("utf-8", "replace").strip()) if raw is not None else None
        if version is not None and version != KNOWN_ARCHIVE_VERSION:
            archive.problems.append(Problem("pt2_archive_version", "archive_version",
                                            f"archive version {version}: tsinspect knows version "
                                            f"{KNOWN_ARCHIVE_VERSION} (torch 2.13 refuses any other)"))
    programs = []
    for name in names:
        if name.startswith("models/") and name.endswith(".json"):
            program = _read_program(archive, archive.by_name.get(name), name[len("models/"):-len(".json")])
            if program is not None:
                _payloads(archive, program, names)
                programs.append(program)
    aoti = [n for n in names if n.startswith("data/aotinductor/")]
    native = [n for n in aoti if rk.classify(n) == rk.NATIVE_CODE]
    return Pt2Contents(version, programs, aoti, native)


def _read_export_zip(archive: Archive) -> Pt2Contents:
    """The layout torch.export.save wrote before the pt2 package format, at the zip's root:
    ``serialized_exported_program.json``, the state dict and constants as torch.save zips
    (``serialized_state_dict.pt`` / ``serialized_constants.pt``; named ``.json`` by torch 2.1 and 2.2, which
    had no constants record in 2.1), ``serialized_example_inputs.pt`` and ``version`` (the schema: "1" in 2.1,
    then "<major>.<minor>"), and ``extra_files/``. torch.export.load reads them by exact name with Python's
    zipfile, which takes the last of duplicate names."""
    last = {r.entry.name: r for r in archive.records}
    program = _read_program(archive, last["serialized_exported_program.json"], "model")
    if program is None:
        return Pt2Contents(None, [], [], [], layout="legacy")
    for stem, dest, label in (("serialized_state_dict", program.weights, "weights"),
                              ("serialized_constants", program.constants, "constants")):
        name = next((f"{stem}{ext}" for ext in (".pt", ".json") if f"{stem}{ext}" in last), None)
        if name is not None:
            dest.append(Pt2Tensor("(state dict)" if label == "weights" else "(constants)", label, "?", [], [],
                                  0, False, "?", name, last[name].size, pickled=True))
    program.sample_inputs = "serialized_example_inputs.pt" if "serialized_example_inputs.pt" in last else None
    return Pt2Contents(None, [program], [], [], layout="legacy")


def _load_json(archive: Archive, record: Record | None) -> Any:
    raw = archive.read_optional(record, JSON_CAP)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        archive.problems.append(Problem("bad_json", record.display_name, f"not valid JSON: {str(exc)[:160]}"))
        return None


def _read_program(archive: Archive, record: Record | None, model: str) -> Pt2Program | None:
    if record is None:
        return None
    name = record.name
    doc = _load_json(archive, record)
    if doc is None:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("graph_module"), dict):
        archive.problems.append(Problem("bad_exported_program", printable(name),
                                        "not a serialized ExportedProgram (no graph_module object)"))
        return None
    gm = doc["graph_module"]
    graph = gm.get("graph") if isinstance(gm.get("graph"), dict) else {}
    unknown = sorted({f"ExportedProgram.{k}" for k in doc if k not in _KNOWN_FIELDS["program"]}
                     | {f"GraphModule.{k}" for k in gm if k not in _KNOWN_FIELDS["graph_module"]}
                     | {f"Graph.{k}" for k in graph if k not in _KNOWN_FIELDS["graph"]})
    sv = doc.get("schema_version")
    schema = None
    if isinstance(sv, dict) and isinstance(sv.get("major"), int) and isinstance(sv.get("minor"), int):
        schema = (sv["major"], sv["minor"])
    elif isinstance(sv, int) and not isinstance(sv, bool):  # schema 1 (torch 2.1) wrote one integer
        schema = (sv, 0)
    program = Pt2Program(
        name=model, record=name, schema_version=schema,
        torch_version=as_text(doc.get("torch_version", "<=2.4")),
        opset_version={printable(str(k)): v for k, v in as_dict(doc.get("opset_version")).items() if isinstance(v, int)},
        verifiers=[printable(str(v)) for v in as_list(doc.get("verifiers"))]
        or [printable(doc[k]) for k in ("verifier", "dialect") if isinstance(doc.get(k), str)][:1],  # older names
        range_constraints=_ranges(doc.get("range_constraints")),
        inputs=[], outputs=[], graph=graph,
        module_paths=[as_text(e.get("fqn")) for e in as_list(gm.get("module_call_graph")) if isinstance(e, dict)])
    signature = as_dict(gm.get("signature"))
    if "input_specs" in signature or "output_specs" in signature:
        program.inputs = [_input_entry(spec) for spec in as_list(signature.get("input_specs"))]
        program.outputs = [_output_entry(spec) for spec in as_list(signature.get("output_specs"))]
    else:
        program.inputs, program.outputs = _mapping_signature(signature, graph)
    metas = as_dict(graph.get("tensor_values"))
    for entry in program.inputs + program.outputs:
        if entry.name in metas:
            entry.type = type_text(metas[entry.name])
    try:
        unknown += sorted(_count_nodes(program))
    except GraphTooLarge as exc:
        archive.problems.append(Problem("graph_too_large", printable(name), str(exc)))
    program.unknown_fields = unknown
    if schema is None:
        archive.problems.append(Problem("pt2_schema_version", printable(name), "no schema_version: not read as "
                                        "torch writes it; fields were read where present"))
    elif schema[0] < KNOWN_SCHEMA[0] and schema != (0, 0):
        archive.problems.append(Problem(
            "pt2_schema_older", printable(name),
            f"schema {program.schema_text}: torch 2.13 refuses to load it (the major version must be "
            f"{KNOWN_SCHEMA[0]}); tsinspect reads it, giving absent fields torch's defaults"))
    elif schema > KNOWN_SCHEMA:
        skipped = ", ".join(program.unknown_fields[:12]) or "none seen"
        archive.problems.append(Problem(
            "pt2_schema_newer", printable(name),
            f"schema {program.schema_text} is newer than the {KNOWN_SCHEMA[0]}.{KNOWN_SCHEMA[1]} tsinspect reads "
            f"(torch 2.13); fields it skipped: {skipped}"))
    return program


def as_text(value: Any) -> str:
    return printable(value) if isinstance(value, str) else ""


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _ranges(value: Any) -> dict[str, tuple[int | None, int | None]]:
    out = {}
    for sym, rng in as_dict(value).items():
        rng = as_dict(rng)
        lo, hi = rng.get("min_val"), rng.get("max_val")
        out[str(sym)] = (lo if isinstance(lo, int) else None, hi if isinstance(hi, int) else None)
    return out


def union_member(value: Any) -> tuple[str, Any]:
    """A serialized _Union: one key. (Older writers left other keys at null; take the non-null one.)"""
    if not isinstance(value, dict) or not value:
        return "", None
    for key, item in value.items():
        if item is not None:
            return str(key), item
    key = next(iter(value))
    return str(key), value[key]


def _input_entry(spec: Any) -> SignatureEntry:
    tag, body = union_member(spec)
    body = as_dict(body)
    kind = INPUT_KINDS.get(tag, tag or "unknown")
    if tag == "user_input":
        return SignatureEntry(arg_name(body.get("arg")), kind)
    if tag == "constant_input":
        _, value = union_member(body.get("value"))
        return SignatureEntry(as_text(body.get("name")), kind, repr(value))
    target = next((body[k] for k in ("parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name")
                   if isinstance(body.get(k), str)), None)
    entry = SignatureEntry(arg_name(body.get("arg")), kind, target)
    if tag == "buffer" and body.get("persistent") is False:
        entry.kind = "buffer (not persistent)"
    return entry


def _mapping_signature(sig: dict, graph: dict) -> tuple[list[SignatureEntry], list[SignatureEntry]]:
    """Schema 1 (torch 2.1): the signature as name mappings (``inputs_to_parameters``, ``inputs_to_buffers``,
    ``user_inputs``, ``user_outputs``, ``buffers_to_mutate``), ordered here by the graph's inputs and outputs."""
    kinds = [("parameter", as_dict(sig.get("inputs_to_parameters"))),
             ("buffer", as_dict(sig.get("inputs_to_buffers"))),
             ("constant", as_dict(sig.get("inputs_to_lifted_tensor_constants")))]
    users = {u for u in as_list(sig.get("user_inputs")) if isinstance(u, str)}
    inputs = []
    for arg in as_list(graph.get("inputs")):
        name = arg_name(arg)
        kind, target = next(((k, m[name]) for k, m in kinds if isinstance(m.get(name), str)),
                            ("user_input" if name in users else "unknown", None))
        inputs.append(SignatureEntry(name, kind, printable(target) if target else None))
    mutated = as_dict(sig.get("buffers_to_mutate"))
    user_outputs = {u for u in as_list(sig.get("user_outputs")) if isinstance(u, str)}
    outputs = []
    for arg in as_list(graph.get("outputs")):
        name = arg_name(arg)
        if isinstance(mutated.get(name), str):
            outputs.append(SignatureEntry(name, "buffer_mutation", printable(mutated[name])))
        else:
            outputs.append(SignatureEntry(name, "user_output" if name in user_outputs else "unknown"))
    return inputs, outputs


def _output_entry(spec: Any) -> SignatureEntry:
    tag, body = union_member(spec)
    body = as_dict(body)
    target = next((body[k] for k in ("buffer_name", "parameter_name", "user_input_name")
                   if isinstance(body.get(k), str)), None)
    return SignatureEntry(arg_name(body.get("arg")), tag or "unknown", target)


def arg_name(arg: Any) -> str:
    """The value name of an Argument or a TensorArgument/TokenArgument/CustomObjArgument."""
    arg = as_dict(arg)
    if isinstance(arg.get("name"), str):
        return printable(arg["name"])
    tag, body = union_member(arg)
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        return printable(body["name"])
    if isinstance(body, dict) and isinstance(body.get("as_name"), str):  # a SymInt/SymBool/SymFloat argument
        return printable(body["as_name"])
    if tag in ("as_name", "as_tensor") and isinstance(body, str):  # as_sym_ints items; schema 1's optional tensors
        return printable(body)
    if tag == "as_none":
        return "None"
    return printable(json.dumps(body)[:60]) if body is not None else "?"


# ------------------------------------------------------------------------------------------------ tensors


def sym_text(value: Any) -> int | str:
    """A serialized SymInt: its int, or its expression text ("s77", "2*s0 + 1"); a plain int (schema 1's
    storage offset) as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    tag, body = union_member(value)
    if tag == "as_int" and isinstance(body, int):
        return body
    if tag == "as_expr":
        text = as_dict(body).get("expr_str")
        return printable(expr_text(text)) if isinstance(text, str) else "?"
    return "?"


_INFIX = {"Add": " + ", "Mul": "*", "Pow": "**"}


def expr_text(srepr: str) -> str:
    """A SymPy ``srepr`` as torch writes symbolic sizes (``Add(Symbol('s0', integer=True), Integer(1))``)
    read as math: ``s0 + 1``. Parsed with ``ast`` (never evaluated); anything unexpected stays as written."""
    import ast

    if len(srepr) > 4096:
        return srepr
    try:
        tree = ast.parse(srepr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return srepr
    # iterative post-order: (node, converted children so far)
    out: list[str] = []
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, ast.Constant):
            out.append(str(node.value))
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return srepr
        name, args = node.func.id, node.args
        if name == "Symbol" and args and isinstance(args[0], ast.Constant):
            out.append(str(args[0].value))
            continue
        if not done:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(args))
            continue
        parts = out[len(out) - len(args):] if args else []
        del out[len(out) - len(parts):]
        if name in ("Integer", "Float") and len(parts) == 1:
            out.append(parts[0])
        elif name == "Rational" and len(parts) == 2:
            out.append(f"{parts[0]}/{parts[1]}")
        elif name in _INFIX:
            out.append("(" + _INFIX[name].join(parts) + ")" if len(stack) else _INFIX[name].join(parts))
        else:
            out.append(f"{name}({', '.join(parts)})")
    return out[0] if len(out) == 1 else srepr


def tensor_meta(meta: Any) -> tuple[str, list, list, int | str, bool, str]:
    """(dtype, shape, stride, storage offset, requires_grad, device) of a serialized TensorMeta (schema 1 wrapped
    it: ``{"meta": TensorMeta}``)."""
    meta = as_dict(meta)
    if "dtype" not in meta and isinstance(meta.get("meta"), dict):
        meta = meta["meta"]
    code = meta.get("dtype")
    dtype = DTYPES[code][0] if isinstance(code, int) and code in DTYPES else f"scalar_type_{printable(str(code))[:20]}"
    device = as_dict(meta.get("device"))
    dev = as_text(device.get("type")) or "?"
    if isinstance(device.get("index"), int):
        dev += f":{device['index']}"
    return (dtype, [sym_text(s) for s in as_list(meta.get("sizes"))], [sym_text(s) for s in as_list(meta.get("strides"))],
            sym_text(meta.get("storage_offset")) if "storage_offset" in meta else 0,
            bool(meta.get("requires_grad")), dev)


def type_text(meta: Any) -> str:
    """``f32[s77, 3]``, as torch prints a graph value."""
    dtype, shape, *_ = tensor_meta(meta)
    return f"{SHORT.get(dtype, dtype)}[{', '.join(str(s) for s in shape)}]"


def _extent(shape: list, stride: list, offset: int | str, itemsize: int) -> int | None:
    """Bytes from the storage's start to the view's end; None when symbolic."""
    if not all(isinstance(x, int) for x in [*shape, *stride, offset]):
        return None
    if any(s == 0 for s in shape):
        return 0
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    return (last + 1) * itemsize


def _payloads(archive: Archive, program: Pt2Program, names: list[str]) -> None:
    for folder, kinds, dest in (("weights", "weights_config", program.weights),
                                ("constants", "constants_config", program.constants)):
        legacy = f"data/{folder}/{program.name}.pt"
        if legacy in names:  # older layout: one torch.save of the whole state dict / constants
            dest.append(Pt2Tensor("(state dict)" if folder == "weights" else "(constants)", folder, "?", [], [], 0,
                                  False, "?", legacy,
                                  archive.by_name[legacy].size, pickled=True))
            continue
        config_name = f"data/{folder}/{program.name}_{kinds}.json"
        config = _load_json(archive, archive.by_name.get(config_name)) if config_name in names else None
        if config is None:
            continue
        kind_of = {e.target: e.kind for e in program.inputs if e.target}
        for fqn, meta in as_dict(as_dict(config).get("config")).items():
            meta = as_dict(meta)
            path = as_text(meta.get("path_name"))
            record_name = f"data/{folder}/{path}"
            record = archive.by_name.get(record_name)
            pickled = bool(meta.get("use_pickle")) or path.startswith(("custom_obj_", "opaque_obj_"))
            kind = kind_of.get(fqn) or ("parameter" if meta.get("is_param") else
                                        "buffer" if folder == "weights" else "constant")
            if path.startswith(("custom_obj_", "opaque_obj_")):
                kind = "custom_object"
            tensor = _payload_tensor(fqn, kind, meta.get("tensor_meta"), record_name, record, pickled)
            if tensor.problem:
                archive.problems.append(Problem("bad_tensor", printable(fqn), tensor.problem))
            dest.append(tensor)
    sample = f"data/sample_inputs/{program.name}.pt"
    program.sample_inputs = sample if sample in names else None


def _payload_tensor(fqn: str, kind: str, meta: Any, record_name: str, record: Record | None,
                    pickled: bool) -> Pt2Tensor:
    if meta is None:  # custom objects, pickled tensor subclasses
        return Pt2Tensor(fqn, kind, "object", [], [], 0, False, "?", record_name, record.size if record else 0,
                         pickled=pickled, problem=None if record else f"record {printable(record_name)} is absent")
    dtype, shape, stride, offset, grad, device = tensor_meta(meta)
    itemsize = next((size for name, size in DTYPES.values() if name == dtype), 0)
    extent = _extent(shape, stride, offset, itemsize)
    nbytes = itemsize
    for n in shape:
        nbytes = nbytes * n if isinstance(n, int) else 0
    tensor = Pt2Tensor(fqn, kind, dtype, shape, stride, offset, grad, device, record_name, nbytes, pickled)
    if record is None:
        tensor.problem = f"record {printable(record_name)} is absent"
    elif not pickled and extent is not None and extent > record.size:
        tensor.problem = (f"the view needs {extent} bytes, {printable(record_name)} holds {record.size}")
    return tensor


def tensor_infos(payloads: list[Pt2Tensor], archive: Archive) -> list[TensorInfo]:
    """The raw (not pickled) payloads with concrete shapes as TensorInfo, the record shared by aliases once."""
    out = []
    for t in payloads:
        itemsize = next((size for name, size in DTYPES.values() if name == t.dtype), 0)
        if t.pickled or not itemsize or not all(isinstance(x, int) for x in [*t.shape, *t.stride, t.offset]):
            continue
        record = archive.by_name.get(t.record) if t.record else None
        key = t.record.rsplit("/", 1)[-1] if t.record else "?"
        out.append(TensorInfo(t.name, t.dtype, list(t.shape), list(t.stride), t.offset, key,
                              (record.size // itemsize) if record else 0, t.device, itemsize, t.requires_grad,
                              record=record.name if record else t.record, problem=t.problem))
    return out


# ------------------------------------------------------------------------------------------------ graphs


class GraphTooLarge(Exception):
    pass


def subgraphs(node: dict) -> list[tuple[str, dict]]:
    """(name, serialized graph) of each ``as_graph`` argument of a node (the branches of ``cond``, ...)."""
    out = []
    for named in as_list(node.get("inputs")):
        tag, body = union_member(as_dict(named).get("arg"))
        if tag == "as_graph" and isinstance(body, dict) and isinstance(body.get("graph"), dict):
            out.append((as_text(body.get("name")) or "graph", body["graph"]))
    return out


def walk_nodes(graph: dict, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH):
    """Every serialized node with its subgraph depth, in pre-order, iteratively; GraphTooLarge past the caps."""
    stack = [(iter(as_list(graph.get("nodes"))), 0)]
    seen = 0
    while stack:
        nodes, depth = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        if not isinstance(node, dict):
            continue
        seen += 1
        if seen > max_nodes:
            raise GraphTooLarge(f"more than {max_nodes} nodes; the rest is not read")
        yield node, depth
        subs = subgraphs(node)
        if subs and depth + 1 > max_depth:
            raise GraphTooLarge(f"subgraphs nested deeper than {max_depth}; the rest is not read")
        for _, sub in reversed(subs):
            stack.append((iter(as_list(sub.get("nodes"))), depth + 1))


def _count_nodes(program: Pt2Program) -> set[str]:
    """Count the nodes; return the node fields of a newer schema seen on the way."""
    unknown: set[str] = set()
    for node, _ in walk_nodes(program.graph):
        program.node_count += 1
        unknown.update(f"Node.{k}" for k in node if k not in _KNOWN_FIELDS["node"])
    return unknown


def target_kind(target: str) -> str:
    """``torch.ops.aten.linear.default`` -> ``aten::linear.default``; ``torch.ops.higher_order.cond`` ->
    ``higher_order::cond``; other targets (``_operator.getitem``) as they are."""
    if target.startswith("torch.ops."):
        parts = target[len("torch.ops."):].split(".", 1)
        if len(parts) == 2:
            return f"{parts[0]}::{parts[1]}"
    return target


def source_of(metadata: dict) -> tuple[str | None, int | None, list[str]]:
    """(file, line, frames innermost first) from a node's ``stack_trace``: the user's line is the innermost
    frame outside torch itself and outside FX's generated ``<eval_with_key>`` code."""
    text = metadata.get("stack_trace")
    if not isinstance(text, str):
        return None, None, []
    frames = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("File \""):
            continue
        file, _, rest = line[len("File \""):].partition("\", line ")
        number = rest.split(",", 1)[0]
        if number.isdigit():
            frames.append((printable(file), int(number)))
    frames.reverse()
    user = next(((f, n) for f, n in frames if not _torch_frame(f)), (None, None))
    return user[0], user[1], [f"{f}:{n}" for f, n in frames]


def _torch_frame(file: str) -> bool:
    """torch's own code: installed, or named relative to torch (``torch/fx/passes/runtime_assert.py`` on the
    nodes its passes insert)."""
    return file.startswith(("<eval_with_key>", "torch/")) or "/site-packages/torch/" in file \
        or "/torch/nn/" in file or "/torch/_" in file


# the nn_module_stack torch gives nodes its passes insert (runtime asserts, sym_size): no module at all
EMPTY_STACK = "_empty_nn_module_stack_from_metadata_hook"


def module_path(metadata: dict) -> str:
    """The innermost module of a node's ``nn_module_stack`` ("key,path,type;..."): its path, e.g. ``sub.lin``."""
    text = metadata.get("nn_module_stack")
    if not isinstance(text, str) or not text:
        return ""
    last = text.split(";")[-1].split(",")
    path = printable(",".join(last[1:-1])) if len(last) >= 3 else ""
    return "" if path == EMPTY_STACK else path
