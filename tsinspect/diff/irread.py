"""Programs from the IR: both archives are loaded by torch in child processes (tsinspect.ir.run, after the
safety gate), in parallel, and their graphs become Programs (``irprogram``). Returns ``(None, reason)``
when either archive's IR cannot be had (the gate refuses without ``trust``, torch lacks an op or class,
a timeout, a crash): the caller then keeps the torch-free Programs, and ``reason`` says why.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.text import printable
from tsinspect.diff.irprogram import program_from_ir
from tsinspect.ir.model import IR
from tsinspect.ir.run import Extraction, Options, extract_path

Extract = Callable[[str, Options], Extraction]
LOADED = ("meta", "full")


def programs_from_ir(traced, scripted, trust: bool, extract: Extract | None = None):
    """``traced``/``scripted``: run.Side objects. ``extract`` replaces ``extract_path`` (a cache, in tests).

    Returns ``((traced program, scripted program), note)`` or ``(None, reason)``.
    """
    extract = extract or extract_path
    # the traced root's inlined graphs hold every op as often as it ran; the scripted side keeps its calls.
    # Every module is walked (not inlined) too, so that a report of either archive can use the same extraction.
    jobs = [(traced, Options(inline_module="", trust=trust)), (scripted, Options(trust=trust))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_try, extract, side.path, options) for side, options in jobs]
        got = [f.result() for f in futures]
    problems = [f"{printable(side.path)}: {why}" for (side, _), (_, why) in zip(jobs, got) if why]
    if problems:
        return None, "torch-free: code/ and debug info; the IR could not be had: " + "; ".join(problems)
    programs = []
    for (side, _), (extraction, _) in zip(jobs, got):
        program = program_from_ir(extraction.ir, extraction.index, side.program, side is traced)
        if side.program.functions and not program.functions:
            return None, (f"torch-free: code/ and debug info; the IR of {printable(side.path)} holds no readable "
                          "graph")
        programs.append(program)
    loads = [extraction.document.get("load") for extraction, _ in got]
    how = "meta" if loads == ["meta", "meta"] else f"traced: {loads[0]}, scripted: {loads[1]}"
    note = f"IR: both archives loaded by torch in a child process ({how})"
    unconfined = {e.ir.sandbox.message for e, _ in got if e.ir.sandbox and e.ir.sandbox.state != "on"}
    if unconfined:
        note += "; " + "; ".join(sorted(unconfined))
    unread = [f"{printable(side.path)}: {name}" for (side, _), (extraction, _) in zip(jobs, got)
              for name in _unreadable(extraction.ir)]
    if unread:
        note += f"; left out, torch gave no graph: {', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}"
    return (programs[0], programs[1]), note


def _unreadable(ir: IR) -> list[str]:
    methods = [m for ms in ir.types.values() for m in ms] + list(ir.functions.values())
    return [m.name for m in methods if m.error]


def _try(extract: Extract, path: str, options: Options) -> tuple[Extraction | None, str | None]:
    """(extraction, None) when torch loaded the archive, else (None, why not)."""
    try:
        extraction = extract(path, options)
    except ArchiveError as exc:
        return None, str(exc)
    document = extraction.document
    if document.get("load") in LOADED:
        return extraction, None
    error = document.get("error") or {}
    why = error.get("message") or f"not loaded ({document.get('load')})"
    return None, why + (f"; {error['hint']}" if error.get("hint") else "")
