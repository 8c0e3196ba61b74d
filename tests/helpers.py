"""Small helpers shared by the tests: run the CLI as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
            check: int | None = 0) -> subprocess.CompletedProcess:
    """``python -m tsinspect ARGS`` in a subprocess; asserts the exit status unless ``check`` is None."""
    full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "tsinspect", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def cli_json(*args: str, check: int = 0) -> dict:
    return json.loads(run_cli(*args, "--json", check=check).stdout)


def sample_line(tag: str) -> int:
    """Line of samples/models.py tagged ``# <tag>:`` (read as text: models.py imports torch)."""
    lines = (SAMPLES / "models.py").read_text().splitlines()
    hits = [n for n, text in enumerate(lines, 1) if f"# {tag}:" in text]
    assert len(hits) == 1, tag
    return hits[0]
