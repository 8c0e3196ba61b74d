"""The HTML report in a real browser: headless Chromium renders it at phone and desktop widths, in-page links
scroll to their section (the navigation marks it current), and the filter box (``?q=``) finds rows and lines.

Needs Debian's ``chromium`` package (installed by .ci/run); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from helpers import run_cli

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian package 'chromium') on PATH")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--mute-audio", "--virtual-time-budget=3000"]


@pytest.fixture(scope="module")
def page(sample_archives, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chromium") / "report.html"
    run_cli("report", sample_archives["gate_scripted"], "-o", out)
    return out


def chromium(tmp_path: Path, url: str, size: str, *args: str) -> str:
    profile = tmp_path / "profile"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", *args, url],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def current_section(dom: str) -> list[str]:
    return re.findall(r'<a href="#([^"]+)" aria-current="true">', dom)


@pytest.mark.parametrize("size", ["390,844", "1400,900"])
def test_renders_at_phone_and_desktop_widths(page, tmp_path, size):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, page.as_uri(), size, f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert f"{width},{height}" == size
    assert len(data) > 20_000  # text and tables drawn, not a blank page


@pytest.mark.parametrize("size", ["390,844", "1400,900"])
@pytest.mark.parametrize("anchor", ["safety", "tensors", "code"])
def test_navigation_scrolls_to_the_section(page, tmp_path, size, anchor):
    dom = chromium(tmp_path, f"{page.as_uri()}#{anchor}", size, "--dump-dom")
    assert current_section(dom) == [anchor]
    top = chromium(tmp_path, page.as_uri(), size, "--dump-dom")
    assert current_section(top) == ["summary"]


def test_filter_finds_rows_and_lines(page, tmp_path):
    dom = chromium(tmp_path, f"{page.as_uri()}?q=relu#ops", "1400,900", "--dump-dom")
    assert '<input id="q" type="search"' in dom
    assert re.search(r'<span id="q-status" role="status">\d+ matches</span>', dom)
    ops = re.search(r'<section id="ops">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    shown = re.findall(r"<tr>(.*?)</tr>", ops)
    assert len(shown) >= 1 and all("relu" in row for row in shown)
    assert ops.count("<tr hidden") > 10
    assert re.search(r'<tr class="line hit" id="code-\d+-L13">', dom)  # h0 = torch.relu(h)
    assert re.search(r'<span class="line hit">.*aten::relu', dom)  # the IR block opened on its match
    assert current_section(dom) == ["ops"]


@pytest.fixture(scope="module")
def diff_page(sample_archives, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chromium_diff") / "report.html"
    run_cli("report", sample_archives["gate_traced"], "--diff", sample_archives["gate_scripted"], "-o", out, check=1)
    return out


def test_findings_index_links_open_the_collapsed_details(diff_page, tmp_path):
    top = chromium(tmp_path, diff_page.as_uri(), "1400,900", "--dump-dom")
    assert current_section(top) == ["findings"]
    assert not re.search(r'<details class="searchable" id="finding-\d+"[^>]* open', top)  # collapsed below
    dom = chromium(tmp_path, f"{diff_page.as_uri()}#finding-2", "1400,900", "--dump-dom")
    opened = re.findall(r'<details class="searchable" id="(finding-\d+)"[^>]* open', dom)
    assert opened == ["finding-2"] and current_section(dom) == ["diff"]
    shot = tmp_path / "shot.png"
    chromium(tmp_path, diff_page.as_uri(), "1400,900", f"--screenshot={shot}")
    assert len(shot.read_bytes()) > 20_000  # the index drawn at the top, not a blank page
