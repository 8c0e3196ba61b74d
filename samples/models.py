"""Model source for tsinspect's sample archives (built by samples/build.py).

Line numbers in this file are part of the test contract: the archives' debug
info points at them and tests assert them. Do not add, remove or reorder lines
above or inside Gate.forward. Every statement of Gate.forward carries a
`# <tag>: ...` comment; `line_of(tag)` finds its line number.
"""

import torch
from torch import nn


class Gate(nn.Module):
    """Control flow that tracing loses and scripting keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)  # proj: submodule call
        if h.sum() > 0:  # if-cond: data-dependent branch
            h = torch.relu(h)  # if-then: relu
        else:  # if-else: else keyword
            h = torch.tanh(h) * -1.0  # else-body: tanh times -1.0
        for i in range(x.size(0)):  # loop: runtime trip count
            h = h + float(i)  # loop-body: add the index
        if self.training:  # train-cond: training-only branch
            h = self.drop(h)  # train-body: dropout
        b = x.size(0)  # shape-read: batch size
        out = h.view(b, -1)  # view: reshape with the read size
        return out  # return: a tensor


class Plain(nn.Module):
    """No control flow: traced and scripted graphs agree."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)  # plain-proj: submodule call
        return torch.relu(h)  # plain-relu: relu


def line_of(tag: str) -> int:
    """1-based line in this file of the statement tagged `# <tag>: ...`."""
    marker = f"# {tag}:"
    with open(__file__, encoding="utf-8") as f:
        hits = [n for n, text in enumerate(f, 1) if marker in text]
    if len(hits) != 1:
        raise KeyError(f"tag {tag!r} found on {len(hits)} lines of {__file__}")
    return hits[0]
