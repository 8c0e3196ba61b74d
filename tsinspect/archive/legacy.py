"""Legacy (pre-zip) ``torch.save`` streams, read without torch: their parts shown as records.

Before torch 1.6 (and with ``_use_new_zipfile_serialization=False`` since), ``torch.save`` wrote one stream:
five pickles, then the raw storages (torch/serialization.py ``_legacy_save``):

    magic number   pickle of the int 0x1950a86a20f9469cfc6c
    protocol       pickle of the int 1001
    sys info       pickle of {"protocol_version", "little_endian", "type_sizes"}
    the object     pickle whose storages are persistent ids
                   ('storage', torch.<Dtype>Storage, key, location, numel, view metadata)
    storage keys   pickle of the list of keys, in the order the storages follow
    storages       per key: its element count as a little-endian int64, then its bytes

tsinspect names the parts like the records of a zip archive (``data.pkl`` is the object, ``data/<key>``
a storage), so ``ls``, ``info``, ``pickle`` and ``extract`` work on them as on any archive.
"""

from __future__ import annotations

import pickletools
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from tsinspect.archive.pickles import PersistentRef, PickleError, walk
from tsinspect.archive.pickletree import children, is_container
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.tensors import STORAGE_DTYPES
from tsinspect.archive.text import printable
from tsinspect.archive.zipread import STORED, ZipEntry

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PICKLES = ("magic_number.pkl", "protocol_version.pkl", "sys_info.pkl", "data.pkl", "storage_keys.pkl")
MAX_PICKLE = 256 * 1024 * 1024  # bytes of one pickle of the stream (the object pickle of a big checkpoint)
MAX_STORAGES = 1_000_000
CHUNK = 1 << 20


@dataclass
class LegacyStream:
    """The parts of a legacy stream as zip-like entries, readable like a ZipArchive's members."""

    path: str
    file_size: int
    entries: list[ZipEntry]
    problems: list[Problem]
    _fh: BinaryIO = field(repr=False)

    def close(self) -> None:
        self._fh.close()

    def iter_chunks(self, entry: ZipEntry, limit: int) -> Iterator[bytes]:
        if entry.size > limit:
            raise ArchiveError(f"is {entry.size} bytes, over the cap of {limit}", entry.display_name)
        pos, end = entry.data_offset, entry.data_offset + entry.size
        while pos < end:
            self._fh.seek(pos)
            chunk = self._fh.read(min(CHUNK, end - pos))
            if not chunk:
                raise ArchiveError("truncated while reading", entry.display_name)
            pos += len(chunk)
            yield chunk

    def read(self, entry: ZipEntry, limit: int) -> bytes:
        return b"".join(self.iter_chunks(entry, limit))

    def read_range(self, entry: ZipEntry, offset: int, length: int) -> bytes:
        offset = max(0, min(offset, entry.size))
        self._fh.seek(entry.data_offset + offset)
        return self._fh.read(max(0, min(length, entry.size - offset)))


def open_legacy(path: str, problems: list[Problem]) -> LegacyStream | None:
    """The parts of the legacy stream at ``path``; None (with a problem) when it is not one."""
    fh = open(path, "rb")
    try:
        fh.seek(0, 2)
        size = fh.tell()
        entries = _parts(fh, size, problems)
    except BaseException:
        fh.close()
        raise
    if entries is None:
        fh.close()
        return None
    return LegacyStream(path, size, entries, problems, fh)


def _parts(fh: BinaryIO, size: int, problems: list[Problem]) -> list[ZipEntry] | None:
    entries: list[ZipEntry] = []
    pos = 0
    values = []
    for name in PICKLES:
        fh.seek(pos)
        end = _pickle_end(fh, pos, size)
        if end is None:
            if not entries:
                return None
            problems.append(Problem("legacy_stream", name, f"no complete pickle at byte {pos}"))
            return entries
        entries.append(_entry(len(entries), name, pos, end - pos))
        if name != "data.pkl":  # the small ones are read here; the object is read when asked for
            fh.seek(pos)
            try:
                values.append(walk(fh.read(end - pos)).value)
            except PickleError as exc:
                if not entries[1:]:
                    return None
                problems.append(Problem("legacy_stream", name, str(exc)))
                return entries
        else:
            values.append(None)
        if values[0] != MAGIC_NUMBER:
            return None  # some other pickle stream, not torch.save's
        pos = end
    keys = values[4].items if hasattr(values[4], "items") and isinstance(values[4].items, list) else None
    if keys is None or not all(isinstance(k, str) for k in keys) or len(keys) > MAX_STORAGES:
        problems.append(Problem("legacy_stream", "storage_keys.pkl", "not a list of storage keys"))
        return entries
    itemsizes = _storage_itemsizes(fh, entries[3])
    for key in keys:
        fh.seek(pos)
        head = fh.read(8)
        itemsize = itemsizes.get(key)
        if len(head) < 8 or itemsize is None:
            problems.append(Problem("legacy_stream", f"data/{printable(key)}",
                                    "truncated" if len(head) < 8 else "its storage type is unknown"))
            break
        numel = struct.unpack("<q", head)[0]
        nbytes = numel * itemsize
        if numel < 0 or pos + 8 + nbytes > size:
            problems.append(Problem("legacy_stream", f"data/{printable(key)}",
                                    f"declares {numel} elements, past the end of the file"))
            break
        entries.append(_entry(len(entries), f"data/{key}", pos + 8, nbytes))
        pos += 8 + nbytes
    if pos < size:
        problems.append(Problem("trailing_data", None, f"{size - pos} bytes after the last storage"))
    return entries


def _pickle_end(fh: BinaryIO, start: int, size: int) -> int | None:
    """Where the pickle starting at ``start`` ends (after its STOP), by stepping over its opcodes."""
    fh.seek(start)
    try:
        for op, _arg, pos in pickletools.genops(fh):
            if pos - start > MAX_PICKLE:
                return None
            if op.name == "STOP":
                return pos + 1
    except (ValueError, EOFError, struct.error, UnicodeDecodeError, MemoryError):
        return None
    return None


def _storage_itemsizes(fh: BinaryIO, entry: ZipEntry) -> dict[str, int]:
    """Storage key -> bytes per element, from the object pickle's persistent ids."""
    fh.seek(entry.data_offset)
    try:
        root = walk(fh.read(entry.size)).value
    except PickleError:
        return {}
    out: dict[str, int] = {}
    stack, seen = [root], set()
    while stack:
        value = stack.pop()
        if isinstance(value, PersistentRef):
            pid = getattr(value.pid, "items", None)
            if pid and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[2], str):
                cls = getattr(pid[1], "name", None)
                if cls in STORAGE_DTYPES:
                    out[pid[2]] = STORAGE_DTYPES[cls][1]
            continue
        if not is_container(value) or id(value) in seen:
            continue
        seen.add(id(value))
        stack.extend(child for _, child in children(value))
    return out


def _entry(index: int, name: str, offset: int, size: int) -> ZipEntry:
    return ZipEntry(index=index, raw_name=name.encode("utf-8", "backslashreplace"), name=name, flags=0,
                    method=STORED, crc=0, compressed_size=size, size=size, header_offset=offset,
                    external_attr=0, create_system=0, data_offset=offset)

