"""The torch-free archive layer on real archives: formats, records, tensors, modules, methods, debug info."""

from __future__ import annotations

import pytest

from helpers import SAMPLES, sample_line
from tsinspect.archive.debuginfo import load_source_map
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import summarize

FORMATS = {
    "gate_scripted.pt": "torchscript", "gate_traced.pt": "torchscript", "gate_extra.pt": "torchscript",
    "gate_lite.ptl": "lite", "gate_state_dict.pt": "torch.save", "plain_scripted.pt": "torchscript",
}


@pytest.mark.parametrize("name,fmt", FORMATS.items())
def test_format_and_top_folder(name, fmt):
    with open_archive(SAMPLES / name) as archive:
        assert archive.format == fmt
        assert archive.prefix == name.rsplit(".", 1)[0] + "/"
        assert archive.problems == []


def test_top_folder_is_taken_from_the_entries_not_assumed(tmp_path):
    # torch names the folder after the file; a renamed file keeps the old folder name
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes((SAMPLES / "gate_scripted.pt").read_bytes())
    with open_archive(renamed) as archive:
        assert archive.prefix == "gate_scripted/"
        assert {r.kind for r in archive.records} >= {"code", "debug_info", "pickle", "tensor_data", "version"}


def test_scripted_summary():
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        s = summarize(archive)
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in s.tensors] == [
        ("proj.weight", "float32", [4, 4], 64), ("proj.bias", "float32", [4], 16)]
    assert s.tensor_kinds == {"proj.weight": "parameter", "proj.bias": "parameter"}
    assert [t.record for t in s.tensors] == ["data/0", "data/1"]
    assert [m.path for m in s.modules.walk()] == ["", "proj", "drop"]
    assert s.modules.type == "__torch__.models.Gate"
    assert s.modules.training is False
    assert ("__torch__.models.Gate", "forward") in {(m.owner, m.name) for m in s.methods}
    assert s.versions["file_format"] == 3
    assert s.constants == [] and s.traced_inputs == []


def test_traced_summary_has_constants_and_example_inputs():
    with open_archive(SAMPLES / "gate_traced.pt") as archive:
        s = summarize(archive)
    # the unrolled loop's float(i) and the -1.0 became tensor constants
    assert [t.name for t in s.constants] == ["c0", "c1", "c2"]
    assert [(t.name, t.dtype, t.shape) for t in s.traced_inputs] == [("forward[0]", "float32", [2, 4])]
    assert "___torch_mangle" in s.modules.type


def test_lite_archive_has_bytecode_version():
    with open_archive(SAMPLES / "gate_lite.ptl") as archive:
        s = summarize(archive)
    assert s.versions["bytecode"] == 8
    assert {"bytecode.pkl", "mobile_debug_handles.pkl", "callstack_debug_map.pkl"} <= set(archive.by_name)


def test_state_dict_tensors_named_by_key():
    with open_archive(SAMPLES / "gate_state_dict.pt") as archive:
        s = summarize(archive)
    assert [t.name for t in s.tensors] == ["proj.weight", "proj.bias"]
    assert s.modules is None and s.code_files == []


def test_extra_files_listed_with_nested_names():
    with open_archive(SAMPLES / "gate_extra.pt") as archive:
        s = summarize(archive)
    assert sorted(r.name for r in s.extra_files) == ["extra/meta.json", "extra/notes/readme.txt"]


def test_scripted_debug_info_maps_code_lines_to_model_source():
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        code = archive.read("code/__torch__/models.py", 1 << 20)
        source_map = load_source_map(archive, "code/__torch__/models.py")
    assert source_map.layout == "string_table"
    by_text = {}
    for line, origin in zip(code.decode().splitlines(), source_map.line_origins(code)):
        if origin:
            by_text.setdefault(line.strip(), origin)
    relu = by_text["h0 = torch.relu(h)"]
    assert relu.file.endswith("models.py") and relu.line == sample_line("if-then")
    assert relu.text.startswith("h = torch.relu(h)")
    assert by_text["if bool(torch.gt(torch.sum(h), 0)):"].line == sample_line("if-cond")
    assert by_text["for i in range(torch.size(x, 0)):"].line == sample_line("loop")


def test_traced_debug_info_carries_the_call_stack():
    with open_archive(SAMPLES / "gate_traced.pt") as archive:
        [code_name] = [r.name for r in archive.records_of("code") if "models" in r.name]
        code = archive.read(code_name, 1 << 20)
        origins = [o for o in load_source_map(archive, code_name).line_origins(code) if o]
    tanh = [o for o in origins if o.line == sample_line("else-body")]
    assert tanh, "the traced else branch should map back to its source line"
    assert tanh[0].stack and tanh[0].stack[0][2] == "forward"
    assert not [o for o in origins if o.line == sample_line("if-then")], "the trace never ran the relu line"


def test_records_are_not_read_until_asked(tmp_path):
    # a storage record with a bad CRC is not noticed by info (it never reads weights)
    data = bytearray((SAMPLES / "gate_scripted.pt").read_bytes())
    with open_archive(SAMPLES / "gate_scripted.pt") as archive:
        entry = archive.find("data/0").entry
    data[entry.data_offset] ^= 0xFF
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with open_archive(path) as archive:
        summarize(archive)
        assert not [p for p in archive.problems if p.kind == "crc_mismatch"]
        archive.read("data/0", 1 << 20)
        assert [p.member for p in archive.problems if p.kind == "crc_mismatch"] == ["gate_scripted/data/0"]


def test_fixture_quantized_archive_tensors(quantized_archive):
    with open_archive(quantized_archive) as archive:
        s = summarize(archive)
    assert s.format == "torchscript"
    assert any(t.dtype in ("qint8", "quint8") and t.quantization for t in s.tensors + s.constants)
    assert any(m.name == "__setstate__" for m in s.methods)
