"""The archive summary: one result object behind ``info``, its JSON, the TUI's overview and the reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tsinspect.archive import records as rk
from tsinspect.archive.madeby import MadeBy, made_by
from tsinspect.archive.code import CodeIndex, MethodInfo, index_code
from tsinspect.archive.modules import ModuleInfo, module_tree, parameter_kinds
from tsinspect.archive.pickles import PDict, PTuple
from tsinspect.archive.problems import Problem
from tsinspect.archive.reader import SMALL_CAP, Archive, Record
from tsinspect.archive.tensors import TensorInfo, collect
from tsinspect.archive.text import json_dumps, json_safe, printable
from tsinspect.collector import paused

if TYPE_CHECKING:  # pt2.py is imported only for a pt2 archive (2.4 ms of every info's start)
    from tsinspect.archive.pt2 import Pt2Contents

SCHEMA = "tsinspect.info/1"


@dataclass
class ArchiveSummary:
    path: str
    file_size: int
    container: str
    format: str
    prefix: str
    note: str | None
    versions: dict[str, str | int]
    records: list[Record]
    code_files: list[str]
    extra_files: list[Record]
    tensors: list[TensorInfo]  # from data.pkl (the model's state), plus bytecode/torch.save equivalents
    constants: list[TensorInfo]  # constants.pkl, referenced from code as CONSTANTS.c<i>
    traced_inputs: list[TensorInfo]  # example inputs a trace was made with (traced_inputs.pkl)
    modules: ModuleInfo | None
    methods: list[MethodInfo]
    tensor_kinds: dict[str, str]  # tensor name -> parameter / buffer / attribute
    problems: list[Problem]
    code: CodeIndex = field(repr=False)
    pt2: Pt2Contents | None = None  # a torch.export archive's programs (docs/archive-format.md)
    made_by: MadeBy | None = None  # traced or scripted, and how sure (archive.madeby)

    @property
    def weight_bytes(self) -> int:
        """Bytes of distinct storages the model's tensors use."""
        storages = {(t.record, t.storage_key): t.storage_numel * t.itemsize  # storage_nbytes, in line
                    for t in self.tensors + self.constants}
        return sum(storages.values())

    def bytes_by_module(self) -> dict[str, tuple[int, int]]:
        """Module path ("" for the root) -> (tensors, bytes of distinct storages) over its whole subtree."""
        storages: dict[str, dict] = {}
        counts: Counter = Counter()
        for t in self.tensors:
            parts = t.name.split(".")[:-1]
            for depth in range(len(parts) + 1):
                path = ".".join(parts[:depth])
                storages.setdefault(path, {})[(t.record, t.storage_key)] = t.storage_nbytes
                counts[path] += 1
        return {path: (counts[path], sum(held.values())) for path, held in storages.items()}

    def dtype_counts(self) -> dict[str, int]:
        return dict(Counter(t.dtype for t in self.tensors).most_common())

    def to_json(self) -> dict:
        with paused():  # a dict per tensor, module and record, over a heap the collector would rescan
            return self._to_json()

    def json_text(self, indent: int | None = None) -> str:
        """``json_dumps(self.to_json(), indent=indent)``, the same text; compact, the rows of the records,
        tensors and modules are written from templates (:mod:`tsinspect.archive.jsonrows`) instead of a dict
        each."""
        return "".join(self.json_pieces(indent))

    def json_pieces(self, indent: int | None = None) -> list[str]:
        """``json_text(indent)`` in pieces, for a writer to write one by one: the text is megabytes long at
        10,000 tensors, and joining it costs as much as writing it."""
        if indent is not None:
            return [json_dumps(self.to_json(), indent=indent)]
        from tsinspect.archive.jsonrows import module_tree, pieces, record_rows, tensor_rows

        with paused():
            doc = self._to_json(rows=False)
            doc["records"] = record_rows(self.records)
            doc["tensors"] = tensor_rows(self.tensors, self.tensor_kinds)
            doc["modules"] = module_tree(self.modules) if self.modules else None
            return [json_safe(piece) for piece in pieces(doc)]  # what it escapes is one character at a time

    def _to_json(self, rows: bool = True) -> dict:
        """The JSON object; without ``rows``, "records", "tensors" and "modules" are left None (json_text writes
        them)."""
        return {
            "schema": SCHEMA,
            "path": printable(self.path),
            "file_size": self.file_size,
            "container": self.container,
            "format": self.format,
            "top_folder": self.prefix.rstrip("/"),
            "note": self.note,
            "versions": self.versions,
            "records": [{"name": r.display_name, "kind": r.kind, "size": r.size,
                         "compressed_size": r.compressed_size, "compression": r.entry.method_name}
                        for r in self.records] if rows else None,
            "code_files": self.code_files,
            "extra_files": [{"name": r.display_name[len("extra/"):], "size": r.size} for r in self.extra_files],
            "tensors": [t.to_json(kind=self.tensor_kinds.get(t.name, "attribute")) for t in self.tensors]
            if rows else None,
            "constants": [t.to_json() for t in self.constants],
            "traced_inputs": [t.to_json() for t in self.traced_inputs],
            "weight_bytes": self.weight_bytes,
            "modules": self.modules.to_json() if self.modules and rows else None,
            "methods": [m.to_json() for m in self.methods],
            "made_by": self.made_by.to_json() if self.made_by else None,
            "problems": [p.to_json() for p in self.problems],
            "pt2": self.pt2.to_json() if self.pt2 else None,
        }


def summarize(archive: Archive) -> ArchiveSummary:
    """Read what the summary needs: directory, small records and pickles; never tensor storages."""
    with paused():  # tens of thousands of tensors, modules and names: full collections would rescan them all
        return _summarize(archive)


def _summarize(archive: Archive) -> ArchiveSummary:
    code = index_code(archive) if archive.zip else CodeIndex()
    state = _torch_state(archive, code)
    if state is not None:  # the same tensors and tree, read without walking (see archive/torchstate.py)
        tensors, modules = state
        _check_storages(archive, tensors)
    else:
        data = archive.pickle_optional("data.pkl")
        tensors = _tensors(archive, "data.pkl", data.value if data else None)
        modules = module_tree(data.value, code) if data else None
    constants = []
    consts = archive.pickle_optional("constants.pkl")
    if consts is not None:
        # constants.pkl is a tuple; code refers to its items as CONSTANTS.c<i>
        items = consts.value.items if isinstance(consts.value, PTuple) else []
        constants = [t for i, item in enumerate(items) for t in _tensors(archive, "constants.pkl", item, f"c{i}")]
    bytecode = archive.pickle_optional("bytecode.pkl")
    if bytecode is not None:
        tensors += _new_views(tensors + constants, _tensors(archive, "bytecode.pkl", bytecode.value, "bytecode"))
    inputs = archive.pickle_optional("traced_inputs.pkl")
    traced = _tensors(archive, "traced_inputs.pkl", inputs.value if inputs else None, check_data=False)
    pt2 = None
    if archive.format == rk.PT2:
        from tsinspect.archive.pt2 import read_pt2, tensor_infos

        pt2 = read_pt2(archive)
    kinds = parameter_kinds(modules)
    model_json = json_note = None
    if archive.format == rk.TORCHSCRIPT_JSON:  # torch 1.0-1.3 only: imported then (it imports json, 3 ms)
        from tsinspect.archive import modeljson

        model_json = modeljson.read_model_json(archive)
        json_note = modeljson.NOTE if model_json else None
    if model_json is not None:  # torch 1.0-1.3: the module tree and tensor table are JSON
        modules, kinds = model_json.modules, model_json.kinds
        tensors += model_json.tensors
        constants += model_json.constants
    if pt2 is not None:  # weights and constants of every program, as the other formats' tensors
        for program in pt2.programs:
            tensors += tensor_infos(program.weights, archive)
            constants += tensor_infos(program.constants, archive)
            kinds.update({t.name: t.kind for t in program.weights})
    return ArchiveSummary(
        path=archive.path, file_size=archive.zip.file_size if archive.zip else _size(archive.path),
        container=archive.container, format=archive.format, prefix=archive.prefix,
        note=archive.note or json_note,
        versions=_versions(archive), records=archive.records,
        code_files=[r.name for r in archive.records_of(rk.CODE)],
        extra_files=archive.records_of(rk.EXTRA), tensors=tensors, constants=constants, traced_inputs=traced,
        modules=modules, methods=code.methods, tensor_kinds=kinds,
        problems=archive.problems, code=code, pt2=pt2,
        made_by=made_by(code, "traced_inputs.pkl" in archive.by_name) if archive.zip else None)


def _torch_state(archive: Archive, code: CodeIndex) -> tuple[list[TensorInfo], ModuleInfo] | None:
    if archive.zip is None or archive.walked(archive.by_name.get("data.pkl")) is not None:
        return None
    data = archive.pickle_bytes("data.pkl")
    if data is None:
        return None
    from tsinspect.archive.torchstate import read_state

    return read_state(data, code, rk.STORAGE_DIRS.get("data.pkl", ""))


def _tensors(archive: Archive, pickle_name: str, root, prefix: str = "", check_data: bool = True) -> list[TensorInfo]:
    if root is None:
        return []
    found = collect(root, rk.STORAGE_DIRS.get(pickle_name, ""), prefix)
    _check_storages(archive, found, check_data)
    return found


def _check_storages(archive: Archive, found: list[TensorInfo], check_data: bool = True) -> None:
    lookup = archive.lookup  # _storage_record's first name, in line: most storages are found by it
    for tensor in found:
        name = tensor.record
        record = None if name is None else lookup(name) or _storage_record(archive, name)
        tensor.record = record.name if record else tensor.record
        if tensor.problem:
            archive.problems.append(Problem("bad_tensor", printable(tensor.name), tensor.problem))
        if not check_data:
            continue
        if record is None:
            if tensor.storage_numel:
                archive.problems.append(Problem("missing_storage", printable(tensor.name),
                                                f"storage record {printable(tensor.record or '?')} is absent"))
        elif record.entry.size != tensor.storage_numel * tensor.itemsize:  # record.size, tensor.storage_nbytes
            archive.problems.append(Problem(
                "storage_size_mismatch", printable(tensor.name),
                f"{record.display_name} holds {record.size} bytes, the pickle declares "
                f"{tensor.storage_numel} x {tensor.itemsize}"))


def _new_views(known: list[TensorInfo], found: list[TensorInfo]) -> list[TensorInfo]:
    """The tensors of ``found`` that are no view already ``known``; the others become aliases of it.

    A lite archive's ``bytecode.pkl`` repeats most tensors of ``constants.pkl`` over the same storages, and
    holds some (a quantized model's weights) that only it references.
    """
    def view(t: TensorInfo) -> tuple:
        return t.record, t.storage_key, t.offset, tuple(t.shape), tuple(t.stride), t.dtype

    index = {view(t): t for t in known}
    new = []
    for t in found:
        same = index.get(view(t))
        if same is None:
            index[view(t)] = t
            new.append(t)
        else:
            same.aliases += [t.name, *t.aliases]
    return new


def _storage_record(archive: Archive, name: str | None) -> Record | None:
    if name is None:
        return None
    lookup = archive.lookup  # what by_name.get gives for a name, without its layer (10,000 storages)
    return lookup(name) or lookup(name + ".storage") or lookup(".data/" + name.rsplit("/", 1)[-1] + ".storage")


def _versions(archive: Archive) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for key, name in (("file_format", ".data/version"), ("file_format", "version"), ("byteorder", "byteorder"),
                      ("torch_save_format", ".format_version"), ("storage_alignment", ".storage_alignment"),
                      ("pt2_archive", "archive_version"), ("python", ".data/python_version")):
        if key in out:
            continue
        raw = archive.read_optional(archive.by_name.get(name), SMALL_CAP)
        if raw is not None:
            text = printable(raw.decode("utf-8", "replace").strip())[:100]
            out[key] = int(text) if text.isascii() and text.isdigit() else text  # '²'.isdigit() is True
    if "version" in archive.by_name and ".data/version" in archive.by_name:
        archive.problems.append(Problem("two_version_records", None,
                                        "both 'version' and '.data/version' exist; torch reads '.data/version'"))
    if archive.legacy is not None:  # a pre-zip torch.save stream: its protocol and the writer's byte order
        protocol = archive.pickle_optional("protocol_version.pkl")
        if protocol is not None and isinstance(protocol.value, int):
            out["legacy_protocol"] = protocol.value
        info = archive.pickle_optional("sys_info.pkl")
        little = info.value.get("little_endian") if info and isinstance(info.value, PDict) else None
        if isinstance(little, bool):
            out["byteorder"] = "little" if little else "big"
    bytecode = archive.pickle_optional("bytecode.pkl")
    if bytecode is not None and isinstance(bytecode.value, PTuple) and bytecode.value.items:
        first = bytecode.value.items[0]
        if isinstance(first, int):
            out["bytecode"] = first
    return out


def _size(path: str) -> int:
    import os

    return os.path.getsize(path)
