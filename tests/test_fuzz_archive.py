"""Property tests: the zip reader and the pickle walker raise only their own errors on damaged input.

Inputs are the committed samples mutated (byte flips, header fields overwritten, truncations, insertions)
and random opcode sequences. ``derandomize=True`` makes every run, on CI too, try the same examples.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import struct
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsinspect.archive.code import CodeIndex
from tsinspect.archive.extract import extract
from tsinspect.archive.modules import module_tree
from tsinspect.archive.pickles import Limits, PickleError, disassemble, walk
from tsinspect.archive.pickletree import child_values, children, render_lines, to_json
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import summarize
from tsinspect.archive.tensors import collect, tensor_from
from tsinspect.archive.text import json_safe
from tsinspect.cli.archive_cmds import info_lines
from tsinspect.cli.style import Style
from tsinspect.archive.zipread import open_zip

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # pickletools STRING

SAMPLES = ["gate_scripted.pt", "gate_traced.pt", "gate_lite.ptl", "gate_state_dict.pt", "gate_extra.pt"]
FUZZ = settings(max_examples=int(os.environ.get("TSINSPECT_FUZZ_EXAMPLES", 1000)), derandomize=True, deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
READ_CAP = 1 << 20
SMALL_LIMITS = Limits(max_ops=200_000, max_memo=50_000, max_marks=1_000, max_arg=1 << 20)


# ----------------------------------------------------------------------------------------------- mutations

_SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06")


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` with a few random damages; header fields are favoured, where damage is interesting."""
    data = bytearray(original)
    headers = [i for sig in _SIGNATURES for i in _find_all(original, sig)]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "field", "field", "truncate", "insert", "delete"]))
        if not data:
            break
        if kind == "flip":
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "field" and headers:
            # overwrite 1, 2 or 4 bytes somewhere in a local/central/end header with an extreme value
            start = draw(st.sampled_from(headers))
            pos = min(len(data) - 1, start + draw(st.integers(4, 45)))
            width = draw(st.sampled_from([1, 2, 4]))
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x80000000])
                         | st.integers(0, 0xFFFFFFFF))
            raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            data[pos:pos + width] = raw
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif kind == "insert":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            pos = draw(st.integers(0, len(data) - 1))
            del data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out, pos = [], data.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = data.find(needle, pos + 1)
    return out


# --------------------------------------------------------------------------------------------- zip reader


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case.pt"


@FUZZ
@given(data=st.data())
def test_zip_reader_on_mutated_samples(scratch: Path, data) -> None:
    sample = data.draw(st.sampled_from(SAMPLES))
    scratch.write_bytes(data.draw(mutated(hostile.sample_bytes(sample))))
    try:
        archive = open_zip(str(scratch))
    except ArchiveError:
        return
    with archive:
        for entry in archive.entries[:100]:
            assert isinstance(entry.display_name, str)
            try:
                content = archive.read(entry, READ_CAP)
                assert len(content) <= READ_CAP
            except ArchiveError:
                pass
            try:
                archive.read_range(entry, 3, 16)
            except ArchiveError:
                pass
        for problem in archive.problems:
            str(problem)


@FUZZ
@given(data=st.data())
def test_archive_summary_on_mutated_samples(scratch: Path, data) -> None:
    """The whole read path behind `info`: records, pickles, code, tensors, modules, versions."""
    sample = data.draw(st.sampled_from(SAMPLES))
    scratch.write_bytes(data.draw(mutated(hostile.sample_bytes(sample))))
    try:
        with open_archive(str(scratch)) as archive:
            summary = summarize(archive)
            _shown(json_safe(json.dumps(summary.to_json(), ensure_ascii=False)))
            for line in info_lines(summary, Style(False), show_all=True):
                _shown(line)
            for problem in summary.problems:
                _shown(str(problem))
    except ArchiveError:
        pass


@settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 4))
@given(data=st.data())
def test_extract_on_mutated_samples(tmp_path_factory, data) -> None:
    """Whatever the damage, extract writes regular files inside DEST only, and raises only ArchiveError."""
    sample = data.draw(st.sampled_from(SAMPLES))
    root = tmp_path_factory.mktemp("extract")
    path = root / "case.pt"
    path.write_bytes(data.draw(mutated(hostile.sample_bytes(sample))))
    dest = root / "dest"
    try:
        with open_archive(str(path)) as archive:
            extract(archive, dest)
    except ArchiveError:
        pass
    assert sorted(p.name for p in root.iterdir()) in (["case.pt"], ["case.pt", "dest"])
    for p in dest.rglob("*") if dest.exists() else []:
        assert not p.is_symlink() and (p.is_file() or p.is_dir())


# -------------------------------------------------------------------------------------------- pickle walker


def _sample_pickles() -> list[bytes]:
    out = []
    for name in SAMPLES:
        with zipfile.ZipFile(hostile.SAMPLES / name) as zf:
            out += [zf.read(info) for info in zf.infolist() if info.filename.endswith(("pkl", ".debug_pkl"))]
    return sorted(set(out), key=len)


PICKLES = _sample_pickles()


def summarize_tensor(value):
    tensor = tensor_from(value)
    return None if tensor is None else (tensor.describe(), tensor.to_json())


def _exercise(data: bytes) -> None:
    """Everything the CLI does with a pickle; only PickleError may escape, all output is safe to show."""
    for op in itertools.islice(disassemble(data, SMALL_LIMITS), 100_000):
        _shown(op.arg)
    result = walk(data, SMALL_LIMITS)
    value = result.value
    for line in itertools.islice(render_lines(value, summarize_tensor), 20_000):
        _shown(line)
    _shown(json_safe(json.dumps(to_json(value, summarize_tensor), ensure_ascii=False)))
    for tensor in collect(value, "data"):
        tensor.to_json()
    tree = module_tree(value, CodeIndex())
    if tree is not None:
        json.dumps(tree.to_json())


@FUZZ
@given(data=st.data())
def test_pickle_walker_on_mutated_pickles(data) -> None:
    original = data.draw(st.sampled_from(PICKLES))
    damaged = data.draw(mutated(original))
    try:
        _exercise(damaged)
    except PickleError:
        pass


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def _shown(text: str) -> None:
    """Text the CLI prints: encodable as UTF-8 and free of raw control characters."""
    text.encode("utf-8")
    assert not _CONTROL.search(text), text[:300]


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


# Opcodes with small, mostly well-formed arguments: random sequences of them reach deep into the walker.
_OPS = [b"N", b"]", b")", b"}", b"\x8f", b"(", b"t", b"l", b"d", b"\x91", b"a", b"e", b"s", b"u", b"\x90",
        b"R", b"b", b"\x81", b"\x92", b"o", b"Q", b"P1\n", b"0", b"1", b"2", b"\x85", b"\x86", b"\x87",
        b"\x88", b"\x89", b"\x94", b"h\x00", b"h\x01", b"q\x00", b"q\x01", b"j" + _u32(2), b"r" + _u32(2),
        b"g0\n", b"p1\n", b"K\x05", b"M\x00\x01", b"J\xff\xff\xff\xff", b"I12\n", b"L7L\n", b"\x8a\x01\x05",
        b"\x8b" + _u32(2) + b"\x01\x02", b"G" + struct.pack(">d", 1.5), b"F0.5\n", b"X" + _u32(1) + b"a",
        b"\x8c\x01k", b"Vx\n", b"S'x'\n", b"U\x01z", b"T" + _u32(1) + b"z", b"C\x01b", b"B" + _u32(1) + b"b",
        b"\x96" + struct.pack("<Q", 1) + b"c", b"\x97", b"\x98", b"c__torch__.M\nM\n",
        b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n", b"\x8c\x07storage", b"\x93",
        b"i__torch__\nX\n", b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00",
        b"\x95" + struct.pack("<Q", 4), b"X" + _u32(3) + b"\xed\xa0\x80", b"X" + _u32(5) + b"\x1b[2J",
        b"X" + _u32(2) + "\x9b".encode(), b"\x8c\x03\xe2\x80\xae", b"."]


@FUZZ
@given(ops=st.lists(st.sampled_from(_OPS), max_size=60), proto=st.sampled_from([b"", b"\x80\x02", b"\x80\x05"]))
def test_pickle_walker_on_random_opcodes(ops: list[bytes], proto: bytes) -> None:
    try:
        _exercise(proto + b"".join(ops) + b".")
    except PickleError:
        pass


_NAME = st.text(alphabet="aAbB./_\xe9", min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_NAME, min_size=1, max_size=30), queries=st.lists(_NAME, max_size=10))
def test_lookup_finds_a_case_insensitive_match_exactly_when_one_exists(tmp_path, names, queries) -> None:
    """Whatever the directory, ``locate`` answers with an entry equal to the name but for ASCII case when
    there is one (which one is torch's business: test_archive_reader checks it against torch), else None;
    non-ASCII letters are never folded (miniz lowers A-Z only)."""
    path = tmp_path / "names.zip"
    path.write_bytes(hostile.build_zip([hostile.Member(n.encode(), b"") for n in names]))
    with open_zip(str(path)) as z:
        for query in queries + names:
            raw = query.encode()
            found = z.locate(raw)
            matches = [e for e in z.entries if e.raw_name.lower() == raw.lower()]
            assert (found is None) == (not matches)
            assert found is None or found in matches
            assert len(z.candidates(raw)) == len(matches)


def _walk_outcome(data: bytes, limits: Limits, fast: bool) -> tuple:
    """Everything a walk gives: the value as JSON (shared nodes as references), counts, globals and calls;
    or the error's text with what was seen before it."""
    try:
        r = walk(data, limits, fast=fast)
    except PickleError as exc:
        return "error", str(exc), [(g.qualname, at) for g, at in exc.globals], exc.calls
    return ("ok", json.dumps(to_json(r.value)), r.ops, r.protocol, r.persistent_ids,
            [(g.qualname, at) for g, at in r.globals], r.calls)


_TIGHT = st.builds(Limits, max_ops=st.integers(1, 400), max_memo=st.integers(1, 40), max_marks=st.integers(1, 12),
                   max_arg=st.integers(0, 12))


@FUZZ
@given(data=st.data(), tight=st.booleans())
def test_inline_opcodes_walk_as_pickletools_reads_them(data, tight: bool) -> None:
    """The walker decodes torch's common opcodes itself; with ``fast=False`` every opcode goes through
    pickletools' readers. Both must give the same value, counts and errors (text and byte offset), on
    damaged pickles, random opcode runs, and limits small enough to be hit."""
    if data.draw(st.booleans()):
        pickle = data.draw(mutated(data.draw(st.sampled_from(PICKLES))))
    else:
        ops = data.draw(st.lists(st.sampled_from(_OPS), max_size=60))
        pickle = data.draw(st.sampled_from([b"", b"\x80\x02", b"\x80\x05"])) + b"".join(ops) + b"."
    limits = data.draw(_TIGHT) if tight else SMALL_LIMITS
    assert _walk_outcome(pickle, limits, True) == _walk_outcome(pickle, limits, False)


def test_inline_opcodes_walk_the_samples_and_every_truncation_as_pickletools_reads_them() -> None:
    for data in PICKLES:
        assert _walk_outcome(data, SMALL_LIMITS, True) == _walk_outcome(data, SMALL_LIMITS, False)
        for end in range(0, len(data), max(1, len(data) // 200)):
            cut = data[:end]
            assert _walk_outcome(cut, SMALL_LIMITS, True) == _walk_outcome(cut, SMALL_LIMITS, False)


def test_inline_opcodes_meet_every_limit_and_error_as_pickletools_reads_them() -> None:
    """Every pair of opcodes after two values on the stack, under each limit at its smallest."""
    limits = [SMALL_LIMITS, Limits(max_ops=3), Limits(max_memo=1), Limits(max_marks=1), Limits(max_arg=0)]
    for first, second in itertools.product(_OPS, repeat=2):
        data = b"\x80\x02NN" + first + second + b"."
        for limit in limits:
            assert _walk_outcome(data, limit, True) == _walk_outcome(data, limit, False), (data, limit)


@FUZZ
@given(ops=st.lists(st.sampled_from(_OPS), max_size=60))
def test_child_values_are_the_children_without_labels(ops: list[bytes]) -> None:
    try:
        root = walk(b"\x80\x02" + b"".join(ops) + b".", SMALL_LIMITS).value
    except PickleError:
        return
    stack, seen = [root], set()
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        values = child_values(value)
        assert [id(c) for c in values] == [id(c) for _, c in children(value)]
        stack.extend(values)
