"""``tsinspect scan``: is a file safe to hand to torch? A verdict per file, with the findings behind it.

Torch-free and static. Every pickle a loader could reach is walked symbolically (nothing imported or
called) and each GLOBAL and each call site is checked against what the loader that would read it accepts:

- TorchScript records (``torch.jit.load``; ``torch.load`` dispatches TorchScript zips to it): the C++
  unpickler takes protocol 2, a fixed opcode set and a short list of globals, plus ``__torch__.*`` classes
  compiled from ``code/`` and TorchBind classes (``__torch__.torch.classes.*``), whose native
  ``__setstate__`` runs at load: judged per class by :mod:`tsinspect.safety.torchbind`, and the Python
  pickle an ``OpaqueObject`` state decodes to is walked in turn (what ``pickle.loads`` would run).
- torch.save data (zip ``data.pkl``, legacy pickle streams, torch.package, pt2): the ``weights_only``
  allowlist of ``torch.load``, its default since torch 2.6.

Pickles are found by content as well as by name: every zip entry that starts like a pickle (duplicates, NUL
names, entries outside the top folder, whatever its local header calls it), a pickle stream before a zip
(torch.load reads any file not starting with ``PK\\x03\\x04`` as a legacy pickle stream) and pickles after a
pickle. ``code/`` goes through :mod:`tsinspect.safety.codescan` (load-time ``__setstate__`` judged
transitively, file and raw-memory ops) and zip structure tricks come from the zip reader's problems.

Verdicts: ``unsafe`` (something that runs code or touches files when loaded by some loader: a known
dangerous callable, a ``__setstate__`` reaching file I/O), ``suspicious`` (needs code execution to load,
or is dressed up to fool tools: unknown globals, rejected opcodes, zip tricks), ``clean`` (only what torch's
own restricted loaders accept; ``info`` findings may remain) and ``error`` (the file cannot be read at all).
"""

from __future__ import annotations

import ast
import io
import pickletools
import re
from dataclasses import dataclass, field

from tsinspect.archive import records as rk
from tsinspect.archive.pickles import Global, PickleError, walk
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import PICKLE_CAP, Archive, open_archive
from tsinspect.archive.text import counted, printable
from tsinspect.archive.zipread import (STORED, InflateBudgetSpent, ZipArchive, ZipEntry, open_zip,
                                       open_zip_bytes)
from tsinspect.collector import paused

SCHEMA = "tsinspect.scan/1"
CLEAN, SUSPICIOUS, UNSAFE, ERROR = "clean", "suspicious", "unsafe", "error"
INFO = "info"
_RANK = {INFO: 0, SUSPICIOUS: 1, UNSAFE: 2}

TORCHSCRIPT, WEIGHTS_ONLY, PYTHON = "torchscript", "weights_only", "python"
LOADER = {TORCHSCRIPT: "torch.jit.load's unpickler", WEIGHTS_ONLY: "torch.load(weights_only=True)",
          PYTHON: "Python's pickle.loads"}

MAX_FINDINGS = 500  # per file; then one finding saying how many more
HIDDEN_PICKLE_CAP = 16 * 1024 * 1024  # bytes inflated for one local entry no directory names
HIDDEN_INFLATE_BUDGET = 64 * 1024 * 1024  # and for all of them: 100 headers sharing one bomb stay cheap
MAX_PICKLES_PER_MEMBER = 16
LEGACY_PICKLES = 5  # magic number, protocol, sys info, the object, storage keys

# ------------------------------------------------------------------------------------------ what loaders accept

# C++ TorchScript unpickler (unpickler.cpp readGlobal): fixed names, torch.<Scalar>Storage, qschemes, and
# __torch__.* classes resolved from code/.
_TS_GLOBALS = frozenset({
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist", "torch.jit._pickle.restore_type_tag", "torch.jit._pickle.build_tensor_from_id",
    "__main__.TensorID", "__main__.IntList", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor", "collections.OrderedDict", "builtins.complex", "torch.device",
    "torch.distributed.rpc.rref"})
_SCALARS = ("Byte", "Char", "Short", "Int", "Long", "Half", "Float", "Double", "ComplexHalf", "ComplexFloat",
            "ComplexDouble", "Bool", "BFloat16", "QInt8", "QUInt8", "QInt32", "QUInt4x2", "QUInt2x4")
_QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
             "per_channel_affine_float_qparams")
_TS_GLOBALS |= {f"torch.{s}Storage" for s in _SCALARS} | {f"torch.{q}" for q in _QSCHEMES}

# torch.load(weights_only=True) (torch/_weights_only_unpickler.py _get_allowed_globals, torch 2.13)
_WO_GLOBALS = frozenset({
    "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device", "_codecs.encode",
    "builtins.bytearray", "builtins.set", "builtins.complex", "torch._tensor._rebuild_from_type_v2",
    "torch.storage.TypedStorage", "torch.storage.UntypedStorage"}
    | {f"torch._utils._rebuild_{n}" for n in (
        "parameter", "parameter_with_state", "qtensor", "tensor", "tensor_v2", "tensor_v3", "sparse_tensor",
        "meta_tensor_no_storage", "nested_tensor", "wrapper_subclass", "device_tensor_from_numpy",
        "device_tensor_from_cpu_tensor")}
    | {f"torch.{q}" for q in _QSCHEMES})
_WO_DTYPE = re.compile(r"torch\.(bool|bfloat16|(u?int|bits)\d+(x\d+)?|float(16|32|64)|float[48]_\w+|complex\d+|"
                       r"q(u?int\d+(x\d+)?))$")
_WO_CLASS = re.compile(r"torch\.(cuda\.)?(sparse\.)?[A-Z][A-Za-z0-9]*(Tensor|Storage)$")

# Opcodes each loader handles; anything else makes it fail.
_TS_OPCODES = frozenset({
    "PROTO", "EMPTY_LIST", "EMPTY_TUPLE", "BINPUT", "LONG_BINPUT", "MARK", "NEWTRUE", "NEWFALSE", "NONE",
    "BININT1", "BININT2", "BININT", "LONG1", "BINUNICODE", "BINFLOAT", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "APPENDS", "LIST", "DICT", "SETITEMS", "BINGET", "LONG_BINGET", "STOP", "GLOBAL", "NEWOBJ",
    "BUILD", "REDUCE", "BINPERSID"})
_WO_OPCODES = frozenset({
    "APPEND", "APPENDS", "BINFLOAT", "BINGET", "BININT", "BININT1", "BININT2", "BINPERSID", "BINPUT",
    "BINUNICODE", "BUILD", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "EMPTY_TUPLE", "GLOBAL", "LONG1",
    "LONG_BINGET", "LONG_BINPUT", "MARK", "NEWFALSE", "NEWOBJ", "NEWTRUE", "NONE", "PROTO", "REDUCE", "SETITEM",
    "SETITEMS", "SHORT_BINSTRING", "STOP", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"})

# ------------------------------------------------------------------------------------------ what is dangerous

# Modules whose every callable can run commands, code, or reach the network or the file system.
_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "_socket", "runpy",
    "pickle", "_pickle", "cPickle", "marshal", "importlib", "imp", "ctypes", "_ctypes", "webbrowser", "pty",
    "code", "codeop", "commands", "popen2", "pdb", "bdb", "timeit", "profile", "cProfile", "trace",
    "multiprocessing", "asyncio", "_thread", "thread", "threading", "signal", "urllib", "urllib2", "http",
    "httplib", "ftplib", "smtplib", "telnetlib", "requests", "zipimport", "pkgutil", "distutils", "setuptools",
    "pip", "dill", "cloudpickle", "joblib", "shelve", "tempfile", "glob", "pathlib", "io", "_io", "fileinput",
    "platform", "sysconfig", "site", "gc", "inspect", "venv", "ensurepip"})
_DANGEROUS_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "open", "file", "getattr", "setattr", "delattr", "__import__",
    "globals", "locals", "vars", "input", "raw_input", "breakpoint", "exit", "quit", "help", "apply", "reload",
    "memoryview", "__loader__", "__build_class__"})
_DANGEROUS_QUALNAMES = frozenset({
    "operator.attrgetter", "operator.methodcaller", "operator.itemgetter", "functools.partial",
    "functools.reduce", "types.FunctionType", "types.CodeType", "types.LambdaType", "types.MethodType",
    "types.ModuleType", "numpy.load", "torch.load", "torch.save", "torch.jit.load", "torch.jit.save",
    "torch.serialization.load", "torch.serialization.save", "torch.hub.load", "torch.ops.load_library",
    "torch._ops.ops.load_library", "torch.classes.load_library", "torch.from_file",
    "torch.UntypedStorage.from_file", "torch.utils.cpp_extension.load", "torch.utils.cpp_extension.load_inline",
    "torch.storage._load_from_bytes", "torch.storage._load_from_bytes_v2"})
_DANGEROUS_PREFIXES = ("numpy.testing", "numpy.f2py", "numpy.distutils", "torch.hub", "torch.utils.cpp_extension",
                       "torch.package", "torch._dynamo", "torch._inductor", "torch.utils.collect_env",
                       "torch.distributed.rpc", "torch._C._jit_", "IPython", "jupyter")
_DANGEROUS_ATTRS = frozenset({
    "system", "popen", "spawn", "exec", "eval", "__import__", "__globals__", "__builtins__", "__subclasses__",
    "__code__", "__dict__", "__getattribute__", "__reduce__", "__reduce_ex__", "__setstate__", "__class__",
    "__bases__", "__mro__", "__init__", "__call__", "__getattr__", "__closure__", "load", "loads",
    "load_library", "from_file", "getattr", "setattr", "open", "compile"})
_DANGEROUS_ATTRS_IN_PATH = _DANGEROUS_ATTRS | _DANGEROUS_MODULES | _DANGEROUS_BUILTINS

try:  # how pickle maps Python 2 names (fix_imports), which torch also applies
    from _compat_pickle import IMPORT_MAPPING as _IMPORT_MAPPING, NAME_MAPPING as _NAME_MAPPING
except ImportError:  # pragma: no cover - CPython always has it
    _IMPORT_MAPPING, _NAME_MAPPING = {"__builtin__": "builtins", "copy_reg": "copyreg"}, {}


def _split(glob: Global) -> tuple[str, str]:
    module, name = glob.module.strip(), glob.name.strip()
    if (module, name) in _NAME_MAPPING:
        return _NAME_MAPPING[(module, name)]
    return _IMPORT_MAPPING.get(module, module), name


def normalize(glob: Global) -> str:
    """The global's dotted name as an unpickler resolves it (Python 2 names mapped)."""
    module, name = _split(glob)
    return f"{module}.{name}" if module else name


def is_allowed(qualname: str, policy: str) -> bool:
    """Whether the loader of ``policy`` accepts the global (TorchBind classes are judged apart, by class)."""
    if policy == PYTHON:
        return False  # pickle.loads imports anything: every global is worth a finding
    if policy == TORCHSCRIPT:
        return qualname in _TS_GLOBALS or (qualname.startswith("__torch__.") and ".." not in qualname)
    return qualname in _WO_GLOBALS or bool(_WO_DTYPE.match(qualname) or _WO_CLASS.match(qualname))


def danger(glob: Global) -> str | None:
    """Why a global is known to be dangerous, or None."""
    module, name = _split(glob)
    qualname = normalize(glob)
    root = module.split(".", 1)[0]
    path = name.split(".")
    if root in _DANGEROUS_MODULES:
        return f"module {root} runs commands, code or I/O"
    if root in ("builtins", "__builtin__", "__builtins__") and (path[0] in _DANGEROUS_BUILTINS or
                                                                 path[0].startswith("__")):
        return f"builtin {path[0]} runs code or reaches arbitrary attributes"
    if qualname.startswith("torch.storage._load_from_bytes"):
        return "runs a full torch.load (weights_only=False) of bytes inside the pickle: any code"
    if qualname in _DANGEROUS_QUALNAMES or any(qualname == p or qualname.startswith(p + ".") or
                                               (p.endswith("_") and qualname.startswith(p))
                                               for p in _DANGEROUS_PREFIXES):
        return "loads files, native code or other pickles, or calls arbitrary functions"
    if len(path) > 1 and any(part in _DANGEROUS_ATTRS_IN_PATH or part.startswith("__") for part in path[1:]):
        return "a dotted name walking attributes to reach " + ".".join(path[1:])
    return None


# ------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    """One thing the scan found. ``severity`` is unsafe, suspicious or info; ``member`` the zip entry (full
    name, top folder included) or None for the whole file; ``offset`` a byte offset inside the member's
    pickle (or the file, for a pickle stream), ``line`` a line of a code/ file."""

    kind: str
    severity: str
    member: str | None
    detail: str
    offset: int | None = None
    line: int | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "member": self.member, "offset": self.offset,
                "line": self.line, "detail": self.detail}

    @property
    def where(self) -> str:
        where = self.member or "(file)"
        if self.offset is not None:
            where += f" @{self.offset}"
        if self.line is not None:
            where += f":{self.line}"
        return where


@dataclass
class ScanResult:
    """The verdict on one file and everything behind it: what the CLI, JSON, the TUI and reports render."""

    path: str
    verdict: str = CLEAN
    findings: list[Finding] = field(default_factory=list)
    format: str | None = None
    pickles: int = 0  # pickles walked
    members: int = 0  # zip entries looked at
    error: str | None = None  # the one-line reason, when the verdict is error
    _dropped: int = 0

    def add(self, finding: Finding) -> None:
        if len(self.findings) >= MAX_FINDINGS:
            self._dropped += 1
            if _RANK[finding.severity] <= _RANK[SUSPICIOUS]:
                return
            # an unsafe finding always makes it in, in place of a lesser one
            for i in range(len(self.findings) - 1, -1, -1):
                if self.findings[i].severity != UNSAFE:
                    del self.findings[i]
                    break
        self.findings.append(finding)

    def finish(self) -> "ScanResult":
        if self._dropped:
            self.findings.append(Finding("truncated", INFO, None,
                                         f"{self._dropped} more findings were left out (cap {MAX_FINDINGS})"))
            self._dropped = 0
        if self.error is not None:
            self.verdict = ERROR
        else:
            worst = max((_RANK[f.severity] for f in self.findings), default=0)
            self.verdict = {0: CLEAN, 1: SUSPICIOUS, 2: UNSAFE}[worst]
        self.findings.sort(key=lambda f: -_RANK[f.severity])
        return self

    def counts(self) -> dict[str, int]:
        out = {UNSAFE: 0, SUSPICIOUS: 0, INFO: 0}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def to_json(self) -> dict:
        return {"path": printable(self.path), "verdict": self.verdict, "format": self.format,
                "pickles_scanned": self.pickles, "members_scanned": self.members, "error": self.error,
                "findings": [f.to_json() for f in self.findings]}


def report_json(results: list[ScanResult]) -> dict:
    return {"schema": SCHEMA, "files": [r.to_json() for r in results]}


def exit_status(results: list[ScanResult]) -> int:
    """0 when every file is clean, 2 when any could not be read, else 1."""
    if any(r.verdict == ERROR for r in results):
        return 2
    return 0 if all(r.verdict == CLEAN for r in results) else 1


# ------------------------------------------------------------------------------------------------ scanning

# zip reader / archive problems that are only notes; every other problem is a structure trick (suspicious)
_INFO_PROBLEMS = frozenset({"two_version_records"})
_PROBLEM_WHY = {
    "duplicate_name": "zip tools and torch may read different copies",
    "nul_shadowed_name": "zip tools and torch may read different copies",
    "name_mismatch": "tools that read local headers see another name",
    "crc_mismatch": "PyTorch does not check CRCs; tools that do may skip this member",
    "data_before_zip": "torch.load reads a file that does not start with a zip header as a pickle stream",
    "outside_top_folder": "torch refuses it, but other tools read it",
}


def scan_file(path: str) -> ScanResult:
    """Scan one file; never raises for a bad file (the verdict is then ``error``)."""
    result = ScanResult(str(path))
    try:
        archive = open_archive(path)
    except ArchiveError as exc:
        _scan_unopenable(result, str(exc))
        return result.finish()
    except Exception as exc:  # noqa: BLE001 - a file that could not be judged is an error, never a pass
        result.error = _internal(exc)
        return result.finish()
    with archive:
        try:
            result.format = archive.format
            with paused():  # walked pickles and code: containers by the hundred thousand, none in a cycle
                _Scan(archive, result).run()
        except ArchiveError as exc:
            result.error = str(exc)
        except Exception as exc:  # noqa: BLE001
            result.error = _internal(exc)
    return result.finish()


def _internal(exc: Exception) -> str:
    import os

    if os.environ.get("TSINSPECT_DEBUG"):
        raise exc
    return f"internal error ({type(exc).__name__}: {str(exc)[:200]}); please report it with the file if you can"


def scan_files(paths: list[str]) -> list[ScanResult]:
    return [scan_file(p) for p in paths]


def _scan_unopenable(result: ScanResult, reason: str) -> None:
    """A file that is neither a zip nor starts like a protocol-2+ pickle: torch.load would still unpickle it
    (a protocol-0 payload is plain text). Judge it when it walks as a pickle; otherwise it is an error."""
    try:
        with open(result.path, "rb") as fh:
            data = fh.read(PICKLE_CAP)
    except OSError:
        result.error = reason
        return
    if _scan_tar(result):
        result.format = rk.LEGACY
        return
    probe = ScanResult(result.path)
    seen = _scan_stream(probe, data, None, WEIGHTS_ONLY, LEGACY_PICKLES, legacy=True, quiet_failure=True)
    if seen and (probe.pickles and any(f.kind != "malformed_pickle" for f in probe.findings)):
        result.format = rk.LEGACY
        result.pickles = probe.pickles
        result.findings = probe.findings
        result.add(Finding("not_an_archive", INFO, None, f"{reason}; torch.load would still unpickle it"))
    else:
        result.error = reason


MAX_TAR_MEMBERS = 1000
TAR_PICKLES = ("storages", "tensors", "pickle")  # what torch.load's legacy tar reader unpickles


def _scan_tar(result: ScanResult) -> bool:
    """The pre-1.0 torch.save format: a tar whose storages, tensors and pickle members torch.load unpickles
    (with a full unpickler only: weights_only refuses the format). False when the file is not a tar."""
    import tarfile

    try:
        tar = tarfile.open(result.path, mode="r:")
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeError):
        return False
    with tar:
        result.add(Finding("legacy_tar", SUSPICIOUS, None,
                           "the pre-1.0 tar format of torch.save: torch.load refuses it with weights_only=True and "
                           "reads its pickles with a full unpickler otherwise"))
        try:
            for index, info in enumerate(tar):
                if index >= MAX_TAR_MEMBERS:
                    result.add(Finding("truncated", INFO, None, f"only the first {MAX_TAR_MEMBERS} tar members "
                                       "were looked at"))
                    break
                if not info.isreg():
                    continue
                result.members += 1
                name = printable(info.name)
                if info.size > PICKLE_CAP:
                    if info.name in TAR_PICKLES:
                        result.add(Finding("unreadable_pickle", SUSPICIOUS, name, "over the cap; not scanned"))
                    continue
                handle = tar.extractfile(info)
                data = handle.read(PICKLE_CAP) if handle is not None else b""
                if info.name in TAR_PICKLES or _looks_like_pickle(data[:2]):
                    # storages and tensors hold pickles between raw bytes: walk the leading run of pickles
                    _scan_stream(result, data, name, WEIGHTS_ONLY, MAX_PICKLES_PER_MEMBER, legacy=True,
                                 quiet_failure=info.name not in TAR_PICKLES)
        except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeError) as exc:
            result.add(Finding("malformed_tar", SUSPICIOUS, None, f"the tar breaks: {str(exc)[:200]}"))
    return True


class _Scan:
    def __init__(self, archive: Archive, result: ScanResult):
        self.archive = archive
        self.result = result
        self.policy = TORCHSCRIPT if archive.format in (rk.TORCHSCRIPT, rk.LITE) else WEIGHTS_ONLY

    def run(self) -> None:
        archive, result = self.archive, self.result
        head = self._file_head()
        if archive.container == "flatbuffer":
            from tsinspect.safety.bytecode import FLATBUFFER_WHY

            result.add(Finding("not_scanned", UNSAFE, None, FLATBUFFER_WHY))
            return
        if not head.startswith(b"PK\x03\x04"):
            # torch.load reads such a file as a legacy pickle stream (a polyglot hides one before a zip)
            self._legacy_stream()
        zip_ = archive.zip
        appended = None
        if zip_ is None:
            try:
                appended = zip_ = open_zip(archive.path)
            except ArchiveError:
                zip_ = None
        try:
            if zip_ is not None:
                self._members(zip_)
                self._hidden(zip_)
                self._trailing(zip_)
                self._other_directories(zip_)
            if archive.zip is not None:
                self._code()
                if archive.format == rk.PT2:
                    self._pt2(archive.zip)
            problems = archive.problems if appended is None else archive.problems + appended.problems
            for problem in problems:
                severity = INFO if problem.kind in _INFO_PROBLEMS else SUSPICIOUS
                why = _PROBLEM_WHY.get(problem.kind)
                result.add(Finding(problem.kind, severity, problem.member,
                                   problem.detail + (f"; {why}" if why else "")))
        finally:
            if appended is not None:
                appended.close()

    def _file_head(self) -> bytes:
        with open(self.archive.path, "rb") as fh:
            return fh.read(8)

    # -- pickle streams outside any zip entry -----------------------------------------------------------
    def _legacy_stream(self) -> None:
        zip_ = self.archive.zip
        limit = min(PICKLE_CAP, zip_.shift) if zip_ is not None and zip_.shift else PICKLE_CAP
        with open(self.archive.path, "rb") as fh:
            data = fh.read(limit)
        if _scan_tar(self.result):
            return  # torch.load tries the tar format first
        if zip_ is None and self.archive.container != "pickle":
            return
        _scan_stream(self.result, data, None, WEIGHTS_ONLY, LEGACY_PICKLES, legacy=True,
                     quiet_failure=zip_ is not None)

    def _trailing(self, zip_: ZipArchive) -> None:
        """Bytes after the zip's end record that start like a pickle: no torch loader reads them, other tools may."""
        if not any(p.kind == "trailing_data" for p in zip_.problems):
            return
        with open(zip_.path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            tail_start = _end_of_zip(fh, size)
            if tail_start is None:
                return
            fh.seek(tail_start)
            data = fh.read(min(PICKLE_CAP, size - tail_start))
        if _looks_like_pickle(data):
            _scan_stream(self.result, data, "(after the zip)", self.policy, MAX_PICKLES_PER_MEMBER,
                         legacy=False, quiet_failure=True, base=tail_start)

    # -- zip entries -----------------------------------------------------------------------------------
    def _members(self, zip_: ZipArchive, skip: frozenset = frozenset(), label: str = "") -> None:
        """Judge every entry that is a pickle by name or content: shadowed copies, case variants, entries
        torch cannot reach, all of them (some tool, or another torch loader, may read each)."""
        zip_policy = _zip_policy(zip_)
        for entry in zip_.entries:
            if entry.is_dir or entry.header_offset in skip:
                continue
            self.result.members += 1
            named = _pickle_name(entry.name)
            try:
                head = _head(zip_, entry)
            except ArchiveError as exc:
                if named:
                    self.result.add(Finding("unreadable_pickle", SUSPICIOUS, entry.display_name,
                                            f"not scanned: {str(exc).split(': ', 1)[-1]}"))
                continue
            if not named and not _looks_like_pickle(head):
                continue
            try:
                data = zip_.read(entry, PICKLE_CAP)
            except ArchiveError as exc:
                if named:
                    self.result.add(Finding("unreadable_pickle", SUSPICIOUS, entry.display_name,
                                            f"not scanned: {str(exc).split(': ', 1)[-1]}"))
                continue
            policy = zip_policy
            if "/ts_code/" in entry.name:
                policy = TORCHSCRIPT
            _scan_stream(self.result, data, label + entry.display_name, policy, MAX_PICKLES_PER_MEMBER,
                         legacy=False, quiet_failure=not named)

    def _other_directories(self, zip_: ZipArchive) -> None:
        """The directories of other end records (stricter zip tools read one of them, torch the last)."""
        seen = frozenset(e.header_offset for e in zip_.entries)
        for position in zip_.alternatives:
            try:
                other = open_zip(zip_.path, end_record=position)
            except ArchiveError as exc:
                self.result.add(Finding("unreadable_directory", SUSPICIOUS, None,
                                        f"the directory of the end record at byte {position}: {exc}"))
                continue
            with other:
                other.inflate_budget = zip_.inflate_budget  # one budget per file, whatever directory is read
                self.result.members += len(other.entries)
                self._members(other, skip=seen, label=f"(directory at byte {position}) ")
                zip_.inflate_budget = other.inflate_budget

    def _hidden(self, zip_: ZipArchive) -> None:
        """Local entries no central-directory entry points to, in the gaps between members: invisible to zip
        tools that read the directory (and to torch), seen by streaming unzippers that walk local headers."""
        spans = sorted((e.header_offset + zip_.shift, e.data_offset + e.compressed_size)
                       for e in zip_.entries if e.data_offset is not None)
        gaps, pos = [], zip_.shift
        for start, end in spans:
            if start > pos:
                gaps.append((pos, start))
            pos = max(pos, end)
        if zip_.cd_start > pos:
            gaps.append((pos, zip_.cd_start))
        budget = PICKLE_CAP
        self._hidden_zip, self._hidden_stop, self._hidden_budget = zip_, None, HIDDEN_INFLATE_BUDGET
        with open(zip_.path, "rb") as fh:
            for start, end in gaps:
                if end - start < 30 or budget <= 0:
                    continue
                fh.seek(start)
                data = fh.read(min(end - start, budget))
                budget -= len(data)
                at = data.find(b"PK\x03\x04")
                while at >= 0 and self._hidden_stop is None:
                    self._hidden_entry(data, at, start)
                    at = data.find(b"PK\x03\x04", at + 4)
        if self._hidden_stop is not None:
            self.result.add(Finding("unreadable_pickle", SUSPICIOUS, None,
                                    f"hidden local entries not all scanned: {self._hidden_stop}"))

    def _hidden_entry(self, data: bytes, at: int, base: int) -> None:
        import struct

        if at + 30 > len(data):
            return
        _, _, flags, method, _, _, _, csize, size, nlen, elen = struct.unpack_from("<4sHHHHHIIIHH", data, at)
        name = data[at + 30:at + 30 + nlen].decode("utf-8", "backslashreplace")
        start = at + 30 + nlen + elen
        shown = printable(name)
        self.result.add(Finding("hidden_entry", SUSPICIOUS, shown,
                                f"a local header at byte {base + at} that no directory entry points to: streaming "
                                "unzippers see it, torch and directory-based tools do not", offset=base + at))
        raw = data[start:start + csize] if csize else data[start:]
        if method == 8:
            try:
                if not _pickle_name(name) and not _looks_like_pickle(self._hidden_zip.inflate(raw, 2, shown)):
                    return  # not a pickle by name or by its first bytes: nothing more to inflate
                body = self._hidden_zip.inflate(raw, min(HIDDEN_PICKLE_CAP, self._hidden_budget), shown)
            except InflateBudgetSpent as exc:
                self._hidden_stop = str(exc).split(": ", 1)[-1]
                return
            except ArchiveError:
                return
            self._hidden_budget -= len(body)
            if self._hidden_budget <= 0:
                self._hidden_stop = f"they inflate past {HIDDEN_INFLATE_BUDGET} bytes together"
        elif method == 0 and csize:
            body = raw
        else:
            return
        if _pickle_name(name) or _looks_like_pickle(body):
            _scan_stream(self.result, body, f"{shown} (hidden at byte {base + at})", _zip_policy_names([name]),
                         MAX_PICKLES_PER_MEMBER, legacy=False, quiet_failure=not _pickle_name(name))

    # -- torch.export archives ----------------------------------------------------------------------------
    def _pt2(self, zip_: ZipArchive) -> None:
        """What loading a pt2 runs besides its JSON: shared libraries AOTInductor dlopens (native code), and
        the torch.save zips nested in members (sample inputs, ``use_pickle`` payloads, legacy weight files),
        which torch.export.load hands to torch.load: sample inputs fall back to ``weights_only=False``."""
        for entry in zip_.entries:
            if entry.is_dir:
                continue
            try:
                head = _head(zip_, entry, 4)[:4]
            except ArchiveError:
                continue
            name = rk.ascii_lower(entry.name.split("/", 1)[-1])
            # AOTInductor loads libraries from its folder only: a weight elsewhere may start like ELF by chance
            if rk.classify(name) == rk.NATIVE_CODE or name.startswith("data/aotinductor/") and head in _NATIVE_MAGIC:
                self.result.add(Finding(
                    "native_code", UNSAFE, entry.display_name,
                    "a shared library (AOTInductor compiled model): loading the package (torch._inductor."
                    "aoti_load_package, torch.export.pt2_archive) runs its native code; tsinspect never loads "
                    "it. Trust it only if you trust whoever built it"))
            elif head == b"PK\x03\x04":
                self._nested_zip(zip_, entry)

    def _nested_zip(self, zip_: ZipArchive, entry: ZipEntry) -> None:
        try:
            nested = open_zip_bytes(zip_.read(entry, PICKLE_CAP), entry.display_name)
        except ArchiveError as exc:
            self.result.add(Finding("unreadable_nested_zip", SUSPICIOUS, entry.display_name,
                                    f"a nested zip torch.load would read: {str(exc).split(': ', 1)[-1]}"))
            return
        with nested:
            nested.inflate_budget = zip_.inflate_budget
            self.result.members += len(nested.entries)
            self._members(nested, label=f"{entry.display_name}!")
            zip_.inflate_budget = nested.inflate_budget

    # -- code/ -----------------------------------------------------------------------------------------
    def _code(self) -> None:
        from tsinspect.safety import codescan
        from tsinspect.archive.code import index_code

        if not self.archive.records_of(rk.CODE) and not any(
                r.name.lower() == "bytecode.pkl" for r in self.archive.records):
            return
        index = index_code(self.archive, outlined=False)  # the judge reads every method's tree
        scan = codescan.scan_archive(self.archive, index, pickles=False)  # _members judges the pickles
        prefix = self.archive.prefix
        for f in scan.findings:
            if f.verdict == codescan.UNSAFE:
                severity = UNSAFE
            elif f.kind == "getstate":
                continue  # runs when saving, never when loading
            else:
                severity = INFO
            self.result.add(Finding(f.kind, severity, printable(prefix + f.file), f"{f.what}: {f.detail}",
                                    line=f.line or None))
        self._custom_ops({file: index.tree(file) for file in index.sources if not codescan.names_no_ops(index, file)},
                         codescan.KNOWN_NAMESPACES)

    def _custom_ops(self, trees: dict, known: frozenset) -> None:
        """Ops of namespaces torch does not ship: not run at load time, but loading needs their library."""
        from tsinspect.safety.resolve import walk as ast_nodes

        seen: set[str] = set()
        for file, tree in trees.items():
            for node in ast_nodes(tree):  # ast.walk's nodes and order (but the ctx leaves), faster
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                        and isinstance(node.value.value, ast.Name) and node.value.value.id == "ops" \
                        and node.value.attr not in known:
                    name = f"ops.{node.value.attr}.{node.attr}"
                    if name not in seen:
                        seen.add(name)
                        self.result.add(Finding(
                            "custom_op", INFO, printable(self.archive.prefix + file),
                            f"calls {name}, an op torch does not ship: loading needs the library that registers "
                            "it; it runs when the model runs, not at load time", line=node.lineno))


# ELF, Mach-O (32/64, both byte orders, fat); PE is told by its name (.dll/.pyd: "MZ" is too short a magic)
_NATIVE_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
                 b"\xca\xfe\xba\xbe")


def _zip_policy(zip_: ZipArchive) -> str:
    """Which loader reads this zip's pickles: TorchScript archives go to torch.jit.load, the rest to torch.load."""
    return _zip_policy_names([e.name for e in zip_.entries])


def _zip_policy_names(entry_names: list[str]) -> str:
    entry_names = [rk.ascii_lower(n) for n in entry_names]  # torch's lookups ignore ASCII case
    first = entry_names[0] if entry_names else ""
    prefix = first.split("/", 1)[0] + "/" if "/" in first else ""
    names = {n[len(prefix):] for n in entry_names if n.startswith(prefix)}
    fmt = rk.detect_zip_format(names, None)
    return TORCHSCRIPT if fmt in (rk.TORCHSCRIPT, rk.LITE) else WEIGHTS_ONLY


def _pickle_name(name: str) -> bool:
    base = rk.ascii_lower(name.split("\0", 1)[0])  # Data.Pkl is the data.pkl torch reads
    return base.endswith((".pkl", ".debug_pkl", ".pickle"))


def _looks_like_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5


def _head(zip_: ZipArchive, entry: ZipEntry, size: int = 2) -> bytes:
    if entry.method == STORED:
        return zip_.read_range(entry, 0, size)
    chunks = zip_.iter_chunks(entry, PICKLE_CAP)
    head = b""
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= size:
                break
    finally:
        chunks.close()
    return head


def _end_of_zip(fh, size: int) -> int | None:
    tail_len = min(size, 0xFFFF + 22)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        return None
    comment = int.from_bytes(tail[pos + 20:pos + 22], "little")
    return size - tail_len + pos + 22 + comment


# ---------------------------------------------------------------------------------------------- one stream


def _torchbind(result: ScanResult, member: str | None, base: int, globals_: list, value) -> None:
    """TorchBind objects whose native __setstate__ torch runs; an OpaqueObject's state is a Python pickle,
    walked once more with the pickle.loads policy (anything in it that could unpickle further, such as
    pickle.loads or torch.storage._load_from_bytes, is a dangerous global itself)."""
    from tsinspect.safety import torchbind

    for item in torchbind.restored_objects(globals_, value):
        if item.verdict == "ok":
            continue
        result.add(Finding("custom_class", UNSAFE, member, f"restores {printable(item.qualname)}: {item.why}",
                           offset=base + item.offset))
        for i, nested in enumerate(item.nested):
            where = f"{member or '(file)'} (state {i + 1} of {printable(item.qualname.rsplit('.', 1)[-1])})"
            if not _scan_stream(result, nested, where, PYTHON, 1, legacy=False, quiet_failure=True):
                result.add(Finding("nested_pickle", SUSPICIOUS, where, "the decoded state is not a pickle the scan "
                                   "can walk; pickle.loads may still read it"))


def _opcodes(data: bytes, start: int) -> tuple[dict[str, tuple[int, int]], int | None, int | None]:
    """Opcode census of the pickle at ``start``: {name: (first offset, count)}, the protocol, and the offset
    just past its STOP (None when it breaks before one)."""
    census: dict[str, tuple[int, int]] = {}
    protocol = None
    total = 0
    stream = io.BytesIO(data)
    stream.seek(start)
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            first, count = census.get(opcode.name, (pos, 0))
            census[opcode.name] = (first, count + 1)
            if opcode.name == "PROTO" and protocol is None:
                protocol = arg
            if opcode.name == "STOP":
                return census, protocol, pos + 1
            total += 1
            if total > 5_000_000:
                break
    except Exception:  # noqa: BLE001 - any parse failure ends the census; walk() names it
        pass
    return census, protocol, None


def _scan_stream(result: ScanResult, data: bytes, member: str | None, policy: str, max_pickles: int, *,
                 legacy: bool, quiet_failure: bool, base: int = 0) -> bool:
    """Judge the pickles of ``data`` one after another. Returns whether a first pickle was found at all.

    ``quiet_failure``: a first pickle that does not parse is not a finding (the bytes are not a pickle).
    """
    start = 0
    found = False
    for index in range(max_pickles):
        if start >= len(data):
            break
        if index and not _looks_like_pickle(data[start:start + 2]):
            if not legacy:
                result.add(Finding("trailing_bytes", INFO, member,
                                   f"{len(data) - start} bytes follow the pickle", offset=base + start))
            break
        census, protocol, end = _opcodes(data, start)
        chunk = data[start:end] if end is not None else data[start:]
        value = None
        try:
            walked = walk(chunk)
            globals_, calls, error, value = walked.globals, walked.calls, None, walked.value
        except PickleError as exc:
            globals_, calls, error = exc.globals, exc.calls, exc
        if error is not None and index == 0 and quiet_failure and not globals_ and not calls:
            return False
        found = True
        result.pickles += 1
        offset = base + start
        if index and not legacy:
            result.add(Finding("extra_pickle", SUSPICIOUS, member,
                               "a second pickle follows the first: torch reads only the first, other tools "
                               "may read both", offset=offset))
        _judge(result, member, policy, offset, census, protocol, globals_, calls)
        if policy == TORCHSCRIPT:
            _torchbind(result, member, offset, globals_, value)
        if error is not None:
            where = base + start + (error.offset or 0)
            result.add(Finding("malformed_pickle", SUSPICIOUS, member,
                               f"{str(error).split(' at byte ')[0]}: an unpickler runs what comes before the "
                               "break", offset=where))
            break
        start = end if end is not None else len(data)
    return found


def _judge(result: ScanResult, member: str | None, policy: str, base: int, census: dict, protocol: int | None,
           globals_: list, calls: list) -> None:
    loader = LOADER[policy]
    allowed_ops = {TORCHSCRIPT: _TS_OPCODES, WEIGHTS_ONLY: _WO_OPCODES}.get(policy)  # pickle.loads: all
    if policy == TORCHSCRIPT and protocol != 2:
        what = "no PROTO opcode" if protocol is None else f"protocol {protocol}"
        result.add(Finding("rejected_protocol", SUSPICIOUS, member,
                           f"{what}: {loader} takes protocol 2 only", offset=base))
    for name, (first, count) in sorted(census.items(), key=lambda item: item[1][0]):
        if allowed_ops is not None and name not in allowed_ops:
            times = f" ({count} times)" if count > 1 else ""
            result.add(Finding("rejected_opcode", SUSPICIOUS, member,
                               f"opcode {name}{times}, which {loader} rejects", offset=first + base))
    kinds: dict[str, str] = {}  # global qualname -> verdict
    for glob, offset in globals_:
        qualname = normalize(glob)
        shown = printable(qualname)
        if is_allowed(qualname, policy):
            kinds[glob.qualname] = "ok"
            continue
        why = danger(glob)
        if why:
            kinds[glob.qualname] = UNSAFE
            result.add(Finding("dangerous_global", UNSAFE, member, f"imports {shown}: {why}", offset=base + offset))
        else:
            kinds[glob.qualname] = SUSPICIOUS
            why = ("imports and may call it" if policy == PYTHON else
                   "does not accept: loading it needs code execution (a full pickle load)")
            result.add(Finding("unknown_global", SUSPICIOUS, member, f"imports {shown}, which {loader} {why}",
                               offset=base + offset))
    grouped: dict[str, list[int]] = {}
    for name, offset in calls:
        if name == "BUILD":
            continue
        if name == "<computed>":
            result.add(Finding("computed_call", SUSPICIOUS, member,
                               "calls something that is not a plain global (the result of another call, a "
                               "persistent id or an extension code)", offset=base + offset))
            continue
        kind = kinds.get(name, SUSPICIOUS)
        if kind == "ok":
            continue
        if kind == UNSAFE:
            result.add(Finding("dangerous_call", UNSAFE, member, f"calls {printable(name)}", offset=base + offset))
        else:
            grouped.setdefault(name, []).append(base + offset)
    for name, offsets in grouped.items():
        shown = ", ".join(map(str, offsets[:20])) + (f" and {len(offsets) - 20} more" if len(offsets) > 20 else "")
        result.add(Finding("unknown_call", SUSPICIOUS, member,
                           f"calls {printable(name)} {counted(len(offsets), 'time')}, at bytes {shown}", offset=offsets[0]))
