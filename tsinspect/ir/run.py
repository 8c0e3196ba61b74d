"""Get the IR of an archive from the extraction child (tsinspect.ir.extract), without importing torch here.

Steps: start the child (``early_child``: before the archive is even opened), which confines itself and
imports torch, then waits; meanwhile statically scan ``code/`` (tsinspect.safety.codescan) and refuse unless safe or trusted (the child is then stopped without
having seen a byte of the archive); copy the archive into a fresh private temporary directory with its
tensor storages emptied (tsinspect.ir.metacopy); tell the child to load that copy (with resource limits,
a timeout and confined: tsinspect.safety.sandbox) and keep its ``tsinspect.ir/2`` JSON. When meta loading
fails for another reason than something missing, a full copy (real storages, still rebuilt from
tsinspect's reading) is loaded by a second child: no child is ever given the user's file. Crashes, timeouts
and memory exhaustion of the child become an ``error`` in that document, never an exception here.

``TSINSPECT_TEST_ONLY_SKIP_GATE=1`` skips the static gate, so that tests can prove what the sandbox alone
stops; never set it otherwise. ``TSINSPECT_SANDBOX=off`` runs the child unconfined (for measuring the
sandbox's cost or working around a machine where it breaks torch); the IR document then says
"sandbox off".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, TextIO

import tsinspect
from tsinspect.archive import modeljson
from tsinspect.archive import records as rk
from tsinspect.archive.code import CodeIndex, index_code
from tsinspect.safety.codescan import ScanResult, scan_archive
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import PICKLE_CAP, Archive, open_archive
from tsinspect.collector import freeze_for_good, paused
from tsinspect.ir.metacopy import copied_records, write_full_copy, write_meta_copy
from tsinspect.ir.model import IR, SCHEMA, LoadError
from tsinspect.ir.origins import CodeSources

DEFAULT_TIMEOUT = 120.0
GIB = 1024 ** 3
FILE_SIZE_LIMIT = 256 * 1024 * 1024  # most a child may write to its stdout or stderr file (it opens no file itself)
SKIP_GATE_ENV = "TSINSPECT_TEST_ONLY_SKIP_GATE"
SANDBOX_ENV = "TSINSPECT_SANDBOX"
_FULL_WORTHY = ("load_failed", "out_of_memory")  # meta-load failures a full load may not have


@dataclass
class Options:
    module: str | None = None
    method: str | None = None
    inline: bool = False
    inline_module: str | None = None  # the inlined graphs of this module path's methods only ("" the root)
    trust: bool = False
    libraries: list[str] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    memory_limit: int | None = None  # bytes of address space; default from the archive size
    full: bool = False  # skip the meta attempt


class Transport(dict):
    """The child's header (the document without its graphs, see tsinspect.ir.extract.encode) as a dict, with
    the document's text in ``pieces`` (the child's, then the source table the parent placed in it: not joined
    into one copy, 53 MB on a traced conv net, unless ``body`` is asked for). Notes the parent adds go into
    the header."""

    def __init__(self, header: dict, body: bytes):
        super().__init__(header)
        self.pieces = [body]
        self.child_notes = list(header.get("notes") or [])

    @property
    def body(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


class Extraction:
    """What asking for the IR gave: the IR (load may be "refused" or "failed"), the scan and the code index.

    ``document`` is the ``tsinspect.ir/2`` JSON object. Given the child's ``Transport``, only its header
    is read at once (``header``); the document is decoded on first use and ``ir`` (the dataclasses) built
    on first use, so ``graph --json`` relays the child's text without decoding it (``write_json``).
    """

    def __init__(self, document: dict, scan: ScanResult, index: CodeIndex):
        self.scan = scan
        self.index = index
        self.header = document
        self._text = document if isinstance(document, Transport) else None
        if self._text is None:
            self.__dict__["document"] = document

    @property
    def loaded(self) -> bool:
        return self.header.get("load") in ("meta", "full")

    @property
    def method_names(self) -> dict[str, list[str]]:
        """Method names by module type (from the header: no graph is decoded)."""
        if "method_names" in self.header:
            return self.header["method_names"]
        return {name: [m["name"] for m in t.get("methods", [])] for name, t in (self.header.get("types") or {}).items()}

    @cached_property
    def document(self) -> dict:
        return self._decoded()

    def _decoded(self) -> dict:
        document = _decode(self._text.body)
        if document.get("schema") == SCHEMA:
            document["notes"] = list(self.header.get("notes") or [])
        return document

    @cached_property
    def ir(self) -> IR:
        """Built with the collector paused, then frozen (gc.freeze): a 51k-node IR is about a million objects
        that never form cycles, and every full collection would scan them all again. The decoded document is
        kept only if it was asked for."""
        document = self.__dict__.get("document") or self._decoded()
        with paused():
            ir = IR.from_json(document)
        freeze_for_good()
        return ir

    def write_json(self, out: TextIO, **extra) -> None:
        """The document as compact ASCII JSON with the ``extra`` fields first: the child's text as it came
        when the parent added nothing to it."""
        relay = self._text is not None and self.header.get("notes") == self.header.child_notes
        if not relay or "document" in self.__dict__:
            out.write(json.dumps(dict(extra, **self.document), separators=(",", ":")))
        else:  # ASCII only (extract.encode, origins.CodeSources.table), written a MiB at a time
            if extra:
                out.write(json.dumps(extra, separators=(",", ":"))[:-1] + ",")
            for i, piece in enumerate(self._text.pieces):
                for start in range(1 if extra and i == 0 else 0, len(piece), 1 << 20):
                    out.write(piece[start:start + (1 << 20)].decode("ascii"))
        out.write("\n")


def _decode(body: bytes) -> dict:
    """The child's document, decoded with the collector paused (json.loads makes a million containers on a
    51k-node graph: the collector would scan them all several times over while they are being made)."""
    try:
        with paused():
            return json.loads(body)
    except (ValueError, RecursionError) as exc:
        return IR("failed", error=LoadError("crashed", f"the extractor wrote unreadable output ({exc})")).to_json()


def read_output(stdout: bytes) -> dict:
    """The child's output as a Transport when its header is a ``tsinspect.ir/2`` one, else an error document."""
    try:
        header, newline, body = stdout.partition(b"\n")
        doc = json.loads(header)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ValueError(f"schema {doc.get('schema') if isinstance(doc, dict) else None!r}")
        if not (newline and body.startswith(b"{") and body.rstrip().endswith(b"}")):
            raise ValueError("no document after the header")
        return Transport(doc, body)
    except (ValueError, RecursionError) as exc:
        return IR("failed", error=LoadError("crashed", f"the extractor wrote unreadable output ({exc})")).to_json()


class EarlyChild:
    """A private work folder and the extraction child for the archive at ``path``, started before the archive
    is opened (a 10,000-parameter archive takes 0.15 s to open): the child confines itself and imports
    torch meanwhile, and loads nothing until :func:`extract_ir` hands it a copy the gate let through. One
    extraction each; closing it stops a child that was not used (an archive with no TorchScript to load,
    a refused one, an error) unheard."""

    def __init__(self, path: str, options: Options):
        self.options = options
        self._dir = tempfile.TemporaryDirectory(prefix="tsinspect-ir-")
        work = Path(self._dir.name)
        self.copies, self.run_dir = work / "copies", work / "cwd"  # the child may read copies/, its cwd, nothing else
        self.copies.mkdir()
        self.run_dir.mkdir()
        try:
            self.child = _start_child(path, self.copies / "meta.pt", self.run_dir, options, _POSITIONS)
        except BaseException:
            self._dir.cleanup()
            raise

    def close(self) -> None:
        try:
            self.child.stop()
        finally:
            self._dir.cleanup()

    def __enter__(self) -> "EarlyChild":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def early_child(path: str, options: Options) -> Iterator[EarlyChild | None]:
    """An EarlyChild for ``path``, closed on leaving; None when ``path`` names no file (opening it says why)."""
    if not os.path.isfile(path):
        yield None
        return
    with EarlyChild(path, options) as early:
        yield early


def extract_ir(archive: Archive, options: Options | None = None, early: EarlyChild | None = None,
               scanned: tuple[CodeIndex, ScanResult] | None = None, reading=None) -> Extraction:
    """The IR of ``archive``; ``early``: a child started for it (its options are the ones used), else one
    is started here. ``scanned``: (index, scan) of this very ``archive`` object, made already (the TUI's first
    screen): the gate judges that scan instead of scanning again. ``reading``: a lock held while the archive
    is read here (the TUI's reads share its file handle)."""
    options = early.options if early is not None else options or Options()
    if archive.format == rk.PT2:  # the exported graph is data: read without torch, no child (ir.pt2graph)
        from tsinspect.ir.pt2graph import pt2_ir

        index = CodeIndex()
        return Extraction(pt2_ir(archive).to_json(), scan_archive(archive, index), index)
    if archive.format == rk.TORCHSCRIPT_JSON:  # torch 2.x refuses it before reading anything
        index = index_code(archive)
        ir = IR("failed", error=LoadError("legacy_format", modeljson.REFUSAL))
        return Extraction(ir.to_json(), scan_archive(archive, index), index)
    if archive.format not in rk.IR_FORMATS:
        raise ArchiveError(f"{archive.format} archives have no TorchScript code and no IR graphs")
    if early is not None:
        return _gate_and_load(archive, options, early, scanned, reading or nullcontext())
    with EarlyChild(archive.path, options) as early:
        return _gate_and_load(archive, options, early, scanned, reading or nullcontext())


def extract_path(path: str, options: Options) -> Extraction:
    """Open the archive at ``path`` and extract its IR, with the child started before the archive is opened."""
    with early_child(path, options) as early, open_archive(path) as archive:
        return extract_ir(archive, options, early)


def _gate_and_load(archive: Archive, options: Options, early: EarlyChild, scanned, reading) -> Extraction:
    copies, run_dir, child = early.copies, early.run_dir, early.child
    if scanned is None:
        with reading:
            index = index_code(archive, outlined=False)  # the gate reads every method's tree
            scan = scan_archive(archive, index)
        index.release_trees()  # parsed again if the fallback asks (a failed load)
    else:
        index, scan = scanned
    refused = not scan.safe_to_load and not options.trust
    skip_gate = refused and os.environ.get(SKIP_GATE_ENV) == "1"
    if refused and not skip_gate:
        ir = IR("refused", error=LoadError("refused", scan.refusal(), hint="rerun with --trust to load it anyway"))
        return Extraction(ir.to_json(), scan, index)
    torch_error = archive.zip.torch_error if archive.zip is not None else None
    if torch_error:  # a copy would load where the original does not: show torch's answer instead
        ir = IR("failed", error=LoadError("torch_refuses_zip", f"torch's zip reader refuses this file: {torch_error}"))
        return Extraction(ir.to_json(), scan, index)
    notes = [f"the static gate refused this archive; skipped for a test ({SKIP_GATE_ENV}=1)"] if skip_gate else []
    sources = _code_sources(archive, reading)
    meta = copies / "meta.pt"
    with reading:
        full = options.full or _holds_quantized_tensors(archive)
        if not full:
            copy = write_meta_copy(archive, meta, debug_info=False)
    if full and not options.full:
        notes.append("quantized tensors have no meta kernels; loaded a full copy")
    if not full:
        document = _document(child, options, ["--rewritten"] if copy.rewritten else [], sources)
        error = document.get("error") or {}
        # (a child that wrote no document, killed or crashed, would not fare better on a full load)
        if document.get("torch_version") is None or error.get("kind") not in _FULL_WORTHY:
            return Extraction(_with_notes(document, notes), scan, index)
        meta.unlink()
        notes.append(f"meta loading failed ({error.get('message')}); loaded a full copy")
        copy_path = copies / "full.pt"
        with reading:
            write_full_copy(archive, copy_path, _memory_limit(archive.path, options), debug_info=False)
        document = _document(_start_child(archive.path, copy_path, run_dir, options, [*_POSITIONS, "--full"],
                                          early=False), options, None, sources)
    else:
        copy_path = copies / "full.pt"
        with reading:
            write_full_copy(archive, copy_path, _memory_limit(archive.path, options), debug_info=False)
        document = _document(child, options, ["--archive", str(copy_path), "--full"], sources)
    return Extraction(_with_notes(document, notes), scan, index)


# the copies hold no debug records: torch prints code/ positions, which the child sends and the parent maps
# to the original source (_placed), and the child reads graphs from torch's printer
_POSITIONS = ["--positions"]
_EMPTY_SOURCES = b',"sources":[]}'  # how the child's document ends when it sends positions


def _placed(document: dict, sources: CodeSources) -> dict:
    """The child's document with its ``sources`` table: the ``code/`` positions it sent (in its header),
    mapped here to the original source through the archive's debug records."""
    if not isinstance(document, Transport) or "positions" not in document:
        return document
    positions = document.pop("positions")
    body = document.body.rstrip()
    if not (isinstance(positions, list) and body.endswith(_EMPTY_SOURCES) and all(
            type(p) is list and len(p) == 3 and type(p[0]) is str and type(p[1]) is int and type(p[2]) is int
            for p in positions)):
        return IR("failed", error=LoadError("crashed", "the extractor wrote unreadable output (source positions)")).to_json()
    document.pieces = [body[:-len(_EMPTY_SOURCES) + 1], b'"sources":', sources.table(positions), b"}"]
    return document


def _code_sources(archive: Archive, reading=nullcontext()) -> CodeSources:
    """Where the child's ``code/`` positions come from (tsinspect.ir.origins): the ``code/`` and
    ``.debug_pkl`` records the copies were made from, looked up case-insensitively as torch does, each read
    holding ``reading``; a damaged record reads as none (no original place)."""
    records = {r.name.lower(): r for r in copied_records(archive) if r.kind in (rk.CODE, rk.DEBUG_INFO)}

    def read(name: str) -> bytes | None:
        record = records.get(name.lower())
        try:
            if record is None:
                return None
            with reading:
                # the safety scan read the .debug_pkl already
                return archive.pickle_record_bytes(record) if record.kind == rk.DEBUG_INFO else archive.read(record, PICKLE_CAP)
        except ArchiveError:
            return None
    return CodeSources(read, [r.name for r in records.values() if r.kind == rk.CODE])


def _holds_quantized_tensors(archive: Archive) -> bool:
    """Whether data.pkl rebuilds quantized tensors: meta loading would fail (``aten::empty_quantized`` has no
    meta kernel), so go straight to the full copy and save a second torch start (measured: 1.8x the time)."""
    record = archive.by_name.get("data.pkl")
    # a pickle names a global by its text, so without these bytes no walk can find it (walking a 10,000-parameter
    # data.pkl costs 0.2 s)
    if record is None or b"_rebuild_qtensor" not in archive.pickle_record_bytes(record):
        return False
    walked = archive.pickle_optional("data.pkl")
    return walked is not None and any(g.module == "torch._utils" and g.name == "_rebuild_qtensor"
                                      for g, _offset in walked.globals)


def _with_notes(document: dict, notes: list[str]) -> dict:
    if notes and isinstance(document.get("notes"), list):
        document["notes"][:0] = notes
    return document


def _memory_limit(path: str, options: Options) -> int:
    if options.memory_limit:
        return options.memory_limit
    size = os.path.getsize(path)
    # torch alone maps a few GiB of address space; a full load needs the storages once or twice more
    return 8 * GIB + 3 * size


def _child_env() -> dict:
    """The parent's environment without Python variables that could redirect imports in the child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(Path(tsinspect.__file__).resolve().parent.parent)  # this very tsinspect
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    # glibc keeps no 128 KiB pad on top of its heap: 1-1.3 MiB less at the child's peak, no measurable time
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.startswith("glibc.malloc.top_pad=") for t in tunables):
        env["GLIBC_TUNABLES"] = ":".join([*tunables, "glibc.malloc.top_pad=0"])
    return env


def _document(child: ConfinedChild, options: Options, rest: list[str] | None, sources: CodeSources) -> dict:
    """The child's IR document (one of an error when it timed out, crashed or wrote nothing), its nodes placed
    by ``sources``, whose debug records are read while the child works; ``rest``: the rest of an awaiting
    child's arguments."""
    stdout, error = child.finish(options.timeout, rest, meanwhile=sources.prefetch)
    return IR("failed", error=error).to_json() if error is not None else _placed(read_output(stdout), sources)


def _start_child(path: str, copy: Path, run_dir: Path, options: Options, flags: list[str],
                 early: bool = True) -> ConfinedChild:
    """The extraction child for ``copy``; ``early``: it waits, torch imported, for the rest of its arguments
    (:func:`_document`), so that it can start before the copy exists."""
    args = ["--archive", str(copy), *flags]
    for flag, value in (("--module", options.module), ("--method", options.method)):
        if value is not None:
            args += [flag, value]
    if options.inline:
        args.append("--inline")
    elif options.inline_module is not None:
        args += ["--inline-module", options.inline_module]
    for lib in options.libraries:
        args += ["--library", str(Path(lib).resolve())]
    if early:
        args.append("--await-rest")
    return start_confined_child("tsinspect.ir.extract", args, run_dir, _memory_limit(path, options),
                                options.timeout, awaiting=early)


def run_confined_child(module: str, args: list[str], run_dir: Path, memory_limit: int,
                       timeout: float, doing: str = "loading the archive") -> tuple[bytes, LoadError | None]:
    """Run ``python -m module args`` (a tsinspect torch child that limits and confines itself, see
    tsinspect.ir.extract) in ``run_dir`` with the limits, the timeout and the environment every torch
    child gets; its stderr goes to ``run_dir/../stderr.log``. Returns (stdout, None), or (b"", the error)
    when it timed out, crashed or wrote nothing."""
    return start_confined_child(module, args, run_dir, memory_limit, timeout).finish(timeout, doing=doing)


class ConfinedChild:
    """A confined child running (see start_confined_child)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, out_path: Path):
        self.proc, self.log_path, self.out_path = proc, log_path, out_path

    def finish(self, timeout: float, rest: list[str] | None = None, doing: str = "loading the archive",
               meanwhile: Callable[[], None] | None = None) -> tuple[bytes, LoadError | None]:
        """Wait for the child (after handing an awaiting child the ``rest`` of its arguments, and doing
        ``meanwhile``)."""
        proc = self.proc
        try:
            if rest is not None:
                try:
                    proc.stdin.write((json.dumps(list(rest)) + "\n").encode())
                    proc.stdin.close()
                except BrokenPipeError:  # it died before: its stderr says why
                    pass
            if meanwhile is not None:
                meanwhile()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            return b"", LoadError("timeout", f"torch did not finish {doing} within {timeout:g} s",
                                  hint="raise the limit with --timeout")
        finally:
            _kill_group(proc)  # whatever the child started goes with it
        stdout = self.out_path.read_bytes() if proc.returncode == 0 else b""
        if not stdout:
            return b"", _crash_error(proc.returncode, _tail(self.log_path))
        return stdout, None

    def stop(self) -> None:
        if self.proc.returncode is None:
            _kill_group(self.proc)
            self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


def start_confined_child(module: str, args: list[str], run_dir: Path, memory_limit: int, timeout: float,
                         awaiting: bool = False) -> ConfinedChild:
    """Start what :func:`run_confined_child` runs; ``awaiting``: with a pipe for its stdin (the rest of its
    arguments), else stdin closed."""
    cmd = [sys.executable, "-m", module, *args]
    if os.environ.get(SANDBOX_ENV) == "off":
        cmd += ["--no-sandbox", f"disabled by {SANDBOX_ENV}=off"]
    # the child sets these limits on itself, then confines itself, before importing torch (no preexec_fn:
    # the TUI has threads)
    cmd += ["--limit-memory", str(memory_limit), "--limit-cpu", str(int(timeout) + 5),
            "--limit-file-size", str(FILE_SIZE_LIMIT)]
    # stdout and stderr go to files, bounded by the child's file-size limit (a write past it kills the child
    # with SIGXFSZ), so an archive whose load-time code floods them cannot fill our memory
    log_path, out_path = run_dir.parent / "stderr.log", run_dir.parent / "stdout.json"
    with open(log_path, "wb") as log, open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=_child_env(),
                                stdin=subprocess.PIPE if awaiting else subprocess.DEVNULL,
                                stdout=out, stderr=log, start_new_session=True)
    return ConfinedChild(proc, log_path, out_path)


def _tail(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(max(0, os.path.getsize(path) - size))
        return fh.read()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _crash_error(code: int, stderr: bytes) -> LoadError:
    last = next((line for line in reversed(stderr.decode("utf-8", "replace").splitlines()) if line.strip()), "")
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        if -code == signal.SIGKILL:
            return LoadError("out_of_memory", "the extractor was killed (SIGKILL), most likely out of memory",
                             hint="raise the limit with --memory-limit or free memory")
        if -code == signal.SIGXCPU:
            return LoadError("timeout", "the extractor used up its CPU time limit", hint="raise --timeout")
        if -code == signal.SIGXFSZ:
            return LoadError("crashed", "the extractor tried to write a file larger than its limit")
        return LoadError("crashed", f"torch crashed while loading the archive ({name})"
                         + (f": {last[:200]}" if last else ""))
    if "MemoryError" in last or "bad_alloc" in last:
        return LoadError("out_of_memory", "the extractor ran out of memory", hint="raise the limit with --memory-limit")
    return LoadError("crashed", f"the extractor failed (exit status {code})" + (f": {last[:200]}" if last else ""))
