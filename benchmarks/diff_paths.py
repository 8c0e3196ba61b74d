"""Benchmark: ``tsinspect diff TRACED SCRIPTED`` on its two paths, torch-free (``--ir never``) and IR
(``--ir always``).

    python benchmarks/diff_paths.py [--repeat 3]

Pairs: the Gate samples (samples/gate_{traced,scripted}.pt) and an ``nn.Transformer`` with 6 encoder and 6
decoder layers, d_model 32 (built here into benchmarks/out/ if missing). Each command runs in a fresh process
(benchmarks/measure.py); peak memory is the largest single process (the extraction children on the IR path).
Prints a Markdown table: median wall time, peak memory and the findings of each path. Nothing here is asserted
by the tests.
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
OUT = HERE / "out"
PY = sys.executable

BUILD_TRANSFORMER = """
import sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
model = torch.nn.Transformer(d_model=32, nhead=4, num_encoder_layers=6, num_decoder_layers=6,
                             dim_feedforward=64, batch_first=True).eval()
src, tgt = torch.rand(2, 5, 32), torch.rand(2, 3, 32)
# check_trace=False: the trace check re-traces and fails on renamed values, which says nothing about the model
torch.jit.save(torch.jit.trace(model, (src, tgt), check_trace=False), sys.argv[1])
torch.jit.save(torch.jit.script(model), sys.argv[2])
"""


def transformer_pair() -> tuple[Path, Path]:
    traced, scripted = OUT / "transformer_6_6_d32_traced.pt", OUT / "transformer_6_6_d32_scripted.pt"
    if not (traced.exists() and scripted.exists()):
        OUT.mkdir(exist_ok=True)
        subprocess.run([PY, "-c", BUILD_TRANSFORMER, str(traced), str(scripted)], check=True)
    return traced, scripted


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def findings(traced: Path, scripted: Path, ir: str) -> tuple[str, dict]:
    proc = subprocess.run([PY, "-m", "tsinspect", "diff", str(traced), str(scripted), "--json", "--ir", ir],
                          capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    return doc["analysis"], doc["counts"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pairs = {"Gate samples": (REPO / "samples" / "gate_traced.pt", REPO / "samples" / "gate_scripted.pt"),
             "Transformer 6+6, d_model 32": transformer_pair()}
    print("| pair | path | analysis | wall s (median) | peak MiB | findings |")
    print("|---|---|---|---|---|---|")
    for name, (traced, scripted) in pairs.items():
        for ir in ("never", "always"):
            runs = [measure([PY, "-m", "tsinspect", "diff", str(traced), str(scripted), "--ir", ir])
                    for _ in range(args.repeat)]
            analysis, counts = findings(traced, scripted, ir)
            text = ", ".join(f"{n} {k}" for k, n in counts.items())
            print(f"| {name} | --ir {ir} | {analysis} | {statistics.median(r['wall_s'] for r in runs):.2f} | "
                  f"{max(r['peak_mib'] for r in runs):.0f} | {sum(counts.values())}: {text} |")


if __name__ == "__main__":
    main()
