"""The real thing: ``tsinspect FILE`` in a real terminal (tmux), driven by keys, read off the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from helpers import REPO, SAMPLES

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


class Terminal:
    def __init__(self, *args: str, width: int = 140, height: int = 40):
        self.name = f"tsinspect-test-{uuid.uuid4().hex[:8]}"
        # the tmux server inherits this process's environment, where pytest has set COLUMNS=80 and LINES=24;
        # they would override the pane's real size
        env = {"TERM": "xterm-256color", "PYTHONPATH": str(REPO), "COLUMNS": str(width), "LINES": str(height)}
        command = " ".join([sys.executable, "-m", "tsinspect", *args])
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        *[a for k, v in env.items() for a in ("-e", f"{k}={v}")], command],
                       check=True, cwd=REPO)
        subprocess.run(["tmux", "set-option", "-t", self.name, "remain-on-exit", "on"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Poll the screen until ``text`` shows (the app is a separate process: there is nothing to await)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def exited(self) -> bool:
        out = subprocess.run(["tmux", "list-panes", "-t", self.name, "-F", "#{pane_dead}"], capture_output=True,
                             text=True).stdout
        return out.strip() == "1"

    def quit(self) -> None:
        """Press q and wait for the app to exit."""
        self.keys("q")
        deadline = time.monotonic() + 60  # a loaded machine (an extraction running is interrupted, not waited for)
        while not self.exited() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.exited(), self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def test_tsinspect_file_in_a_real_terminal():
    term = Terminal(os.path.relpath(SAMPLES / "gate_scripted.pt", REPO))
    try:
        screen = term.wait_for("IR: meta load")
        assert "samples/gate_scripted.pt" in screen and "torchscript" in screen
        assert "Archive [a]" in screen and "f1 Help" in screen  # the tabs name the view keys, the footer the rest
        term.keys("g")
        screen = term.wait_for("prim::If")
        assert "forward" in screen
        term.keys("s")
        term.wait_for("Findings of the static scan")
        term.keys("F1")
        term.wait_for("command palette")
        term.keys("F1")  # closes the help (escape would merge with the next key into alt+q)
        term.wait_for("Findings of the static scan")
        term.quit()
    finally:
        term.close()


def test_diff_tui_in_a_real_terminal():
    term = Terminal("diff", "samples/gate_traced.pt", "samples/gate_scripted.pt", "--tui", "--ir", "never")
    try:
        term.wait_for("3 findings: 2 dropped_branch, 1 unrolled_loop")
        screen = term.wait_for("^o Compare")  # the footer lists the diff view's keys
        assert "Diff [d]" in screen and "c Code line" in screen
        screen = term.wait_for("- │")  # the first finding's dropped and kept lines, drawn after the footer at times
        assert "+ │" in screen
        term.keys("Down")  # the unrolled loop (a silent wrong result), then the training branch (mode only)
        term.wait_for("the trace unrolled this loop")
        term.keys("Down")
        term.wait_for("self.training alone, which the trace froze")
        term.quit()
    finally:
        term.close()


def alive_screen(term: Terminal) -> str:
    """The screen, failing if the app crashed (a Rich traceback) or exited."""
    screen = term.screen()
    assert not term.exited() and "Traceback" not in screen and "Error:" not in screen, screen
    return screen


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_keyboard_walk_on_silero_vad_in_a_real_terminal(silero_vad_archive, size):
    """Issue 12's crash: g, then down onto graph(...) (a node using two graph inputs listed their definitions
    twice: DuplicateID). The footer keeps F1 and q at 80 columns; tab reaches the links, enter follows one."""
    term = Terminal(str(silero_vad_archive), width=size[0], height=size[1])
    try:
        screen = term.wait_for("IR: meta load")
        footer = screen.rstrip("\n").splitlines()[-1]
        assert "f1 Help" in footer and "q Quit" in footer, footer
        term.keys("g")
        term.wait_for("graph(%self.1")
        for _ in range(6):
            term.keys("Down")
        term.keys("Tab")
        screen = term.wait_for("Follow link")
        assert "f1 Help" in screen.splitlines()[-1]
        term.keys("Down", "Enter", "i")  # follow the second link (a node; the first is the code line), inline
        term.wait_for("inlined graphs", timeout=120)
        term.keys("/", *"aten::lstm", "Enter", "n", "s", "a", "m", "d")
        time.sleep(1)
        alive_screen(term)
        term.quit()
    finally:
        term.close()


def test_a_png_is_one_error_line_and_no_ui(tmp_path):
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    name = f"tsinspect-test-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m tsinspect {png}; echo exit status $?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "400", "-y", "10", "-e", f"PYTHONPATH={REPO}",
                    "-e", "TERM=xterm-256color", "sh", "-c", command], check=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline and not any(line.startswith("exit status") for line in lines):
            time.sleep(0.1)
            lines = [line for line in subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                                     text=True).stdout.splitlines() if line.strip()]
        first = lines[0]
        assert first.startswith("tsinspect: error: ") and "photo.png" in first, lines
        assert "not a PyTorch archive" in first, lines
        assert lines[1:] == ["exit status 2"], lines
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
