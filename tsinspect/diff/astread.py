"""The torch-free reader: a Program from ``code/`` (parsed with ``ast``) and ``*.debug_pkl``.

Each call in the generated code is located by the debug record covering its first byte: scripted
records give the original line, traced ones the Python call stack. ``if``/``for``/``while`` statements
keep their structure; a traced archive has none left.
"""

from __future__ import annotations

import ast
import re

from tsinspect.archive.code import module_of
from tsinspect.archive.debuginfo import SourceMap, load_source_map, origin_of
from tsinspect.archive.modules import short_type
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import Archive
from tsinspect.archive.summary import ArchiveSummary
from tsinspect.archive.tensors import decode_values
from tsinspect.diff.program import Function, If, Item, Loc, Loop, Op, Program
from tsinspect.ir.fallback import op_of_call

MAX_DEPTH = 200  # nesting of generated statements we follow
_DEF = re.compile(r"\s*(?:async\s+)?def\s+(\w+)")


def read_program(archive: Archive, summary: ArchiveSummary) -> Program:
    program = Program(archive.path, root_type=short_type(summary.modules.type) if summary.modules else None)
    constants = constant_texts(archive, summary)
    for t in summary.traced_inputs:
        program.traced_inputs[t.name] = list(t.shape)
        program.input_dtypes[t.name] = t.dtype
    for module in summary.modules.walk() if summary.modules else ():
        program.module_methods[module.path] = set(module.methods)
        program.module_types[module.path] = short_type(module.type)
    index = summary.code
    for file, tree in index.trees.items():
        source_map = None
        try:
            source_map = load_source_map(archive, file)
        except ArchiveError as exc:
            archive.problems.append(Problem("bad_debug_info", file + ".debug_pkl", str(exc)))
        if source_map is not None:
            _collect_sources(program, source_map)
        reader = _FileReader(file, index.sources[file].encode("utf-8"), source_map, constants)
        for method in (m for m in index.methods if m.file == file):
            fn = Function(short_type(method.owner) if method.owner else None, method.name,
                          f"{file}:{method.line}", [a for a in method.args if a != "self"])
            if method.owner is None:
                fn.module = short_type(module_of(file))
            fn.body = reader.block(method.node.body, fn, 0)
            program.functions.append(fn)
    return program


def constant_texts(archive: Archive, summary: ArchiveSummary, max_numel: int = 16) -> dict[str, str]:
    """``c0`` -> ``-1.0`` for the small tensor constants of ``constants.pkl``."""
    out = {}
    for t in summary.constants:
        if t.record is None or t.numel > max_numel or t.problem:
            continue
        try:
            data = archive.read(t.record, 1 << 16)
        except ArchiveError:
            continue
        values = decode_values(data[t.offset * t.itemsize:(t.offset + t.numel) * t.itemsize], t.dtype)
        if values is not None:
            out[t.name] = str(values[0]) if not t.shape else str(values)
    return out


def _collect_sources(program: Program, source_map: SourceMap) -> None:
    seen = set()
    for record in source_map.records:
        src = record.source
        if src is None or id(src) in seen or not src.filename:
            continue
        seen.add(id(src))
        origin = origin_of(record)
        if origin is None or origin.stack:  # a traced call stack holds no source text
            continue
        lines = src.text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        table = program.sources.setdefault(src.filename, {})
        for i, text in enumerate(lines):
            table.setdefault(src.start_line + i, text)
        skip = next((i for i, text in enumerate(lines) if not text.lstrip().startswith("@")), len(lines))
        match = _DEF.match(lines[skip]) if skip < len(lines) else None
        if match:
            entry = (src.start_line + skip, src.start_line + len(lines) - 1, match.group(1))
            defs = program.defs.setdefault(src.filename, [])
            if entry not in defs:
                defs.append(entry)


class _FileReader:
    """Turns the statements of one code file into program items."""

    def __init__(self, file: str, code: bytes, source_map: SourceMap | None, constants: dict[str, str]):
        self.file = file
        self.source_map = source_map
        self.constants = constants
        self.line_starts = [0]
        for i, byte in enumerate(code):
            if byte == 10:
                self.line_starts.append(i + 1)

    def where(self, node: ast.AST) -> tuple[Loc | None, tuple[Loc, ...]]:
        if self.source_map is None:
            return None, ()
        line = node.lineno - 1
        offset = (self.line_starts[line] if line < len(self.line_starts) else 0) + node.col_offset
        origin = self.source_map.origin_at(offset)
        if origin is None or origin.file is None or origin.line is None:
            return None, ()
        stack = tuple((f, n) for f, n, _ in origin.stack) or ((origin.file, origin.line),)
        return (origin.file, origin.line), stack

    def code(self, node: ast.AST) -> str:
        return f"{self.file}:{node.lineno}"

    def block(self, stmts: list[ast.stmt], fn: Function, depth: int) -> list[Item]:
        items: list[Item] = []
        if depth > MAX_DEPTH:
            return items
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                loc, _ = self.where(stmt)
                items.append(If(loc, self.code(stmt), self.ops(stmt.test, fn), self.block(stmt.body, fn, depth + 1),
                                self.block(stmt.orelse, fn, depth + 1), _reads_training(stmt.test, fn),
                                _unparse(stmt.test)))
            elif isinstance(stmt, (ast.For, ast.While)):
                loc, _ = self.where(stmt)
                head = stmt.iter if isinstance(stmt, ast.For) else stmt.test
                items.append(Loop(loc, self.code(stmt), self.ops(head, fn),
                                  self.block(stmt.body + stmt.orelse, fn, depth + 1), _unparse(head), _trip(head)))
            else:
                if isinstance(stmt, ast.Assign) and _is_self_training(stmt.value):
                    fn.training_names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
                items.extend(self.ops(stmt, fn))
        return items

    def ops(self, node: ast.AST, fn: Function) -> list[Op]:
        out = []
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            kind = op_of_call(call)
            if kind is None:
                continue
            if kind.startswith(("method ", "call ")):
                name = kind.split(" ", 1)[1].rsplit(".", 1)[-1]
                if isinstance(call.func, ast.Attribute) and _is_self(call.func.value):
                    fn.calls.add(name)
                kind = f"call {name}"
            loc, stack = self.where(call)
            args, consts = self.args(call)
            out.append(Op(kind, loc, stack, self.code(call), args, consts))
        return out

    def args(self, call: ast.Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
        args, consts = [], []
        for arg in list(call.args) + [k.value for k in call.keywords]:
            for part in (arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]):
                value = self.const(part)
                args.append("const" if value is not None else _unparse(part)[:80])
                if value is not None:
                    consts.append(value)
        return tuple(args), tuple(consts)

    def const(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return "-" + repr(node.operand.value)
        if isinstance(node, ast.Constant):
            return repr(node.value)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "CONSTANTS":
            return self.constants.get(node.attr, f"CONSTANTS.{node.attr}")
        return None


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_self_training(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "training" and _is_self(node.value)


def _reads_training(test: ast.expr, fn: Function) -> bool:
    return any(_is_self_training(n) or isinstance(n, ast.Name) and n.id in fn.training_names
               for n in ast.walk(test))


def _trip(head: ast.expr) -> tuple[str, int] | None:
    """``range(torch.size(x, 0))`` -> ("x", 0); ``range(len(x))`` -> ("x", 0)."""
    if isinstance(head, ast.Call) and isinstance(head.func, ast.Name) and head.func.id == "range" and head.args:
        head = head.args[-1] if len(head.args) == 1 else head.args[1]
    if not isinstance(head, ast.Call) or not head.args or not isinstance(head.args[0], ast.Name):
        return None
    name = _unparse(head.func)
    if name == "len":
        return head.args[0].id, 0
    if name == "torch.size" and len(head.args) == 2 and isinstance(head.args[1], ast.Constant):
        return head.args[0].id, head.args[1].value
    return None


def _unparse(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except (ValueError, RecursionError):
        return "?"
