"""``Archive.lookup``'s table of exact names (``_exact_names``) against miniz's search (``ZipArchive.locate``).

For every record's name, its case variants and its name cut or extended at a NUL, on samples/, tests/real/
and every hostile zip (duplicates, case twins, NUL and invalid UTF-8 names, entries past the end record's
count, names outside the top folder), the record ``lookup`` returns must be the one ``locate`` finds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tsinspect.archive import reader
from tsinspect.archive.reader import Archive, ArchiveError, open_archive

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402

ARCHIVES = sorted(p for d in ("samples", "tests/real") for p in (REPO / d).iterdir()
                  if p.is_file() and p.suffix not in (".md", ".py"))


@pytest.fixture(autouse=True)
def table_at_once(monkeypatch):
    """The table from the first lookup on (else only archives with many lookups would use it)."""
    monkeypatch.setattr(reader, "EXACT_AFTER", 0)


def _by_search(archive: Archive, name: str):
    entry = archive.zip.locate(archive._prefix_raw + name.encode("utf-8", "surrogateescape"))
    return None if entry is None else archive._by_index[entry.index]


def _check(archive: Archive) -> tuple[int, int]:
    """(names compared, names the table answered)."""
    if archive.zip is None or not archive.prefix:
        return 0, 0
    names = {r.name for r in archive.records} | {r.entry.name for r in archive.records}
    names |= {n.upper() for n in names} | {n.lower() for n in names} | {n + "\0x" for n in names}
    names |= {n.split("\0", 1)[0] for n in names} | {"", "data.pkl", "nonexistent"}
    for name in names:
        assert archive.lookup(name) is _by_search(archive, name), name
    return len(names), len(archive._exact or ())


def test_archives() -> None:
    answered = 0
    for path in ARCHIVES:
        with open_archive(str(path)) as archive:
            answered += _check(archive)[1]
    assert answered > 1000


def test_hostile_corpus(tmp_path) -> None:
    compared = 0
    for case in hostile.CASES:
        path = tmp_path / f"{case.id}.pt"
        path.write_bytes(case.build(str(tmp_path / "marker")))
        try:
            archive = open_archive(str(path))
        except ArchiveError:
            continue
        with archive:
            compared += _check(archive)[0]
    assert compared > 1000


def _zip(names: list[bytes], count: int | None = None) -> bytes:
    return hostile.build_zip([hostile.Member(name, b"x") for name in names], count=count)


def test_awkward_names(tmp_path) -> None:
    """Twins by case, a NUL, invalid UTF-8, a case-variant top folder: the table leaves them to the search."""
    cases = [
        [b"m/data.pkl", b"m/DATA.PKL", b"m/code/a.py"],
        [b"m/data.pkl", b"m/data.pkl\0extra", b"m/x"],
        [b"m/data.pkl\0", b"m/y"],
        [b"m/\xff\xfe", b"m/data.pkl"],
        [b"m/a", b"M/b", b"M/a"],
        [b"m/a", b"m/a"],
        [b"m/caf\xc3\xa9", b"m/CAF\xc3\xa9"],
        ([b"m/a", b"m/b", b"m/a"], 2),  # the second m/a is past the end record's count: torch never sees it
    ]
    answered = 0
    for i, names in enumerate(cases):
        names, count = names if isinstance(names, tuple) else (names, None)
        path = tmp_path / f"{i}.pt"
        path.write_bytes(_zip(names, count))
        with open_archive(str(path)) as archive:
            _check(archive)
            answered += len(archive._exact or ())
            visible = [r for r in archive.records if not r.hidden]
            twins = {r.name for r in visible if r.name.lower() in {x.name.lower() for x in visible if x is not r}}
            assert not twins & set(archive._exact or ())  # a name with a case twin torch sees is never in the table
            assert all(not r.hidden for r in (archive._exact or {}).values())
    assert answered >= 5


def _binary_search(archive: Archive, raw: bytes):
    """miniz's search over its whole sorted order, as ``locate`` did before its shortcuts."""
    keys, order = archive.zip._index()[0], archive.zip._order()
    key = raw.split(b"\0", 1)[0].lower()
    low, high = 0, len(order) - 1
    while low <= high:
        mid = low + ((high - low) >> 1)
        probe = keys[order[mid]]
        if probe == key:
            return archive.zip.entries[order[mid]]
        low, high = (mid + 1, high) if probe < key else (low, mid - 1)
    return None


def test_locate_shortcuts(tmp_path) -> None:
    """``locate`` answers a name no other entry shares, and a name no entry has, without the search: the
    same entry (or None) as the search, on twins by case, NULs, absent names and the real archives."""
    paths = list(ARCHIVES[:12])
    for i, names in enumerate([[b"m/data.pkl", b"m/DATA.PKL", b"m/Data.pkl", b"m/code/a.py", b"m/a\0b", b"m/a"],
                               [b"m/x", b"m/X", b"m/y\0", b"m/y", b"m/z"]]):
        paths.append(tmp_path / f"{i}.pt")
        paths[-1].write_bytes(_zip(names))
    absent = searched = 0
    for path in paths:
        with open_archive(str(path)) as archive:
            if archive.zip is None:
                continue
            raws = {e.raw_name for e in archive.zip.entries}
            raws |= {r.upper() for r in raws} | {r + b"\0q" for r in raws} | {r + b"x" for r in raws} | {b"", b"m/"}
            for raw in raws:
                found = archive.zip.locate(raw)
                assert found is _binary_search(archive, raw), raw
                absent += found is None
                searched += 1
    assert absent > 100 and searched > 500
