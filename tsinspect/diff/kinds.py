"""Tell a traced archive from a scripted one from the archive itself, and whether two archives are
variants of the same model.

Signals: ``traced_inputs.pkl`` (recent traces), debug records holding a Python call stack (traced) or the
original def source (scripted), ``argument_1`` argument names (traced), control flow left in ``code/``
(scripted only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsinspect.diff.program import If, Loop, Program, walk

TRACED, SCRIPTED, UNKNOWN = "traced", "scripted", "unknown"


@dataclass
class KindGuess:
    kind: str
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "evidence": list(self.evidence)}


def guess_kind(program: Program, has_traced_inputs: bool) -> KindGuess:
    traced, scripted = [], []
    if has_traced_inputs:
        traced.append("has traced_inputs.pkl (example inputs of a trace)")
    stacks = plain = 0
    control = False
    argument_n = False
    for fn in program.functions:
        argument_n = argument_n or any(a.startswith("argument_") and a[9:].isdigit() for a in fn.args)
        for item in walk(fn.body):
            if isinstance(item, (If, Loop)):
                control = True
            elif item.loc is not None:
                if len(item.stack) > 1:
                    stacks += 1
                else:
                    plain += 1
    if stacks > plain:
        traced.append(f"debug info holds Python call stacks ({stacks} ops)")
    elif plain:
        scripted.append(f"debug info holds the original source ({plain} ops)")
    if argument_n:
        traced.append("arguments are named argument_<n>")
    if control:
        scripted.append("code/ keeps if/for statements")
    if len(traced) > len(scripted):
        return KindGuess(TRACED, traced)
    if len(scripted) > len(traced):
        return KindGuess(SCRIPTED, scripted)
    return KindGuess(UNKNOWN, traced + scripted or ["no debug info, no traced inputs, no control flow"])


def same_model(a: Program, b: Program) -> tuple[bool, str]:
    """Whether two programs are variants of one model, and why."""
    if a.root_type and a.root_type == b.root_type:
        return True, f"both roots are {a.root_type}"
    lines_a, lines_b = _lines(a), _lines(b)
    shared = lines_a & lines_b
    if shared and len(shared) >= 0.3 * min(len(lines_a), len(lines_b)):
        return True, f"{len(shared)} source lines in common"
    return False, (f"the root modules differ ({a.root_type or '?'} vs {b.root_type or '?'}) and only "
                   f"{len(shared)} of their source lines are shared")


def _lines(program: Program) -> set[tuple[str, int]]:
    out = set()
    for fn in program.functions:
        for item in walk(fn.body):
            for loc in getattr(item, "stack", ()) or ((item.loc,) if item.loc else ()):
                if "/torch/" not in loc[0].replace("\\", "/"):  # library lines say nothing about the model
                    out.add((loc[0].replace("\\", "/").rsplit("/", 1)[-1], loc[1]))
    return out
