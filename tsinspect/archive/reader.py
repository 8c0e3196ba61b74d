"""Open any PyTorch archive file: container, top folder, records, format, capped reads and cached pickles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from tsinspect.archive import records as rk
from tsinspect.archive.legacy import LegacyStream, open_legacy
from tsinspect.archive.pickles import PickleError, WalkResult, walk
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.text import decode_name, printable
from tsinspect.archive.zipread import ZipArchive, ZipEntry, open_zip
from tsinspect.collector import paused

SMALL_CAP = 1024 * 1024  # version records, extra files shown as text
PICKLE_CAP = 256 * 1024 * 1024
CODE_CAP = 64 * 1024 * 1024
EXACT_AFTER = 64  # lookups answered by the search before Archive.lookup builds its table of exact names


@dataclass(slots=True)
class Record:
    """A zip entry seen as an archive record: ``name`` is relative to the top folder.

    ``shadowed_by`` is set when torch, asked for this record's name, reads another entry (a duplicate, or a
    name that differs only in case: torch matches names case-insensitively); ``hidden`` when torch cannot
    reach the entry at all (past the entry count the end record declares).
    """

    name: str
    kind: str
    entry: ZipEntry
    inside: bool = True  # under the archive's top folder (compared case-insensitively, as torch does)
    shadowed_by: "Record | None" = None
    hidden: bool = False

    @property
    def torch_reads(self) -> bool:
        """Whether this is the entry torch reads for its name."""
        return self.inside and self.shadowed_by is None and not self.hidden

    @property
    def display_name(self) -> str:
        return printable(self.name)

    @property
    def size(self) -> int:
        return self.entry.size

    @property
    def compressed_size(self) -> int:
        return self.entry.compressed_size


class Archive:
    """An archive opened for inspection. Nothing is read beyond the directory until asked."""

    def __init__(self, path: str):
        self.path = str(path)
        self.problems: list[Problem] = []
        self.zip: ZipArchive | None = None
        self.legacy: LegacyStream | None = None  # a pre-zip torch.save stream, its parts as records
        self.records: list[Record] = []
        self.prefix = ""
        self.note: str | None = None  # what the container is when it is not a zip tsinspect can browse
        self._pickles: dict[int, WalkResult] = {}  # by id() of the record
        self._read_pickles: dict[int, bytes | ArchiveError] = {}  # their bytes (or why not), read once
        self._prefix_raw = b""
        self._by_index: dict[int, Record] = {}
        self._exact: dict[str, Record] | None = None  # see _exact_names
        self._lookups = 0
        self.export_zip = False  # an early torch.export.save zip (see _index_records)
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ArchiveError(f"cannot open {printable(self.path)}: {exc.strerror or exc}") from None
        self.container, self.note = rk.sniff(head)
        with paused():  # entries and records by the ten thousand: young collections would scan them again and again
            self._open(head)

    def _open(self, head: bytes) -> None:
        if self.container in ("zip", "unknown"):
            try:
                self.zip = open_zip(self.path)
            except ArchiveError as exc:
                if self.container == "zip":
                    raise ArchiveError(f"{printable(self.path)}: {exc}") from None
                what = self.note or rk.what_it_is(head)
                if what:
                    raise ArchiveError(f"{printable(self.path)} is {what}") from None
                shown = head[:8].hex(" ")
                raise ArchiveError(f"{printable(self.path)} is not a PyTorch archive "
                                   f"(first bytes {shown}; {exc})") from None
            self.container = "zip"
        elif self.container == "pickle":
            self._note_appended_zip()
            self.legacy = open_legacy(self.path, self.problems)
            self.records = [Record(e.name, rk.classify(e.name), e) for e in self.legacy.entries] if self.legacy else []
        if self.zip is not None:
            # one list: problems found later while reading records (CRC, sizes) land here too
            self.problems[:0] = self.zip.problems
            self.zip.problems = self.problems
            self._index_records()

    def close(self) -> None:
        for source in (self.zip, self.legacy):
            if source is not None:
                source.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _note_appended_zip(self) -> None:
        try:
            appended = open_zip(self.path)
        except ArchiveError:
            return
        appended.close()
        self.problems.append(Problem("appended_container", None,
                                     "a zip archive is appended to this pickle stream (a polyglot file: "
                                     "torch.load reads the pickle, zip tools see the zip)"))

    def _index_records(self) -> None:
        """Records as torch sees them: the top folder is the first entry's name up to its first '/', every
        lookup is ``<top folder>/<name>`` matched case-insensitively (PyTorchStreamReader over miniz)."""
        entries = self.zip.entries
        if not entries:
            return
        first = entries[0].raw_name
        cut = first.find(b"/")
        self._prefix_raw = first[:cut + 1] if cut >= 0 else b""
        self.prefix = decode_name(self._prefix_raw)[0]
        # torch.export.save before the pt2 package format wrote a plain zip with no top folder, which
        # torch.export.load still reads (with Python's zipfile, by exact name): its records are not "outside"
        self.export_zip = not self._prefix_raw and any(e.raw_name == b"serialized_exported_program.json"
                                                       for e in entries)
        prefix_raw = self._prefix_raw
        lowered = prefix_raw.lower()
        cut, chars = len(prefix_raw), len(self.prefix)
        outside = case_variants = 0
        by_index: dict[int, Record] = {}
        records, classify = self.records, rk.classify
        for entry in entries:
            raw = entry.raw_name
            if prefix_raw and raw.startswith(prefix_raw):  # the usual entry: under the top folder as written
                # (the prefix ends at a character, '/')
                name = entry.name[chars:] if entry.valid_name else decode_name(raw[cut:])[0]
                record = Record(name, classify(name), entry, True, None, not entry.torch_visible)
                records.append(record)
                by_index[entry.index] = record
                continue
            inside = bool(prefix_raw) and raw.lower().startswith(lowered)
            name = decode_name(raw[cut:])[0] if inside else entry.name
            kind = classify(name) if inside else rk.OTHER
            record = Record(name, kind, entry, inside, hidden=not entry.torch_visible)
            records.append(record)
            by_index[entry.index] = record
            if inside:
                case_variants += 1
                if case_variants <= 20:
                    self.problems.append(Problem(
                        "top_folder_case", entry.display_name,
                        f"its top folder differs from {printable(self.prefix)!r} only in case: torch.jit.load "
                        "finds it, torch.load refuses the archive"))
            if not inside and not self.export_zip:
                outside += 1
                if outside <= 20:
                    self.problems.append(Problem("outside_top_folder", entry.display_name,
                                                 f"not under the top folder {printable(self.prefix)!r}; "
                                                 "torch never reads it (torch.load refuses such archives)"))
        if not self.prefix and not self.export_zip:
            self.problems.append(Problem("no_top_folder", None,
                                         "the first entry is not in a folder; torch refuses such archives"))
        self._by_index = by_index
        def key(raw: bytes) -> bytes:  # what a lookup compares: cut at a NUL, ASCII case ignored
            return raw.split(b"\0", 1)[0].lower()

        visible, counts, _ = self.zip._index()  # the visible entries' names, lowered (not cut at a NUL)
        if b"\0" in b"/".join(visible):
            keys = Counter(key(e.raw_name) for e in entries if e.torch_visible)
        else:  # no name to cut: the same keys, counted already
            keys = counts
        shadowed = 0
        for record in self.records if len(keys) < len(visible) else ():  # else every name is its own record
            raw = record.entry.raw_name
            if not record.inside or record.hidden or record.entry.is_dir or keys[key(raw)] < 2:
                continue  # a name no other entry shares (but for case) is its own record
            chosen = self.zip.locate(raw)
            if chosen is not None and chosen.index != record.entry.index:
                record.shadowed_by = by_index[chosen.index]
                shadowed += 1
                if shadowed <= 20 and record.entry.raw_name != chosen.raw_name \
                        and record.entry.raw_name.lower() == chosen.raw_name.lower():
                    self.problems.append(Problem(
                        "case_shadowed_name", record.display_name,
                        f"torch matches names case-insensitively and reads "
                        f"{record.shadowed_by.display_name!r} for this name"))

    def lookup(self, name: str) -> Record | None:
        """The record torch reads when it asks for ``name`` (relative to the top folder), or None.

        This is the one resolution every view uses: case-insensitive, and of several matching entries the
        one miniz's search finds (see :meth:`ZipArchive.locate`).
        """
        if self.zip is None:  # records of another container (a legacy stream's parts): names are exact
            return next((r for r in self.records if r.name == name), None)
        if not self.prefix:
            return None
        exact = self._exact
        if exact is None:
            self._lookups += 1
            if self._lookups > EXACT_AFTER:  # many lookups to come (a tensor's storage each): worth a table
                exact = self._exact = self._exact_names()
        if exact is not None:
            record = exact.get(name)
            if record is not None:
                return record
        entry = self.zip.locate(self._prefix_raw + name.encode("utf-8", "surrogateescape"))
        return None if entry is None else self._by_index[entry.index]

    def _exact_names(self) -> dict[str, Record]:
        """Record name -> the record, for the names ``locate`` answers with their own entry at once: valid
        UTF-8 under the top folder as written, no NUL, and a key no other entry shares. What ``lookup`` gives
        for such a name without encoding it and cutting and lowering the bytes (10,000 tensors' storages)."""
        unique = self.zip._index()[2]
        prefix = self._prefix_raw
        exact = {}
        for record in self.records:
            entry = record.entry
            raw = entry.raw_name
            if entry.valid_name and raw.startswith(prefix) and b"\0" not in raw \
                    and unique.get(raw.lower()) == entry.index:
                exact[record.name] = record
        return exact

    def torch_records(self) -> list[Record]:
        """The records torch can read, one per name (the entry it reads), in directory order: what a copy of
        the archive must hold for torch to see exactly what tsinspect saw."""
        return [r for r in self.records if r.inside and r.shadowed_by is None and not r.hidden  # torch_reads
                and not getattr(r.entry, "is_dir", False)]

    @cached_property
    def by_name(self) -> "RecordIndex":
        """Records by name, resolved as torch resolves them (see :meth:`lookup`)."""
        return RecordIndex(self)

    @cached_property
    def format(self) -> str:
        if self.container == "pickle":
            return rk.LEGACY
        if self.container == "flatbuffer":
            return rk.LITE
        if self.zip is None:
            return rk.UNKNOWN
        if self.export_zip:
            return rk.PT2
        fmt_record = self.by_name.get("archive_format")
        archive_format = self.read_optional(fmt_record, SMALL_CAP) if fmt_record else None
        # torch's lookups ignore ASCII case, and the names detection asks for are all lower case
        names = [r.name for r in self.torch_records()]
        if "".join(names).isascii():  # ascii_lower of each, in C
            return rk.detect_zip_format(set(map(str.lower, names)), archive_format)
        return rk.detect_zip_format({rk.ascii_lower(name) for name in names}, archive_format)

    def find(self, name: str) -> Record:
        """A record by name, with or without the top folder, resolved as torch resolves it; else the entry of
        exactly that full name (one outside the top folder). ArchiveError naming it when absent."""
        record = self.lookup(name)
        if record is None and self.prefix and name.startswith(self.prefix):
            record = self.lookup(name[len(self.prefix):])
        if record is None:
            record = next((r for r in self.records if r.entry.name == name), None)
        if record is None:
            raise ArchiveError("no such record in the archive", printable(name))
        return record

    def read(self, record: Record | str, limit: int) -> bytes:
        record = self.find(record) if isinstance(record, str) else record
        if self.members is None:
            raise ArchiveError("the file has no records to read", record.display_name)
        return self.members.read(record.entry, limit)

    @property
    def members(self) -> ZipArchive | LegacyStream | None:
        """What reads the records' bytes: the zip, or the legacy stream."""
        return self.zip or self.legacy

    def read_optional(self, record: Record | None, limit: int) -> bytes | None:
        """Like read, but a damaged record becomes a problem and None."""
        if record is None:
            return None
        try:
            return self.read(record, limit)
        except ArchiveError as exc:
            self.problems.append(Problem("unreadable_record", record.display_name, str(exc)))
            return None

    def text(self, record: Record | str, limit: int = CODE_CAP) -> str:
        return self.read(record, limit).decode("utf-8", "replace")

    def pickle(self, name: str) -> WalkResult:
        """The walked pickle record ``name`` (cached); ArchiveError naming the record if it is bad."""
        record = self.find(name)
        key = id(record)  # records live as long as the archive: one walk per entry, whatever name found it
        if key not in self._pickles:
            data = self._pickle_bytes(record, keep=False)  # what pickle_bytes read, else read now
            try:
                with paused():  # containers by the hundred thousand, rarely in a cycle
                    self._pickles[key] = walk(data)
            except PickleError as exc:
                raise ArchiveError(str(exc), record.display_name) from None
        return self._pickles[key]

    def pickle_bytes(self, name: str) -> bytes | None:
        """The bytes of the pickle record ``name`` (None when absent or unreadable), kept: the next ``pickle``
        of it walks these (or raises what reading them raised) instead of reading the record again."""
        record = self.lookup(name)
        if record is None:
            return None
        try:
            return self._pickle_bytes(record)
        except ArchiveError:
            return None

    def pickle_record_bytes(self, record: Record) -> bytes:
        """Like ``pickle_bytes`` for this very record (of several with one name too); ArchiveError when it is
        unreadable. Read once whoever asks first (the summary, the safety scan, the IR's source map)."""
        return self._pickle_bytes(record)

    def _pickle_bytes(self, record: Record, keep: bool = True) -> bytes:
        read = self._read_pickles.get(id(record)) if keep else self._read_pickles.pop(id(record), None)
        if read is None:
            try:
                read = self.read(record, PICKLE_CAP)
            except ArchiveError as exc:
                read = exc
            if keep:
                self._read_pickles[id(record)] = read
        if isinstance(read, ArchiveError):
            raise read
        return read

    def walked(self, record: Record) -> WalkResult | None:
        """The record's walk if ``pickle`` made it already, else None (the safety scan reuses it)."""
        return self._pickles.get(id(record))

    def pickle_optional(self, name: str) -> WalkResult | None:
        """The walked pickle, or None (with a problem) when absent or damaged."""
        if name not in self.by_name:
            return None
        try:
            return self.pickle(name)
        except ArchiveError as exc:
            self.problems.append(Problem("bad_pickle", printable(name), str(exc).split(": ", 1)[-1]))
            return None

    def records_of(self, kind: str) -> list[Record]:
        """The records of a kind that torch reads (shadowed twins are in ``records``, marked)."""
        return [r for r in self.records if r.kind == kind and r.torch_reads]


class RecordIndex(Mapping):
    """``archive.by_name``: a read-only mapping whose lookups are torch's (:meth:`Archive.lookup`); iterating
    gives the names of the records torch reads."""

    def __init__(self, archive: Archive):
        self._archive = archive

    def __getitem__(self, name: str) -> Record:
        record = self._archive.lookup(name) if isinstance(name, str) else None
        if record is None:
            raise KeyError(name)
        return record

    def get(self, name: str, default=None):  # Mapping's, without a KeyError per miss
        record = self._archive.lookup(name) if isinstance(name, str) else None
        return default if record is None else record

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._archive.lookup(name) is not None

    def __iter__(self):
        return (r.name for r in self._archive.torch_records())

    def __len__(self) -> int:
        return len(self._archive.torch_records())


def open_archive(path: str) -> Archive:
    return Archive(path)
