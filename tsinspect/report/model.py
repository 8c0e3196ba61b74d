"""The report's content: the result objects of the lower layers gathered into one ``Report``.

Nothing here analyses anything: the summary, the safety scan, the code blame, the IR (through the same
safety gate as ``graph``), the op inventory and the diff come from their layers. ``Report.to_json()``
(schema ``tsinspect.report/1``, docs/report.md) carries all of it; the HTML and Markdown writers show
bounded parts of it (``Limits``).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import tsinspect
from tsinspect.archive import records as rk
from tsinspect.safety.codescan import ScanResult, scan_archive
from tsinspect.archive.debuginfo import Origin, load_source_map
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import CODE_CAP, Archive, open_archive
from tsinspect.archive.summary import ArchiveSummary, summarize
from tsinspect.archive.text import printable
from tsinspect.safety.sandbox import Confinement

SCHEMA = "tsinspect.report/1"


@dataclass
class Limits:
    """How much of each section the HTML and Markdown reports show (the JSON has everything)."""

    tensors: int = 200
    modules: int = 500
    code_lines: int = 20_000  # over all code files
    code_chars: int = 2_000_000  # over all code files
    ir_lines: int = 3_000  # per method
    ir_total_lines: int = 60_000  # over all methods
    ops: int = 300


@dataclass
class CodeFile:
    """A ``code/`` record with the original file:line of each line from its ``.debug_pkl``."""

    name: str
    lines: list[str]
    origins: list[Origin | None]
    debug_info: str | None  # layout of the source map, None without one
    note: str | None = None  # why there is no blame

    def to_json(self) -> dict:
        return {"file": self.name, "debug_info": self.debug_info, "note": self.note,
                "lines": [{"text": text, "origin": o.to_json() if o else None}
                          for text, o in zip(self.lines, self.origins)]}


@dataclass
class IRPart:
    """The IR as the safety gate and the extractor gave it, or why there is none."""

    document: dict | None = None  # tsinspect.ir/2 (load may be "refused" or "failed")
    ir: object = None  # tsinspect.ir.model.IR when loaded
    ops: list = field(default_factory=list)  # tsinspect.ir.views.OpEntry, from the IR or from code/
    ops_from: str | None = None  # "ir" or "ast"
    fallback: list = field(default_factory=list)  # tsinspect.ir.fallback.AstMethod when not loaded
    skipped: str | None = None  # why the IR was not asked for

    @property
    def loaded(self) -> bool:
        return bool(self.document) and self.document.get("load") in ("meta", "full", "pt2")

    @property
    def from_torch(self) -> bool:
        """Built by torch in the child (a pt2's graph is read from its JSON instead)."""
        return self.loaded and self.document.get("load") != "pt2"

    @property
    def how(self) -> str:
        """How the IR was obtained, one clause for every writer."""
        doc = self.document or {}
        if doc.get("load") == "pt2":
            return f"read from the exported program's JSON without torch (written by torch {doc.get('torch_version')})"
        return f"loaded with torch {doc.get('torch_version')} ({doc.get('load')} tensors) in a child process"

    @property
    def sandbox_warning(self) -> str | None:
        """``sandbox off: <why>`` when the torch child ran without its full sandbox."""
        sandbox = Confinement.from_json(self.document.get("sandbox")) if self.document else None
        return sandbox.message if sandbox and sandbox.state != "on" else None


@dataclass
class Report:
    summary: ArchiveSummary
    scan: ScanResult
    code: list[CodeFile]
    ir: IRPart
    diff: object = None  # tsinspect.diff.model.DiffResult
    limits: Limits = field(default_factory=Limits)
    generated: str = ""

    @property
    def title(self) -> str:
        name = os.path.basename(self.summary.path)
        if self.diff is not None and self.diff.mode == "trace_vs_script":
            return f"{os.path.basename(self.diff.traced)} (traced) vs {os.path.basename(self.diff.scripted)}"
        return name

    @property
    def unsafe(self) -> bool:
        return not self.scan.safe_to_load

    def to_json(self) -> dict:
        ir = None
        if self.ir.document is not None:
            ir = dict(self.ir.document, gate=self.scan.to_json())
            if not self.ir.loaded:
                ir["fallback"] = {"methods": [m.to_json() for m in self.ir.fallback]}
        return {
            "schema": SCHEMA,
            "tsinspect": tsinspect.__version__,
            "generated": self.generated,
            "info": self.summary.to_json(),
            "weights_by_module": [{"path": path, "tensors": n, "bytes": size}
                                  for path, (n, size) in self.summary.bytes_by_module().items()],
            "gate": self.scan.to_json(),
            "code": [f.to_json() for f in self.code],
            "ir": ir,
            "ir_skipped": self.ir.skipped,
            "ops": {"from": self.ir.ops_from,
                    "ops": [{"op": e.kind, "count": e.count, "uses": [u.to_json() for u in e.uses]}
                            for e in self.ir.ops]},
            "diff": self.diff.to_json() if self.diff is not None else None,
        }


@dataclass
class IROptions:
    """Whether and how to ask the extractor for the IR (see tsinspect.ir.run.Options)."""

    enabled: bool = True
    trust: bool = False
    libraries: list[str] = field(default_factory=list)
    timeout: float | None = None
    memory_limit: int | None = None


def build_report(path: str, ir_options: IROptions | None = None, diff_with: str | None = None,
                 limits: Limits | None = None) -> Report:
    """Open ``path`` and gather every section; ``diff_with`` adds the diff of the two archives."""
    ir_options = ir_options or IROptions()
    diff, extracted = None, {}
    if diff_with is not None:
        from tsinspect.diff.irread import extract_path
        from tsinspect.diff.run import diff_archives

        def extract(p: str, options):  # with the report's limits; kept, so that ``path`` is extracted once
            extracted[p] = extract_path(p, _run_options(ir_options, options))
            return extracted[p]

        diff = diff_archives(path, diff_with, ir="auto" if ir_options.enabled else "never", trust=ir_options.trust,
                             extract=extract)
    with open_archive(path) as archive, ExitStack() as stack:
        early = None
        if ir_options.enabled and path not in extracted and archive.format in rk.IR_FORMATS:
            from tsinspect.ir.run import EarlyChild, Options

            # torch imports in the child while the summary, the scan and the code files are read here
            early = stack.enter_context(EarlyChild(path, _run_options(ir_options, Options())))
        summary = summarize(archive)
        scan = scan_archive(archive, summary.code)
        code = [code_file(archive, name) for name in summary.code_files]
        ir = _ir_part(archive, summary, ir_options, extracted.get(path), early, scan)
    return Report(summary, scan, code, ir, diff, limits or Limits(), _now())


def code_file(archive: Archive, name: str) -> CodeFile:
    raw = archive.read(name, CODE_CAP)
    lines = raw.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    smap, note = None, None
    try:
        smap = load_source_map(archive, name)
    except ArchiveError as exc:
        note = str(exc)
        archive.problems.append(Problem("bad_debug_info", printable(name) + ".debug_pkl", note))
    if smap is None and note is None:
        note = "no debug info: original lines unknown"
    origins = smap.line_origins(raw)[:len(lines)] if smap else []
    return CodeFile(name, lines, origins + [None] * (len(lines) - len(origins)), smap.layout if smap else None, note)


def _ir_part(archive: Archive, summary: ArchiveSummary, options: IROptions, result=None, early=None,
             scan: ScanResult | None = None) -> IRPart:
    """``result``: this archive's extraction when the diff already made one (it walked every module); else
    ``early`` (tsinspect.ir.run.EarlyChild) extracts it, gated by ``scan``, the report's own."""
    if archive.format == rk.PT2:  # the exported graph is data: no child, no gate
        from tsinspect.ir.pt2graph import pt2_ir
        from tsinspect.ir.views import op_inventory

        try:
            ir = pt2_ir(archive)
        except ArchiveError as exc:
            return IRPart(skipped=f"the exported program could not be read ({exc})")
        return IRPart(ir.to_json(), ir, op_inventory(ir), "ir")
    if archive.format not in rk.IR_FORMATS:
        return IRPart(skipped=f"a {archive.format} file has no TorchScript code and no IR")
    from tsinspect.ir.fallback import ast_methods, ast_op_inventory

    if not options.enabled:
        return IRPart(skipped="not asked for (--ir never)", fallback=ast_methods(summary.code),
                      ops=ast_op_inventory(summary.code), ops_from="ast")
    from tsinspect.ir.run import Options, extract_ir

    result = result or extract_ir(archive, _run_options(options, Options()), early,
                                  (summary.code, scan) if scan is not None else None)
    part = IRPart(result.document)
    if part.loaded:
        from tsinspect.ir.views import op_inventory

        part.ir = result.ir
        part.ops, part.ops_from = op_inventory(result.ir), "ir"
    else:
        part.fallback = ast_methods(result.index)
        part.ops, part.ops_from = ast_op_inventory(result.index), "ast"
    return part


def _run_options(options: IROptions, run):
    """The extractor's options ``run`` (tsinspect.ir.run.Options) with the report's trust, libraries and limits."""
    run.trust, run.libraries, run.memory_limit = options.trust, options.libraries, options.memory_limit
    if options.timeout is not None:
        run.timeout = options.timeout
    return run


def _now() -> str:
    """UTC time of the report; SOURCE_DATE_EPOCH makes it reproducible."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch and epoch.isdigit() else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
