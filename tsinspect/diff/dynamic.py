"""Which values of the scripted program can differ between inputs the traced model accepts.

A value is *dynamic* when it is computed from an argument the traced ``forward`` accepts, or from the module's
mode (``self.training``) or grad mode; a value fixed by the module's configuration (``self.num_heads``,
``math.sqrt(self.d)``, literal constants, an argument every caller passes as a constant) is the same for every
input, so a trace that froze it lost nothing. The readers record, per argument and condition, which of its
function's parameters it is computed from (``Arg.deps``, ``If.deps``); here the parameters that can vary are
found by a fixpoint over the calls: the traced ``forward``'s accepted arguments to start with (an ``Optional``
argument the trace cannot take is always its default), then every parameter some call passes a dynamic value.
"""

from __future__ import annotations

from collections import defaultdict

from tsinspect.diff.program import GRAD, TRAINING, Function, If, Program, ops_in

MODES = frozenset({TRAINING, GRAD})
MAX_ROUNDS = 100


class Dynamic:
    """The parameters of each scripted function that can vary (``params``), with the inputs rather than the mode
    alone (``inputs``), or be None or not (``nullable``)."""

    def __init__(self, traced: Program, scripted: Program):
        self.params: dict[str, set[str]] = defaultdict(set)  # function qualname -> its parameters that vary
        self.inputs: dict[str, set[str]] = defaultdict(set)  # ... -> those that vary with the inputs (not the mode)
        self.nullable: dict[str, set[str]] = defaultdict(set)  # ... -> those that may be None or not
        by_key: dict[str, list[Function]] = defaultdict(list)
        by_name: dict[str, list[Function]] = defaultdict(list)
        for fn in scripted.functions:
            by_key[fn.qualname].append(fn)
            by_name[fn.name].append(fn)
        arity = {fn.name: len(fn.args) for fn in traced.functions if fn.owner == traced.root_type}
        self.accepted: dict[str, list[str]] = {}  # root method -> the arguments the traced one accepts
        self.scripted_args: dict[str, list[str]] = {}
        for fn in scripted.functions:
            if fn.owner == scripted.root_type and fn.name in arity:
                self.accepted[fn.name] = fn.args[:arity[fn.name]]
                self.scripted_args[fn.name] = list(fn.args)
                self.params[fn.qualname].update(self.accepted[fn.name])
                self.inputs[fn.qualname].update(self.accepted[fn.name])
                self.nullable[fn.qualname].update(a for a in self.accepted[fn.name] if a in fn.optional)
        calls = [(fn, op) for fn in scripted.functions for op in ops_in(fn.body) if op.is_call]
        for _ in range(MAX_ROUNDS):
            changed = False
            for fn, op in calls:
                live, inputs, nullable = self.params[fn.qualname], self.inputs[fn.qualname], self.nullable[fn.qualname]
                targets = by_key.get(op.callee or "") or by_name.get(op.kind[5:], [])
                for i, arg in enumerate(op.argv):
                    for table, flows in ((self.params, arg.deps & live or arg.deps & MODES),
                                         (self.inputs, arg.deps & inputs), (self.nullable, arg.nulls & nullable)):
                        if not flows:
                            continue
                        for target in targets:
                            name = arg.name or (target.args[i] if i < len(target.args) else None)
                            if table is self.nullable and name not in target.optional:
                                continue
                            if name and name not in table[target.qualname]:
                                table[target.qualname].add(name)
                                changed = True
            if not changed:
                break

    def signatures(self) -> dict[str, dict[str, list[str]]]:
        return {name: {"traced": args, "scripted": self.scripted_args[name]} for name, args in self.accepted.items()}

    def varies(self, fn: Function, deps: frozenset) -> bool:
        """Whether a value of ``fn`` computed from ``deps`` can differ between inputs or modes."""
        return bool(deps & MODES or deps & self.params.get(fn.qualname, set()))

    def decides(self, fn: Function, node: If) -> bool:
        """Whether inputs or modes can make this ``if`` decide otherwise. An identity check (``k is v``)
        picks between equal computations; a None test only when something can pass None or not."""
        if node.identity:
            return False
        if node.none_check is not None:
            return bool(node.none_check & self.nullable.get(fn.qualname, set()))
        return self.varies(fn, node.deps)

    def mode_only(self, fn: Function, deps: frozenset) -> bool:
        """Whether it varies with the mode (training, grad) alone, never with the inputs."""
        return not deps & self.inputs.get(fn.qualname, set())
