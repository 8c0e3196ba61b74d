"""The zip reader's checks done for many entries at once (``archive/zipread.py``) against the general ones.

``_check_local_headers`` compares a local header with its directory record as bytes, ``_plain_names`` looks
at all names at once and ``_may_refuse`` screens entries for torch's refusals; each one must find exactly
what the general check finds (the problems, their order and messages, where the data start, torch's
refusal) on headers and names mutated byte by byte, and each test counts that the fast way was taken.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from tsinspect.archive import zipread
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.zipread import STORED, ZipEntry, open_zip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile import DEFLATED, Member, build_zip, sample_bytes  # noqa: E402


def _view(path: Path):
    """Everything open_zip gives that the checks decide, or its error."""
    try:
        archive = open_zip(str(path))
    except ArchiveError as exc:
        return "error", str(exc)
    with archive:
        return ([(p.kind, p.member, p.detail) for p in archive.problems], archive.torch_error,
                [(e.data_offset, e.overlaps) for e in archive.entries])


def _both(path: Path, monkeypatch, slow_calls: list) -> None:
    fast = _view(path)
    general = zipread._check_local_headers
    with monkeypatch.context() as m:
        m.setattr(zipread, "_check_local_headers", lambda *a: general(*a, fast=False))
        assert _view(path) == fast
    slow = zipread._check_local_header
    with monkeypatch.context() as m:
        m.setattr(zipread, "_check_local_header", lambda *a: slow_calls.append(1) or slow(*a))
        _view(path)


def _zips() -> list[tuple[str, bytes]]:
    """torch's own (data descriptors, zeros in the local CRC and sizes) and plain local headers."""
    plain = build_zip([Member(b"m/data.pkl", b"\x80\x02N.", flags=0x800),
                       Member(b"m/code/x.py", b"x = 1\n" * 20, method=DEFLATED),
                       Member(b"m/data/0", b"\0" * 16), Member(b"m/version", b"3\n")])
    return [("torch", sample_bytes("gate_scripted.pt")), ("plain", plain)]


def _local_headers(data: bytes) -> list[tuple[int, int]]:
    """(offset, length with name and two bytes more) of the first four local headers."""
    spans, pos = [], 0
    while len(spans) < 4:
        pos = data.find(b"PK\x03\x04", pos)
        if pos < 0:
            break
        spans.append((pos, 30 + int.from_bytes(data[pos + 26:pos + 28], "little") + 2))
        pos += 4
    return spans


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "plain"])
def test_local_headers_mutated(which, tmp_path, monkeypatch) -> None:
    name, data = _zips()[which]
    path = tmp_path / f"{name}.zip"
    slow_calls: list = []
    path.write_bytes(data)
    _both(path, monkeypatch, slow_calls)
    assert not slow_calls  # the unchanged zip: every header the fast way
    tried = 0
    for start, length in _local_headers(data):
        for at in range(start, start + length):
            for value in {data[at] ^ 0x01, data[at] ^ 0x80, 0x00, 0xFF, data[at] ^ 0x08}:
                mutated = bytearray(data)
                mutated[at] = value
                path.write_bytes(bytes(mutated))
                _both(path, monkeypatch, slow_calls)
                tried += 1
    assert tried > 300 and len(slow_calls) < tried * 10  # most mutated files still read most headers fast


def test_local_headers_of_odd_entries(tmp_path, monkeypatch) -> None:
    """Entries whose headers agree byte for byte but say something the check reports, and zip64 values."""
    zips = [
        build_zip([Member(b"m/a", b"x", flags=0x1), Member(b"m/b", b"y", flags=0x4000)]),
        build_zip([Member(b"m/a", b"x", method=12), Member(b"m/b", b"y", create_system=3,
                                                            external_attr=0o120777 << 16)]),
        build_zip([Member(b"m/a", b"abc", csize=1000), Member(b"m/b", b"y", local_extra=b"\x00" * 300)]),
        build_zip([Member(b"m/a", b"abc", size=0xFFFFFFFF, extra=b"\x01\x00\x08\x00" + (3).to_bytes(8, "little"),
                          local_extra=b"\x01\x00\x08\x00" + (4).to_bytes(8, "little")), Member(b"m/b", b"y")]),
        build_zip([Member(b"m/a", b"abc", flags=0x8, crc=0, size=0, csize=0), Member(b"m/b", b"y")]),
    ]
    slow_calls: list = []
    for n, data in enumerate(zips):
        path = tmp_path / f"odd{n}.zip"
        path.write_bytes(data)
        _both(path, monkeypatch, slow_calls)


def _entry(rng: random.Random, index: int, name: bytes) -> ZipEntry:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        text = name.decode("utf-8", "backslashreplace")
    return ZipEntry(index, name, text, rng.choice((0, 0x8, 0x2000)), rng.choice((STORED, DEFLATED)), 0,
                    rng.choice((0, 1, 5, 0xFFFFFFFF)), rng.choice((0, 1, 5, 0xFFFFFFFF)),
                    rng.choice((0, 10, 100, 990)), 0, 0)


def test_plain_names() -> None:
    rng = random.Random(3)
    parts = [b"m", b"m/", b"data", b"/", b"..", b".", b":", b"\\", b"\0", b"\n", b"\xff", b"\xc3\xa9", b"a:b", b"c"]
    plain = problems_found = 0
    for _ in range(6000):
        names = [b"".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 5))]
        entries = [_entry(rng, i, name) for i, name in enumerate(names)]
        found: list = []
        zipread._name_problems(entries, found)
        if zipread._plain_names(entries):
            plain += 1
            assert not found, names
        problems_found += bool(found)
    assert plain > 300 and problems_found > 3000


def test_may_refuse() -> None:
    rng = random.Random(5)
    screened = 0
    for i in range(20000):
        entry = _entry(rng, i, b"m/x")
        if zipread._torch_entry_refusals(entry, 1000):
            assert zipread._may_refuse(entry, 1000)
        screened += not zipread._may_refuse(entry, 1000)
    assert screened > 1000


def test_laid_in_order() -> None:
    """Entries in directory order with no byte shared: the general check finds no overlap either."""
    rng = random.Random(9)
    in_order = 0
    for _ in range(20000):
        entries, pos = [], rng.choice((0, 5))
        for i in range(rng.randint(1, 5)):
            entry = _entry(rng, i, b"m/x")
            entry.header_offset = max(0, pos + rng.choice((0, 0, 0, 3, -3, -40)))
            entry.data_offset = None if rng.random() < 0.1 else entry.header_offset + rng.choice((0, 30, 33))
            entry.compressed_size = rng.choice((0, 1, 10, 50))
            entries.append(entry)
            pos = entry.header_offset + 33 + entry.compressed_size
        shift = rng.choice((0, 0, 7))
        found: list = []
        zipread._overlap_problems(entries, shift, found)
        if zipread._laid_in_order(entries, shift):
            in_order += 1
            assert not found and not any(e.overlaps for e in entries)
    assert 2000 < in_order < 18000
