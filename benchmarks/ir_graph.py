"""Benchmark: ``tsinspect graph --json FILE`` against ``torch.jit.load(FILE).graph``.

    python benchmarks/ir_graph.py [FILE...] [--repeat 3]

Default files: the 24-layer encoder that benchmarks/run.py builds (benchmarks/out/encoder_24.pt, about
1.2 GB; built here if missing) and the samples. Each command runs in a fresh process (benchmarks/measure.py);
peak memory is the largest single process (for ``graph`` that is the extraction child; the tsinspect
parent, which never imports torch, is measured separately and added). Prints a Markdown table with the
median of the runs and the ratios the goals are stated in (memory <= 0.4x, time <= 1.0x).
Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable

PARENT_PEAK = """
import contextlib, os, resource, sys
from tsinspect.cli import main
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    main(["graph", "--json", sys.argv[1]])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def median_run(cmd: list[str], repeat: int) -> tuple[float, float]:
    runs = [measure(cmd) for _ in range(repeat)]
    return statistics.median(r["wall_s"] for r in runs), max(r["peak_mib"] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = [Path(f) for f in args.files]
    if not files:
        sys.path.insert(0, str(HERE))
        from run import OUT, build_encoder  # benchmarks/run.py

        OUT.mkdir(exist_ok=True)
        files = [build_encoder(24), *sorted((REPO / "samples").glob("gate_*.pt"))]
    print("| file | size MiB | torch.jit.load(f).graph s / MiB | graph --json s / MiB (child + parent) "
          "| time x | memory x |")
    print("|---|---|---|---|---|---|")
    for path in files:
        load = [PY, "-W", "ignore", "-c", f"import torch; torch.jit.load({str(path)!r}).graph"]
        t_load, m_load = median_run(load, args.repeat)
        t_graph, m_child = median_run([PY, "-m", "tsinspect", "graph", "--json", str(path)], args.repeat)
        m_parent = float(subprocess.run([PY, "-c", PARENT_PEAK, str(path)], capture_output=True, text=True,
                                        check=True).stdout.strip().splitlines()[-1])
        m_graph = m_child + m_parent
        print(f"| {path.name} | {path.stat().st_size / 2**20:.1f} | {t_load:.2f} / {m_load:.0f} | "
              f"{t_graph:.2f} / {m_graph:.0f} ({m_child:.0f} + {m_parent:.0f}) | {t_graph / t_load:.2f} | "
              f"{m_graph / m_load:.2f} |")


if __name__ == "__main__":
    main()
