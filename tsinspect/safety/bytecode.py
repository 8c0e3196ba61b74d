"""The lite interpreter's program: ``bytecode.pkl``, judged the way codescan judges ``code/``.

``torch.jit._load_for_lite_interpreter`` never reads ``code/``: it runs the functions of
``bytecode.pkl`` (``(version, (name, (("instructions", ...), ("operators", ((op, overload, n), ...)),
("constants", ...), ("types", ...), ("register_size", n)), schema), ...)``) and, while it restores the
module's objects, their ``<class>.__setstate__`` functions. So an archive whose ``code/`` is benign or
absent is judged by its bytecode: an operator table entry that touches files, raw memory or the network is
unsafe wherever it is, and a ``__setstate__`` may only use ops of torch's computing namespaces; if it
calls other functions (CALL, INTERFACE_CALL, FORK, ...) the judge takes every function as reachable.
A bytecode.pkl the judge cannot read is unsafe, and so is a FlatBuffer model (``PTMF``), whose program
torch.jit.load runs too (checked: a ``__setstate__`` writing a file ran from one) and this judge does not
read.
"""

from __future__ import annotations

from tsinspect.archive.pickles import PickleError, PTuple, walk
from tsinspect.archive.reader import PICKLE_CAP, Archive
from tsinspect.archive.text import printable
from tsinspect.safety import ops

FLATBUFFER_WHY = ("a FlatBuffer mobile model (PTMF): torch.jit.load and the lite loader run its program (operator "
                  "tables, __setstate__ functions), which the judge cannot read; unknown, so unsafe")
# instructions that run another function or method
CALLING = frozenset({"CALL", "TAIL_CALL", "INTERFACE_CALL", "FORK", "AWAITABLE", "ENTER", "EXIT", "PROFILE_OP"})
MAX_FUNCTIONS = 100_000


def judge_archive(archive: Archive) -> list:
    from tsinspect.safety.codescan import Finding, UNSAFE

    if archive.container == "flatbuffer":
        return [Finding("bytecode", UNSAFE, "(file)", 0, "FlatBuffer program", FLATBUFFER_WHY)]
    records = [r for r in archive.records if not r.entry.is_dir and r.name.lower() == "bytecode.pkl"]
    findings = []
    for record in records:
        where = printable(record.name)
        try:
            functions = parse(walk(archive.read(record, PICKLE_CAP)).value)
        except (PickleError, ValueError) as exc:
            findings.append(Finding("bytecode", UNSAFE, where, 0, "bytecode.pkl",
                                    f"the lite loader's program cannot be read ({printable(str(exc))[:160]}); "
                                    "what it runs cannot be judged"))
            continue
        except Exception as exc:  # noqa: BLE001 - ArchiveError and friends: unreadable means unjudged
            findings.append(Finding("bytecode", UNSAFE, where, 0, "bytecode.pkl",
                                    f"not readable ({printable(str(exc))[:160]})"))
            continue
        findings += _judge(functions, where)
    return findings


def parse(value) -> list[tuple[str, list[str], list[str]]]:
    """[(function name, operator names, instruction names)]; ValueError when it is not a bytecode table."""
    if not isinstance(value, PTuple) or not value.items or not isinstance(value.items[0], int):
        raise ValueError("not a (version, functions...) tuple")
    functions = []
    for item in value.items[1:MAX_FUNCTIONS]:
        if not isinstance(item, PTuple) or len(item.items) < 2 or not isinstance(item.items[0], str) \
                or not isinstance(item.items[1], PTuple):
            raise ValueError("a function entry is not (name, table, ...)")
        table = {}
        for pair in item.items[1].items:
            if isinstance(pair, PTuple) and len(pair.items) == 2 and isinstance(pair.items[0], str):
                table[pair.items[0]] = pair.items[1]
        operators, instructions = table.get("operators"), table.get("instructions")
        if not isinstance(operators, PTuple) or not isinstance(instructions, PTuple):
            raise ValueError(f"function {item.items[0][:80]!r} has no operators or instructions")
        names = []
        for op in operators.items:
            fields = op.items if isinstance(op, PTuple) else []
            if not fields or not isinstance(fields[0], str):
                raise ValueError("an operator entry is not (name, overload, ...)")
            names.append(fields[0])
        codes = [i.items[0] for i in instructions.items
                 if isinstance(i, PTuple) and i.items and isinstance(i.items[0], str)]
        if len(codes) != len(instructions.items):
            raise ValueError("an instruction is not (opcode, x, n)")
        functions.append((item.items[0], names, codes))
    return functions


def _judge(functions: list, where: str) -> list:
    from tsinspect.safety.codescan import BENIGN, Finding, UNSAFE

    findings = []
    for name, operators, _ in functions:
        for op in dict.fromkeys(operators):
            hazard = ops.op_hazard(op)
            if hazard:
                findings.append(Finding(hazard[0], UNSAFE, where, 0, printable(op),
                                        f"{hazard[1]} (in the operator table of {printable(name)[:120]})"))
    calls_any = any(CALLING & set(codes) for fname, _, codes in functions if fname.endswith(".__setstate__"))
    for name, operators, codes in functions:
        if not name.endswith(".__setstate__"):
            continue
        reach = functions if calls_any else [(name, operators, codes)]
        bad = next(((fname, op, ops.judge_load_time_op(op)) for fname, fops, _ in reach for op in fops
                    if ops.judge_load_time_op(op)[0] != ops.OK), None)
        what = printable(name.rsplit(".", 2)[-2] + ".__setstate__") if name.count(".") >= 2 else printable(name)
        if bad is not None:
            fname, op, (_, why) = bad
            via = "" if fname == name else f" (it calls other functions; {printable(fname)[:120]} has it)"
            findings.append(Finding("setstate", UNSAFE, where, 0, what,
                                    f"the lite loader runs it at load time and it reaches {printable(op)}, {why}{via}"))
        else:
            findings.append(Finding("setstate", BENIGN, where, 0, what,
                                    "the lite loader runs it at load time; it only uses ops of torch's computing "
                                    "namespaces"))
    return findings
