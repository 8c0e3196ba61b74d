"""What the sandbox costs the IR child: ``python benchmarks/sandbox.py ARCHIVE [RUNS]``.

Runs the extraction child on tsinspect's meta copy of ARCHIVE, confined and unconfined (``--no-sandbox``)
in turn, RUNS times each (interleaved, so load on the machine hits both alike), and prints the median wall
time of each, their ratio, and the time ``confine()`` itself takes in a bare interpreter.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tsinspect.archive.reader import open_archive
from tsinspect.ir import run as ir_run
from tsinspect.ir.metacopy import write_meta_copy

_CONFINE_ONLY = ("import time; from tsinspect.safety.sandbox import confine; t = time.perf_counter(); "
                 "s = confine([]); print((time.perf_counter() - t) * 1000, s.state)")


def child_wall(copy: Path, cwd: Path, flags: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tsinspect.ir.extract", "--archive", str(copy), *flags],
                          cwd=cwd, env=ir_run._child_env(), capture_output=True, check=True)
    wall = time.perf_counter() - start
    doc = json.loads(proc.stdout)
    assert doc["load"] in ("meta", "full"), doc["error"]
    return wall


def main() -> None:
    archive_path, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp, open_archive(archive_path) as archive:
        copy = Path(tmp) / "meta.pt"
        flags = ["--rewritten"] if write_meta_copy(archive, copy).rewritten else []
        times: dict[str, list[float]] = {"confined": [], "unconfined": []}
        for _ in range(runs):
            times["confined"].append(child_wall(copy, Path(tmp), flags))
            times["unconfined"].append(child_wall(copy, Path(tmp), flags + ["--no-sandbox", "benchmark"]))
    confine_ms = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _CONFINE_ONLY], capture_output=True, text=True, check=True)
        confine_ms.append(float(out.stdout.split()[0]))
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"archive": archive_path, "runs": runs,
                      "median_s": {k: round(v, 3) for k, v in medians.items()},
                      "ratio_confined_to_unconfined": round(medians["confined"] / medians["unconfined"], 3),
                      "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
                      "confine_call_ms_median": round(statistics.median(confine_ms), 2)}, indent=1))


if __name__ == "__main__":
    main()
