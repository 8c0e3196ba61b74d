"""The trace-vs-script test zoo: small models with known answers for ``tsinspect diff``.

``SOURCE`` is written to a real file (scripting and debug info need one), imported, and every model is
saved traced and scripted by ``build_zoo``. Statements carry ``# <tag>:`` comments; ``line_of(tag)`` gives
their line in the written file. ``EXPECTED`` lists, per model, the findings as (kind, tag) pairs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SOURCE = '''\
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class DataIf(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-cond:
            y = torch.relu(x)  # data-then:
        else:
            y = torch.tanh(x)  # data-else:
        return y


class TrainOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = torch.sigmoid(x)  # train-pre:
        if self.training:  # train-cond:
            x = self.drop(x)  # train-body:
        return x


class OptionalArg(nn.Module):
    def forward(self, x, mask: Optional[torch.Tensor] = None):
        x = torch.exp(x)  # opt-pre:
        if mask is not None:  # opt-cond:
            x = x * mask  # opt-body:
        return x


class RuntimeLoop(nn.Module):
    def forward(self, x):
        h = x
        for _ in range(x.size(0)):  # loop-head:
            h = torch.sin(h)  # loop-body:
        return h / math.sqrt(x.size(1))  # loop-scale:


class ShapeIf(nn.Module):
    def forward(self, x):
        if x.size(0) > 2:  # shape-cond:
            h = x.sum(0)  # shape-then:
        else:
            h = x.mean(0)  # shape-else:
        return h


def pick(x):
    if x.mean() > 0:  # helper-cond:
        y = torch.exp(x)  # helper-then:
    else:
        y = torch.neg(x)  # helper-else:
    return y


class HelperIf(nn.Module):
    def forward(self, x):
        x = torch.abs(x) + 1.0  # helper-pre:
        return pick(x)  # helper-call:


class EarlyReturn(nn.Module):
    def forward(self, x):
        if x.min() < 0:  # early-cond:
            return torch.abs(x)  # early-return:
        y = torch.sqrt(x)  # early-rest:
        return y * 2.0  # early-tail:


class LoopBothSides(nn.Module):
    def forward(self, x):
        h = x
        for i in range(x.size(0)):  # both-head:
            if i % 2 == 0:  # both-cond:
                h = torch.cos(h)  # both-then:
            else:
                h = torch.sin(h)  # both-else:
        return h


class NoFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(self.proj(x))  # noflow-relu:


class Exported(nn.Module):
    def forward(self, x):
        return torch.relu(x)  # exported-forward:

    @torch.jit.export
    def extra(self, x):  # exported-def:
        return x * 2.0


class ExportedTraceable(nn.Module):
    forward = Exported.forward  # the same forward, without the exported method


class RawMemory(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # raw-cond:
            x = torch.relu(x)  # raw-then:
        else:
            x = torch.neg(x)  # raw-else:
        return x.as_strided((2, 2), (1, 1))  # raw-view: the safety gate refuses to load either archive


@torch.jit.script
class Clipper:
    def __init__(self, limit: float):
        self.limit = limit

    def apply(self, x):
        if x.max() > self.limit:  # class-cond:
            x = torch.clamp(x, max=self.limit)  # class-then:
        else:
            x = torch.abs(x)  # class-else:
        return x


class UsesClass(nn.Module):
    def forward(self, x):
        return Clipper(10.0).apply(x)  # class-call: a method of a TorchScript class


class ListShape(nn.Module):
    def forward(self, x):
        n = int(x.size(1))  # list-n: the trace bakes n
        shape = [x.size(0), 2, n // 2]  # list-shape:
        y = x.reshape(shape)  # list-reshape: the code passes the list as a temporary
        return y.sum(1).reshape(shape[0], -1) + float(len(shape))  # list-use:


# patterns measured on real model code (benchmarks/diff_real): what is a finding and what is not


class ConfigConst(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = 2
        self.scaled = True
        self.steps = 3

    def forward(self, x):
        y = x.view(x.size(0), self.heads, -1) / math.sqrt(self.heads)  # config-view: configuration, no finding
        if self.scaled:  # config-if: configuration, no finding
            y = y * 2.0
        for _ in range(self.steps):  # config-loop: runs 3 times for every input, no finding
            y = torch.sin(y)
        return y


class IdentityCheck(nn.Module):
    def forward(self, q, k):
        if q is k:  # ident-cond: both sides compute the same thing
            y = q * 2.0
        else:
            y = q + k
        return y


class OptionalTraced(nn.Module):
    def forward(self, x, mask: Optional[torch.Tensor] = None):
        if mask is not None:  # opt-given-cond: traced with a mask, the traced model cannot take None
            x = x * mask
        return torch.exp(x)


class PadAlways(nn.Module):
    def forward(self, x):
        t = x.size(-1)
        if t < 8:  # pad-cond: the dropped side is empty, padding is always applied
            x = F.pad(x, (0, 8 - t))
        return torch.relu(x)


def fit(x, n: int):
    if x.size(-1) == n:  # fit-cond: returned at once while tracing, recording no op
        return x
    return x[..., :n] * 0.5


class HelperEarly(nn.Module):
    def forward(self, x):
        return fit(torch.abs(x), 4)  # fit-call:


class MinTopK(nn.Module):
    def forward(self, x):
        k = min(3, x.size(-1))  # topk-min:
        return x.topk(k, dim=-1)[0]  # topk-call: k became 3


class CeilPad(nn.Module):
    def forward(self, x):
        t = x.size(-1)
        pad = math.ceil(t / 4) * 4 - t  # ceil-pad: the trace folds math.ceil
        return torch.relu(F.pad(x, (0, pad)))


def drop_path(x, p: float, training: bool):
    if p == 0.0 or not training:  # droppath-cond: the mode, passed in as an argument
        return x
    return x * torch.bernoulli(torch.full_like(x, 1 - p)) / (1 - p)


class DropPath(nn.Module):
    def forward(self, x):
        return torch.relu(x) + drop_path(x, 0.2, self.training)


class GuardsAndDtype(nn.Module):
    def forward(self, x):
        if x.dim() != 2:  # guard-cond: only raises, no finding
            raise ValueError("expected 2-D input")
        if x.dtype == torch.float16:  # dtype-cond: the trace fixed the dtype anyway, no finding
            x = x.float()
        return torch.sigmoid(x)
'''

# model -> example input shape for the trace (positive values unless noted)
INPUTS = {"DataIf": (2, 4), "TrainOnly": (2, 4), "OptionalArg": (2, 4), "RuntimeLoop": (3, 4),
          "ShapeIf": (2, 4), "HelperIf": (2, 4), "EarlyReturn": (2, 4), "LoopBothSides": (3, 4),
          "NoFlow": (2, 4), "Exported": (2, 4), "RawMemory": (2, 4),
          "UsesClass": (2, 4), "ListShape": (3, 4), "ConfigConst": (2, 4), "IdentityCheck": [(2, 4), (2, 4)],
          "OptionalTraced": [(2, 4), (2, 4)], "PadAlways": (2, 6), "HelperEarly": (2, 4), "MinTopK": (2, 6),
          "CeilPad": (2, 6), "GuardsAndDtype": (2, 4), "DropPath": (2, 4)}

# model -> sorted [(kind, tag of the finding's line)]
EXPECTED = {
    "DataIf": [("dropped_branch", "data-cond")],
    "TrainOnly": [("dropped_branch", "train-cond")],
    # traced as model(x): the traced forward cannot take a mask, so the check is not a dropped branch
    "OptionalArg": [],
    "RuntimeLoop": [("baked_constant", "loop-scale"), ("unrolled_loop", "loop-head")],
    "ShapeIf": [("dropped_branch", "shape-cond")],
    "HelperIf": [("dropped_branch", "helper-cond")],
    "EarlyReturn": [("dropped_branch", "early-cond")],
    "LoopBothSides": [("per_iteration_branch", "both-cond"), ("unrolled_loop", "both-head")],
    "NoFlow": [],
    "Exported": [("missing_method", "exported-def")],
    "RawMemory": [("dropped_branch", "raw-cond")],
    "UsesClass": [("dropped_branch", "class-cond")],
    "ListShape": [("baked_constant", "list-reshape"), ("baked_constant", "list-use")],
    "ConfigConst": [],
    "IdentityCheck": [],
    "OptionalTraced": [("dropped_branch", "opt-given-cond")],
    "PadAlways": [("dropped_branch", "pad-cond")],
    "HelperEarly": [("dropped_branch", "fit-cond")],
    "MinTopK": [("baked_constant", "topk-call")],
    "CeilPad": [("baked_constant", "ceil-pad")],
    "GuardsAndDtype": [],
    "DropPath": [("dropped_branch", "droppath-cond")],
}

# where the IR path differs: model -> its findings there
EXPECTED_IR: dict = {}

# models whose archives the safety gate refuses to load with torch without --trust
GATED = {"RawMemory"}


# model -> the class traced instead (when the trace must differ from the scripted class)
TRACED_CLASS = {"Exported": "ExportedTraceable"}


def line_of(tag: str) -> int:
    hits = [n for n, text in enumerate(SOURCE.splitlines(), 1) if f"# {tag}:" in text]
    if len(hits) != 1:
        raise KeyError(tag)
    return hits[0]


def build_zoo(outdir: Path) -> dict[str, tuple[Path, Path]]:
    """Write the zoo module into outdir and save every model traced (eval mode) and scripted.

    Returns {model: (traced path, scripted path)}; the source file is outdir/zoo_models.py.
    """
    import warnings

    import torch

    outdir.mkdir(parents=True, exist_ok=True)
    src = outdir / "zoo_models.py"
    src.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("zoo_models", src)
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_models"] = module
    torch.manual_seed(0)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)  # @torch.jit.script on a class compiles (and warns) at import
        for name, shape in INPUTS.items():
            model = getattr(module, name)().eval()
            example = (tuple(torch.rand(s) + 0.5 for s in shape) if isinstance(shape, list)
                       else torch.rand(shape) + 0.5)
            traced_path, scripted_path = outdir / f"{name}_traced.pt", outdir / f"{name}_scripted.pt"
            to_trace = getattr(module, TRACED_CLASS[name])().eval() if name in TRACED_CLASS else model
            torch.jit.save(torch.jit.trace(to_trace, example), str(traced_path))
            torch.jit.save(torch.jit.script(model), str(scripted_path))
            out[name] = (traced_path, scripted_path)
    return out
