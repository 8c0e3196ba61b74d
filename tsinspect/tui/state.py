"""What the app knows about the open archive: the lower layers' result objects plus small caches.

Textual-free. Every read of the archive file goes through ``read_lock`` because the record worker and
the event loop may both read it. The safety scan's verdict comes after the summary (``open_loaded``, then
``Loaded.run_scan``): the first screen does not wait for it, whatever needs it does (``verdict``).
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


class _LockedCalls:
    """The archive as the scan sees it: each call of one of its methods holds ``lock`` (the scan reads a record
    now and then between long stretches of work on code/; holding the lock for the whole scan would keep the
    record view waiting that long). Attributes are the archive's own: the scan judges that very object."""

    def __init__(self, archive: Archive, lock: threading.Lock):
        self._archive, self._lock = archive, lock

    def __getattr__(self, name: str):
        value = getattr(self._archive, name)
        if not callable(value):
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return locked


@dataclass
class Loaded:
    path: str
    archive: Archive
    summary: ArchiveSummary
    scan: ScanResult | None = None  # None until run_scan is done (the first screen does not wait for it)
    read_lock: threading.Lock = field(default_factory=threading.Lock)
    scanned: threading.Event = field(default_factory=threading.Event)  # set when ``scan`` is (or the scan failed)
    scan_error: str | None = None  # why the scan failed (an internal error: nothing loads then)
    _code: dict[str, CodeFile] = field(default_factory=dict)

    def run_scan(self) -> ScanResult:
        """The safety scan of code/ (from a worker: seconds on an archive of thousands of code files); every read
        of the archive under ``read_lock``, the lock not held in between."""
        try:
            self.scan = scan_archive(_LockedCalls(self.archive, self.read_lock), self.summary.code)
        except Exception as exc:  # unknown is unsafe: ``scan`` stays None, and nothing waiting for it loads
            self.scan_error = f"the safety scan failed: internal error ({type(exc).__name__}: {exc})"
            raise
        finally:
            self.scanned.set()
        return self.scan

    def verdict(self, cancelled=lambda: False) -> ScanResult | None:
        """Wait for the scan (from a worker), polling ``cancelled``; None if cancelled or the scan failed."""
        while not self.scanned.wait(0.01):
            if cancelled():
                return None
        return self.scan

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


def open_loaded(path: str) -> Loaded:
    """Open and summarise ``path`` (not scanned yet: ``run_scan``); ArchiveError when it is not an archive."""
    archive = open_archive(path)
    return Loaded(path, archive, summarize(archive))


def load(path: str) -> Loaded:
    """Open, summarise and scan ``path``."""
    loaded = open_loaded(path)
    loaded.run_scan()
    return loaded
