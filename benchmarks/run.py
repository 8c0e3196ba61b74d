"""Benchmarks: tsinspect against what a user would do instead, on archives built here with torch.

    python benchmarks/run.py [--layers 1,6,24] [--repeat 3]

Builds scripted nn.TransformerEncoder archives (d_model 1024; 24 layers is about 1.2 GB) in benchmarks/out/
(ignored by git), then measures, each in a fresh process, wall time and peak memory of:
  tsinspect info --json FILE        vs   python -c "torch.jit.load(FILE)"   vs   unzip -l FILE
and prints a Markdown table (copied into docs/performance.md). Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def build_encoder(layers: int) -> Path:
    path = OUT / f"encoder_{layers}.pt"
    if path.exists():
        return path
    script = f"""
import warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(d_model=1024, nhead=16, dim_feedforward=4096, batch_first=True)
model = torch.nn.TransformerEncoder(layer, num_layers={layers}, enable_nested_tensor=False).eval()
torch.jit.script(model).save({str(path)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    return path


def measure(cmd: list[str], repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, str(HERE / "measure.py"), *cmd], capture_output=True, text=True,
                             check=True).stdout
        runs.append(json.loads(out))
        if runs[-1]["rc"] != 0:
            raise SystemExit(f"{cmd} failed: {runs[-1]['stderr']}")
    best = min(runs, key=lambda r: r["wall_s"])
    return {"wall_s": best["wall_s"], "peak_mib": max(r["peak_mib"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="1,6,24")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    tsinspect = [sys.executable, "-m", "tsinspect"]
    rows = []
    for layers in map(int, args.layers.split(",")):
        path = build_encoder(layers)
        load = "import warnings, torch; warnings.simplefilter('ignore'); torch.jit.load({!r})".format(str(path))
        row = {"layers": layers, "size_mib": round(path.stat().st_size / 2**20),
               "info": measure([*tsinspect, "info", "--json", str(path)], args.repeat),
               "jit_load": measure([sys.executable, "-c", load], args.repeat)}
        if shutil.which("unzip"):
            row["unzip_l"] = measure(["unzip", "-l", str(path)], args.repeat)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"\nMachine: {platform.machine()}, {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| layers | archive | `info --json` | `torch.jit.load` | ratio (time) | `unzip -l` |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        unzip = f"{r['unzip_l']['wall_s']:.2f} s" if "unzip_l" in r else "n/a"
        print(f"| {r['layers']} | {r['size_mib']} MiB | {r['info']['wall_s']:.2f} s, {r['info']['peak_mib']:.0f} MiB "
              f"| {r['jit_load']['wall_s']:.2f} s, {r['jit_load']['peak_mib']:.0f} MiB "
              f"| {r['info']['wall_s'] / r['jit_load']['wall_s']:.3f} | {unzip} |")


if __name__ == "__main__":
    main()
