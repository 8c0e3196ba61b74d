"""Whether two archives are variants of the same model (traced or scripted is tsinspect.archive.madeby)."""

from __future__ import annotations

from tsinspect.diff.program import Program, walk


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
