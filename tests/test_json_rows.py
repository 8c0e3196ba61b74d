"""``info --json``'s rows written from templates (``archive/jsonrows.py``) against ``json_dumps(to_json())``.

Every comparison is of the whole text. Each test also counts the rows the templates wrote, so none can pass
with them switched off; the hand-made rows hold each kind of value a template must refuse (an int subclass,
a bool where an int belongs, a float, a non-string where a string belongs, aliases, quantization
parameters) and the strings json escapes (controls, quotes, backslashes, non-ASCII, lone surrogates).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from enum import IntEnum
from pathlib import Path

import pytest

from tsinspect.archive import jsonrows
from tsinspect.archive.reader import ArchiveError, open_archive
from tsinspect.archive.summary import summarize
from tsinspect.archive.modules import ModuleInfo
from tsinspect.archive.tensors import TensorInfo
from tsinspect.archive.text import json_dumps, printable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402

ARCHIVES = sorted(p for d in ("samples", "tests/real") for p in (REPO / d).iterdir()
                  if p.is_file() and p.suffix not in (".md", ".py"))


@pytest.fixture
def counted(monkeypatch):
    """How many rows each template wrote."""
    counts = {"tensor": 0}
    tensor_row = jsonrows._tensor_row

    def counting_tensor_row(*args):
        row = tensor_row(*args)
        counts["tensor"] += row is not None
        return row

    monkeypatch.setattr(jsonrows, "_tensor_row", counting_tensor_row)
    return counts


def _same(summary) -> None:
    assert summary.json_text() == json_dumps(summary.to_json())
    assert summary.json_text(indent=1) == json_dumps(summary.to_json(), indent=1)


def test_archives(counted) -> None:
    tensors = 0
    for path in ARCHIVES:
        with open_archive(str(path)) as archive:
            summary = summarize(archive)
            _same(summary)
            tensors += len(summary.tensors)
    assert len(ARCHIVES) >= 45
    assert counted["tensor"] >= 550 and tensors >= 600  # the others have aliases or quantization


def test_hostile_corpus(tmp_path, counted) -> None:
    opened = 0
    for case in hostile.CASES:
        if case.fatal:
            continue
        path = tmp_path / f"{case.id}.pt"
        path.write_bytes(case.build(str(tmp_path / "marker")))
        try:
            with open_archive(str(path)) as archive:
                summary = summarize(archive)
        except ArchiveError:
            continue
        _same(summary)
        opened += 1
    assert opened > 50 and counted["tensor"] > 50


PLAIN = TensorInfo("a.weight", "float32", [3, 4], [4, 1], 0, "0", 12, "cpu", 4, requires_grad=True,
                   record="data/0")


class Small(IntEnum):
    TWO = 2


class Text(str):
    pass


ODD = [
    {}, {"offset": True}, {"offset": Small.TWO}, {"offset": 2.0}, {"storage_numel": True},
    {"storage_numel": 12.0}, {"itemsize": True}, {"itemsize": float("inf")}, {"shape": [3, True], "stride": [4, 1]},
    {"shape": [3, Small.TWO]}, {"shape": [3.0, 4]}, {"stride": [4, False]}, {"shape": (3, 4)}, {"stride": (4, 1)},
    {"shape": [], "stride": []}, {"shape": [0, 5], "stride": [5, 1]}, {"shape": [2 ** 62, 2], "stride": [-1, 7]},
    {"requires_grad": None}, {"requires_grad": False}, {"requires_grad": 1}, {"requires_grad": 0},
    {"record": None}, {"record": 5}, {"problem": "view reaches element 99"}, {"problem": 3},
    {"quantization": "per_tensor_affine scale=0.1 zero_point=0"}, {"quantization": 1.5},
    {"qparams": {"scheme": "per_tensor_affine", "scale": 0.1, "zero_point": 0}}, {"aliases": ["b.weight"]},
    {"name": 'quote " back \\ nl \n tab \t nul \x00 del \x7f c1 \x9b bidi \u202e e\u0301 \u4e2d \U0001f600'},
    {"name": "lone \ud800 surrogate"}, {"name": Text("sub")}, {"name": 7}, {"dtype": None},
    {"storage_key": "\x1b[31m"}, {"device": "cuda:0"}, {"device": None}, {"dtype": "?"},
]


@pytest.mark.parametrize("changes", ODD, ids=[",".join(c) or "plain" for c in ODD])
def test_odd_tensor(changes) -> None:
    tensor = replace(PLAIN, **changes)
    for kind in ("parameter", "buffer", "attri\x85bute"):
        expected = jsonrows.encode([tensor.to_json(kind=kind)])
        assert jsonrows.tensor_rows([tensor], {tensor.name: kind}) == expected


def test_templates_are_used() -> None:
    """The rows above that the template must write (plain types only): it does."""
    written = [c for c in ODD if jsonrows._tensor_row(replace(PLAIN, **c), "parameter", {}) is not None]
    assert len(written) >= 15


def test_shared_shapes(counted) -> None:
    """Tensors holding the same shape and stride lists (as ``archive.torchstate`` gives them; their text is
    written once), the same shape with other strides and the other way round, odd lists shared, and the odd
    values of ODD on tensors with shared lists: the rows are json's."""
    shapes = [[3, 4], [12], [], [3, True], [2 ** 62, 2], [0, 5], [3.0, 4], (3, 4)]
    strides = [[4, 1], [1], [], [1, 4], [4, False], [-1, 7], [5, 1], (4, 1)]
    tensors = []
    for i in range(4 * len(ODD)):
        shape, stride = shapes[i % len(shapes)], strides[(i // 3) % len(strides)]
        tensors.append(replace(PLAIN, **{"name": f"t{i}", "shape": shape, "stride": stride, "offset": i % 5,
                                         "itemsize": 1 + i % 4, **ODD[i % len(ODD)]}))
    kinds = {t.name: ("parameter", "buffer", "attribute")[i % 3] for i, t in enumerate(tensors)
             if isinstance(t.name, str)}
    expected = jsonrows.encode([t.to_json(kind=kinds.get(t.name, "attribute")) for t in tensors])
    assert jsonrows.tensor_rows(tensors, kinds) == expected
    assert counted["tensor"] >= 30


class _Entry:
    def __init__(self, size, compressed_size, method_name, method):
        self.size, self.compressed_size, self.method_name, self.method = size, compressed_size, method_name, method


class _Record:
    def __init__(self, name, kind, size=10, stored=8, method="deflate", number=8):
        self.entry = _Entry(size, stored, method, number)
        self.name, self.kind, self.size, self.compressed_size = name, kind, size, stored
        self.display_name = printable(name) if isinstance(name, str) else name


@pytest.mark.parametrize("record", [
    _Record("data/0", "tensor_data"), _Record("a\"b\\c\u202e", "code"), _Record("x", "other", size=True),
    _Record("x", "other", stored=Small.TWO), _Record("x", "other", stored=False),
    _Record("x", "other", size=2 ** 70), _Record("x", 5),
    _Record("x", "other", method=None), _Record("x", "other", size=1.0), _Record(3, "other"),
    _Record("a\x1bb", "code"), _Record("x", "other", method="stored", number=0),
    _Record("x", "other", method="method 99", number=99), _Record("x", "other", method=None, number=None)])
def test_odd_record(record) -> None:
    expected = jsonrows.encode([{"name": record.display_name, "kind": record.kind, "size": record.size,
                                 "compressed_size": record.compressed_size,
                                 "compression": record.entry.method_name}])
    assert jsonrows.record_rows([record]) == expected
    twice = jsonrows.record_rows([record, record, _Record("y", "other", method="deflate", number=8)])  # a method's
    assert twice == jsonrows.encode(json.loads(expected) * 2 + [{  # name kept for the next rows
        "name": "y", "kind": "other", "size": 10, "compressed_size": 8, "compression": "deflate"}])


def test_document() -> None:
    doc = {"a": 1, "b\u202e": [None, True, 1.5, "x\x00"], "c": jsonrows.Encoded("[1, 2]"), "d": {"e": "f"},
           "g": "[1, 2]"}
    assert jsonrows.document(doc) == jsonrows.encode(dict(doc, c=[1, 2]))


def _module(where="a", **changes) -> ModuleInfo:
    module = ModuleInfo(where, "__torch__.m.___torch_mangle_3.Linear", parameters=[f"{where}.weight"],
                        buffers=[f"{where}.mean"], tensors=[], attributes={"eps": "1e-05", "name": "'x'"},
                        methods=["forward", "extra"], training=False)
    for key, value in changes.items():
        setattr(module, key, value)
    return module


ODD_MODULES = [
    {}, {"training": None}, {"training": True}, {"training": 1}, {"training": 0}, {"custom_state": True},
    {"custom_state": None}, {"custom_state": 0}, {"attributes": {}}, {"attributes": {1: "x"}},
    {"attributes": {None: "x"}}, {"attributes": {"k": 1.5}}, {"attributes": {"k": None}},
    {"attributes": {"k\x1b": "v\u202e\ud800 \"q\" \\"}}, {"parameters": []}, {"parameters": ("a", "b")},
    {"parameters": ["a", 3]}, {"methods": [Text("sub")]}, {"methods": [None]}, {"type": 5}, {"type": None},
    {"type": "\u4e2d.\x00"}, {"path": 'q"uote\n'}, {"path": 7}, {"tensors": ["t\U0001f600"]},
    {"children": ()},
]


@pytest.mark.parametrize("changes", ODD_MODULES, ids=[",".join(c) or "plain" for c in ODD_MODULES])
def test_odd_module(changes) -> None:
    """One odd module in the middle of a tree: the tree's text is ``encode(to_json())``'s."""
    root = _module("")
    for i in range(3):
        child = _module(f"c{i}", **(changes if i == 1 else {}))
        child.children = [_module(f"c{i}.g{j}") for j in range(i)] if type(child.children) is list else child.children
        root.children.append(child)
    try:
        expected = jsonrows.encode(root.to_json())
    except TypeError:  # a type that is not a string: to_json itself fails, and so must the template's way
        with pytest.raises(TypeError):
            jsonrows.module_tree(root)
        return
    assert jsonrows.module_tree(root) == expected


def test_module_tree_shapes(monkeypatch) -> None:
    """Deep, wide and single trees, with the template counted."""
    heads = []
    head = jsonrows._module_head
    monkeypatch.setattr(jsonrows, "_module_head", lambda *a: heads.append(1) or head(*a))
    deep = _module("")
    node = deep
    for i in range(150):
        node.children.append(_module(f"d{i}"))
        node = node.children[0]
    wide = _module("")
    wide.children = [_module(f"w{i}", training=i % 3 == 0) for i in range(300)]
    for tree in (deep, wide, _module(""), ModuleInfo("", "T")):
        assert jsonrows.module_tree(tree) == jsonrows.encode(tree.to_json())
    assert len(heads) == 151 + 301 + 2


def test_shared_method_lists() -> None:
    """Modules sharing one methods list (as ``modules.declared_names`` gives a class's modules), others with
    equal lists of their own, a shared list holding a non-string, empty ones: the tree's text is json's."""
    shared, odd, other = ["forward", "extra\u202e"], ["forward", None], ["forward", "extra\u202e"]
    root = _module("", methods=shared)
    for i in range(12):
        methods = (shared, odd, other, [], shared[:1])[i % 5]
        child = _module(f"c{i}", methods=methods)
        child.children = [_module(f"c{i}.g{j}", methods=(shared, other, odd)[j % 3]) for j in range(i % 4)]
        root.children.append(child)
    assert jsonrows.module_tree(root) == jsonrows.encode(root.to_json())
    root.children = [c for c in root.children if c.methods is not odd and all(g.methods is not odd for g in c.children)]
    shared.append("late")  # a list changed between two documents: written as it is now
    assert jsonrows.module_tree(root) == jsonrows.encode(root.to_json())
