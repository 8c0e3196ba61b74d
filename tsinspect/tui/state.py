"""What the app knows about the open archive: the lower layers' result objects plus small caches.

Textual-free. Every read of the archive file goes through ``read_lock`` because the record worker and
the event loop may both read it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tsinspect.safety.codescan import ScanResult, scan_archive
from tsinspect.archive.debuginfo import Origin, load_source_map
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import CODE_CAP, Archive, open_archive
from tsinspect.archive.summary import ArchiveSummary, summarize
from tsinspect.archive.tensors import TensorInfo


@dataclass
class CodeFile:
    """A code record with the original file:line of each line (from its .debug_pkl), when present."""

    name: str
    text: str
    origins: list[Origin | None]
    debug_note: str | None = None  # why there is no blame


@dataclass
class Loaded:
    path: str
    archive: Archive
    summary: ArchiveSummary
    scan: ScanResult
    read_lock: threading.Lock = field(default_factory=threading.Lock)
    _code: dict[str, CodeFile] = field(default_factory=dict)

    @property
    def tensors_by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.summary.tensors + self.summary.constants + self.summary.traced_inputs}

    def cached_code_file(self, name: str) -> CodeFile | None:
        """``code_file(name)`` if it was read already (None: read it from a worker)."""
        return self._code.get(name)

    def code_file(self, name: str) -> CodeFile:
        """The code record ``name`` with its blame (cached; call from a worker for big files)."""
        if name not in self._code:
            with self.read_lock:
                raw = self.archive.read(name, CODE_CAP)
                note = None
                try:
                    smap = load_source_map(self.archive, name)
                except ArchiveError as exc:
                    smap, note = None, str(exc)
                    self.archive.problems.append(Problem("bad_debug_info", name + ".debug_pkl", str(exc)))
            text = raw.decode("utf-8", "replace")
            lines = text.split("\n")
            origins = smap.line_origins(raw)[:len(lines)] if smap else []
            if smap is None and note is None:
                note = "no debug info: original lines unknown"
            self._code[name] = CodeFile(name, text, origins + [None] * (len(lines) - len(origins)), note)
        return self._code[name]


def load(path: str) -> Loaded:
    """Open and summarise ``path`` and scan its code; ArchiveError when it is not an archive at all."""
    archive = open_archive(path)
    summary = summarize(archive)
    return Loaded(path, archive, summary, scan_archive(archive, summary.code))
