"""Traced or scripted: one torch-free guess from the archive itself, with how sure it is and why.

Signals (measured on torch 2.13 archives of the same models, traced and scripted):
- ``traced_inputs.pkl`` holds the example inputs of a trace: only ``torch.jit.trace`` writes it.
- the ``forward`` a trace generates has no ``if``/``for``/``while``: a trace records one path. Scripted code
  keeps the source's control flow (and turns ``assert`` into an ``if``). Other methods do not count: a
  traced quantized model keeps the scripted ``set_weight_bias``/``__setstate__`` of its modules.
- a trace names the arguments it could not name from the source ``argument_1``, ``argument_2``, ...
- a trace records ``int(x.size(0))`` as ``ops.prim.NumToTensor(torch.size(x, 0))``.
- the debug info, when asked for (``tsinspect diff`` reads it; ``info`` stays on ``code/``): a trace's
  records hold the Python call stack of each op, a script's the original ``def`` source.
A trace that calls scripted submodules (or a script calling traced ones) shows both kinds: ``mixed``,
``leaning`` to the kind with more signals (what the diff takes it for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tsinspect.archive.code import CodeIndex
from tsinspect.archive.text import counted

TRACED, SCRIPTED, MIXED, UNKNOWN = "traced", "scripted", "mixed", "unknown"
_ARGUMENT_N = re.compile(r"argument_[0-9]+$")


@dataclass
class MadeBy:
    kind: str  # traced, scripted, mixed, unknown
    confidence: str  # certain, likely, weak
    evidence: list[str] = field(default_factory=list)
    leaning: str = UNKNOWN  # traced, scripted or unknown: the kind itself, or the larger side of a mixed guess

    def to_json(self) -> dict:
        return {"kind": self.kind, "confidence": self.confidence, "evidence": list(self.evidence)}

    def describe(self) -> str:
        return f"{self.kind} ({self.confidence}: {'; '.join(self.evidence)})"


def made_by(code: CodeIndex, has_traced_inputs: bool, archive=None) -> MadeBy | None:
    """None when there is no code/ (a checkpoint is neither). With ``archive``, its debug info counts too."""
    methods = [m for m in code.methods if m.owner]
    if not methods and not has_traced_inputs:
        return None
    # only forward methods count: a trace's scripted helpers (a quantized module's set_weight_bias,
    # __setstate__) keep their control flow whatever made the model
    forwards = [m for m in methods if m.name == "forward" or m.name.startswith("forward__")]
    control = [m for m in forwards if code.has_control_flow(m)]
    named = [m for m in methods if any(_ARGUMENT_N.match(a) for a in m.args)]
    num_to_tensor = sum(source.count("ops.prim.NumToTensor(torch.size(") for source in code.sources.values())
    traced, scripted = [], []
    if has_traced_inputs:
        traced.append("traced_inputs.pkl holds the example inputs of a trace")
    if named:
        traced.append(f"{len(named)} of {len(methods)} methods have arguments named argument_<n>")
    if num_to_tensor:
        traced.append(f"sizes recorded as NumToTensor(size), {counted(num_to_tensor, 'time')}")
    if control:
        scripted.append(f"{len(control)} of {len(forwards)} forward methods keep if/for/while statements")
    if archive is not None:
        from tsinspect.archive.debuginfo import op_origin_kinds  # only here: 2.7 ms of every info's start

        stacks, plain = op_origin_kinds(code, archive)
        if stacks > plain:
            traced.append(f"the debug info holds Python call stacks ({counted(stacks, 'op')})")
        elif plain:
            scripted.append(f"the debug info holds the original source ({counted(plain, 'op')})")
    leaning = TRACED if len(traced) > len(scripted) else SCRIPTED if len(scripted) > len(traced) else UNKNOWN
    if traced and scripted:
        return MadeBy(MIXED, "likely", traced + scripted, leaning)
    if traced:
        strong = has_traced_inputs or bool(named)
        return MadeBy(TRACED, "certain" if has_traced_inputs else "likely" if strong else "weak", traced, TRACED)
    if scripted:
        return MadeBy(SCRIPTED, "likely", scripted, SCRIPTED)
    return MadeBy(UNKNOWN, "weak", ["straight-line code with named arguments and no traced_inputs.pkl: a script "
                                    "without control flow, or a trace saved without its example inputs"])
