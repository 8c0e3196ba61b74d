"""Open any PyTorch archive file: container, top folder, records, format, capped reads and cached pickles."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from tsinspect.archive import records as rk
from tsinspect.archive.pickles import PickleError, WalkResult, walk
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.text import printable
from tsinspect.archive.zipread import ZipArchive, ZipEntry, open_zip

SMALL_CAP = 1024 * 1024  # version records, extra files shown as text
PICKLE_CAP = 256 * 1024 * 1024
CODE_CAP = 64 * 1024 * 1024


@dataclass
class Record:
    """A zip entry seen as an archive record: ``name`` is relative to the top folder."""

    name: str
    kind: str
    entry: ZipEntry
    inside: bool = True  # under the archive's top folder

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
        self.records: list[Record] = []
        self.prefix = ""
        self.note: str | None = None  # what the container is when it is not a zip tsinspect can browse
        self._pickles: dict[str, WalkResult] = {}
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ArchiveError(f"cannot open {printable(self.path)}: {exc.strerror or exc}") from None
        self.container, self.note = rk.sniff(head)
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
        if self.zip is not None:
            # one list: problems found later while reading records (CRC, sizes) land here too
            self.problems[:0] = self.zip.problems
            self.zip.problems = self.problems
            self._index_records()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

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
        entries = self.zip.entries
        if not entries:
            return
        first = entries[0].name
        self.prefix = first.split("/", 1)[0] + "/" if "/" in first else ""
        outside = 0
        for entry in entries:
            inside = entry.name.startswith(self.prefix)
            name = entry.name[len(self.prefix):] if inside else entry.name
            kind = rk.classify(name) if inside else rk.OTHER
            self.records.append(Record(name, kind, entry, inside))
            if not inside:
                outside += 1
                if outside <= 20:
                    self.problems.append(Problem("outside_top_folder", entry.display_name,
                                                 f"not under the top folder {printable(self.prefix)!r}; "
                                                 "torch refuses such archives"))
        if not self.prefix:
            self.problems.append(Problem("no_top_folder", None,
                                         "records are not under one top folder; torch refuses such archives"))

    @cached_property
    def by_name(self) -> dict[str, Record]:
        """First record of each name inside the top folder (duplicates are reported as problems)."""
        index: dict[str, Record] = {}
        for record in self.records:
            if record.inside:
                index.setdefault(record.name, record)
        return index

    @cached_property
    def format(self) -> str:
        if self.container == "pickle":
            return rk.LEGACY
        if self.container == "flatbuffer":
            return rk.LITE
        if self.zip is None:
            return rk.UNKNOWN
        fmt_record = self.by_name.get("archive_format")
        archive_format = self.read_optional(fmt_record, SMALL_CAP) if fmt_record else None
        return rk.detect_zip_format(set(self.by_name), archive_format)

    def find(self, name: str) -> Record:
        """A record by name, with or without the top folder; ArchiveError naming it when absent."""
        record = self.by_name.get(name)
        if record is None and self.prefix and name.startswith(self.prefix):
            record = self.by_name.get(name[len(self.prefix):])
        if record is None:
            record = next((r for r in self.records if r.entry.name == name), None)
        if record is None:
            raise ArchiveError("no such record in the archive", printable(name))
        return record

    def read(self, record: Record | str, limit: int) -> bytes:
        record = self.find(record) if isinstance(record, str) else record
        if self.zip is None:
            raise ArchiveError("the file has no records to read", record.display_name)
        return self.zip.read(record.entry, limit)

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
        if name not in self._pickles:
            record = self.find(name)
            data = self.read(record, PICKLE_CAP)
            try:
                self._pickles[name] = walk(data)
            except PickleError as exc:
                raise ArchiveError(str(exc), record.display_name) from None
        return self._pickles[name]

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
        return [r for r in self.records if r.inside and r.kind == kind]


def open_archive(path: str) -> Archive:
    return Archive(path)
