"""A zip reader that trusts nothing.

Python's ``zipfile`` hides NUL-truncated names, keeps only the last of duplicate names, trusts declared
sizes and raises on undecodable names; PyTorch (miniz) does not check CRCs. This reader parses the end
record and central directory itself, keys entries by index and raw name bytes, cross-checks every local
header, and records what is wrong as :class:`Problem` s instead of hiding it. Reads are lazy and capped.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.text import decode_name, printable

MAX_ENTRIES = 200_000
MAX_CENTRAL_DIRECTORY = 64 * 1024 * 1024
CHUNK = 1024 * 1024

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")

FLAG_ENCRYPTED = 0x1
FLAG_DATA_DESCRIPTOR = 0x8
FLAG_UTF8 = 0x800
_KNOWN_FLAGS = FLAG_ENCRYPTED | 0x2 | 0x4 | FLAG_DATA_DESCRIPTOR | FLAG_UTF8
STORED, DEFLATED = 0, 8


@dataclass
class ZipEntry:
    """One central-directory entry, with what its local header said."""

    index: int
    raw_name: bytes
    name: str  # decoded (backslash-escaped where not UTF-8), not yet made printable
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int  # as declared, before any shift for prepended data
    external_attr: int
    create_system: int
    data_offset: int | None = None  # where the member's bytes start; None when the local header is bad
    valid_name: bool = True
    overlaps: bool = False  # its bytes lie inside another member's: never read (overlapping zip bomb)

    @property
    def display_name(self) -> str:
        return printable(self.name)

    @property
    def is_dir(self) -> bool:
        return self.raw_name.endswith(b"/")

    @property
    def is_symlink(self) -> bool:
        return self.create_system == 3 and (self.external_attr >> 16) & 0o170000 == 0o120000

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def method_name(self) -> str:
        return {STORED: "stored", DEFLATED: "deflate"}.get(self.method, f"method {self.method}")


@dataclass
class ZipArchive:
    """An opened zip file: entries in central-directory order plus the problems found on the way.

    Use :func:`open_zip`. Problems found later while reading members (CRC, sizes) are appended.
    """

    path: str
    file_size: int
    entries: list[ZipEntry]
    problems: list[Problem]
    shift: int  # bytes of foreign data before the zip's first byte (0 for a normal archive)
    _fh: BinaryIO = field(repr=False)
    _crc_checked: set[int] = field(default_factory=set, repr=False)
    cd_start: int = 0  # where the central directory starts in the file (the members' bytes lie before it)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ZipArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _problem(self, kind: str, entry: ZipEntry | None, detail: str) -> None:
        self.problems.append(Problem(kind, entry.display_name if entry else None, detail))

    def _span(self, entry: ZipEntry) -> tuple[int, int]:
        if entry.data_offset is None:
            raise ArchiveError("its local header is missing or corrupt", entry.display_name)
        if entry.encrypted:
            raise ArchiveError("member is encrypted", entry.display_name)
        if entry.overlaps:
            # thousands of entries can share one small deflate bomb: reading each would be unbounded work
            raise ArchiveError("its bytes overlap another member's; not read", entry.display_name)
        end = entry.data_offset + entry.compressed_size
        if end > self.file_size:
            raise ArchiveError(
                f"truncated: declares {entry.compressed_size} bytes at offset {entry.data_offset}, "
                f"the file ends at {self.file_size}", entry.display_name)
        return entry.data_offset, end

    def iter_chunks(self, entry: ZipEntry, limit: int) -> Iterator[bytes]:
        """Yield the member's uncompressed bytes, at most ``limit`` of them.

        Raises ArchiveError when the member is larger than ``limit`` (checked against what it really
        inflates to, not what it declares). The CRC and declared size are checked at the end.
        """
        start, end = self._span(entry)
        if entry.method not in (STORED, DEFLATED):
            raise ArchiveError(f"unsupported compression {entry.method_name}", entry.display_name)
        if entry.method == STORED and entry.compressed_size > limit:
            raise ArchiveError(f"is {entry.compressed_size} bytes, over the cap of {limit}", entry.display_name)
        inflater = zlib.decompressobj(-15) if entry.method == DEFLATED else None
        crc, produced, pos = 0, 0, start
        try:
            while pos < end or (inflater is not None and inflater.unconsumed_tail):
                if inflater is not None and inflater.unconsumed_tail:
                    raw = inflater.unconsumed_tail
                else:
                    self._fh.seek(pos)
                    raw = self._fh.read(min(CHUNK, end - pos))
                    if not raw:
                        raise ArchiveError("truncated while reading", entry.display_name)
                    pos += len(raw)
                if inflater is None:
                    out = raw
                else:
                    out = inflater.decompress(raw, limit - produced + 1)
                produced += len(out)
                if produced > limit:
                    raise ArchiveError(f"inflates past the cap of {limit} bytes (declared {entry.size})",
                                       entry.display_name)
                crc = zlib.crc32(out, crc)
                if out:
                    yield out
                if inflater is not None and inflater.eof:
                    break
            if inflater is not None:
                tail = inflater.flush()
                produced += len(tail)
                if produced > limit:
                    raise ArchiveError(f"inflates past the cap of {limit} bytes", entry.display_name)
                crc = zlib.crc32(tail, crc)
                if tail:
                    yield tail
                if not inflater.eof:
                    raise ArchiveError("compressed data is truncated", entry.display_name)
        except zlib.error as exc:
            raise ArchiveError(f"corrupt compressed data ({exc})", entry.display_name) from None
        if entry.index not in self._crc_checked:
            self._crc_checked.add(entry.index)
            if produced != entry.size:
                self._problem("size_mismatch", entry, f"declares {entry.size} bytes, holds {produced}")
            if crc != entry.crc:
                self._problem("crc_mismatch", entry,
                              f"CRC-32 is {crc:08x}, the directory says {entry.crc:08x} (PyTorch does not check)")

    def read(self, entry: ZipEntry, limit: int) -> bytes:
        """The member's bytes, checked; ArchiveError past ``limit``."""
        return b"".join(self.iter_chunks(entry, limit))

    def read_range(self, entry: ZipEntry, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` of a stored member, without reading the rest."""
        start, end = self._span(entry)
        if entry.method != STORED:
            return self.read(entry, offset + length)[offset:offset + length]
        offset = max(0, min(offset, end - start))
        length = max(0, min(length, end - start - offset))
        self._fh.seek(start + offset)
        return self._fh.read(length)


def open_zip(path: str) -> ZipArchive:
    """Open ``path`` and parse its directory; ArchiveError when it is not a readable zip."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {printable(str(path))}: {exc.strerror or exc}") from None
    try:
        return _parse(path, fh)
    except BaseException:
        fh.close()
        raise


def _parse(path: str, fh: BinaryIO) -> ZipArchive:
    fh.seek(0, 2)
    file_size = fh.tell()
    problems: list[Problem] = []
    eocd_pos, eocd = _find_end_record(fh, file_size)
    _, disk, cd_disk, _, count, cd_size, cd_offset, comment_len = eocd
    trailing = file_size - (eocd_pos + _EOCD.size + comment_len)
    if trailing > 0:
        problems.append(Problem("trailing_data", None, f"{trailing} bytes follow the end of the zip"))
    if disk != 0 or cd_disk != 0:
        raise ArchiveError("multi-disk (split) zip archives are not supported")
    cd_end = eocd_pos  # where the central directory must end, whatever the records declare
    if eocd_pos >= _EOCD64_LOCATOR.size:
        fh.seek(eocd_pos - _EOCD64_LOCATOR.size)
        loc = _EOCD64_LOCATOR.unpack(fh.read(_EOCD64_LOCATOR.size))
        if loc[0] == b"PK\x06\x07":
            rec_pos = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
            if rec_pos < 0:
                raise ArchiveError("zip64 end record is out of range")
            fh.seek(rec_pos)
            rec = _EOCD64.unpack(fh.read(_EOCD64.size))
            if rec[0] != b"PK\x06\x06":
                raise ArchiveError("zip64 end record is missing where its locator points")
            count, cd_size, cd_offset = rec[7], rec[8], rec[9]
            cd_end = rec_pos
    if cd_size > cd_end:
        raise ArchiveError(f"central directory declares {cd_size} bytes, more than precede its end record")
    cd_start = cd_end - cd_size
    shift = cd_start - cd_offset
    if shift < 0:
        raise ArchiveError("central directory offset points past its end record (lying directory)")
    if shift:
        problems.append(Problem("data_before_zip", None,
                                f"{shift} bytes of other data precede the zip (a polyglot or a prefixed file)"))
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise ArchiveError(f"central directory is {cd_size} bytes, over the cap of {MAX_CENTRAL_DIRECTORY}")
    fh.seek(cd_start)
    cd = fh.read(cd_size)
    entries = _parse_central_directory(cd, count, problems)
    for entry in entries:
        _check_local_header(fh, entry, shift, cd_start, problems)
    _check_names(entries, problems)
    _check_overlaps(entries, shift, problems)
    return ZipArchive(str(path), file_size, entries, problems, shift, fh, cd_start=cd_start)


def _find_end_record(fh: BinaryIO, file_size: int) -> tuple[int, tuple]:
    tail_len = min(file_size, 0xFFFF + _EOCD.size)
    fh.seek(file_size - tail_len)
    tail = fh.read(tail_len)
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise ArchiveError("not a zip archive, or a truncated one (no end-of-central-directory record)")
        if pos + _EOCD.size <= len(tail):
            rec = _EOCD.unpack_from(tail, pos)
            if pos + _EOCD.size + rec[7] <= len(tail):
                return file_size - tail_len + pos, rec


def _parse_central_directory(cd: bytes, count: int, problems: list[Problem]) -> list[ZipEntry]:
    entries: list[ZipEntry] = []
    pos = 0
    while pos + 4 <= len(cd) and cd[pos:pos + 4] == b"PK\x01\x02":
        if len(entries) >= MAX_ENTRIES:
            problems.append(Problem("entry_flood", None,
                                    f"more than {MAX_ENTRIES} entries; only the first {MAX_ENTRIES} were read"))
            break
        if pos + _CENTRAL.size > len(cd):
            raise ArchiveError(f"central directory entry {len(entries)} is truncated")
        (_, made_by, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, disk, _, ext_attr,
         offset) = _CENTRAL.unpack_from(cd, pos)
        name_start = pos + _CENTRAL.size
        extra_start = name_start + nlen
        end = extra_start + elen + clen
        if end > len(cd):
            raise ArchiveError(f"central directory entry {len(entries)} runs past the directory")
        raw_name = cd[name_start:extra_start]
        usize, csize, offset = _apply_zip64(cd[extra_start:extra_start + elen], usize, csize, offset)
        name, valid = decode_name(raw_name)
        entry = ZipEntry(len(entries), raw_name, name, flags, method, crc, csize, usize, offset, ext_attr,
                         made_by >> 8, valid_name=valid)
        entries.append(entry)
        pos = end
    if len(entries) < MAX_ENTRIES and len(entries) != count:
        problems.append(Problem("entry_count_mismatch", None,
                                f"the end record declares {count} entries, the directory holds {len(entries)}"))
    return entries


def _apply_zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == 0x0001:
            values = iter(struct.unpack_from(f"<{len(body) // 8}Q", body))
            if usize == 0xFFFFFFFF:
                usize = next(values, usize)
            if csize == 0xFFFFFFFF:
                csize = next(values, csize)
            if offset == 0xFFFFFFFF:
                offset = next(values, offset)
        pos += 4 + size
    return usize, csize, offset


def _check_local_header(fh: BinaryIO, entry: ZipEntry, shift: int, cd_start: int,
                        problems: list[Problem]) -> None:
    def problem(kind: str, detail: str) -> None:
        problems.append(Problem(kind, entry.display_name, detail))

    if entry.flags & ~_KNOWN_FLAGS:
        problem("unusual_flags", f"general-purpose flag bits 0x{entry.flags:04x}")
    if entry.encrypted:
        problem("encrypted", "member is encrypted and cannot be read")
    if entry.method not in (STORED, DEFLATED):
        problem("unsupported_method", f"compression {entry.method_name}")
    if entry.is_symlink:
        problem("symlink", "member is a symbolic link")
    pos = entry.header_offset + shift
    if pos + _LOCAL.size > cd_start:
        problem("bad_local_header", f"local header offset {entry.header_offset} is outside the file's data")
        return
    fh.seek(pos)
    head = fh.read(_LOCAL.size)
    (sig, _, flags, method, _, _, crc, csize, usize, nlen, elen) = _LOCAL.unpack(head)
    if sig != b"PK\x03\x04":
        problem("bad_local_header", f"no local header at offset {entry.header_offset}")
        return
    local_name = fh.read(nlen)
    local_extra = fh.read(elen)
    if local_name != entry.raw_name:
        problem("name_mismatch", f"local header names it {printable(decode_name(local_name)[0])!r}")
    if method != entry.method:
        problem("method_mismatch", f"local header says compression {method}, directory says {entry.method}")
    if not flags & FLAG_DATA_DESCRIPTOR:
        usize, csize, _ = _apply_zip64(local_extra, usize, csize, 0)
        if (crc, csize, usize) != (entry.crc, entry.compressed_size, entry.size):
            problem("local_header_mismatch",
                    f"local header declares crc {crc:08x}, {csize}/{usize} bytes; directory "
                    f"{entry.crc:08x}, {entry.compressed_size}/{entry.size}")
    entry.data_offset = pos + _LOCAL.size + nlen + elen
    if entry.data_offset + entry.compressed_size > cd_start:
        problem("size_out_of_range",
                f"declares {entry.compressed_size} bytes, past the start of the central directory")


def _check_names(entries: list[ZipEntry], problems: list[Problem]) -> None:
    seen = Counter(e.raw_name for e in entries)
    truncated = Counter(e.raw_name.split(b"\0", 1)[0] for e in entries)
    for entry in entries:
        raw = entry.raw_name
        if not entry.valid_name:
            problems.append(Problem("invalid_name", entry.display_name, "name is not valid UTF-8"))
        if b"\0" in raw:
            problems.append(Problem("nul_in_name", entry.display_name,
                                    "name contains a NUL byte (Python's zipfile shows it cut at the NUL)"))
        if seen[raw] > 1:
            problems.append(Problem("duplicate_name", entry.display_name,
                                    f"{seen[raw]} entries share this name (entry {entry.index})"))
        elif truncated[raw.split(b"\0", 1)[0]] > 1 and b"\0" in raw:
            problems.append(Problem("nul_shadowed_name", entry.display_name,
                                    "cut at its NUL it equals another entry's name"))
        text = entry.name.replace("\\", "/")
        if text.startswith("/") or ".." in text.split("/") or (len(text) > 1 and text[1] == ":"):
            problems.append(Problem("unsafe_path", entry.display_name, "name is absolute or climbs with '..'"))


def _check_overlaps(entries: list[ZipEntry], shift: int, problems: list[Problem]) -> None:
    spans = sorted(((e.header_offset + shift, e.data_offset + e.compressed_size, e)
                    for e in entries if e.data_offset is not None), key=lambda span: span[:2])
    reach, owner = -1, None
    for start, end, entry in spans:
        if owner is not None and start < reach:
            entry.overlaps = True
            problems.append(Problem("overlapping_entries", entry.display_name,
                                    f"its bytes overlap those of {owner.display_name!r}"))
        if end > reach:
            reach, owner = end, entry
