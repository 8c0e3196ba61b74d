"""The torch-free commands run as a user runs them: a subprocess per command, on real archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import SAMPLES, cli_json, run_cli, sample_line

SCRIPTED = SAMPLES / "gate_scripted.pt"


def test_ls_lists_every_record_with_kind():
    out = run_cli("ls", SCRIPTED).stdout
    assert "code/__torch__/models.py" in out and "tensor_data" in out
    data = cli_json("ls", SCRIPTED)
    assert data["schema"] == "tsinspect.ls/1"
    assert data["top_folder"] == "gate_scripted"
    kinds = {r["name"]: r["kind"] for r in data["records"]}
    assert kinds["data.pkl"] == "pickle" and kinds["data/0"] == "tensor_data"
    assert kinds["code/__torch__/models.py.debug_pkl"] == "debug_info" and kinds["version"] == "version"


def test_info_json_schema_fields():
    data = cli_json("info", SCRIPTED)
    assert data["schema"] == "tsinspect.info/1"
    assert data["format"] == "torchscript"
    assert "code/__torch__/models.py" in data["code_files"]
    assert {"name": "proj.weight", "dtype": "float32", "shape": [4, 4], "nbytes": 64}.items() <= \
        data["tensors"][0].items()
    assert data["modules"]["type"] == "__torch__.models.Gate"
    assert [c["path"] for c in data["modules"]["children"]] == ["proj", "drop"]
    assert any(m["name"] == "forward" and m["class"] == "__torch__.models.Gate" for m in data["methods"])
    assert data["versions"]["file_format"] == 3
    assert data["problems"] == []


@pytest.mark.parametrize("name,fmt", [("gate_traced.pt", "torchscript"), ("gate_lite.ptl", "lite"),
                                      ("gate_state_dict.pt", "torch.save")])
def test_info_on_each_format(name, fmt):
    data = cli_json("info", SAMPLES / name)
    assert data["format"] == fmt
    text = run_cli("info", SAMPLES / name).stdout
    assert fmt in text and "proj.weight" in text


def test_bare_file_prints_the_summary():
    out = run_cli(SCRIPTED).stdout
    assert "torchscript" in out and "models.Gate" in out


def test_cat_code_and_blame():
    code = run_cli("cat", SCRIPTED, "code/__torch__/models.py").stdout
    assert code.startswith("class Gate(Module):")
    # the top folder may be given too
    assert run_cli("cat", SCRIPTED, "gate_scripted/code/__torch__/models.py").stdout == code
    blame = run_cli("cat", SCRIPTED, "code/__torch__/models.py", "--blame").stdout
    relu_line = next(line for line in blame.splitlines() if "torch.relu(h)" in line)
    assert f"models.py:{sample_line('if-then')}" in relu_line
    data = cli_json("cat", SCRIPTED, "code/__torch__/models.py")
    assert data["schema"] == "tsinspect.cat/1" and data["debug_info"] == "string_table"
    origin = next(line["origin"] for line in data["lines"] if "torch.relu" in line["text"])
    assert origin["line"] == sample_line("if-then") and origin["file"].endswith("models.py")


def test_cat_binary_record_to_a_pipe_is_raw_bytes():
    proc = subprocess.run([sys.executable, "-m", "tsinspect", "cat", str(SCRIPTED), "data/0"], capture_output=True)
    assert proc.returncode == 0 and len(proc.stdout) == 64


def test_pickle_tree_shows_tensors_and_never_imports():
    out = run_cli("pickle", SCRIPTED).stdout
    assert out.splitlines()[0] == "__torch__.models.Gate object"
    assert ".weight: Tensor float32[4x4] storage data/0" in out
    data = cli_json("pickle", SCRIPTED, "data.pkl")
    assert data["schema"] == "tsinspect.pickle/1"
    assert "torch._utils._rebuild_tensor_v2" in data["globals"]
    assert data["value"]["$object"] == "__torch__.models.Gate"
    weight = data["value"]["state"]["proj"]["state"]["weight"]["$tensor"]
    assert weight["shape"] == [4, 4] and weight["storage"]["record"] == "data/0"


def test_pickle_ops():
    out = run_cli("pickle", SCRIPTED, "constants.pkl", "--ops").stdout.splitlines()
    assert out[0].split()[:3] == ["0", "PROTO", "2"] and out[-1].split()[1] == "STOP"
    data = cli_json("pickle", SAMPLES / "gate_lite.ptl", "bytecode.pkl", "--ops")
    assert data["ops"][0]["op"] == "PROTO"


def test_extract_writes_only_inside_dest(tmp_path):
    dest = tmp_path / "out"
    run_cli("extract", SAMPLES / "gate_extra.pt", dest)
    assert (dest / "gate_extra/extra/meta.json").read_text() == '{"author": "tsinspect samples"}'
    assert (dest / "gate_extra/extra/notes/readme.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a second run would replace files: refused, and nothing is changed
    (dest / "gate_extra/extra/meta.json").write_text("mine")
    proc = run_cli("extract", SAMPLES / "gate_extra.pt", dest, check=2)
    assert proc.stderr.startswith("tsinspect: error: ") and "already exists" in proc.stderr
    assert (dest / "gate_extra/extra/meta.json").read_text() == "mine"


def test_extract_chosen_members(tmp_path):
    data = json.loads(run_cli("extract", SCRIPTED, tmp_path, "code/__torch__/models.py", "--json").stdout)
    assert data["written"] == [str(tmp_path / "gate_scripted/code/__torch__/models.py")]


@pytest.mark.parametrize("args,message", [
    (("info", "no-such-file.pt"), "cannot open no-such-file.pt"),
    (("cat", str(SCRIPTED), "code/nope.py"), "code/nope.py: no such record"),
    (("info", str(SAMPLES / "README.md")), "is a text file, not a PyTorch archive"),
])
def test_errors_are_one_line_and_exit_2(args, message):
    proc = run_cli(*args, check=2)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsinspect: error: ") and message in lines[0]


def test_color_follows_no_color_and_pipes():
    # piped output has no escapes even with colour allowed; --color always forces them
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    plain = subprocess.run([sys.executable, "-m", "tsinspect", "info", str(SCRIPTED)], capture_output=True,
                           text=True, env=env).stdout
    forced = subprocess.run([sys.executable, "-m", "tsinspect", "--color", "always", "info", str(SCRIPTED)],
                            capture_output=True, text=True, env=env).stdout
    assert "\x1b[" not in plain and "\x1b[" in forced


@pytest.mark.parametrize("command", [["ls"], ["info"], ["cat", "code/__torch__/models.py"], ["pickle"], ["scan"]])
def test_archive_commands_never_import_torch_or_textual(command):
    code = ("import sys; from tsinspect.cli import main; "
            f"rc = main({[command[0], str(SCRIPTED), *command[1:]]!r}); "
            "bad = [m for m in ('torch', 'textual', 'rich', 'networkx') if m in sys.modules]; "
            "print('IMPORTED', bad, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stderr


def test_silero_vad_real_archive(silero_vad_archive):
    data = cli_json("info", silero_vad_archive)
    assert data["format"] == "torchscript" and data["problems"] == []
    assert data["top_folder"]  # whatever the top folder is called, it is found
    names = {m["name"] for m in data["methods"]}
    assert {"forward", "reset_states"} <= names
    assert data["tensors"] and all(t["dtype"] for t in data["tensors"])
    code_file = next(f for f in data["code_files"] if f.endswith(".py"))
    run_cli("cat", silero_vad_archive, code_file, "--blame")
    run_cli("pickle", silero_vad_archive)
