"""Traced models of many modules, and their scripted twins, for the measurements of docs/performance.md
("Traced models of many modules" and the Terminal UI section):

    python benchmarks/traced_models.py        # writes benchmarks/out/traced/*.pt (about a minute)

``torch.jit.trace`` gives every submodule instance a class, a ``code/`` file and a ``.debug_pkl`` of its own:
- params_10000_traced.pt / _scripted.pt: ``nn.Sequential`` of 5,000 ``Linear(2, 2)`` (5,001 code files traced)
- bn_traced.pt / bn_scripted.pt: 4 stages of 500 conv-bn-relu blocks with a residual add (8,007 code files)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

OUT = Path(__file__).resolve().parent / "out" / "traced"


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        return x + self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self, blocks: int):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(*[Block(4) for _ in range(blocks)]) for _ in range(4)])
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean((2, 3)))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    linears = nn.Sequential(*[nn.Linear(2, 2) for _ in range(5000)]).eval()
    net = Net(500).eval()
    for name, model, example in (("params_10000", linears, torch.randn(1, 2)),
                                 ("bn", net, torch.randn(1, 4, 8, 8))):
        torch.jit.trace(model, example).save(str(OUT / f"{name}_traced.pt"))
        torch.jit.script(model).save(str(OUT / f"{name}_scripted.pt"))
        print(f"wrote {OUT / name}_traced.pt and _scripted.pt", file=sys.stderr)


if __name__ == "__main__":
    main()
