"""``python -m tsinspect``: the commands of ``cli.QUICK_EXIT`` end the process once their output is flushed,
without Python's teardown; what they print and their exit status are those of ``main()`` in-process."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from helpers import SAMPLES
from tsinspect.cli import QUICK_EXIT, main

SCRIPTED = SAMPLES / "gate_scripted.pt"
# the program, with an exit hook of ours: Python's teardown runs it, a quick exit does not
PROGRAM = ("import atexit, runpy, sys\n"
           "atexit.register(lambda: print('TEARDOWN', file=sys.stderr))\n"
           "sys.argv[:] = ['tsinspect', *sys.argv[1:]]\n"
           "runpy.run_module('tsinspect', run_name='__main__', alter_sys=True)\n")

COMMANDS = [["info", "--json", SCRIPTED], ["info", "--color", "never", SCRIPTED], ["info", "--all", SCRIPTED],
            ["ls", "--json", SCRIPTED], ["ls", SCRIPTED], ["pickle", "--json", SCRIPTED],
            ["cat", SCRIPTED, "code/__torch__/models.py"], ["info", "--json", SAMPLES / "absent.pt"],
            ["info", "--json", SAMPLES / "models.py"], ["info", "--json", SCRIPTED, SAMPLES / "gate_traced.pt"],
            ["scan", "--json", SCRIPTED], ["--version"], ["info", "--json", SAMPLES]]


def _in_process(argv: list[str]) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    return out.getvalue(), err.getvalue(), status


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(str(a).rsplit("/", 1)[-1] for a in argv))
def test_program_prints_what_main_prints(argv):
    argv = [str(a) for a in argv]
    proc = subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True,
                          env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"}, timeout=120)
    out, err, status = _in_process(argv)
    quick = argv[0] in QUICK_EXIT
    assert (proc.stdout, proc.returncode) == (out, status)
    assert proc.stderr == err + ("" if quick else "TEARDOWN\n")


def test_quick_exit_output_through_a_pipe_read_in_full():
    # the whole document reaches a reader through a pipe (a buffer of 64 KiB): flushed before the exit
    proc = subprocess.Popen([sys.executable, "-m", "tsinspect", "info", "--json", str(SCRIPTED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == b""
    assert got.decode() == _in_process(["info", "--json", str(SCRIPTED)])[0]


def test_reader_gone_before_the_end():
    # `tsinspect pickle --json X | head -c 10`: the status and stderr of Python's own exit, as before
    proc = subprocess.Popen([sys.executable, "-m", "tsinspect", "pickle", "--json", str(SCRIPTED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 120) and "Traceback" not in err
