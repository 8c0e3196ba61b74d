"""Messages the workers post to the app (they never touch widgets themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class ArchiveLoaded(Message):
    """The archive was opened and summarised (``state`` is a tsinspect.tui.state.Loaded); its safety scan
    runs on (ArchiveScanned follows)."""

    state: Any


@dataclass
class ArchiveScanned(Message):
    """The safety scan of ``state`` (a tsinspect.tui.state.Loaded shown already) is done: ``state.scan``, or
    ``state.scan_error`` when it failed."""

    state: Any


@dataclass
class ArchiveFailed(Message):
    """The file could not be opened as an archive; ``message`` is one line for the user."""

    message: str


@dataclass
class IRLoaded(Message):
    """The extraction child answered (``extraction`` is a tsinspect.ir.run.Extraction; its IR may be
    refused or failed, and is decoded already); ``counts``: its graphs' node counts (tui.views.ir.count_nodes).
    The tree shows at once; where each value is defined and used follows as IRIndexed, once the tree is on
    screen (the handler sets ``shown``, a threading.Event, after the next refresh)."""

    extraction: Any
    counts: dict
    shown: Any = None


@dataclass
class IRIndexed(Message):
    """tsinspect.tui.views.ir.index_graphs of an extraction already shown (IRLoaded)."""

    extraction: Any
    index: dict


@dataclass
class IRFailed(Message):
    """Asking for the IR raised (the archive has no TorchScript code, or could not be reread)."""

    message: str


@dataclass
class RecordReady(Message):
    """A record's content, prepared off the event loop, ready to show (``kind`` picks the pane)."""

    name: str
    kind: str
    payload: Any


@dataclass
class DiffReady(Message):
    """The comparison of archives ``a`` and ``b`` finished: ``result`` (a tsinspect.diff.model.DiffResult),
    or ``error``, one line for the user."""

    a: str
    b: str
    result: Any = None
    error: str | None = None


@dataclass
class CompareChecked(Message):
    """The compare dialog's check of ``path``: ``error`` says why it cannot be compared (None: it can)."""

    path: str
    error: str | None = None


@dataclass
class SearchDone(Message):
    """The matches of ``query`` in ``view``, found by a worker (targets the view's jump understands)."""

    view: str
    query: str
    matches: list


@dataclass
class Browse(Message):
    """``diff A B --tui``: the archive to browse (the scripted one of the two), known before the diff ends."""

    path: str
