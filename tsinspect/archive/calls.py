"""What a call in TorchScript's printed code stands for: an op, a method or function call, or nothing.

TorchScript prints builtin ops as ``torch.<name>(...)`` (``aten::<name>``) and other namespaces as
``ops.<ns>.<name>(...)`` (``<ns>::<name>``); methods of submodules are ``(x).forward(...)``. Read by the
torch-free op view (tsinspect.ir.fallback), the diff's reader and the traced/scripted guess (archive.madeby).
"""

from __future__ import annotations

import ast

# Python-level builtins TorchScript prints bare; they map to these ops.
_BUILTIN_OPS = {"int": "aten::Int", "float": "aten::Float", "bool": "aten::Bool", "len": "aten::len",
                "str": "aten::str", "annotate": None, "uninitialized": "prim::Uninitialized",
                "unchecked_cast": "prim::unchecked_cast", "isinstance": None, "range": None}


def op_of_call(call: ast.Call, aliases: dict[str, str] | None = None) -> str | None:
    """The op a call in generated code stands for, or None for calls that are not ops.

    ``aliases`` maps local names to what they were assigned (``_0 = __torch__.torch.nn.functional.dropout``).
    """
    func = call.func
    if isinstance(func, ast.Name) and func.id == "annotate" and call.args and isinstance(call.args[0], ast.Name) \
            and call.args[0].id == "number":
        return "aten::ScalarImplicit"  # an implicit Tensor -> Scalar conversion, printed as annotate(number, x)
    if _is_constant_device(call):
        return None  # torch.device("cpu") is a constant in the graph, not an op
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
        parts.reverse()
        if aliases and parts[0] in aliases:
            parts = aliases[parts[0]].split(".") + parts[1:]
        if parts[0] == "torch" and len(parts) == 2:
            return f"aten::{parts[1]}"
        if parts[0] == "ops" and len(parts) == 3:
            op = f"{parts[1]}::{parts[2]}"
            return _SCRIPTED_BUILTINS.get(op, op)
        if len(parts) == 1:
            return _BUILTIN_OPS.get(parts[0], f"call {parts[0]}")
        if parts[0] == "__torch__":
            return f"call {'.'.join(parts)}"
        return f"method {parts[-1]}"
    if isinstance(call.func, ast.Attribute):
        return f"method {call.func.attr}"
    return None


# Builtins torch implements in TorchScript and inlines where they are called: the op their body runs.
_SCRIPTED_BUILTINS = {"prim::shape": "aten::size"}  # def shape(a: Tensor) -> List[int]: return a.size()


def _is_constant_device(call: ast.Call) -> bool:
    return (isinstance(call.func, ast.Attribute) and call.func.attr == "device" and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "torch" and not call.keywords
            and all(isinstance(a, ast.Constant) for a in call.args) and len(call.args) >= 1)
