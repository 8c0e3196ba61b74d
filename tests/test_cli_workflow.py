"""The CLI as people use it (issue 15): folders and JSON Lines, PR summaries, progress, options that mean
the same everywhere, and the rough edges a new user met. Every test runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, run_cli

GITHUB_LIMIT = 65_536


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    import cli_archives

    return cli_archives.build_all(tmp_path_factory.mktemp("cli_archives"))


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# ----- global options after the subcommand, one spelling per option


def test_global_options_work_after_the_subcommand(sample_archives):
    traced, scripted = sample_archives["gate_traced"], sample_archives["gate_scripted"]
    after = run_cli("diff", traced, scripted, "--ir", "never", "--color", "always", check=1).stdout
    before = run_cli("--color", "always", "diff", traced, scripted, "--ir", "never", check=1).stdout
    assert "\x1b[" in after and after == before
    assert "\x1b[" not in run_cli("ls", traced, "--color", "never").stdout
    assert run_cli("ls", traced, "--quiet").stdout == run_cli("-q", "ls", traced).stdout


def test_ir_option_is_spelled_one_way_with_a_hidden_alias(sample_archives, tmp_path):
    scripted = sample_archives["gate_scripted"]
    new = json.loads(run_cli("report", scripted, "--json", "--ir", "never").stdout)
    old = json.loads(run_cli("report", scripted, "--json", "--no-ir").stdout)
    assert new["ir"] is None and old["ir_skipped"] == new["ir_skipped"] == "not asked for (--ir never)"
    for command in ("diff", "report"):
        page = run_cli(command, "--help").stdout
        assert "--ir {auto,never,always}" in page and "--no-ir" not in page
    a = run_cli("diff", sample_archives["gate_traced"], scripted, "--no-ir", "--json", check=1).stdout
    b = run_cli("diff", sample_archives["gate_traced"], scripted, "--ir", "never", "--json", check=1).stdout
    assert json.loads(a)["analysis"] == json.loads(b)["analysis"] == "ast"


def test_every_subcommand_help_has_description_exit_codes_and_examples():
    commands = ["open", "ls", "info", "cat", "pickle", "extract", "graph", "ops", "scan", "diff", "report"]
    for command in commands:
        page = run_cli(command, "--help").stdout
        usage, description = page.split("\n\n")[:2]
        assert description and not description.startswith(("positional", "options")), command
        assert "exit status:\n  0  " in page and "\n  2  " in page, command
        examples = page.split("examples:\n", 1)[1]
        assert f"  tsinspect {command if command != 'open' else ''}".rstrip() in examples, command
        # every positional argument says what it is
        positional = page.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0]
        assert all(len(line.split(None, 1)) == 2 for line in positional.splitlines() if line.startswith("  ")
                   and not line.startswith("   ")), (command, positional)


# ----- bad inputs: clear messages, once


@pytest.mark.parametrize("content,expected", [
    (b"", "is an empty file, not a PyTorch archive"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a PNG image, not a PyTorch archive"),
    (b"hello, this is a text file\n", "is a text file, not a PyTorch archive"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "is a Git LFS pointer"),
    (b"GGUF\x03\x00\x00\x00", "is a GGUF model"),
])
def test_files_that_are_not_archives_are_named(tmp_path, content, expected):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    proc = run_cli("info", path, check=2)
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "first bytes" not in proc.stderr


def test_scan_of_a_missing_file_says_it_once():
    proc = run_cli("scan", "missing.pt", check=2)
    both = proc.stdout + proc.stderr
    assert both.count("No such file or directory") == 1
    assert proc.stderr == "tsinspect: error: cannot open missing.pt: No such file or directory\n"


def test_report_output_problems_are_found_before_any_work(sample_archives, tmp_path):
    scripted = sample_archives["gate_scripted"]
    folder = tmp_path / "out"
    folder.mkdir()
    proc = run_cli("report", scripted, "-o", folder, "--force", check=2)
    assert "is a folder; give the report a file name" in proc.stderr and ".tsinspect-report" not in proc.stderr
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".tsinspect-report*"))
    # --timeout would make any IR extraction fail: the missing folder is reported first
    proc = run_cli("report", scripted, "-o", tmp_path / "nope" / "r.html", "--timeout", "0.001", check=2)
    assert proc.stderr == f"tsinspect: error: the folder {tmp_path / 'nope'} does not exist; create it first\n"
    proc = run_cli("report", scripted, check=2)
    assert "-o OUT" in proc.stderr


def test_report_json_goes_to_stdout(sample_archives):
    doc = json.loads(run_cli("report", sample_archives["gate_scripted"], "--json", "--ir", "never").stdout)
    assert doc["schema"] == "tsinspect.report/1" and doc["info"]["format"] == "torchscript"


def test_cat_suggests_the_mangled_record(sample_archives):
    # the mangle number depends on what this process scripted before (tests/conftest.py: sample_archives)
    with zipfile.ZipFile(sample_archives["gate_traced"]) as z:
        mangled = [n.split("/", 1)[1] for n in z.namelist() if "/code/__torch__/models/___torch_mangle_" in n and n.endswith(".py")]
    assert len(mangled) == 1
    proc = run_cli("cat", sample_archives["gate_traced"], "code/__torch__/models.py", check=2)
    assert proc.stderr.count("\n") == 1
    assert f"did you mean {mangled[0]}?" in proc.stderr
    proc = run_cli("pickle", sample_archives["gate_traced"], "data.pk", check=2)
    assert "did you mean data.pkl?" in proc.stderr
    proc = run_cli("cat", sample_archives["gate_traced"], "zzz", check=2)
    assert "did you mean" not in proc.stderr


def test_graph_unknown_method_lists_methods_before_torch_starts(sample_archives):
    # a --timeout that no extraction can meet: the error must come from the code/ index, not from torch
    proc = run_cli("graph", sample_archives["gate_scripted"], "--method", "nosuch", "--timeout", "0.001", check=2)
    assert proc.stderr == "tsinspect: error: no method 'nosuch'; the archive's methods: forward\n"
    proc = run_cli("graph", sample_archives["gate_scripted"], "--module", "pro", "--timeout", "0.001", check=2)
    assert "no submodule 'pro'" in proc.stderr and "did you mean 'proj'?" in proc.stderr


def test_graph_exits_1_when_torch_cannot_load_the_archive(custom_op_archive):
    proc = run_cli("graph", custom_op_archive, check=1)
    assert "torchvision::nms" in proc.stderr and "Detect.forward" in proc.stdout
    run_cli("ops", custom_op_archive, check=1)


def test_diffing_a_file_with_itself_warns(sample_archives):
    proc = run_cli("diff", sample_archives["gate_scripted"], sample_archives["gate_scripted"], "--ir", "never")
    assert "are the same file" in proc.stderr and "no differences" in proc.stdout


def test_structural_diff_reports_extra_files(built):
    doc = json.loads(run_cli("diff", built["extra_a"], built["extra_b"], "--json", "--ir", "never", check=1).stdout)
    kinds = {f["kind"]: f["message"] for f in doc["findings"]}
    assert kinds == {"extra_file_changed": "extra/config.json: content differs (8 -> 8 bytes)",
                     "extra_file_removed": "extra/notes.txt (1 byte) only in a",
                     "extra_file_added": "extra/other.txt (1 byte) only in b"}


# ----- info: traced or scripted, short on big models


def test_info_says_traced_or_scripted_and_how_sure(sample_archives, built):
    made = {name: json.loads(run_cli("info", sample_archives[name], "--json").stdout)["made_by"]
            for name in ("gate_traced", "gate_scripted", "plain_scripted", "gate_state_dict")}
    assert made["gate_traced"]["kind"] == "traced" and made["gate_traced"]["confidence"] == "certain"
    assert made["gate_scripted"]["kind"] == "scripted" and made["gate_scripted"]["confidence"] == "likely"
    assert made["plain_scripted"] == {"kind": "unknown", "confidence": "weak",
                                      "evidence": [made["plain_scripted"]["evidence"][0]]}
    assert made["gate_state_dict"] is None
    # a traced quantized model keeps its modules' scripted set_weight_bias (with an if): still traced, not mixed
    quantized = json.loads(run_cli("info", built["quantized_traced"], "--json").stdout)["made_by"]
    assert quantized["kind"] == "traced" and not any("if/for/while" in e for e in quantized["evidence"])
    text = run_cli("info", sample_archives["gate_traced"]).stdout
    assert re.search(r"^made by +traced \(certain: traced_inputs.pkl", text, re.M)


def test_info_groups_repeated_modules_and_tensors(built):
    short = run_cli("info", built["encoder"]).stdout
    full = run_cli("info", built["encoder"], "--all").stdout
    assert "0-5  torch.nn.modules.transformer.TransformerEncoderLayer x6" in short
    assert "layers.0-5.linear1.weight" in short and "x6" in short
    assert len(short.splitlines()) < len(full.splitlines()) / 2
    assert "layers.5.linear1.weight" in full and "layers.0-5" not in full
    one = run_cli("info", built["one_tensor"]).stdout
    assert "1 tensor " in one + " " and "1 tensors" not in one


def test_info_of_a_folder_is_json_lines(sample_archives, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "a.weights").write_bytes(sample_archives["gate_traced"].read_bytes())  # found by its zip magic
    (folder / "README.md").write_text("not a model\n")
    (folder / "broken.pt").write_bytes(b"")
    proc = run_cli("info", folder, "--json", check=2)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(Path(d["path"]).name, d.get("error")) for d in lines] == [
        ("a.weights", None), ("broken.pt", f"{folder / 'broken.pt'} is an empty file, not a PyTorch archive")]
    assert lines[0]["schema"] == "tsinspect.info/1" and lines[0]["made_by"]["kind"] == "traced"
    assert proc.stderr.count("tsinspect: error:") == 1


# ----- scan: folders, parallel workers, JSON Lines


@pytest.fixture
def registry(sample_archives, tmp_path) -> Path:
    folder = tmp_path / "registry"
    (folder / "team" / "deep").mkdir(parents=True)
    for name in ("gate_scripted", "gate_traced", "gate_lite", "gate_state_dict"):
        (folder / "team" / f"{name}.pt").write_bytes(sample_archives[name].read_bytes())
    (folder / "team" / "deep" / "checkpoint.weights").write_bytes(sample_archives["gate_state_dict"].read_bytes())
    # a protocol-0 pickle that imports os.system (never loaded: bytes only), under a model extension
    (folder / "team" / "deep" / "evil.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    (folder / "team" / "notes.txt").write_text("hello\n")
    (folder / "team" / "config.json").write_text("{}\n")
    return folder


def test_scan_walks_a_folder_by_content_and_writes_json_lines(registry):
    proc = run_cli("scan", registry, "--jsonl", check=1)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [Path(d["path"]).name for d in lines]
    assert names == ["checkpoint.weights", "evil.pkl", "gate_lite.pt", "gate_scripted.pt", "gate_state_dict.pt",
                     "gate_traced.pt"]
    assert all(d["schema"] == "tsinspect.scan.file/1" for d in lines)
    verdicts = {Path(d["path"]).name: d["verdict"] for d in lines}
    assert verdicts["evil.pkl"] == "unsafe" and verdicts["gate_scripted.pt"] == "clean"
    # parallel and single-process judging agree, line for line
    assert run_cli("scan", registry, "--jsonl", "-j", "1", check=1).stdout == proc.stdout
    text = run_cli("scan", registry, check=1).stdout
    assert re.search(r"^6 files: 5 clean, 1 unsafe; 2 other files skipped \(", text, re.M)


def test_scan_exit_status_is_the_worst_verdict(registry, sample_archives, tmp_path):
    run_cli("scan", sample_archives["gate_scripted"], sample_archives["gate_traced"], check=0)
    run_cli("scan", registry, check=1)
    (registry / "empty.pt").write_bytes(b"")
    proc = run_cli("scan", registry, "--json", check=2)
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "tsinspect.scan/1" and len(doc["files"]) == 7
    assert proc.stderr.count("tsinspect: error:") == 1 and "is an empty file" in proc.stderr
    empty = tmp_path / "nothing"
    empty.mkdir()
    proc = run_cli("scan", empty, check=0)
    assert "no archives found" in proc.stderr


# ----- progress on a terminal, and only there


def _run_with_tty_stderr(*args: str) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (stdout a pipe): what a user at a terminal sees on stderr."""
    master, slave = pty.openpty()
    env = dict(os.environ, NO_COLOR="1", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "tsinspect", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read().decode()
    proc.wait(timeout=120)
    os.close(master)
    return proc.returncode, out, err.decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_with_quiet_or_a_pipe(registry, sample_archives):
    status, out, err = _run_with_tty_stderr("scan", registry, "--jsonl")
    assert status == 1 and len(out.splitlines()) == 6
    assert "tsinspect: scanning" in err and "/6 files" in err and err.endswith("\r\x1b[2K")  # cleared at the end
    status, out, err = _run_with_tty_stderr("-q", "scan", registry, "--jsonl")
    assert "scanning" not in err and "\x1b" not in err
    assert "scanning" not in run_cli("scan", registry, check=1).stderr  # stderr a pipe
    status, out, err = _run_with_tty_stderr("graph", sample_archives["gate_scripted"])
    assert status == 0 and "tsinspect: extracting the IR" in err and "prim::If" in out


# ----- reports for pull requests


def test_summary_fits_a_github_comment_and_counts_the_rest(built, tmp_path):
    full = run_cli("report", built["many_a"], "--diff", built["many_b"], "--ir", "never", "-o", tmp_path / "f.md",
                   check=1)
    assert (tmp_path / "f.md").stat().st_size > 4 * GITHUB_LIMIT
    link = "https://ci.example/run (1)/report.html"
    proc = run_cli("report", built["many_a"], "--diff", built["many_b"], "--ir", "never", "-o", "-", "--summary",
                   "--link", link, check=1)
    text = proc.stdout
    assert utf16_length(text) <= GITHUB_LIMIT
    shown = len(re.findall(r"^- \*\*tensor_changed\*\*", text, re.M))
    more = re.search(r"^\*(\d+) more findings not shown here", text, re.M)
    assert shown > 100 and more and shown + int(more.group(1)) == 3000
    assert "[Full report](https://ci.example/run%20%281%29/report.html)" in text
    assert text.count("```") % 2 == 0 and text.count("<details>") == text.count("</details>")
    assert "wrote" in full.stderr


def test_summary_puts_the_users_findings_first(built):
    text = run_cli("report", built["mixed_traced"], "--diff", built["mixed_scripted"], "-o", "-", "--summary",
                   check=1).stdout
    findings = re.findall(r"^- \*\*(\w+)\*\*(.*)$", text, re.M)
    mine = int(re.search(r"^#### (\d+) findings? in your code$", text, re.M).group(1))
    assert 1 <= mine < len(findings)
    assert all("cli_archives.py" in rest and "[torch]" not in rest for _, rest in findings[:mine])
    assert all("[torch]" in rest for _, rest in findings[mine:])
    assert "Full report: `tsinspect report" in text and "-o report.html`" in text


def test_summary_of_one_archive(sample_archives):
    text = run_cli("report", sample_archives["gate_scripted"], "-o", "-", "--summary", "--ir", "never").stdout
    assert text.startswith("### tsinspect: gate_scripted.pt\n") and "no file or raw-memory operations" in text
    proc = run_cli("report", sample_archives["gate_scripted"], "-o", "x.html", "--summary", check=2)
    assert "--summary writes Markdown" in proc.stderr


def test_html_report_has_an_index_and_collapsed_findings(sample_archives, tmp_path):
    out = tmp_path / "r.html"
    run_cli("report", sample_archives["gate_traced"], "--diff", sample_archives["gate_scripted"], "-o", out, check=1)
    page = out.read_text()
    index = page.index('<section id="findings">')
    assert index < page.index('<section id="summary">')
    rows = re.findall(r'<tr><td class="num"><a href="#(finding-\d+)">', page)
    assert rows == ["finding-1", "finding-2", "finding-3"]
    for anchor in rows:
        tag = re.search(rf'<details class="searchable" id="{anchor}"[^>]*>', page).group()
        assert " open" not in tag
    assert '<a href="#findings"><span>Findings</span>' in page
