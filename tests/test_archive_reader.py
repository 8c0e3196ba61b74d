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


@pytest.mark.parametrize("name,fmt,container", [
    ("legacy", "legacy", "pickle"), ("pt2", "pt2", "zip"), ("torch.package", "torch.package", "zip"),
    ("flatbuffer", "lite", "flatbuffer"), ("whole_module", "torch.save", "zip")])
def test_other_formats_are_told_apart(format_zoo, name, fmt, container):
    with open_archive(format_zoo[name]) as archive:
        s = summarize(archive)
    assert (s.format, s.container) == (fmt, container)
    assert s.problems == []


def test_torch_package_code_is_indexed_under_its_module(format_zoo):
    with open_archive(format_zoo["torch.package"]) as archive:
        s = summarize(archive)
    assert any(m.owner == "__torch__.torch.nn.modules.container.Sequential" for m in s.methods), \
        [m.qualname for m in s.methods]
    assert s.versions["file_format"] == 6


def test_flatbuffer_is_named_not_browsed(format_zoo):
    from helpers import run_cli

    assert "FlatBuffer" in run_cli("info", format_zoo["flatbuffer"]).stdout
    proc = run_cli("ls", format_zoo["flatbuffer"], check=2)
    assert "FlatBuffer mobile model" in proc.stderr


def test_legacy_debug_info_layout_is_read(tmp_path):
    """The string-table-free layout torch still writes on request: (offset, (text, file, line), tag)."""
    import subprocess
    import sys

    script = (
        "import torch, warnings; warnings.simplefilter('ignore')\n"
        "torch._C._set_should_use_format_with_string_table(False)\n"
        "def f(x: torch.Tensor) -> torch.Tensor:\n"
        "    if x.sum() > 0:\n"
        "        x = torch.relu(x)\n"
        "    return x\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return f(x)\n"
        f"torch.jit.script(M()).save({str(tmp_path / 'legacy_dbg.pt')!r})\n")
    (tmp_path / "make.py").write_text(script)
    subprocess.run([sys.executable, str(tmp_path / "make.py")], check=True, capture_output=True)
    with open_archive(tmp_path / "legacy_dbg.pt") as archive:
        [name] = [r.name for r in archive.records_of("code") if r.name.endswith("__torch__.py")]
        code = archive.read(name, 1 << 20)
        source_map = load_source_map(archive, name)
    assert source_map.layout == "legacy"
    origins = {o.line: o.text for o in source_map.line_origins(code) if o}
    assert origins.get(5) == "x = torch.relu(x)", origins


def test_oldest_debug_info_layout_is_read():
    """2-tuples without a tag, as archives from before tags were added have them."""
    from tsinspect.archive.debuginfo import parse_source_map
    from tsinspect.archive.pickles import PTuple

    source = PTuple(["def f(x):\n    return x + 1\n", "/src/old.py", 10])
    records = PTuple([PTuple([0, PTuple([source, 0, 0])]), PTuple([7, PTuple([source, 14, 26])])])
    source_map = parse_source_map(records)
    origin = source_map.origin_at(9)
    assert (origin.file, origin.line, origin.text) == ("/src/old.py", 11, "return x + 1")
