"""Structural diff of two archives of one kind (two scripted versions of a model, say): modules,
tensors and their shapes, methods, generated code and operators. Mangled names (``___torch_mangle_N``)
are ignored, so re-saving the same model gives no differences.
"""

from __future__ import annotations

import ast
import difflib
from collections import Counter

from tsinspect.archive.modules import short_type, unmangle
from tsinspect.archive.text import counted
from tsinspect.diff.model import Finding
from tsinspect.diff.program import ops_in



def structural_diff(a, b) -> list[Finding]:
    """``a``/``b``: run.Side objects."""
    out: list[Finding] = []
    mods_a, mods_b = _modules(a.summary), _modules(b.summary)
    for path in sorted(mods_a.keys() | mods_b.keys()):
        name = path or "<root>"
        if path not in mods_b:
            out.append(Finding("module_removed", None, None, None, f"module {name} ({mods_a[path][0]}) only in a"))
        elif path not in mods_a:
            out.append(Finding("module_added", None, None, None, f"module {name} ({mods_b[path][0]}) only in b"))
        else:
            (type_a, methods_a), (type_b, methods_b) = mods_a[path], mods_b[path]
            if type_a != type_b:
                out.append(Finding("module_type_changed", None, None, None, f"module {name}: {type_a} -> {type_b}"))
            for m in sorted(methods_a - methods_b):
                out.append(Finding("method_removed", f"{type_a}.{m}", None, None, f"{name}: method {m} only in a"))
            for m in sorted(methods_b - methods_a):
                out.append(Finding("method_added", f"{type_b}.{m}", None, None, f"{name}: method {m} only in b"))
    tensors_a = {t.name: t for t in a.summary.tensors}
    tensors_b = {t.name: t for t in b.summary.tensors}
    for name in sorted(tensors_a.keys() | tensors_b.keys()):
        ta, tb = tensors_a.get(name), tensors_b.get(name)
        if tb is None:
            out.append(Finding("tensor_removed", None, None, None, f"{name} {_desc(ta)} only in a"))
        elif ta is None:
            out.append(Finding("tensor_added", None, None, None, f"{name} {_desc(tb)} only in b"))
        elif (ta.shape, ta.dtype) != (tb.shape, tb.dtype):
            out.append(Finding("tensor_changed", None, None, None, f"{name}: {_desc(ta)} -> {_desc(tb)}",
                               details={"a": {"dtype": ta.dtype, "shape": ta.shape},
                                        "b": {"dtype": tb.dtype, "shape": tb.shape}}))
    code_a, code_b = _code(a.summary), _code(b.summary)
    for qualname in sorted(code_a.keys() & code_b.keys()):
        (text_a, _), (text_b, where_b) = code_a[qualname], code_b[qualname]
        if text_a != text_b:
            diff = [line for line in difflib.unified_diff(text_a.splitlines(), text_b.splitlines(), "a", "b",
                                                          n=1, lineterm="")][2:]
            file, line = where_b
            out.append(Finding("code_changed", qualname, file, line,
                               f"{qualname}: generated code differs ({sum(1 for d in diff if d[:1] in '+-')} "
                               "lines)", details={"diff": diff}))
    out += _extra_files(a.summary, b.summary)
    ops_a, ops_b = _ops(a.program), _ops(b.program)
    changes = {k: ops_b[k] - ops_a[k] for k in ops_a.keys() | ops_b.keys() if ops_a[k] != ops_b[k]}
    if changes:
        text = ", ".join(f"{k} {'+' if n > 0 else ''}{n}" for k, n in sorted(changes.items()))
        out.append(Finding("ops_changed", None, None, None, f"operator uses changed: {text}",
                           details={"changes": dict(sorted(changes.items()))}))
    return out


def _extra_files(sa, sb) -> list[Finding]:
    """extra/ files added, removed or changed (size or the CRC-32 the zip directory records; nothing is read)."""
    files_a = {r.display_name: r for r in sa.extra_files}
    files_b = {r.display_name: r for r in sb.extra_files}
    out = []
    for name in sorted(files_a.keys() | files_b.keys()):
        ra, rb = files_a.get(name), files_b.get(name)
        if rb is None:
            out.append(Finding("extra_file_removed", None, None, None,
                               f"{name} ({counted(ra.size, 'byte')}) only in a"))
        elif ra is None:
            out.append(Finding("extra_file_added", None, None, None, f"{name} ({counted(rb.size, 'byte')}) only in b"))
        elif (ra.size, ra.entry.crc) != (rb.size, rb.entry.crc):
            out.append(Finding("extra_file_changed", None, None, None,
                               f"{name}: content differs ({ra.size} -> {rb.size} bytes)"))
    return out


def _modules(summary) -> dict[str, tuple[str, set[str]]]:
    return {m.path: (short_type(m.type), set(m.methods)) for m in summary.modules.walk()} if summary.modules else {}


def _desc(t) -> str:
    return f"{t.dtype}[{', '.join(map(str, t.shape))}]"


def _code(summary) -> dict[str, tuple[str, tuple[str, int]]]:
    """Method -> (code without mangling, where); the root class's methods as ``<root>.name``."""
    out = {}
    root = short_type(summary.modules.type) if summary.modules else None
    for m in summary.code.methods:
        owner = short_type(m.owner) if m.owner else None
        qualname = f"{'<root>' if owner == root else owner}.{m.name}" if owner else m.name
        try:
            text = unmangle(ast.unparse(m.node))
        except (ValueError, RecursionError):
            continue
        out.setdefault(qualname, (text, (m.file, m.line)))
    return out


def _ops(program) -> Counter:
    return Counter(op.kind for fn in program.functions for op in ops_in(fn.body) if not op.is_call)
