"""tsinspect on a torch.export archive against torch.export.load of the same file.

    python benchmarks/pt2_read.py [--layers 12] [--width 512]

Builds, once, into benchmarks/out/pt2/ (ignored by git) an nn.TransformerEncoder (LAYERS layers, d_model
WIDTH, a dynamic sequence length) exported with torch.export and saved as a .pt2. Then measures, each in a
fresh process through benchmarks/measure.py (wall, CPU of the process tree, peak RSS):
``python -c "torch.export.load(f)"`` and ``tsinspect info|graph|ops|scan FILE``, and prints the ratios
against the load. CPU time is the steadier figure on a shared machine. Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "pt2"

BUILD = r"""
import sys, warnings, torch
warnings.simplefilter("ignore")
layers, width, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(width, 8, 4 * width, batch_first=True)
model = torch.nn.TransformerEncoder(layer, layers).eval()
seq = torch.export.Dim("seq", min=2, max=512)
ep = torch.export.export(model, (torch.randn(2, 10, width),), dynamic_shapes={"src": {1: seq}})
torch.export.save(ep, path)
"""


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "measure.py"), *cmd], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"encoder_{args.layers}x{args.width}.pt2"
    if not path.exists():
        subprocess.run([sys.executable, "-c", BUILD, str(args.layers), str(args.width), str(path)], check=True)
    print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    base = measure([sys.executable, "-W", "ignore", "-c", f"import torch; torch.export.load({str(path)!r})"])
    print(f"{'torch.export.load':<20} wall {base['wall_s']:6.2f} s  cpu {base['cpu_s']:6.2f} s  "
          f"peak {base['peak_mib']:7.1f} MiB")
    for command in ("info", "graph", "ops", "scan"):
        got = measure([sys.executable, "-m", "tsinspect", command, str(path)])
        print(f"{'tsinspect ' + command:<20} wall {got['wall_s']:6.2f} s  cpu {got['cpu_s']:6.2f} s  "
              f"peak {got['peak_mib']:7.1f} MiB  cpu ratio to the load {got['cpu_s'] / base['cpu_s']:.3f}")


if __name__ == "__main__":
    main()
