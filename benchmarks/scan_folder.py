"""Files per second of ``tsinspect scan FOLDER`` on a folder of a few hundred archives.

    python benchmarks/scan_folder.py [--count 300] [--repeat 2]

Builds, once, into benchmarks/out/registry/ (ignored by git): COUNT files, a mix a model registry holds,
made with torch: scripted and traced small models (MLPs, convnets, an LSTM, a 2-layer
nn.TransformerEncoder), torch.save state dicts and whole-checkpoint dicts, each with its own random
sizes, plus a few README/JSON files the walk must skip. Then times, in fresh processes, the whole command
``tsinspect scan FOLDER --jsonl`` with one worker (``-j 1``) and with the default (one per core), against
what a user had to do before ``scan`` took folders: one ``tsinspect scan FILE`` process per file (``find
-exec``), timed on the first --loop files. Prints files/s and the ratios. Wall times are the best of
--repeat runs. Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "registry"

BUILD = r"""
import os, random, sys, warnings, torch
warnings.simplefilter("ignore")
from torch import nn
out, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
torch.manual_seed(0)

def mlp():
    w = rng.choice([16, 64, 256])
    return nn.Sequential(*[m for _ in range(rng.randint(1, 6)) for m in (nn.Linear(w, w), nn.ReLU())]), torch.randn(2, w)

def conv():
    c = rng.choice([8, 16, 32])
    return nn.Sequential(nn.Conv2d(3, c, 3), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(c, 10)), torch.randn(1, 3, 16, 16)

class Gate(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.proj = nn.Linear(w, w)
    def forward(self, x):
        if x.sum() > 0:
            return self.proj(x)
        return -x

def gate():
    w = rng.choice([8, 32])
    return Gate(w), torch.randn(2, w)

def lstm():
    return nn.LSTM(rng.choice([8, 32]), 16, num_layers=2), None

def encoder():
    d = rng.choice([32, 64])
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 4, 2 * d), 2, enable_nested_tensor=False), None

makers = [mlp, conv, gate, lstm, encoder]
for i in range(count):
    maker = makers[i % len(makers)]
    model, example = maker()
    model.eval()
    style = i % 4
    base = os.path.join(out, f"team{i % 7}", f"{maker.__name__}_{i:04d}")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    if style == 0 or example is None and style == 1:
        torch.jit.save(torch.jit.script(model), base + ".pt")
    elif style == 1:
        torch.jit.save(torch.jit.trace(model, example), base + ".pt")
    elif style == 2:
        torch.save(model.state_dict(), base + ".pth")
    else:  # a checkpoint under a name that says nothing: found by its zip magic
        torch.save({"state_dict": model.state_dict(), "epoch": i, "lr": 0.1}, base + ".weights")
for team in range(7):
    with open(os.path.join(out, f"team{team}", "README.md"), "w") as fh:
        fh.write("models of team %d\n" % team)
    with open(os.path.join(out, f"team{team}", "config.json"), "w") as fh:
        fh.write('{"layers": 2}\n')
"""


def build(count: int) -> Path:
    stamp = OUT / f".built-{count}"
    if not stamp.exists():
        if OUT.exists():
            subprocess.run(["rm", "-rf", str(OUT)], check=True)
        OUT.mkdir(parents=True)
        script = OUT.parent / "build_registry.py"  # torch.jit.script reads the class source from a file
        script.write_text(BUILD)
        subprocess.run([sys.executable, str(script), str(OUT), str(count)], check=True)
        stamp.touch()
    return OUT


def cpu_seconds() -> float:
    """User + system time of every child process waited for so far. Worker processes are children of
    multiprocessing's forkserver, which is not waited for: the parallel run's CPU time is not counted."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, list[dict], float]:
    start, cpu = time.perf_counter(), cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return seconds, [json.loads(line) for line in proc.stdout.splitlines()], cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--loop", type=int, default=60, help="files timed one process each")
    args = parser.parse_args()
    folder = build(args.count)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    load = os.getloadavg()[0]
    base = [sys.executable, "-m", "tsinspect", "scan", str(folder), "--jsonl"]
    rows = {}
    for label, extra in (("1 worker", ["-j", "1"]), (f"{os.cpu_count()} workers (default)", [])):
        best, results, cpu = min((timed(base + extra) for _ in range(args.repeat)), key=lambda r: r[0])
        verdicts: dict[str, int] = {}
        for r in results:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        rows[label] = (best, len(results), verdicts, cpu)
    files = sorted(str(f) for f in folder.rglob("*") if f.suffix in (".pt", ".pth", ".weights"))[:args.loop]

    def loop() -> tuple[float, float]:
        start, cpu = time.perf_counter(), cpu_seconds()
        for f in files:
            subprocess.run([sys.executable, "-m", "tsinspect", "scan", f, "--jsonl"], capture_output=True)
        return time.perf_counter() - start, cpu_seconds() - cpu

    per_file, cpu = min((loop() for _ in range(args.repeat)), key=lambda r: r[0])
    rows[f"one process per file (first {len(files)})"] = (per_file, len(files), {}, cpu)
    print(f"{args.count} archives ({size / 2**20:.1f} MiB) in {folder}, {os.cpu_count()} cores")
    print(f"load average at the start: {load:.1f}, at the end: {os.getloadavg()[0]:.1f}")
    print("| workers | files | wall time | files/s | CPU time (all processes) | verdicts |\n"
          "|---|---:|---:|---:|---:|---|")
    for label, (seconds, n, verdicts, cpu) in rows.items():
        shown = "-" if "workers" in label else f"{cpu:.2f} s"
        print(f"| {label} | {n} | {seconds:.2f} s | {n / seconds:.0f} | {shown} | {verdicts} |")
    (one, n, _, _), (many, _, _, _), (looped, m, _, _) = rows.values()
    print(f"\nparallel vs one worker: {one / many:.2f}x; folder scan (default) vs one process per file: "
          f"{(n / many) / (m / looped):.1f}x the files/s; CPU per file: {1000 * rows['1 worker'][3] / n:.1f} ms "
          f"in one folder scan, {1000 * cpu / m:.0f} ms as a process of its own")


if __name__ == "__main__":
    main()
