"""``torchstate.read_state`` (data.pkl read without walking) against the walk, ``collect`` and ``module_tree``.

Every comparison is of the whole result: each tensor's JSON (name, dtype, shape, stride, offset, storage key
and record, device, requires_grad, problem) in order, and the module tree's JSON. ``read_state`` may give
None (the caller walks), never another answer, and never an answer where the walk fails. Each test counts
the archives or pickles it read, so none can pass with it always giving None.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tsinspect.archive.code import CodeIndex, index_code
from tsinspect.archive.modules import module_tree
from tsinspect.archive.pickles import PickleError, walk
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import summarize
from tsinspect.archive.tensors import collect
from tsinspect.archive.text import json_dumps
from tsinspect.archive.torchstate import read_state

REPO = Path(__file__).resolve().parent.parent
ARCHIVES = sorted(p for d in ("samples", "tests/real") for p in (REPO / d).iterdir()
                  if p.is_file() and p.suffix not in (".md", ".py"))
BENCH = sorted((REPO / "benchmarks" / "out" / "info_scale").glob("params_*.pt"))[:2]


def _generic(data: bytes, code: CodeIndex):
    try:
        root = walk(data).value
    except PickleError:
        return None
    tree = module_tree(root, code)
    return [t.to_json() for t in collect(root, "data")], tree.to_json() if tree else None


def _compare(data: bytes, code: CodeIndex) -> bool:
    """Whether read_state answered (then equal to the walk's)."""
    fast = read_state(data, code, "data")
    if fast is None:
        return False
    expected = _generic(data, code)
    assert expected is not None and expected[1] is not None, "read where the walk fails"
    tensors, tree = fast
    assert [t.to_json() for t in tensors] == expected[0]
    assert tree.to_json() == expected[1]
    return True


def _data_pkl(path: Path):
    with open_archive(str(path)) as archive:
        if archive.zip is None or archive.pickle_bytes("data.pkl") is None:
            return None
        return archive.pickle_bytes("data.pkl"), index_code(archive)


def test_archives() -> None:
    read = 0
    for path in ARCHIVES + BENCH:
        found = _data_pkl(path)
        if found is not None:
            read += _compare(*found)
    assert read >= 30


def test_summary_same_either_way(monkeypatch) -> None:
    """info's JSON with and without it, on every archive (problems and storage checks included)."""
    import tsinspect.archive.summary as summary

    for path in ARCHIVES:
        with open_archive(str(path)) as archive:
            fast = json_dumps(summarize(archive).to_json())
        with monkeypatch.context() as m:
            m.setattr(summary, "_torch_state", lambda archive, code: None)
            with open_archive(str(path)) as archive:
                assert json_dumps(summarize(archive).to_json()) == fast, path


def _small_pickles() -> list[tuple[bytes, CodeIndex]]:
    out = []
    for path in ARCHIVES:
        found = _data_pkl(path)
        if found is not None and len(found[0]) < 6000 and read_state(*found, "data") is not None:
            out.append(found)
    distinct = {len(data): (data, code) for data, code in out}  # the samples repeat a few pickles
    return [distinct[n] for n in sorted(distinct)][-6:]  # the largest: gate_*, plain_*, djl_deepar


def test_mutated_bytes() -> None:
    """Every byte of small real data.pkl files set to other values: the same answer or None."""
    rng = random.Random(14)
    read = cases = 0
    for data, code in _small_pickles():
        for pos in range(2, len(data)):
            for value in {0, 1, 2, 0x28, 0x29, 0x4B, 0x4E, 0x58, 0x5D, 0x68, 0x71, 0x74, 0x75, 0x7D, 0x88,
                          data[pos] ^ 1, data[pos] ^ 0x80, rng.randrange(256)} - {data[pos]}:
                cases += 1
                read += _compare(data[:pos] + bytes([value]) + data[pos + 1:], code)
    assert cases > 10000 and read > 1000


def test_truncated_and_extended() -> None:
    read = 0
    for data, code in _small_pickles():
        for end in range(len(data)):
            assert not _compare(data[:end], code) or data[end - 1:end] == b"."
        read += _compare(data + b"trailing bytes", code)
    assert read >= 3


def _reencoded(data: bytes) -> bytes:
    """The opcodes again, with every 1-byte get/put and BININT1 in its wide form."""
    import pickletools

    ops = list(pickletools.genops(data))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        wide = {"h": b"j<I", "q": b"r<I", "K": b"J<i"}.get(op.code)
        out += wide[:1] + struct.pack(wide[1:].decode(), arg) if wide else data[pos:end]
    return bytes(out)


def test_wide_forms() -> None:
    read = 0
    for data, code in _small_pickles():
        read += _compare(_reencoded(data), code)
    assert read >= 3


# ---- hand-made pickles in torch's layout, each with one thing the walk gives otherwise or shares

def _s(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _tensor(key: str, first: bool, numel: int = 4, shape: bytes = b"(K\x02K\x02t", stride: bytes = b"(K\x02K\x01t",
            grad: bytes = b"\x88", offset: int = 0, device: bytes = b"h]") -> bytes:
    if first:  # globals and strings written, then put at 90..94
        return (b"ctorch._utils\n_rebuild_tensor_v2\nqZ((" + _s("storage") + b"q[ctorch\nFloatStorage\nq\\"
                + _s(key) + _s("cpu") + b"q]K" + bytes([numel]) + b"tQK" + bytes([offset]) + shape + stride + grad
                + b"ccollections\nOrderedDict\nq^)RtR")
    return (b"hZ((h[h\\" + _s(key) + device + b"K" + bytes([numel]) + b"tQK" + bytes([offset]) + shape + stride
            + grad + b"h^)RtR")


def _module(items: bytes, cls: bytes = b"c__torch__.m\nLinear\n") -> bytes:
    return cls + b")\x81}(" + items + b"ub"


def _pickle(items: bytes) -> bytes:
    return b"\x80\x02" + _module(items, b"c__torch__.m\nTop\n") + b"."


_TAIL = b"K\x00(K\x02K\x02t(K\x02K\x01t\x88ccollections\nOrderedDict\nq^)RtR"  # a first tensor after its id
PLAIN = (_s("training") + b"\x89" + _s("w") + _tensor("0", True) + _s("sub")
         + _module(_s("training") + b"\x88" + _s("b") + _tensor("1", False) + _s("n") + b"N") + _s("x") + b"K\x05")
ODD = {
    "plain": PLAIN,
    "tied weight": PLAIN[:-len(_s("x") + b"K\x05")].replace(b"R" + _s("sub"), b"Rq\x01" + _s("sub"), 1)
    + _s("tied") + b"h\x01",
    "shared module": _s("a") + _module(b"") + b"q\x01" + _s("b") + b"h\x01",
    "shared dict": _s("a") + _module(b"") + _s("b") + b"}q\x02h\x02b",
    "tuple attribute": PLAIN + _s("t") + b"(K\x01K\x02t",
    "float attribute": PLAIN + _s("f") + b"G" + struct.pack(">d", 0.5),
    "string attribute": PLAIN + _s("s") + _s("text \x1b[31m \u202e"),
    "escaped key": _s("\x1bkey") + b"N",
    "bracket key": _s("sub") + _module(_s("[0]") + _tensor("0", True)),
    "empty key": _s("") + b"N",
    "long key": _s("k" * 201) + _tensor("0", True),
    "non-ascii key": _s("caf\u00e9") + b"N",
    "int key": b"K\x01N",
    "view reaching out": _s("w") + _tensor("0", True, numel=3),
    "bool in shape": _s("w") + _tensor("0", True, shape=b"(K\x02\x88t"),
    "shape and stride differ": _s("w") + _tensor("0", True, shape=b"(K\x02t"),
    "grad none": _s("w") + _tensor("0", True, grad=b"N"),
    "custom class": _s("c") + _module(b"", b"c__torch__.torch.classes.q\nPacked\n"),
    "not torch class": _s("c") + _module(b"", b"cbuiltins\nobject\n"),
    "no build": _s("c") + b"c__torch__.m\nLinear\n)\x81",
    "two builds": _s("c") + _module(_s("w") + _tensor("0", True)) + b"}b",
    "build of an int": _s("c") + b"c__torch__.m\nLinear\n)\x81K\x01b",
    "key put over device": _s("a") + _tensor("0", True) + _s("b") + b"hZ((h[h\\" + _s("1") + b"q]h]K\x04tQK\x00"
    + b"(K\x02K\x02t(K\x02K\x01t\x88h^)RtR",
    "view of a class": _s("a") + _tensor("0", True) + _s("b") + b"hZ(h\\K\x00(K\x02K\x02t(K\x02K\x01t\x88h^)RtR",
    "view of a put view": _s("a") + _tensor("0", True)[:-len(_TAIL)] + b"q\x07" + _TAIL + _s("b")
    + b"hZ(h\x07K\x01(K\x01t(K\x01t\x88h^)RtR",
    "tuple key": b"(K\x01tN",
    "unhashable key": b"(}tN",  # a tuple holding a dict: read_state must refuse it, not fail on a set lookup
    "class key": b"c__torch__.m\nX\nN",
    "repeated keys": b"".join(_s(f"m{i}") + _module(_s("training") + b"\x88" + _s("w") + _tensor(str(i), i == 0)
                                                   + _s("\x1bw" if i == 2 else "n") + b"N") for i in range(4)),
    "training int": _s("training") + b"K\x01",
    "hook": _s("_is_full_backward_hook") + b"K\x01",
}


@pytest.mark.parametrize("name", list(ODD))
def test_hand_made(name) -> None:
    data = _pickle(ODD[name])
    code = CodeIndex()
    read = _compare(data, code)
    if name in ("plain", "string attribute", "float attribute", "view reaching out", "training int", "hook",
                "shape and stride differ", "view of a put view", "key put over device"):
        assert read, name  # in the language: read
    if name in ("tied weight", "shared module", "shared dict"):
        assert not read and _generic(data, code) is not None


def test_deep_and_wide_trees() -> None:
    code = CodeIndex()
    chain = _s("w") + _tensor("0", True)
    for i in range(120):
        chain = _s(f"m{i}") + _module(chain)
    assert not _compare(_pickle(chain), code)  # module_tree stops at 100 levels: left to the walk
    chain = _s("w") + _tensor("0", True)
    for i in range(60):
        chain = _s(f"m{i}") + _module(chain)
    assert _compare(_pickle(chain), code)
    wide = b"".join(_s(f"m{i}") + _module(_s("w") + _tensor(str(i), i == 0)) for i in range(300))
    assert _compare(_pickle(wide), code)


def test_tensor_forms() -> None:
    """Tensors that share all but one thing with others read before them (``torchstate._tensor`` works a form
    out once for all its tensors): each differs where it should. Also a second storage class and device, and
    storage keys to escape (a memo get: the run ``_TENSOR`` matches writes digits only)."""
    variants = [{}, {"numel": 8}, {"numel": 3}, {"offset": 1}, {"offset": 1, "numel": 8}, {"grad": b"\x89"},
                {"shape": b"(K\x04t", "stride": b"(K\x01t"}, {"stride": b"(K\x01K\x02t"}, {"shape": b"(K\x01K\x04t"},
                {"key": b"ha"}, {"key": b"hb"}, {"device": b"h`"}, {"storage": b"hc"},
                {"shape": b")", "stride": b")", "numel": 1}]
    items = (_s("first") + _tensor("1", True) + _s("device") + _s("cuda:1") + b"q`" + _s("k") + _s("\x1bk") + b"qa"
             + _s("l") + _s("caf\u00e9") + b"qb" + _s("m") + _s("Storage") + b"qc" + _s("half")
             + _tensor("2", False).replace(b"h\\", b"ctorch\nHalfStorage\nq_", 1))  # put: the other class
    for i in range(3 * len(variants)):
        change = dict(variants[i % len(variants)])
        key = str(100 + i)
        get, storage = change.pop("key", _s(key)), change.pop("storage", b"h[")
        items += _s(f"t{i}") + _tensor(key, False, **change).replace(_s(key), get, 1).replace(b"h[", storage, 1)
        if i % 5 == 4:  # the other class, once per form too
            other = _tensor(key + "7", False, **change).replace(b"h\\", b"h_", 1)
            items += _s(f"h{i}") + other.replace(b"h[", storage, 1)
    assert _compare(_pickle(items), CodeIndex())


BUILD = r"""
import sys, warnings, torch
from torch import nn
warnings.simplefilter("ignore")
torch.manual_seed(0)
out = sys.argv[1]

class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2))
        self.register_buffer("scale", torch.ones(1, dtype=torch.float16))
        self.name, self.k, self.flag = "conv \x1b[31m", 3, True

    def forward(self, x):
        return self.body(x) * self.scale.float()

models = {"transformer": nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32), 2),
          "mha": nn.MultiheadAttention(8, 2), "lstm": nn.LSTM(8, 16, 2), "conv": Conv(),
          "deep": nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(30)]),
          "half": nn.Sequential(nn.Linear(4, 4)).half()}
for name, model in models.items():
    scripted = torch.jit.script(model.eval())
    scripted.save(f"{out}/{name}.pt")
torch.jit.freeze(torch.jit.script(Conv().eval())).save(f"{out}/conv_frozen.pt")
torch.jit.trace(Conv().eval(), torch.randn(1, 3, 8, 8)).save(f"{out}/conv_traced.pt")
"""


def test_models_torch_writes(tmp_path) -> None:
    """torch.nn models scripted, traced and frozen by this machine's torch: read ones equal the walk's."""
    script = tmp_path / "build.py"  # torch.jit.script reads the classes' source from their file
    script.write_text(BUILD)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=300)
    read = set()
    for path in sorted(tmp_path.glob("*.pt")):
        found = _data_pkl(path)
        if _compare(*found):
            read.add(path.stem)
    # lists (LSTM weights, Conv2d padding) and tuples as attributes are left to the walk
    assert read >= {"transformer", "mha", "deep", "half", "conv_frozen", "conv_traced"}



def test_dims_shared_within_a_read() -> None:
    """The sizes and strides decoded once per distinct span in a read: one list for all its tensors (nothing
    changes them), equal to pickles._ints of the span; another read has lists of its own."""
    from tsinspect.archive.pickles import _ints

    spans = [b")", b"(K\x02t", b"(K\x02K\x01t", b"(M\x00\x01J\xff\xff\xff\xffK\x00t", b"(J\x00\x00\x00\x80t"]
    items = _s("first") + _tensor("1", True)
    for i in range(3 * len(spans)):
        span = spans[i % len(spans)]
        items += _s(f"t{i}") + _tensor(str(100 + i), False, shape=span, stride=span)
    data = _pickle(items)
    tensors, _ = read_state(data, CodeIndex(), "data")
    again, _ = read_state(data, CodeIndex(), "data")
    for i, t in enumerate(tensors[1:]):
        span = spans[i % len(spans)]
        assert t.shape == t.stride == _ints(span) and t.shape is t.stride is tensors[1 + i % len(spans)].shape
        assert again[1 + i].shape is not t.shape


def test_module_methods_of_their_class() -> None:
    """Each module's methods are its class's in the code index (both readers); one list for a class's modules."""
    modules = 0
    for path in ARCHIVES + BENCH:
        with open_archive(str(path)) as archive:
            summary = summarize(archive)
            if summary.modules is None:
                continue
            lists: dict[str, list] = {}
            for module in summary.modules.walk():
                cls = summary.code.classes.get(module.type)
                assert module.methods == ([m.name for m in cls.methods] if cls else [])
                if cls is not None:
                    assert lists.setdefault(module.type, module.methods) is module.methods
                modules += 1
    assert modules > 500


def test_parameter_kinds_in_walk_order() -> None:
    """``parameter_kinds``: every tensor path of the tree with its kind, in the order of ``walk()``; a path
    listed twice (a hostile pickle's repeated keys) keeps the kind its last listing gives."""
    from tsinspect.archive.modules import ModuleInfo, parameter_kinds

    def module(path, parameters=(), buffers=(), tensors=(), children=()):
        return ModuleInfo(path, "T", list(parameters), list(buffers), list(tensors), children=list(children))

    leaf = module("a.b", ["a.b.w", "x"], ["a.b.r"], ["a.b.t"])
    tree = module("", ["w"], ["x", "w"], ["t"], [module("a", [], ["a.r"], [], [leaf, module("a.c")]),
                                                 module("d", ["x", "d.w"], [], ["w"])])
    expected: dict = {}
    for m in tree.walk():
        for names, kind in ((m.parameters, "parameter"), (m.buffers, "buffer"), (m.tensors, "attribute")):
            for name in names:
                expected[name] = kind
    assert list(parameter_kinds(tree).items()) == list(expected.items())
    assert parameter_kinds(None) == {} and parameter_kinds(module("")) == {}
    assert {"x", "w", "a.b.w"} <= expected.keys() and expected["w"] == "attribute" and expected["x"] == "parameter"
