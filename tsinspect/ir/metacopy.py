"""The archive copy the extraction child loads: tensor storages emptied, their tensors sent to ``meta``.

``torch.jit.load(..., map_location="meta")`` would put every tensor on meta, constants included, and then
constant pooling fails (``aten::equal`` has no meta kernel) and the graph loses the values of traced
constants. So instead the storage persistent ids of ``data.pkl`` (module parameters and buffers) are
rewritten to say device ``meta`` and their records emptied, while ``constants/`` keeps its real bytes when
it is small (it usually is: a traced model's baked scalars). A frozen model whose weights are constants
goes past the cap; then ``constants.pkl`` is rewritten too. An archive without tensor constants needs no
rewrite: its copy is emptied and the child uses ``map_location="meta"``, as it does when a pickle has an
unexpected shape. ``extra/`` files are emptied
too: torch reads them only when asked by name.

``write_full_copy`` writes the other copy the child may load: every record with its real bytes, for the
full load that quantized archives need. Both copies hold one member per name: the entry torch's own
(case-insensitive) lookup reads in the original, which is the one tsinspect showed and judged; so torch
cannot pick another member in the copy. The extraction child is never given the original file.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tsinspect.archive import records as rk
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import PICKLE_CAP, Archive, Record
from tsinspect.archive.text import printable

CONSTANTS_CAP = 32 * 1024 * 1024  # constants/ bytes kept real
MAX_OPS = 5_000_000
_PUT = {"BINPUT", "LONG_BINPUT", "PUT"}
_GET = {"BINGET", "LONG_BINGET", "GET"}


@dataclass
class CopyInfo:
    rewritten: bool  # storages of the rewritten pickles say "meta": load without map_location
    constants_kept: bool  # constants/ holds real bytes


def write_meta_copy(archive: Archive, target: Path, debug_info: bool = True) -> CopyInfo:
    """Write the copy; see the module docstring for what it holds. ``debug_info=False``: without the
    ``*.debug_pkl`` records (the parent places nodes from them: tsinspect.ir.origins)."""
    by_name = archive.by_name
    constants = [r for r in archive.records_of(rk.TENSOR_DATA) if r.name.startswith("constants/")]
    keep_constants = sum(r.size for r in constants) <= CONSTANTS_CAP
    # Without tensor constants, map_location="meta" gives the same load as the rewrite and saves walking every
    # opcode of data.pkl (0.7 s of CPU for 10,000 parameters, 690k opcodes)
    rewrite = (["data.pkl"] + ([] if keep_constants else ["constants.pkl"])) if constants else []
    replaced: dict[int, bytes] = {}  # by entry index
    for name in rewrite:
        if name in by_name:
            new = rewrite_storage_device(archive.read(by_name[name], PICKLE_CAP))
            if new is None:
                replaced = {}
                break
            replaced[by_name[name].entry.index] = new
    rewritten = bool(replaced) or "data.pkl" not in by_name
    keep_constants = keep_constants and rewritten
    members = []
    for record in copied_records(archive, debug_info):
        if record.entry.index in replaced:
            data = replaced[record.entry.index]
        elif record.kind == rk.TENSOR_DATA and not (keep_constants and record.name.startswith("constants/")):
            data = b""
        elif record.kind == rk.EXTRA:
            data = b""  # torch reads extra files only when asked for them by name
        else:
            data = archive.read(record, PICKLE_CAP)
        members.append((record.entry.name, data))
    _write_stored_zip(target, members)
    return CopyInfo(rewritten, keep_constants)


_DOS_DATE = (1 << 5) | 1  # 1980-01-01, 00:00:00 as in _zip_info


def _write_stored_zip(target: Path, members: list[tuple[str, bytes]]) -> None:
    """An uncompressed zip of ``members``: the headers packed here, not by zipfile (16 us a member there:
    0.16 s for the 10,000 emptied storages of 5,000 small layers). zipfile when a member or the zip needs
    ZIP64."""
    if len(members) >= 0xFFFF or sum(len(data) for _, data in members) >= 0xFFFFFFFF - (1 << 26):
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as out:
            for name, data in members:
                out.writestr(_zip_info(name), data)
        return
    local, central, offset = [], [], 0
    for name, data in members:
        raw = name.encode("ascii") if name.isascii() else name.encode("utf-8")
        flags = 0 if name.isascii() else 0x800
        crc = zlib.crc32(data)
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, _DOS_DATE, crc, len(data), len(data),
                             len(raw), 0) + raw
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, 0, 0, _DOS_DATE, crc,
                                   len(data), len(data), len(raw), 0, 0, 0, 0, 0o600 << 16, offset) + raw)
        local += [header, data]
        offset += len(header) + len(data)
    directory = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), offset, 0)
    with open(target, "wb") as out:
        out.writelines(local)
        out.write(directory)
        out.write(end)


def write_full_copy(archive: Archive, target: Path, budget: int, debug_info: bool = True) -> None:
    """Write every record with its real bytes, streamed; ArchiveError past ``budget`` bytes in all (each
    record is also held to its declared size, which is what torch reads)."""
    records = copied_records(archive, debug_info)
    total = sum(r.entry.size for r in records)
    if total > budget:
        raise ArchiveError(f"the records declare {total} bytes, over the {budget} a full load may use "
                           "(raise --memory-limit)")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as out:
        for record in records:
            with out.open(_zip_info(record.entry.name), "w", force_zip64=record.entry.size >= 2 ** 31) as dest:
                for chunk in archive.zip.iter_chunks(record.entry, record.entry.size):
                    dest.write(chunk)


def copied_records(archive: Archive, debug_info: bool = True) -> list[Record]:
    """The members a copy holds: the entries torch reads, one per name (:meth:`Archive.torch_records`);
    without the debug records when not ``debug_info`` (torch then places nodes at their ``code/`` text).

    ArchiveError, as a safety net, when two of them differ only in case: torch's lookup could take either."""
    out: list[Record] = []
    seen: dict[str, str] = {}  # case-folded name -> name
    for record in archive.torch_records():
        name = record.entry.name
        if name.casefold() in seen:
            raise ArchiveError(f"members {printable(seen[name.casefold()])!r} and {printable(name)!r} differ only "
                               "in case: torch could load either; not loaded")
        seen[name.casefold()] = name
        if debug_info or record.kind != rk.DEBUG_INFO:
            out.append(record)
    return out


def _zip_info(name: str) -> zipfile.ZipInfo:
    """A member of a copy, dated as every copy's members are (the same bytes for the same archive)."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def _binunicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def rewrite_storage_device(data: bytes, device: str = "meta") -> bytes | None:
    """The pickle with the device of every storage persistent id set to ``device``; None if unsure.

    A TorchScript persistent id is ``MARK 'storage' <Storage class> key device numel TUPLE BINPERSID``
    with any element possibly a memo get and followed by a memo put. Memoised strings are shared, so a
    device string that is also used elsewhere gets its other uses spelled out literally.
    """
    try:
        ops = []
        for item in pickletools.genops(data):
            ops.append(item)
            if len(ops) > MAX_OPS:
                return None
    except Exception:  # noqa: BLE001 - anything unparseable: let torch judge the original
        return None
    if not ops or ops[-1][0].name != "STOP":
        return None
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    strings: dict[object, str] = {}  # memo key -> string pushed there
    replace: dict[int, bytes] = {}
    device_slots: set[int] = set()  # op indices that are the device element of a persistent id
    persids = rewritten = 0
    for i, (op, arg, _pos) in enumerate(ops):
        name = op.name
        if name in _PUT and i > 0 and ops[i - 1][0].name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE"):
            strings[arg] = ops[i - 1][1]
        if name != "BINPERSID":
            continue
        persids += 1
        if i < 1 or ops[i - 1][0].name != "TUPLE":
            return None
        elements = []
        j = i - 2
        while j >= 0 and ops[j][0].name != "MARK":
            if ops[j][0].name not in _PUT:
                elements.append(j)
            j -= 1
        elements.reverse()
        if len(elements) != 5:
            return None
        first = ops[elements[0]]
        tag = first[1] if first[0].name.endswith("UNICODE") else strings.get(first[1])
        if tag != "storage":
            return None
        slot = elements[3]
        op_d, arg_d, _ = ops[slot]
        if op_d.name.endswith("UNICODE") or op_d.name in _GET and isinstance(strings.get(arg_d), str):
            device_slots.add(slot)
            rewritten += 1
        else:
            return None
    if persids != rewritten:
        return None
    # memo keys whose string is a device we rewrite in place (the string op right before a put)
    moved: dict[object, str] = {}
    for slot in device_slots:
        op_d, arg_d, _ = ops[slot]
        if op_d.name.endswith("UNICODE"):
            replace[slot] = _binunicode(device)
            nxt = ops[slot + 1] if slot + 1 < len(ops) else None
            if nxt is not None and nxt[0].name in _PUT:
                moved[nxt[1]] = arg_d
        else:
            replace[slot] = _binunicode(device)
    for i, (op, arg, _pos) in enumerate(ops):
        if op.name in _GET and arg in moved and i not in device_slots:
            replace[i] = _binunicode(moved[arg])  # another use of the shared string keeps its text
    out = bytearray()
    for i, (_op, _arg, pos) in enumerate(ops):
        out += replace.get(i, data[pos:ends[i]])
    return bytes(out)
