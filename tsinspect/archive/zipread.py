"""A zip reader that trusts nothing.

Python's ``zipfile`` hides NUL-truncated names, keeps only the last of duplicate names, trusts declared
sizes and raises on undecodable names; PyTorch (miniz) does not check CRCs. This reader parses the end
record and central directory itself, keys entries by index and raw name bytes, cross-checks every local
header, and records what is wrong as :class:`Problem` s instead of hiding it. Reads are lazy and capped.

Which zip it reads is decided as PyTorch's reader (``PyTorchStreamReader`` over miniz) decides, because that
is the archive torch runs: the *last* end record with 22 bytes after it, whatever its comment length says;
zip64 through the locator's offset; offsets taken as absolute (torch never shifts for prepended data); the
number of entries the end record declares; and records found by miniz's case-insensitive binary search
(:meth:`ZipArchive.locate`). Where other zip tools would read something else, that is a problem.
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
INFLATE_BUDGET = 1 << 30  # inflated bytes per opened archive, all reads together (one shared deflate bomb
# behind thousands of entries or hidden local headers costs at most this much work)

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
_METHOD_NAMES = {STORED: "stored", DEFLATED: "deflate"}
WHOLE_READ = 16 * 1024 * 1024  # a zip this small has its local headers checked from one read
LOCAL_EXTRA_AHEAD = 128  # bytes of a local header's extra field read with it (torch's alignment padding fits)


class InflateBudgetSpent(ArchiveError):
    """The archive's members together inflated past :data:`INFLATE_BUDGET`: nothing more is inflated."""

    def __init__(self, member: str | None):
        super().__init__(f"not read: this archive's members together inflate past {INFLATE_BUDGET} bytes "
                         "(a deflate bomb shared by many entries?)", member)


@dataclass(slots=True)
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
    torch_visible: bool = True  # within the entry count the end record declares (miniz indexes no more)

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
        return _METHOD_NAMES.get(self.method) or f"method {self.method}"


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
    cd_start: int = 0  # where the central directory starts in the file
    end_record: int = 0  # where the end record torch reads is
    alternatives: list[int] = field(default_factory=list)  # other end records stricter zip tools would read
    torch_error: str | None = None  # why torch's zip reader would refuse the file (None: it opens it)
    inflate_budget: int = INFLATE_BUDGET  # inflated bytes still allowed, all members together
    _keyed: tuple | None = field(default=None, repr=False)  # see _index
    _search_order: list[int] | None = field(default=None, repr=False)

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
                    out = inflater.decompress(raw, min(limit - produced, self.inflate_budget) + 1)
                    self._charge(len(out), entry)
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
                self._charge(len(tail), entry)
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

    def _charge(self, inflated: int, entry: ZipEntry | None) -> None:
        self.inflate_budget -= inflated
        if self.inflate_budget < 0:
            raise InflateBudgetSpent(entry.display_name if entry is not None else None)

    def inflate(self, raw: bytes, limit: int, what: str | None = None) -> bytes:
        """Raw deflate ``raw`` inflated to at most ``limit`` bytes, charged to the archive's budget (for bytes
        outside any directory entry, such as hidden local entries); ArchiveError when the budget is spent."""
        inflater = zlib.decompressobj(-15)
        try:
            out = inflater.decompress(raw, max(0, min(limit, self.inflate_budget + 1)))
        except zlib.error as exc:
            raise ArchiveError(f"corrupt compressed data ({exc})", what) from None
        self.inflate_budget -= len(out)
        if self.inflate_budget < 0:
            raise InflateBudgetSpent(what)
        return out

    # -- lookup as torch does it -------------------------------------------------------------------------
    def locate(self, name: bytes) -> ZipEntry | None:
        """The entry torch reads for the full member ``name`` (top folder included), or None.

        miniz (``mz_zip_reader_locate_file`` with no flags, as PyTorchStreamReader calls it) sorts the
        declared entries by ASCII-lowercased name with a heap sort and binary-searches that order, comparing
        case-insensitively: ``DATA.PKL`` answers for ``data.pkl``, and of several such names the one the
        search lands on wins, whatever its place in the directory. The name is a C string (cut at a NUL).
        """
        keys, counts, unique = self._index()
        key = name.split(b"\0", 1)[0].lower()
        found = unique.get(key)
        if found is not None:  # no other entry has this key: the search can only land on it
            return self.entries[found]
        if key not in counts:  # no entry has it
            return None
        order = self._order()
        low, high = 0, len(order) - 1
        while low <= high:
            mid = low + ((high - low) >> 1)
            probe = keys[order[mid]]
            if probe == key:
                return self.entries[order[mid]]
            if probe < key:
                low = mid + 1
            else:
                high = mid - 1
        return None

    def candidates(self, name: bytes) -> list[ZipEntry]:
        """Every declared entry whose name equals ``name`` case-insensitively, in directory order."""
        keys = self._index()[0]
        key = name.split(b"\0", 1)[0].lower()
        return [self.entries[i] for i, k in enumerate(keys) if k == key]

    def _index(self) -> tuple:
        """(the visible entries' keys, how many entries share each key, key -> index of the entry that alone
        has it)."""
        if self._keyed is None:
            visible = [e for e in self.entries if e.torch_visible]
            keys = [e.raw_name.lower() for e in visible]  # bytes.lower() is ASCII-only, like MZ_TOLOWER
            counts = Counter(keys)
            # keys no other entry shares -> their entry's index (visible entries come first, in order)
            unique = {key: visible[i].index for i, key in enumerate(keys) if counts[key] == 1}
            self._keyed = (keys, counts, unique)
        return self._keyed

    def _order(self) -> list[int]:
        """The visible entries' indices in miniz's sorted order (made when a search first needs it)."""
        if self._search_order is None:
            keys, counts, _ = self._index()
            if len(counts) == len(keys):
                self._search_order = sorted(range(len(keys)), key=keys.__getitem__)  # no ties: any sort is miniz's
            else:
                self._search_order = _miniz_heap_sort(keys)
        return self._search_order

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


def _miniz_heap_sort(keys: list[bytes]) -> list[int]:
    """Indices of ``keys`` in the order miniz's in-place heap sort leaves them (it is not stable, so among
    equal keys the order depends on the whole directory; only that order says which one a lookup finds)."""
    order = list(range(len(keys)))
    size = len(order)
    if size <= 1:
        return order

    def sift(root: int, end: int) -> None:
        while True:
            child = 2 * root + 1
            if child >= end:
                return
            if child + 1 < end and keys[order[child]] < keys[order[child + 1]]:
                child += 1
            if not keys[order[root]] < keys[order[child]]:
                return
            order[root], order[child] = order[child], order[root]
            root = child

    for start in range((size - 2) >> 1, -1, -1):
        sift(start, size)
    for end in range(size - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        sift(0, end)
    return order


def open_zip(path: str, end_record: int | None = None) -> ZipArchive:
    """Open ``path`` and parse its directory; ArchiveError when it is not a readable zip.

    ``end_record``: read the directory of the end record at this file offset instead of the one torch
    picks (to look at what other zip tools would read, see :attr:`ZipArchive.alternatives`).
    """
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {printable(str(path))}: {exc.strerror or exc}") from None
    try:
        return _parse(path, fh, end_record)
    except BaseException:
        fh.close()
        raise


def open_zip_bytes(data: bytes, name: str) -> ZipArchive:
    """A zip held in memory (one nested in a record, such as a pt2's sample inputs), parsed the same way."""
    import io

    return _parse(name, io.BytesIO(data))


def _parse(path: str, fh: BinaryIO, end_record: int | None = None) -> ZipArchive:
    fh.seek(0, 2)
    file_size = fh.tell()
    fh.seek(0)
    starts_like_zip = fh.read(4) == b"PK\x03\x04"
    problems: list[Problem] = []
    refusals: list[str] = []  # why torch's reader would refuse this zip
    if end_record is None:
        eocd_pos, tail_start, tail = _find_end_record(fh, file_size)
        alternatives = _other_end_records(tail, tail_start, file_size, eocd_pos)
    else:
        eocd_pos, alternatives = end_record, []
    fh.seek(eocd_pos)
    eocd = _EOCD.unpack(fh.read(_EOCD.size))
    _, disk, cd_disk, on_disk, count, cd_size, cd_offset, comment_len = eocd
    trailing = file_size - (eocd_pos + _EOCD.size + comment_len)
    if trailing > 0:
        problems.append(Problem("trailing_data", None, f"{trailing} bytes follow the end of the zip"))
    elif trailing < 0:
        problems.append(Problem("end_comment_past_eof", None,
                                f"the end record's comment length runs {-trailing} bytes past the end of the file "
                                "(torch reads this end record anyway; some zip tools look for another)"))
    for other in alternatives:
        problems.append(Problem("several_end_records", None,
                                f"another end record at byte {other} names a different directory: torch reads "
                                f"the one at byte {eocd_pos}, stricter zip tools the other"))
    if disk != 0 or cd_disk != 0:
        raise ArchiveError("multi-disk (split) zip archives are not supported")
    torch_view = _zip64_end(fh, eocd_pos, file_size, problems, refusals) or (count, on_disk, cd_size, cd_offset)
    count, on_disk, cd_size, cd_offset = torch_view
    shift = 0
    # torch (miniz) takes the directory offset as absolute. When nothing is there (data before the zip: torch
    # then refuses the file, or never reads it as a zip when it does not start like one), find the directory
    # as zipfile does, from where it ends, and say the zip is shifted.
    if not (starts_like_zip and _directory_at(fh, cd_offset, cd_size, count, file_size)):
        zf_count, zf_cd_size, zf_cd_offset, zf_end = _zipfile_view(fh, eocd_pos, eocd)
        zf_shift = zf_end - zf_cd_size - zf_cd_offset
        if zf_shift >= 0 and _directory_at(fh, zf_cd_offset + zf_shift, zf_cd_size, zf_count, file_size):
            if starts_like_zip:
                refusals.append("its central directory is not where the end record says (zip tools that allow "
                                "for data before the zip find it further on)")
            count, cd_size, cd_offset, shift = zf_count, zf_cd_size, zf_cd_offset, zf_shift
        elif refusals and not starts_like_zip:
            raise ArchiveError(refusals[0])
    if count != on_disk and shift == 0:
        refusals.append(f"the end record declares {count} entries but {on_disk} on this disk")
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise ArchiveError(f"central directory is {cd_size} bytes, over the cap of {MAX_CENTRAL_DIRECTORY}")
    if cd_offset + shift + cd_size > file_size:
        raise ArchiveError(f"central directory declares {cd_size} bytes at offset {cd_offset}, "
                           "past the end of the file")
    if shift:
        problems[:] = [p for p in problems if not p.kind.startswith("zip64_record")]  # torch's view, not used
        problems.append(Problem("data_before_zip", None,
                                f"{shift} bytes of other data precede the zip (a polyglot or a prefixed file)"))
    cd_start = cd_offset + shift
    fh.seek(cd_start)
    cd = fh.read(cd_size)
    entries, spots = _parse_central_directory(cd, count, problems)
    if len(entries) < count:
        refusals.append(f"the end record declares {count} entries, the directory holds {len(entries)}")
    # a small file's local headers are read from one read of the bytes before its directory (a read each
    # costs more than the check: 10,000 entries of a few bytes each), a large file's one by one
    if cd_start <= WHOLE_READ and len(entries) > 1:
        fh.seek(0)
        whole = fh.read(cd_start)
    else:
        whole = None
    _check_local_headers(fh, entries, spots, cd, shift, file_size, problems, whole)
    for entry in entries:
        if entry.torch_visible and _may_refuse(entry, file_size):
            refusals += _torch_entry_refusals(entry, file_size)
    _check_names(entries, problems)
    _check_overlaps(entries, shift, problems)
    archive = ZipArchive(str(path), file_size, entries, problems, shift, fh, cd_start=cd_start,
                         end_record=eocd_pos, alternatives=alternatives)
    if refusals:
        archive.torch_error = refusals[0]
        problems.append(Problem("torch_refuses_zip", None, f"torch's zip reader refuses this file: {refusals[0]}"))
    return archive


def _directory_at(fh: BinaryIO, offset: int, size: int, count: int, file_size: int) -> bool:
    """Whether a directory of ``size`` bytes fits at ``offset`` and starts with an entry (if it has any)."""
    if offset < 0 or offset + size > file_size:
        return False
    if count == 0:
        return True
    fh.seek(offset)
    return fh.read(4) == b"PK\x01\x02"


def _zipfile_view(fh: BinaryIO, eocd_pos: int, eocd: tuple) -> tuple[int, int, int, int]:
    """(count, directory size, directory offset, where the directory ends) as Python's zipfile reads them: a
    zip64 end record right before the locator, else the 32-bit fields."""
    count, cd_size, cd_offset = eocd[4], eocd[5], eocd[6]
    rec_pos = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
    if rec_pos >= 0:
        fh.seek(rec_pos)
        raw = fh.read(_EOCD64.size + 4)
        if raw[:4] == b"PK\x06\x06" and raw[_EOCD64.size:] == b"PK\x06\x07":
            rec = _EOCD64.unpack(raw[:_EOCD64.size])
            return rec[7], rec[8], rec[9], rec_pos
    return count, cd_size, cd_offset, eocd_pos


def _find_end_record(fh: BinaryIO, file_size: int) -> tuple[int, int, bytes]:
    """The end record miniz picks: the last signature with at least 22 bytes after it, scanning back in 4 KiB
    windows until about 64 KiB have been searched. Its comment length is not checked (nor by zipfile).
    Returns (position, start of the searched tail, the tail's bytes)."""
    if file_size < _EOCD.size:
        raise ArchiveError("not a zip archive, or a truncated one (no end-of-central-directory record)")
    low = max(file_size - 4096, 0)
    while low and file_size - low < 0xFFFF + _EOCD.size:
        low = max(low - 4093, 0)
    fh.seek(low)
    tail = fh.read(file_size - low)
    pos = tail.rfind(b"PK\x05\x06", 0, file_size - low - _EOCD.size + 4)
    if pos < 0:
        raise ArchiveError("not a zip archive, or a truncated one (no end-of-central-directory record)")
    return low + pos, low, tail


MAX_ALTERNATIVES = 4


def _other_end_records(tail: bytes, tail_start: int, file_size: int, chosen: int) -> list[int]:
    """End records a stricter zip tool could take instead when torch's choice has a comment running past the
    end of the file: earlier ones whose comment fits (latest first, the one such a tool takes) and which
    name another directory."""
    chosen_rec = _EOCD.unpack_from(tail, chosen - tail_start)
    if chosen + _EOCD.size + chosen_rec[7] <= file_size:
        return []
    found: list[int] = []
    pos = chosen - tail_start
    while len(found) < MAX_ALTERNATIVES:
        pos = tail.rfind(b"PK\x05\x06", 0, pos + 3)
        if pos < 0:
            break
        if pos + _EOCD.size <= len(tail):
            rec = _EOCD.unpack_from(tail, pos)
            if tail_start + pos + _EOCD.size + rec[7] <= file_size and rec[5:7] != chosen_rec[5:7]:
                found.append(tail_start + pos)
    return found


def _zip64_end(fh: BinaryIO, eocd_pos: int, file_size: int, problems: list[Problem],
               refusals: list[str]) -> tuple | None:
    """(count, count on this disk, directory size, directory offset) from the zip64 end record, found as
    miniz finds it: through the locator right before the end record, at the offset the locator gives.
    None when there is no zip64 record (torch then uses the 32-bit fields)."""
    if eocd_pos < _EOCD64_LOCATOR.size + _EOCD64.size:
        return None
    fh.seek(eocd_pos - _EOCD64_LOCATOR.size)
    sig, _, rec_pos, disks = _EOCD64_LOCATOR.unpack(fh.read(_EOCD64_LOCATOR.size))
    if sig != b"PK\x06\x07":
        return None
    if rec_pos > file_size - _EOCD64.size:
        refusals.append(f"the zip64 locator points at byte {rec_pos}, past the end of the file")
        return None
    fh.seek(rec_pos)
    rec = _EOCD64.unpack(fh.read(_EOCD64.size))
    if rec[0] != b"PK\x06\x06":
        problems.append(Problem("zip64_record_missing", None,
                                f"the zip64 locator points at byte {rec_pos}, where no zip64 end record is; "
                                "torch then uses the 32-bit end record"))
        return None
    expected = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
    if rec_pos != expected:
        problems.append(Problem("zip64_record_moved", None,
                                f"the zip64 end record is at byte {rec_pos} (where the locator points), not right "
                                f"before the locator (byte {expected}): tools that look there read another directory"))
    if disks != 1 or rec[4] or rec[5]:
        refusals.append("a multi-disk (split) zip64 archive")
    if rec[1] < _EOCD64.size - 12:
        refusals.append("the zip64 end record declares an impossible size")
    return rec[7], rec[6], rec[8], rec[9]


def _may_refuse(entry: ZipEntry, file_size: int) -> bool:
    """What ``_torch_entry_refusals`` looks for, or more (the usual entry is none of these)."""
    return ((entry.size != entry.compressed_size and (entry.method == STORED or not entry.compressed_size))
            or entry.header_offset + _LOCAL.size + entry.compressed_size > file_size or bool(entry.flags & 0x2000))


def _torch_entry_refusals(entry: ZipEntry, file_size: int) -> list[str]:
    """miniz's per-entry checks when it indexes the directory: any one makes torch refuse the whole zip."""
    out = []
    sizes_differ = entry.method == STORED and entry.size != entry.compressed_size
    if entry.size != 0xFFFFFFFF and entry.compressed_size != 0xFFFFFFFF and (
            sizes_differ or (entry.size and not entry.compressed_size)):
        out.append(f"{entry.display_name!r} declares {entry.compressed_size} stored bytes for {entry.size}")
    if entry.header_offset + _LOCAL.size + entry.compressed_size > file_size:
        out.append(f"{entry.display_name!r} runs past the end of the file")
    if entry.flags & 0x2000:
        out.append(f"{entry.display_name!r} has a masked local header (strong encryption)")
    return out


def _parse_central_directory(cd: bytes, count: int, problems: list[Problem]) -> tuple[list[ZipEntry], list]:
    """The entries, and where each one's record starts in ``cd`` (None when a zip64 extra field gave it its
    sizes or offset)."""
    entries: list[ZipEntry] = []
    spots: list[int | None] = []
    pos = index = 0
    size = len(cd)
    unpack, fixed = _CENTRAL.unpack_from, _CENTRAL.size
    while cd.startswith(b"PK\x01\x02", pos):
        if index >= MAX_ENTRIES:
            problems.append(Problem("entry_flood", None,
                                    f"more than {MAX_ENTRIES} entries; only the first {MAX_ENTRIES} were read"))
            break
        if pos + fixed > size:
            raise ArchiveError(f"central directory entry {index} is truncated")
        (_, made_by, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, disk, _, ext_attr,
         offset) = unpack(cd, pos)
        name_start = pos + fixed
        extra_start = name_start + nlen
        end = extra_start + elen + clen
        if end > size:
            raise ArchiveError(f"central directory entry {index} runs past the directory")
        raw_name = cd[name_start:extra_start]
        spot = pos
        if usize == 0xFFFFFFFF or csize == 0xFFFFFFFF or offset == 0xFFFFFFFF:  # these take a zip64 extra's value
            usize, csize, offset = _apply_zip64(cd[extra_start:extra_start + elen], usize, csize, offset)
            spot = None
        try:  # decode_name, in line
            name, valid = raw_name.decode("utf-8"), True
        except UnicodeDecodeError:
            name, valid = decode_name(raw_name)
        entries.append(ZipEntry(index, raw_name, name, flags, method, crc, csize, usize, offset, ext_attr,
                                made_by >> 8, None, valid, False, index < count))
        spots.append(spot)
        pos = end
        index += 1
    if len(entries) < MAX_ENTRIES and len(entries) != count:
        hidden = "; torch sees only the declared ones" if len(entries) > count else ""
        problems.append(Problem("entry_count_mismatch", None,
                                f"the end record declares {count} entries, the directory holds {len(entries)}{hidden}"))
    return entries, spots


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


def _check_local_headers(fh: BinaryIO, entries: list[ZipEntry], spots: list, cd: bytes, shift: int, file_size: int,
                         problems: list[Problem], whole: bytes | None, fast: bool = True) -> None:
    """``_check_local_header`` of every entry. From ``whole`` (the file's first bytes), a local header that
    repeats its directory record byte for byte (signature; version, flags, method, time and date; the CRC
    and sizes unless a data descriptor follows, as torch writes them; name length and name), of an entry that
    takes no zip64 values and has none of the unusual flags, methods or file types, differs from its entry in
    nothing the check looks at: only where its data start, past its extra field, and whether they fit in
    the file are left to find."""
    size = len(whole) if whole is not None and fast else -1  # not fast: every header the general way (tests)
    for entry, spot in zip(entries, spots):
        pos = entry.header_offset + shift
        name_end = pos + 30 + len(entry.raw_name)
        if spot is not None and name_end <= size and whole[pos:pos + 4] == b"PK\x03\x04" \
                and whole[pos + 4:pos + 14] == cd[spot + 6:spot + 16] \
                and (entry.flags & FLAG_DATA_DESCRIPTOR or whole[pos + 14:pos + 26] == cd[spot + 16:spot + 28]) \
                and whole[pos + 26:pos + 28] == cd[spot + 28:spot + 30] and whole[pos + 30:name_end] == entry.raw_name \
                and not (entry.flags & (~_KNOWN_FLAGS | FLAG_ENCRYPTED) or entry.method not in (STORED, DEFLATED)
                         or entry.create_system == 3):
            entry.data_offset = name_end + whole[pos + 28] + (whole[pos + 29] << 8)
            if entry.data_offset + entry.compressed_size > file_size:
                problems.append(Problem("size_out_of_range", entry.display_name,
                                        f"declares {entry.compressed_size} bytes, past the end of the file"))
        else:
            _check_local_header(fh, entry, shift, file_size, problems, whole)


def _check_local_header(fh: BinaryIO, entry: ZipEntry, shift: int, file_size: int, problems: list[Problem],
                        whole: bytes | None = None) -> None:
    """``whole``: the file's bytes up to (at least) where the header's may end, or None to read them."""
    def problem(kind: str, detail: str) -> None:
        problems.append(Problem(kind, entry.display_name, detail))

    if entry.flags & (~_KNOWN_FLAGS | FLAG_ENCRYPTED) or entry.method not in (STORED, DEFLATED) \
            or entry.create_system == 3:  # else none of these four (the usual entry: one test)
        if entry.flags & ~_KNOWN_FLAGS:
            problem("unusual_flags", f"general-purpose flag bits 0x{entry.flags:04x}")
        if entry.encrypted:
            problem("encrypted", "member is encrypted and cannot be read")
        if entry.method not in (STORED, DEFLATED):
            problem("unsupported_method", f"compression {entry.method_name}")
        if entry.is_symlink:
            problem("symlink", "member is a symbolic link")
    pos = entry.header_offset + shift
    if pos + _LOCAL.size > file_size:
        problem("bad_local_header", f"local header offset {entry.header_offset} is past the end of the file")
        return
    ahead = _LOCAL.size + len(entry.raw_name) + LOCAL_EXTRA_AHEAD  # one read for the usual header
    if whole is not None and pos + ahead <= len(whole):
        head = whole[pos:pos + ahead]
    else:
        fh.seek(pos)
        head = fh.read(ahead)
    (sig, _, flags, method, _, _, crc, csize, usize, nlen, elen) = _LOCAL.unpack_from(head)
    if sig != b"PK\x03\x04":
        problem("bad_local_header", f"no local header at offset {entry.header_offset}")
        return
    end = _LOCAL.size + nlen + elen
    if end > ahead and len(head) == ahead:  # the rest, where the file has it
        fh.seek(pos + ahead)
        head += fh.read(end - ahead)
    local_name = head[_LOCAL.size:_LOCAL.size + nlen]
    if local_name != entry.raw_name:
        problem("name_mismatch", f"local header names it {printable(decode_name(local_name)[0])!r}")
    if method != entry.method:
        problem("method_mismatch", f"local header says compression {method}, directory says {entry.method}")
    if not flags & FLAG_DATA_DESCRIPTOR:
        if usize == 0xFFFFFFFF or csize == 0xFFFFFFFF:
            usize, csize, _ = _apply_zip64(head[_LOCAL.size + nlen:end], usize, csize, 0)
        if crc != entry.crc or csize != entry.compressed_size or usize != entry.size:
            problem("local_header_mismatch",
                    f"local header declares crc {crc:08x}, {csize}/{usize} bytes; directory "
                    f"{entry.crc:08x}, {entry.compressed_size}/{entry.size}")
    entry.data_offset = pos + end
    if entry.data_offset + entry.compressed_size > file_size:
        problem("size_out_of_range", f"declares {entry.compressed_size} bytes, past the end of the file")


def _check_names(entries: list[ZipEntry], problems: list[Problem]) -> None:
    if not _plain_names(entries):
        _name_problems(entries, problems)


def _plain_names(entries: list[ZipEntry]) -> bool:
    """Whether ``_name_problems`` can only find nothing (checked on all names at once): valid UTF-8, distinct,
    no NUL, and none with what an absolute or climbing path holds (a name with a line end may have one and be
    safe: then the general check decides)."""
    raws = [e.raw_name for e in entries]
    if len(set(raws)) != len(raws) or b"\0" in b"/".join(raws) or not all(e.valid_name for e in entries):
        return False
    names = "\n".join(e.name for e in entries)
    return not ("\\" in names or ".." in names or ":" in names or names.startswith("/") or "\n/" in names)


def _name_problems(entries: list[ZipEntry], problems: list[Problem]) -> None:
    seen = Counter(e.raw_name for e in entries)
    truncated = Counter(e.raw_name.split(b"\0", 1)[0] for e in entries if b"\0" in e.raw_name)
    truncated.update(e.raw_name for e in entries if b"\0" not in e.raw_name)  # without a NUL: their own cut
    distinct = len(seen) == len(entries) and len(truncated) == len(entries)  # no name shared, cut or not
    for entry in entries:
        raw = entry.raw_name
        if not entry.valid_name:
            problems.append(Problem("invalid_name", entry.display_name, "name is not valid UTF-8"))
        if not distinct or b"\0" in raw:
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
        if text.startswith("/") or (".." in text and ".." in text.split("/")) or (len(text) > 1 and text[1] == ":"):
            problems.append(Problem("unsafe_path", entry.display_name, "name is absolute or climbs with '..'"))


def _check_overlaps(entries: list[ZipEntry], shift: int, problems: list[Problem]) -> None:
    if not _laid_in_order(entries, shift):
        _overlap_problems(entries, shift, problems)


def _laid_in_order(entries: list[ZipEntry], shift: int) -> bool:
    """Whether the entries' bytes follow one another in directory order, each starting past the end of all
    before it (as every writer lays them out): then ``_overlap_problems`` can only find nothing."""
    reach = last = -1
    for entry in entries:
        if entry.data_offset is not None:
            start = entry.header_offset + shift
            if start <= last or start < reach:  # (starts rising: the general check's sorted order is this one)
                return False
            last, end = start, entry.data_offset + entry.compressed_size
            if end > reach:
                reach = end
    return True


def _overlap_problems(entries: list[ZipEntry], shift: int, problems: list[Problem]) -> None:
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
