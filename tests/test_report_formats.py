"""``tsinspect report``: what each format holds on the samples, the gate, the diff, escaping and size bounds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import run_cli, sample_line

SECTIONS = ("summary", "safety", "modules", "tensors", "code", "ops", "ir")


def report(tmp_path: Path, archive: Path, fmt: str, *extra: str, check: int = 0, name: str = "report") -> str:
    out = tmp_path / f"{name}.{fmt}"
    proc = run_cli("report", archive, "-o", out, *extra, check=check)
    assert f"wrote {out}" in proc.stderr
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def scripted_reports(sample_archives, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("reports")
    return {fmt: report(folder, sample_archives["gate_scripted"], fmt) for fmt in ("html", "md", "json")}


@pytest.fixture(scope="module")
def diff_reports(sample_archives, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("diff_reports")
    return {fmt: report(folder, sample_archives["gate_traced"], fmt, "--diff", sample_archives["gate_scripted"],
                        check=1) for fmt in ("html", "md", "json")}


def anchors_resolve(page: str) -> None:
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    targets = set(re.findall(r'href="#([^"]*)"', page))
    assert targets and targets <= ids, targets - ids


def no_remote(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""\b(src|href|action|srcset)\s*=\s*(?!["']?#)""", page.replace("data-", "")), \
        "only in-page links"


# ----- HTML


def test_html_sections_and_content(scripted_reports):
    page = scripted_reports["html"]
    assert page.startswith("<!DOCTYPE html>")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
        assert f'href="#{anchor}"' in page
    anchors_resolve(page)
    assert "proj.weight" in page and "[4, 4]" in page and "parameter" in page
    assert "no file or raw-memory operations in code/" in page
    # code: highlighted, each line with the original file:line
    assert '<span class="k">def</span>' in page
    assert f'>models.py:{sample_line("if-then")}</span>' in page
    # ops and the IR of each method in collapsible blocks, linked back to code lines
    assert '<td class="mono">aten::tanh</td>' in page
    assert re.search(r'<details class="searchable"><summary class="mono">forward\(__torch__\.models\.Gate self', page)
    assert '<span class="kind">prim::Loop</span>' in page
    assert re.search(r'<a href="#code-\d+-L13">code/__torch__/models.py:13</a>', page)
    # where the weights go
    assert re.search(r"<td class=\"name mono\">proj</td><td class=\"num\">2</td><td class=\"num\">80 B</td>", page)


def test_html_is_self_contained(scripted_reports):
    page = scripted_reports["html"]
    no_remote(page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert page.count("<script>") == 1 and "prefers-color-scheme: dark" in page
    assert '<meta name="viewport"' in page


def test_html_escapes_hostile_names(hostile_archive, tmp_path):
    page = report(tmp_path, hostile_archive, "html", "--no-ir")
    assert "<img" not in page and "alert(2)</script>" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;|`.weight" in page
    assert "b&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "\x1b" not in page and "\u202e" not in page and "esc\\x1b[31mred\\u202eevil" in page
    anchors_resolve(page)


# ----- Markdown


def test_markdown_content(scripted_reports, sample_archives):
    text = scripted_reports["md"]
    assert text.startswith("# tsinspect report: gate_scripted.pt\n")
    for title in ("## Summary", "## Safety and problems", "## Modules", "## Tensors", "## Code", "## Operators",
                  "## IR"):
        assert f"\n{title}\n" in text
    assert "[Safety and problems](#safety-and-problems)" in text
    assert "| proj.weight | parameter | float32 | \\[4, 4\\] | 64 B | data/0 |  |" in text
    assert re.search(rf"h0 = torch\.relu\(h\) +# models\.py:{sample_line('if-then')}\n", text)
    assert "<details><summary>forward(__torch__.models.Gate self, Tensor x) -&gt; Tensor (26 nodes)</summary>" in text
    assert "prim::Loop" in text and "| 1 | aten::tanh | Gate.forward code/\\_\\_torch\\_\\_/models.py:15 |" in text
    fences = [line for line in text.splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0 and fences
    assert text.count("<details") == text.count("</details>")
    assert "http" not in text


def test_markdown_escapes_hostile_names(hostile_archive, tmp_path):
    text = report(tmp_path, hostile_archive, "md", "--no-ir")
    assert "<img" in text  # inside the fenced code of code/, where it is literal
    text = re.sub(r"(?ms)^```.*?^```$", "", text)
    assert "<img" not in text and "<script" not in text and "</td>" not in text
    row = next(line for line in text.splitlines() if "onerror" in line and ".weight" in line)
    assert row.startswith("| &lt;img src=x onerror=alert(1)&gt;\\|\\`.weight |")
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells: the name's own | and ` are escaped
    assert "\x1b" not in text and "\u202e" not in text and "esc\\\\x1b\\[31mred\\\\u202eevil" in text


def test_markdown_summary_escapes_hostile_names(hostile_archive, sample_archives, tmp_path):
    proc = run_cli("report", hostile_archive, "--diff", sample_archives["plain_scripted"], "--ir", "never",
                   "--summary", "-o", "-", check=1)
    text = proc.stdout
    assert "onerror" in text and "structural diff" in text  # the names are there, as text
    outside = re.sub(r"(?ms)^ *```.*?^ *```$", "", text)
    assert "<img" not in outside and "<script" not in outside and "</td>" not in outside
    assert "\x1b" not in text and "\u202e" not in text
    assert text.count("<details>") == text.count("</details>")


# ----- JSON


def test_json_carries_everything(scripted_reports):
    doc = json.loads(scripted_reports["json"])
    assert doc["schema"] == "tsinspect.report/1"
    assert doc["info"]["schema"] == "tsinspect.info/1" and doc["info"]["format"] == "torchscript"
    assert [t["name"] for t in doc["info"]["tensors"]] == ["proj.weight", "proj.bias"]
    assert {"path": "", "tensors": 2, "bytes": 80} in doc["weights_by_module"]
    assert doc["gate"]["safe_to_load"] is True
    assert doc["ir"]["schema"] == "tsinspect.ir/2" and doc["ir"]["load"] == "meta" and doc["ir"]["gate"]
    assert doc["ops"]["from"] == "ir" and any(op["op"] == "prim::Loop" for op in doc["ops"]["ops"])
    models = next(f for f in doc["code"] if f["file"] == "code/__torch__/models.py")
    relu = next(line for line in models["lines"] if "torch.relu" in line["text"])
    assert relu["origin"]["line"] == sample_line("if-then") and relu["origin"]["file"].endswith("models.py")
    assert doc["diff"] is None and doc["ir_skipped"] is None


# ----- the safety gate, torch-free reports, formats without code


def test_refused_gate_is_reported_in_place(setstate_file_writer_archive, setstate_marker, tmp_path):
    page = report(tmp_path, setstate_file_writer_archive, "html", check=1)
    assert not setstate_marker.exists()
    assert 'class="box bad">Not loaded (refused)' in page
    assert "Writer.__setstate__" in page and '<span class="badge unsafe">unsafe</span>' in page
    assert "torch.save" in page and "The methods of code/ and the ops they call" in page
    doc = json.loads(report(tmp_path, setstate_file_writer_archive, "json", check=1))
    assert doc["ir"]["load"] == "refused" and doc["gate"]["safe_to_load"] is False
    assert doc["ir"]["fallback"]["methods"] and doc["ops"]["from"] == "ast"
    assert not setstate_marker.exists()


def test_no_ir_report_is_torch_free(sample_archives, tmp_path):
    doc = json.loads(report(tmp_path, sample_archives["gate_scripted"], "json", "--no-ir"))
    assert doc["ir"] is None and "--ir never" in doc["ir_skipped"]
    assert doc["ops"]["from"] == "ast" and doc["code"]
    assert any(op["op"] == "aten::relu" and op["uses"][0]["code"] == "code/__torch__/models.py:13"
               for op in doc["ops"]["ops"])
    page = report(tmp_path, sample_archives["gate_scripted"], "html", "--no-ir")
    assert "No IR: not asked for (--ir never)." in page and "The methods of code/ and the ops they call" in page


def test_state_dict_report(sample_archives, tmp_path):
    page = report(tmp_path, sample_archives["gate_state_dict"], "html")
    assert 'id="tensors"' in page and 'id="ir"' not in page and 'id="code"' not in page
    anchors_resolve(page)
    text = report(tmp_path, sample_archives["gate_state_dict"], "md")
    assert "proj.weight" in text and "## IR" not in text


# ----- diff


def test_diff_in_every_format(diff_reports):
    page = diff_reports["html"]
    assert '<section id="diff"><h2>Trace vs script</h2>' in page and 'href="#diff"' in page
    assert page.count('<span class="badge bad">dropped_branch</span>') == 2
    assert '<tr class="line dropped"><td class="mark">-</td><td class="ln">24</td>' in page
    anchors_resolve(page)
    text = diff_reports["md"]
    assert "## Trace vs script" in text and "**unrolled_loop** at models.py:27" in text
    assert re.search(r"```diff\n {5}23 \|.*\n- {4}24 \| {13}h = torch\.relu\(h\)", text)
    doc = json.loads(diff_reports["json"])
    assert doc["diff"]["schema"] == "tsinspect.diff/1"
    assert doc["diff"]["counts"] == {"dropped_branch": 2, "unrolled_loop": 1}


def test_structural_diff(sample_archives, tmp_path):
    text = report(tmp_path, sample_archives["gate_scripted"], "md", "--no-ir", "--diff",
                  sample_archives["plain_scripted"], check=1)
    assert "[Structural diff](#structural-diff)" in text and "\n## Structural diff\n" in text
    assert "- **module_type_changed** module &lt;root&gt;: models.Gate -&gt; models.Plain" in text
    assert "```diff\n@@ " in text
    page = report(tmp_path, sample_archives["gate_scripted"], "html", "--no-ir", "--diff",
                  sample_archives["plain_scripted"], check=1)
    assert '<section id="diff"><h2>Structural diff</h2>' in page and '<span class="line dropped">-' in page
    anchors_resolve(page)


# ----- output handling


def test_output_is_never_overwritten_without_force(sample_archives, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("keep")
    proc = run_cli("report", sample_archives["gate_scripted"], "-o", out, "--no-ir", check=2)
    assert "--force" in proc.stderr and out.read_text() == "keep"
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "elsewhere.md")
    run_cli("report", sample_archives["gate_scripted"], "-o", link, "--no-ir", check=2)
    assert not (tmp_path / "elsewhere.md").exists()
    run_cli("report", sample_archives["gate_scripted"], "-o", out, "--no-ir", "--force")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "r.html"]


def test_stdout_and_explicit_format(sample_archives):
    proc = run_cli("report", sample_archives["gate_scripted"], "-o", "-", "--format", "json", "--no-ir")
    assert json.loads(proc.stdout)["schema"] == "tsinspect.report/1"
    assert run_cli("report", sample_archives["gate_scripted"], "-o", "-", "--no-ir").stdout.startswith("<!DOCTYPE")


def test_report_package_imports_neither_torch_nor_textual():
    code = ("import sys, tsinspect.report.html, tsinspect.report.markdown, tsinspect.report.html_diff, "
            "tsinspect.report.markdown_diff, tsinspect.cli.report_cmd; "
            "print(sorted(m for m in ('torch', 'textual', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----- large archives: bounded sections, everything in JSON


def test_large_archive_sections_are_bounded(many_tensors_archive, tmp_path):
    page = report(tmp_path, many_tensors_archive, "html", "--max-tensors", "50")
    # 50 tensors; where the weights go: the 23 largest of layers.0-399, then one row for the rest
    assert page.count("<tr><td class=\"name mono\">layers.") == 50 + 23
    assert "377 more modules" in page and "Showing the first 50 of 800 tensors" in page
    assert page.count('<td class="name mono" style=') == 402  # every module (the limit is 500)
    assert len(page.encode()) < 1_500_000
    text = report(tmp_path, many_tensors_archive, "md", "--max-tensors", "50")
    assert "*Showing the first 50 of 800 tensors" in text and len(text.encode()) < 1_000_000
    doc = json.loads(report(tmp_path, many_tensors_archive, "json"))
    assert len(doc["info"]["tensors"]) == 800


def test_code_and_ir_budgets(sample_archives):
    from tsinspect.report.html import render_html
    from tsinspect.report.markdown import render_markdown
    from tsinspect.report.model import Limits, build_report

    small = build_report(str(sample_archives["gate_scripted"]),
                         limits=Limits(code_lines=30, code_chars=10_000, ir_lines=5, ir_total_lines=8))
    page, text = render_html(small), render_markdown(small)
    assert page.count('id="code-0-L26"') == 1 and 'id="code-1-L1"' not in page  # models.py fits, linear.py not
    assert page.count("Not shown: the report shows 30 lines of code") == 3
    assert text.count("Not shown (the report's code budget is spent)") == 3
    assert page.count("... more nodes: the JSON report has the whole graph") == 3  # 5 + 3 + 0 lines shown
    assert text.count("... more nodes") == 3


# ----- fixtures


@pytest.fixture(scope="session")
def hostile_archive(tmp_path_factory) -> Path:
    """A scripted module whose submodule and buffer names are HTML and Markdown."""
    folder = tmp_path_factory.mktemp("hostile_report")
    source = folder / "hostile_names.py"
    source.write_text(textwrap.dedent("""
        import torch

        class Hostile(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.add_module("<img src=x onerror=alert(1)>|`", torch.nn.Linear(2, 2))
                self.register_buffer("b</td><script>alert(2)</script>", torch.zeros(3))
                self.register_buffer("esc\x1b[31mred\u202eevil", torch.zeros(1))

            def forward(self, x):
                return x
    """))
    return _script_from(source, "Hostile", folder / "hostile.pt")


@pytest.fixture(scope="session")
def many_tensors_archive(tmp_path_factory) -> Path:
    """400 Linear(4, 4) layers in a ModuleList: 800 tensors, 402 modules."""
    folder = tmp_path_factory.mktemp("many_tensors")
    source = folder / "many_tensors.py"
    source.write_text(textwrap.dedent("""
        import torch

        class Many(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(400)])

            def forward(self, x):
                return self.layers[0](x)
    """))
    return _script_from(source, "Many", folder / "many.pt")


def _script_from(source: Path, cls: str, out: Path) -> Path:
    code = (f"import sys, torch; sys.path.insert(0, {str(source.parent)!r}); "
            f"from {source.stem} import {cls}; torch.jit.script({cls}()).save({str(out)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    return out


def test_a_report_scans_once_and_gates_the_ir_with_that_scan(sample_archives, monkeypatch):
    """The report's own scan judges the IR child's archive (it once scanned twice: the gate did it again,
    5 s of a 5,000-module archive's 11)."""
    from tsinspect.report.model import build_report
    from tsinspect.safety import codescan

    scans = []
    scan_code = codescan.scan_code
    monkeypatch.setattr(codescan, "scan_code", lambda index: scans.append(index) or scan_code(index))
    built = build_report(str(sample_archives["gate_scripted"]))
    assert built.ir.loaded and built.scan.safe_to_load
    assert len(scans) == 1
