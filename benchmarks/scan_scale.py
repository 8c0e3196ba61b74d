"""The static safety scan (``codescan.scan_archive``, the gate before any torch child) as parameters grow.

    python benchmarks/scan_scale.py --compare /tmp/old    # /tmp/old: git archive main tsinspect | tar -x -C /tmp/old

On the ``params`` archives of benchmarks/info_scale.py (an ``nn.Sequential`` of n/2 ``Linear(2, 2)``, built
by torch once), alternately for this tree and ``--compare``'s, each run in a fresh process:

- the scan alone, CPU seconds inside the process, two ways: ``gate`` (index the code, then scan, as
  ``graph``'s parent does before the torch child) and ``tui`` (after ``summarize`` walked data.pkl, as
  ``tsinspect.tui.state.load``); each also prints its result's digest, and the two trees must agree;
- ``graph --json`` against ``import torch; print(torch.jit.load(f).graph)`` (CPU of the process tree);
- the TUI's first-screen data path (``tsinspect.tui.state.load``; no drawing) and ``scan --json``.

Medians of ``--repeat`` runs, and the load average before and after. Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from info_scale import FIRST_SCREEN, PY, build, run, tsi

SCAN = r"""import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
from tsinspect.archive.reader import open_archive
from tsinspect.archive.code import index_code
from tsinspect.archive.summary import summarize
from tsinspect.safety.codescan import scan_archive
archive = open_archive(sys.argv[2])
index = summarize(archive).code if sys.argv[3] == "tui" else index_code(archive)
start = time.process_time()
result = scan_archive(archive, index)
took = time.process_time() - start
print(took, hashlib.sha256(json.dumps(result.to_json(), sort_keys=True).encode()).hexdigest()[:16])
"""
TORCH_GRAPH = "import sys, torch\nprint(torch.jit.load(sys.argv[1]).graph)"


def scan_once(tree: str, path: str, mode: str) -> tuple[float, str]:
    out = subprocess.run([PY, "-c", SCAN, tree, path, mode], capture_output=True, text=True, check=True).stdout
    took, digest = out.split()
    return float(took), digest


def median_runs(trees: dict[str, str], make, repeat: int) -> dict[str, list]:
    """Run ``make(tree)`` for every tree in turn, ``repeat`` rounds after a warm-up round."""
    for tree in trees.values():
        make(tree)
    runs: dict[str, list] = {name: [] for name in trees}
    for _ in range(repeat):
        for name, tree in trees.items():
            runs[name].append(make(tree))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", required=True, help="a directory holding the tsinspect package to compare")
    parser.add_argument("--sizes", default="1000,10000,20000")
    parser.add_argument("--graph-at", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"before": args.compare, "after": here}
    print(f"load average {os.getloadavg()}")
    print("| parameters | path | before: scan CPU | after: scan CPU | after/before | results |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        path = str(build("params", n))
        for mode in ("gate", "tui"):
            runs = median_runs(trees, lambda tree: scan_once(tree, path, mode), args.repeat)
            digests = {d for r in runs.values() for _, d in r}
            cpu = {name: statistics.median(t for t, _ in r) for name, r in runs.items()}
            print(f"| {n:,} | {mode} | {cpu['before']:.3f} s | {cpu['after']:.3f} s | "
                  f"{cpu['after'] / cpu['before']:.2f}x | {'identical' if len(digests) == 1 else 'DIFFER'} |")
    path = str(build("params", args.graph_at))
    commands = {"before": tsi(args.compare, "graph", "--json", path), "after": tsi(here, "graph", "--json", path),
                "torch": [PY, "-c", TORCH_GRAPH, path]}
    runs = median_runs(commands, lambda cmd: run(cmd), args.repeat)
    print(f"\n`graph --json` at {args.graph_at:,} parameters (median CPU s, wall s; ratio to torch load + print "
          "of .graph, median of the rounds):")
    for name in ("before", "after"):
        ratios = sorted(a["cpu_s"] / t["cpu_s"] for a, t in zip(runs[name], runs["torch"]))
        print(f"- {name}: {statistics.median(r['cpu_s'] for r in runs[name]):.2f} s CPU, "
              f"{statistics.median(r['wall_s'] for r in runs[name]):.2f} s wall, "
              f"{ratios[len(ratios) // 2]:.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]")
    print(f"- torch: {statistics.median(r['cpu_s'] for r in runs['torch']):.2f} s CPU, "
          f"{statistics.median(r['wall_s'] for r in runs['torch']):.2f} s wall")
    print("\nTUI first-screen data (tsinspect.tui.state.load) and `scan --json`, median CPU s of the process:")
    for n in (10000, 20000):
        path = str(build("params", n))
        for label, make in (("TUI first-screen data", lambda tree: [PY, "-c", FIRST_SCREEN, tree, path]),
                            ("scan --json", lambda tree: tsi(tree, "scan", "--json", path))):
            runs = median_runs({k: make(v) for k, v in trees.items()}, lambda cmd: run(cmd), args.repeat)
            cpu = {k: statistics.median(r["cpu_s"] for r in v) for k, v in runs.items()}
            print(f"- {n:,}, {label}: before {cpu['before']:.2f} s, after {cpu['after']:.2f} s")
    print(f"load average {os.getloadavg()}", file=sys.stdout)


if __name__ == "__main__":
    main()
