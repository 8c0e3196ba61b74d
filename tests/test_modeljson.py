"""TorchScript archives of torch 1.0-1.3 (model.json): module tree, tensors and the op view, torch-free."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest

from helpers import REPO, cli_json, run_cli

REAL = REPO / "tests" / "real"
CODE = b"op_version_set = 0\ndef forward(self,\n    x: Tensor) -> Tensor:\n  return torch.add(self.weight, x, alpha=1)\n"


def _archive(path: Path, model: dict | bytes, records: dict[str, bytes] | None = None) -> Path:
    body = model if isinstance(model, bytes) else json.dumps(model).encode()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/version", b"1\n")
        z.writestr("m/code/m.py", CODE)
        z.writestr("m/attributes.pkl", b"\x80\x02)."  # an empty tuple
                   if records is None or "attributes.pkl" not in records else records.pop("attributes.pkl"))
        for name, data in (records or {}).items():
            z.writestr(f"m/{name}", data)
        z.writestr("m/model.json", body)
    return path


def _tensor(dims, key, dtype="FLOAT", strides=None, offset=0):
    strides = strides or [1] * len(dims)
    return {"dims": [str(d) for d in dims], "offset": str(offset), "strides": [str(s) for s in strides],
            "requiresGrad": False, "dataType": dtype, "data": {"key": key}, "device": "cpu"}


def test_module_tree_parameters_buffers_and_constants(tmp_path):
    model = {"protoVersion": "3", "producerName": "pytorch", "producerVersion": "1.1", "mainModule": {
        "name": "Net", "torchscriptArena": {"key": "code/m.py"},
        "parameters": [{"name": "weight", "tensorId": "0"}],
        "submodules": [{"name": "bn", "parameters": [
            {"name": "running_mean", "tensorId": "1", "isBuffer": True},
            {"name": "half", "tensorId": "2"}]}]},
        "tensors": [_tensor([2, 3], "tensors/0", strides=[3, 1]), _tensor([4], "tensors/1", "DOUBLE"),
                    _tensor([2], "tensors/1", "DOUBLE", offset=2), _tensor([5], "tensors/2", "INT64")]}
    records = {"tensors/0": struct.pack("<6f", *range(6)), "tensors/1": struct.pack("<4d", 1, 2, 3, 4),
               "tensors/2": struct.pack("<5q", *range(5))}
    path = _archive(tmp_path / "net.pt", model, records)
    info = cli_json("info", path)
    assert info["format"] == "torchscript-json" and info["problems"] == []
    tensors = {t["name"]: t for t in info["tensors"]}
    assert tensors["weight"]["dtype"] == "float32" and tensors["weight"]["shape"] == [2, 3]
    assert tensors["weight"]["stride"] == [3, 1] and tensors["weight"]["kind"] == "parameter"
    assert tensors["bn.running_mean"]["kind"] == "buffer" and tensors["bn.running_mean"]["dtype"] == "float64"
    assert tensors["bn.half"]["offset"] == 2 and tensors["bn.half"]["storage"]["numel"] == 4
    assert info["weight_bytes"] == 24 + 32 + 40  # tensors/1 counted once though two tensors view it
    assert [(c["name"], c["dtype"], c["shape"]) for c in info["constants"]] == [("c3", "int64", [5])]
    tree = info["modules"]
    assert tree["type"] == "Net" and [c["path"] for c in tree["children"]] == ["bn"]
    assert "model.json" in {r["name"] for r in info["records"] if r["kind"] == "metadata"}
    assert {r["name"] for r in info["records"] if r["kind"] == "tensor_data"} == set(records)


def test_a_view_past_its_storage_and_a_missing_record_are_problems(tmp_path):
    model = {"mainModule": {"name": "M", "parameters": [{"name": "a", "tensorId": "0"}, {"name": "b", "tensorId": "1"},
                                                         {"name": "c", "tensorId": "7"}]},
             "tensors": [_tensor([10], "tensors/0"), _tensor([1], "tensors/9")]}
    path = _archive(tmp_path / "bad.pt", model, {"tensors/0": b"\0" * 8})
    info = cli_json("info", path)
    tensors = {t["name"]: t for t in info["tensors"]}
    assert "past its storage" in tensors["a"]["problem"]
    assert "missing" in tensors["b"]["problem"]
    assert "c" not in tensors and any("tensor 7" in p["detail"] for p in info["problems"])


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"[" * 200_000 + b"]" * 200_000],
                         ids=["not-json", "no-main-module", "too-deep"])
def test_unreadable_model_json_is_a_problem_not_an_error(tmp_path, body):
    info = cli_json("info", _archive(tmp_path / "m.pt", body))
    assert [p["kind"] for p in info["problems"]] == ["model_json"] and info["tensors"] == []


def test_deep_module_nesting_is_read_without_recursion(tmp_path):
    depth = 400  # two JSON levels each; Python's json refuses much deeper documents (the test above)
    body = '{"mainModule": ' + '{"name": "m", "submodules": [' * depth + '{"name": "leaf"}' + "]}" * depth + "}"
    info = cli_json("info", _archive(tmp_path / "deep.pt", body.encode()))
    assert info["problems"] == [] and info["format"] == "torchscript-json"
    node, levels = info["modules"], 0
    while node["children"]:
        node, levels = node["children"][0], levels + 1
    assert levels == depth and node["type"] == "leaf"


def test_real_archive_attribute_tensor_and_constant():
    """tch-rs's 2019 test modules: torch 2.13 refuses them; their model.json and attributes.pkl name the tensors."""
    info = cli_json("info", REAL / "tch_foo_2019-05-14.pt")
    assert [(t["name"], t["kind"], t["shape"], t["storage"]["record"]) for t in info["tensors"]] == [
        ("value", "attribute", [1], "tensors/0")]
    assert "torch 2.x refuses" in info["note"]
    info = cli_json("info", REAL / "tch_foo1_2019-05-15.pt")
    assert info["tensors"] == [] and [c["name"] for c in info["constants"]] == ["c0"]  # code reads CONSTANTS.c0


def test_graph_and_ops_give_the_torch_free_view_without_a_child():
    proc = run_cli("ops", REAL / "tch_foo1_2019-05-15.pt", check=2)
    assert "aten::mul" in proc.stdout and "Legacy model format is not supported" in proc.stderr
    doc = json.loads(run_cli("graph", REAL / "tch_foo1_2019-05-15.pt", "--json", check=2).stdout)
    assert doc["load"] == "failed" and doc["error"]["kind"] == "legacy_format" and doc.get("torch_version") is None
