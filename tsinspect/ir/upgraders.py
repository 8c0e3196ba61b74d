"""torch's operator upgraders, as the torch-free op view applies them to archives of old file versions.

When an op's semantics change, torch bumps the file format version and registers an upgrader: a
TorchScript function with the old semantics. Loading ``code/`` of an archive whose version record
(``.data/version``, else ``version``) is older than the bump, torch matches the call against the op's old
schema and inlines the upgrader's body in its place; its cleanup passes then fold what the call's
constants decide. So a file-format-1 ``torch.div(x, n)`` (integer ``n``) runs ``aten::is_floating_point``
and two ``aten::div`` (true or truncating division, chosen at run time).

``UPGRADERS`` is torch 2.13's map (``torch._C._get_operator_version_map()``; the bodies are
``torch._C._generate_upgraders_graph()``): per schema, the version it became current at and the
upgrader torch applies below it. ``upgraded_ops`` gives the ops a call runs once upgraded, what torch's
graph counts after the fold (tests/test_fidelity_upgraders.py checks every form against torch).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

TENSOR, SCALAR = "tensor", "scalar"


@dataclass(frozen=True)
class Upgrader:
    schema: str  # "aten::div.Tensor"
    bumped_at: int  # the file format version from which the current schema applies
    name: str  # torch's upgrader, "div_Tensor_0_3"


UPGRADERS = [Upgrader(schema, version, name) for schema, version, name in (
    ("aten::div.Tensor", 4, "div_Tensor_0_3"), ("aten::div.Tensor_mode", 4, "div_Tensor_mode_0_3"),
    ("aten::div.Scalar", 4, "div_Scalar_0_3"), ("aten::div.Scalar_mode", 4, "div_Scalar_mode_0_3"),
    ("aten::div.out", 4, "div_out_0_3"), ("aten::div.out_mode", 4, "div_out_mode_0_3"),
    ("aten::div_.Tensor", 4, "div__Tensor_0_3"), ("aten::div_.Tensor_mode", 4, "div__Tensor_mode_0_3"),
    ("aten::div_.Scalar", 4, "div__Scalar_0_3"), ("aten::div_.Scalar_mode", 4, "div__Scalar_mode_0_3"),
    ("aten::full", 5, "full_0_4"), ("aten::full.out", 5, "full_out_0_4"),
    ("aten::linspace", 8, "linspace_0_7"), ("aten::linspace.out", 8, "linspace_out_0_7"),
    ("aten::logspace", 9, "logspace_0_8"), ("aten::logspace.out", 9, "logspace_out_0_8"),
    ("aten::gelu", 10, "gelu_0_9"), ("aten::gelu.out", 10, "gelu_out_0_9"),
)]
_BY_SCHEMA: dict[str, list[Upgrader]] = {}
_LAST_BUMP: dict[str, int] = {}  # "aten::div" -> the last version it was bumped at
for _u in sorted(UPGRADERS, key=lambda u: u.bumped_at):
    _BY_SCHEMA.setdefault(_u.schema, []).append(_u)
    _LAST_BUMP[_u.schema.split(".")[0]] = _u.bumped_at


class CallArgs:
    """A call's arguments by schema position or keyword, with what the op view knows of their values."""

    def __init__(self, call: ast.Call, kind: Callable[[ast.expr], str | None],
                 constant: Callable[[ast.expr], tuple[bool, object]]):
        self.call, self._kind, self._constant = call, kind, constant
        self.keywords = {k.arg: k.value for k in call.keywords if k.arg}

    def get(self, position: int, keyword: str) -> ast.expr | None:
        args = self.call.args
        return args[position] if position < len(args) else self.keywords.get(keyword)

    def kind(self, position: int, keyword: str) -> str | None:
        expr = self.get(position, keyword)
        return self._kind(expr) if expr is not None else None

    def constant(self, position: int, keyword: str) -> tuple[bool, object]:
        """(True, value) for an argument torch's constant propagation knows; an absent one is its default,
        None (the old schemas' optional arguments)."""
        expr = self.get(position, keyword)
        return (True, None) if expr is None else self._constant(expr)


def _schema(op: str, args: CallArgs) -> str | None:
    """The overload of ``op`` the call matches (the schema names of the upgrader map), or None."""
    name = op.split("::", 1)[1]
    out = "out" in args.keywords
    if name in ("div", "div_"):
        if args.kind(0, "self") == SCALAR:
            return None  # aten::div.int and kin: scalar arithmetic, never upgraded
        mode = "_mode" if "rounding_mode" in args.keywords else ""
        if out:
            return f"{op}.out{mode}"
        return f"{op}.{'Scalar' if args.kind(1, 'other') == SCALAR else 'Tensor'}{mode}"
    if name == "full" and "names" in args.keywords:
        return None  # aten::full.names: never bumped
    if name in ("full", "linspace", "logspace", "gelu"):
        return f"{op}.out" if out else op
    return None


def _div(op: str, tensors: int) -> list[str]:
    """div_Tensor_0_3, div__Tensor_0_3, div_out_0_3: whether any tensor is floating is known only at run
    time (``is_floating_point`` of each, short-circuited), so both divisions stay."""
    return ["aten::is_floating_point"] * tensors + [op, op]


def _div_scalar(op: str, args: CallArgs) -> list[str]:
    """div_Scalar_0_3, div__Scalar_0_3: ``self.is_floating_point() or isinstance(other, float)``; a float
    constant decides it (true division alone), anything else leaves the test of ``self``."""
    known, value = args.constant(1, "other")
    if known and isinstance(value, float):
        return [op]
    return ["aten::is_floating_point", op, op]


def _full(args: CallArgs) -> list[str]:
    """full_0_4: ``if dtype is None: fill_value = float(fill_value)``, then the op."""
    known, dtype = args.constant(2, "dtype")  # keyword-only in the schema: never positional in printed code
    to_float = [] if args.constant(1, "fill_value")[0] else ["aten::Float"]  # float(constant) folds
    if known:
        return (to_float if dtype is None else []) + ["aten::full"]
    return ["aten::__is__", *to_float, "aten::full"]


def _steps(op: str, args: CallArgs) -> list[str]:
    """linspace_0_7, logspace_0_8 and their .out: ``steps`` was optional (100): a call per branch of
    ``if steps is None``, decided when ``steps`` is a constant."""
    if args.constant(2, "steps")[0]:
        return [op]
    return ["aten::__is__", op, op]


_BODIES: dict[str, Callable[[str, CallArgs], list[str]]] = {
    "div_Tensor_0_3": lambda op, a: _div(op, 2), "div__Tensor_0_3": lambda op, a: _div(op, 2),
    "div_out_0_3": lambda op, a: _div(op, 3),
    "div_Scalar_0_3": _div_scalar, "div__Scalar_0_3": _div_scalar,
    "full_0_4": lambda op, a: _full(a),
    "linspace_0_7": _steps, "linspace_out_0_7": _steps, "logspace_0_8": _steps, "logspace_out_0_8": _steps,
}
# the others (the rounding-mode divisions, full.out, gelu) call the same op once, with a default spelled out


def may_upgrade(op: str, file_version: int | None) -> bool:
    """Whether torch may upgrade a call of ``op`` (``aten::div``) in an archive of ``file_version``."""
    return file_version is not None and file_version < _LAST_BUMP.get(op, 0)


def upgraded_ops(op: str, args: CallArgs, file_version: int | None) -> list[str]:
    """The ops torch's graph has for one call of ``op`` in an archive of ``file_version``."""
    if file_version is None:
        return [op]
    schema = _schema(op, args)
    # torch's findUpgrader: the first upgrader of the schema bumped after the file's version
    upgrader = next((u for u in _BY_SCHEMA.get(schema or "", []) if u.bumped_at > file_version), None)
    body = _BODIES.get(upgrader.name) if upgrader else None
    return body(op, args) if body else [op]
