"""The walker's one-step tensor recogniser (``pickles._torch_tensor``) against the opcode-by-opcode walk.

``walk(fast=False)`` reads every opcode through pickletools: the reference. Every comparison covers the
whole outcome: the value node by node with which nodes are shared, the opcode count, protocol, persistent
ids, globals and call sites with their offsets; or the error's text and offset with what was seen before it.
Each test also counts the tensors the recogniser took, so none can pass with it switched off.
"""

from __future__ import annotations

import io
import pickletools
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tsinspect.archive import pickles
from tsinspect.archive.pickles import (Build, Call, Limits, Node, Opaque, PDict, PersistentRef, PickleError, PList,
                                       PSet, PTuple, walk)

REPO = Path(__file__).resolve().parent.parent

BUILD = r'''
import sys, warnings, torch
from torch import nn
warnings.simplefilter("ignore")
torch.manual_seed(0)
out = sys.argv[1]

class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.scalar = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("h16", torch.zeros(5, dtype=torch.float16))
        self.register_buffer("bf", torch.zeros(2, 3, dtype=torch.bfloat16))
        self.register_buffer("i8", torch.zeros(7, dtype=torch.int8))
        self.register_buffer("i64", torch.arange(300))                      # numel as BININT2
        self.register_buffer("flags", torch.zeros(70000, dtype=torch.bool))  # numel and size as BININT
        self.register_buffer("c", torch.zeros(2, dtype=torch.complex64))
        self.register_buffer("d", torch.zeros(1, 1, 1, 2, dtype=torch.float64))
        base = torch.arange(24.).reshape(4, 6)
        self.register_buffer("base", base)
        self.register_buffer("view_t", base.t())          # the storage again: its persistent id by a get
        self.register_buffer("view_off", base[1:, 2:])    # an offset
        self.register_buffer("empty", torch.zeros(0, 3))
        self.q = torch.quantize_per_tensor(torch.randn(4), 0.1, 3, torch.qint8)
        self.qc = torch.quantize_per_channel(torch.randn(3, 2), torch.tensor([0.1, 0.2, 0.3]),
                                             torch.tensor([0, 1, 2]), 0, torch.quint8)
        # past 256 memo entries: LONG_BINPUT and LONG_BINGET; requires_grad both ways
        self.many = nn.ParameterList([nn.Parameter(torch.randn(2, 2), requires_grad=bool(i % 2))
                                      for i in range(150)])
        self.seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        return self.seq(x) + torch.ones(2) * self.w.sum()

torch.jit.script(Zoo()).save(out + "/zoo.pt")
torch.jit.script(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))).save(out + "/small.pt")
# tensor constants in code: constants.pkl
torch.jit.freeze(torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval())).save(out + "/frozen.pt")
# Python's pickler (torch.save): another layout, which must not be taken for torch's
torch.save({"sd": nn.Linear(2, 3).state_dict(), "p": nn.Parameter(torch.ones(2))}, out + "/saved.pt")
'''


@pytest.fixture(scope="module")
def torch_pickles(tmp_path_factory) -> dict[str, bytes]:
    """Pickles torch 2.13 wrote: ``<archive>/<record>`` -> bytes."""
    out = tmp_path_factory.mktemp("torch_pickles")
    script = out / "build.py"  # a file: torch.jit.script reads the classes' source
    script.write_text(BUILD)
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=600)
    return {f"{path.stem}/{name.split('/', 1)[1]}": data for path in sorted(out.glob("*.pt"))
            for name, data in _pickles_of(path)}


def _pickles_of(path: Path) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as z:
            return [(n, z.read(n)) for n in z.namelist() if n.endswith(".pkl")]
    except (zipfile.BadZipFile, OSError):
        return []


def _shape(value) -> tuple:
    """The value as plain data: each node numbered in order of first sight, so sharing shows."""
    numbers: dict[int, int] = {}
    nodes: list = []

    def ref(v):
        if isinstance(v, Node):
            if id(v) not in numbers:
                numbers[id(v)] = len(nodes)
                nodes.append(v)
            return ("node", numbers[id(v)])
        return (type(v).__name__, repr(v))

    root = ref(value)
    described = []
    i = 0
    while i < len(nodes):
        v = nodes[i]
        i += 1
        if isinstance(v, Call):
            described.append(("Call", ref(v.func), ref(v.args), v.kind, ref(v.kwargs), [ref(s) for s in v.states]))
        elif isinstance(v, (PTuple, PList)):
            described.append((type(v).__name__, [ref(x) for x in v.items]))
        elif isinstance(v, PSet):
            described.append(("PSet", v.frozen, [ref(x) for x in v.items]))
        elif isinstance(v, PDict):
            described.append(("PDict", [(ref(k), ref(x)) for k, x in v.items]))
        elif isinstance(v, PersistentRef):
            described.append(("PersistentRef", ref(v.pid)))
        elif isinstance(v, Build):
            described.append(("Build", ref(v.obj), ref(v.state)))
        elif isinstance(v, Opaque):
            described.append(("Opaque", v.what))
    return root, described


def _outcome(data: bytes, limits: Limits, fast: bool) -> tuple:
    try:
        r = walk(data, limits, fast=fast)
    except PickleError as exc:
        return "error", str(exc), [(g.qualname, at) for g, at in exc.globals], exc.calls
    return ("ok", _shape(r.value), r.ops, r.protocol, r.persistent_ids, [(g.qualname, at) for g, at in r.globals],
            r.calls)


class _Counter:
    """Counts the tensors the recogniser takes (wraps ``pickles._torch_tensor`` while the test runs)."""

    def __init__(self, monkeypatch):
        self.taken = 0
        original = pickles._torch_tensor

        def counting(*args):
            found = original(*args)
            self.taken += found is not None
            return found

        monkeypatch.setattr(pickles, "_torch_tensor", counting)


@pytest.fixture
def taken(monkeypatch) -> _Counter:
    return _Counter(monkeypatch)


LIMITS = pickles.DEFAULT_LIMITS


def _same(data: bytes, limits: Limits = LIMITS) -> tuple:
    fast, reference = _outcome(data, limits, True), _outcome(data, limits, False)
    assert fast == reference
    return fast


def _tensor_spans(data: bytes) -> list[tuple[int, int]]:
    """Where the recogniser's pattern matches at an opcode boundary."""
    starts = {pos for _, _, pos in _ops(data)}
    return [(m.start(), m.end()) for m in pickles._TENSOR.finditer(data) if m.start() in starts]


def _ops(data: bytes) -> list[tuple]:
    try:
        return list(pickletools.genops(io.BytesIO(data)))
    except ValueError:
        return []


# ----------------------------------------------------------------------------------------------- real inputs

def test_real_archives_walk_as_the_reference(taken) -> None:
    """tests/real/ (third-party archives, tests/real/SOURCES.md) and samples/: every pickle record."""
    files = sorted((REPO / "tests" / "real").iterdir()) + sorted((REPO / "samples").glob("*.pt*"))
    walked = 0
    for path in files:
        for _, data in _pickles_of(path):
            _same(data)
            walked += 1
    assert walked > 80
    assert taken.taken > 400  # silero's and tch-rs's tensors, among others


def test_torch_written_pickles_walk_as_the_reference(torch_pickles, taken) -> None:
    """dtypes, 0-d and empty tensors, views by a get of the persistent id, offsets, BININT/BININT2 sizes,
    quantized tensors (not taken: another call), LONG memo opcodes, constants.pkl, and torch.save's layout."""
    for name, data in torch_pickles.items():
        _same(data)
    assert taken.taken >= 150 + 8
    taken.taken = 0
    _same(torch_pickles["saved/data.pkl"])
    assert taken.taken == 0  # Python's pickler writes other bytes: the opcode walk reads them


def test_the_pattern_matches_the_tensors_torch_repeats(torch_pickles) -> None:
    zoo = torch_pickles["zoo/data.pkl"]
    spans = _tensor_spans(zoo)
    views = [s for s in spans if zoo[s[0] + 3] != 0x28]  # `get (` then no second MARK: a storage seen before
    assert len(spans) >= 158 and len(views) >= 2


# ----------------------------------------------------------------------------------------- re-encoded bytes

def _reencode(data: bytes, long_memo: bool = False, wide_ints: bool = False) -> bytes:
    """The same pickle with BINGET/BINPUT as LONG_BINGET/LONG_BINPUT and/or BININT1 as BININT2 or BININT."""
    out = bytearray()
    ops = list(pickletools.genops(io.BytesIO(data)))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if long_memo and op.name in ("BINGET", "BINPUT"):
            out += (b"j" if op.name == "BINGET" else b"r") + struct.pack("<I", arg)
        elif wide_ints and op.name == "BININT1":
            out += b"M" + struct.pack("<H", arg) if arg % 2 else b"J" + struct.pack("<i", arg)
        else:
            out += data[pos:end]
    return bytes(out)


def test_long_memo_opcodes_and_wide_ints(torch_pickles, taken) -> None:
    for name in ("small/data.pkl", "zoo/data.pkl"):
        data = torch_pickles[name]
        original = _same(data)
        for variant in (_reencode(data, long_memo=True), _reencode(data, wide_ints=True),
                        _reencode(data, long_memo=True, wide_ints=True)):
            got = _same(variant)
            assert got[1] == original[1] and got[2] == original[2]  # the same value, opcode for opcode
    assert taken.taken > 4 * 150


def test_protocol_4_framing_inside_tensors(torch_pickles, taken) -> None:
    """FRAME opcodes at opcode boundaries (as a protocol 4 writer may place them) break the pattern: the
    tensor is walked opcode by opcode, to the same value."""
    data = torch_pickles["small/data.pkl"]
    original = _same(data)
    ops = list(pickletools.genops(io.BytesIO(data)))
    for every in (1, 3, 7, 11):
        out = bytearray(b"\x80\x04")
        frames = 0
        for i, (op, arg, pos) in enumerate(ops[1:], 1):
            end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
            if i % every == 0:
                out += b"\x95" + struct.pack("<Q", 0)
                frames += 1
            out += data[pos:end]
        got = _same(bytes(out))
        assert got[1] == original[1] and got[2] == original[2] + frames
    taken.taken = 0
    _same(b"\x80\x04\x95" + struct.pack("<Q", len(data)) + data[2:])  # one frame around it all
    assert taken.taken > 0


# ------------------------------------------------------------------------------------- damaged and hostile

_VALUES = (0x00, 0xFF, 0x28, 0x29, 0x2E, 0x30, 0x39, 0x4A, 0x4B, 0x4D, 0x51, 0x52, 0x58, 0x68, 0x6A, 0x71,
           0x72, 0x74, 0x88, 0x89)


def test_every_byte_of_a_tensor_changed_and_every_truncation(torch_pickles, taken) -> None:
    """Each byte of a few tensors (a first key, a view, a BININT2 size, a LONG memo one) set to opcode bytes,
    digits and more: memo keys changed to ones not written or written later, key lengths off by one,
    opcodes swapped; and the pickle cut at every byte of them."""
    small = torch_pickles["small/data.pkl"]
    long_small = _reencode(small, long_memo=True)
    cases = 0
    for data in (small, long_small):
        for start, end in _tensor_spans(data)[:3]:
            for at in range(start, end):
                for value in _VALUES + (data[at] ^ 1, (data[at] + 1) & 0xFF, (data[at] - 1) & 0xFF):
                    if value != data[at]:
                        _same(data[:at] + bytes([value]) + data[at + 1:])
                        cases += 1
                _same(data[:at])
                _same(data[:at] + b".")
    assert cases > 2000
    assert taken.taken > 1000


def test_limits_at_their_edges(torch_pickles, taken) -> None:
    data = torch_pickles["small/data.pkl"]
    ops = walk(data).ops
    spans = _tensor_spans(data)
    for max_ops in range(1, ops + 2):
        _same(data, Limits(max_ops=max_ops))
    for max_memo in range(1, 40):
        _same(data, Limits(max_memo=max_memo))
    for max_marks in range(1, 6):
        _same(data, Limits(max_marks=max_marks))
    for max_arg in range(0, 4):
        _same(data, Limits(max_arg=max_arg))
    assert spans and taken.taken > 0


def test_a_get_reading_a_put_of_the_same_tensor(torch_pickles, taken) -> None:
    """A hostile pickle may put the key where the device is read from, or the persistent id where
    OrderedDict is: the gets must see those puts, as the opcode walk does."""
    data = torch_pickles["small/data.pkl"]
    start, end = _tensor_spans(data)[1]
    m = pickles._TENSOR.match(data, start)
    device_get, ordered_get = m.span(8), m.span(16)
    key_put, ref_put = m.span(7), m.span(10)
    assert data[key_put[0]] == data[ref_put[0]] == 0x71 and data[device_get[0]] == data[ordered_get[0]] == 0x68
    changed = []
    for put, get in ((key_put, device_get), (key_put, ordered_get), (ref_put, ordered_get)):
        hostile = bytearray(data)
        hostile[put[0] + 1] = data[get[0] + 1]  # the put writes the index the later get reads
        changed.append(_same(bytes(hostile)))
    # the index the put no longer writes may be read later (module names reuse the keys): past the tensor
    assert all(c[0] == "ok" or int(c[1].rsplit(" ", 1)[1]) >= end for c in changed)
    assert taken.taken > 0


def _hand_made(key: bytes = b"X\x02\x00\x00\x0012q\x05", numel: bytes = b"K\x04", size: bytes = b"(K\x02K\x02t",
               memo_values: bytes = b"NNNNN") -> bytes:
    """A tensor in torch's form whose memo entries (function, 'storage', class, device, OrderedDict) are
    whatever ``memo_values`` pushes (no string: the key is then the first one ``max_arg`` can refuse)."""
    head = b"".join(bytes([v]) + b"q" + bytes([i]) for i, v in enumerate(memo_values))
    return (b"\x80\x02" + head + b"h\x00((h\x01h\x02" + key + b"h\x03" + numel + b"tQq\x06K\x00" + size
            + b"(K\x02K\x01t\x88h\x04)RtR.")


def test_hand_made_tensors_with_odd_memo_values_and_caps(taken) -> None:
    variants = [_hand_made(), _hand_made(key=b"X\x01\x00\x00\x0012q\x05"), _hand_made(key=b"X\x03\x00\x00\x0012q\x05"),
                _hand_made(key=b"h\x01"), _hand_made(key=b"X\x02\x00\x00\x001\xffq\x05"),
                _hand_made(numel=b"M\x00\x01"), _hand_made(numel=b"J\xff\xff\xff\xff"), _hand_made(size=b")"),
                _hand_made(size=b"(t"), _hand_made(memo_values=b"\x88\x89K)]"), _hand_made(key=b"X\x02\x00\x00\x0012")]
    for data in variants:
        for limits in (LIMITS, Limits(max_arg=0), Limits(max_arg=1), Limits(max_arg=2), Limits(max_ops=20),
                       Limits(max_ops=35), Limits(max_memo=6), Limits(max_memo=8), Limits(max_marks=2),
                       Limits(max_marks=3)):
            _same(data, limits)
    assert _same(variants[0])[0] == "ok"
    assert taken.taken >= 8
