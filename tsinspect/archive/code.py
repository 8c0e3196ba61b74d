"""An index of the generated TorchScript code in ``code/``: classes, their declared members, methods.

The files are valid Python syntax, so ``ast`` reads them without running anything. The class body
declares ``__parameters__``/``__buffers__`` and annotates every attribute; ``def`` s are the methods.
"""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass, field

from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import SMALL_CAP, Archive
from tsinspect.archive.records import CODE
from tsinspect.archive.text import printable
from tsinspect.collector import paused

MAX_CODE_FILE = 16 * 1024 * 1024
_CONTROL_WORD = re.compile(r"\b(?:if|for|while)\b")
_NEWLINE = re.compile("\r\n|\r|\n")  # line ends as ast counts them
# CPython before 3.12 keeps ast's recursion-depth counter per interpreter, not per thread: a parse in a
# worker thread while another thread builds an AST (Textual's main thread parses action strings with
# ast.literal_eval while composing the footer) fails at random with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905; it failed the TUI's IR view in 2 of 6 starts).
# Our own parses go one at a time, and a parse that hit the race is retried.
_PARSE_LOCK = threading.Lock()
_PARSE_ATTEMPTS = 5


def _parse(source: str, filename: str) -> ast.Module:
    with _PARSE_LOCK:
        for attempt in range(_PARSE_ATTEMPTS):
            try:
                return ast.parse(source, filename=filename)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc) or attempt == _PARSE_ATTEMPTS - 1:
                    raise
    raise AssertionError("unreachable")


@dataclass
class MethodInfo:
    owner: str | None  # class qualname, None for a free function
    name: str
    file: str  # record name, e.g. "code/__torch__.py"
    line: int
    end_line: int
    args: list[str]
    node: ast.FunctionDef = field(repr=False, compare=False)

    @property
    def qualname(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name

    def to_json(self) -> dict:
        return {"class": self.owner, "name": self.name, "file": self.file, "line": self.line,
                "end_line": self.end_line, "args": self.args}


@dataclass
class ClassInfo:
    qualname: str
    file: str
    line: int
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)  # name -> annotated type
    methods: list[MethodInfo] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)

    def method(self, name: str) -> MethodInfo | None:
        return next((m for m in self.methods if m.name == name), None)


@dataclass
class CodeIndex:
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    functions: list[MethodInfo] = field(default_factory=list)
    file_version: int | None = None  # the archive's file format version: which operator upgraders torch applies
    trees: dict[str, ast.Module] = field(default_factory=dict, repr=False)
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    _line_starts: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)  # file -> line offsets

    @property
    def methods(self) -> list[MethodInfo]:
        return [m for c in self.classes.values() for m in c.methods] + self.functions

    def has_control_flow(self, method: MethodInfo) -> bool:
        """Whether the method holds an ``if``, ``for`` or ``while`` statement. Its lines are searched for the
        three words first (each statement starts with its word): the forward of a Sequential of 5,000
        modules is 10,000 lines without one, and walking its tree cost more than parsing it."""
        source = self.sources.get(method.file)
        if source is not None:
            starts = self._line_starts.get(method.file)
            if starts is None:
                starts = self._line_starts[method.file] = [0, *(m.end() for m in _NEWLINE.finditer(source))]
            end = starts[method.end_line] if method.end_line < len(starts) else len(source)
            if not _CONTROL_WORD.search(source, starts[min(method.line, len(starts)) - 1], end):
                return False
        return any(isinstance(n, (ast.If, ast.For, ast.While)) for n in ast.walk(method.node))


def module_of(record_name: str) -> str:
    """``code/__torch__/torch/nn/modules/linear.py`` -> ``__torch__.torch.nn.modules.linear``."""
    path = record_name
    for prefix in (".data/ts_code/code/", "code/"):  # torch.package keeps TorchScript code under .data/ts_code
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    return path[:-3].replace("/", ".") if path.endswith(".py") else path.replace("/", ".")


def index_code(archive: Archive) -> CodeIndex:
    """Parse every code record; files that do not parse become problems on the archive."""
    with paused():  # ASTs are large and acyclic
        return _index_code(archive)


def _index_code(archive: Archive) -> CodeIndex:
    index = CodeIndex(file_version=_file_version(archive))
    for record in archive.records_of(CODE):
        try:
            source = archive.read(record, MAX_CODE_FILE).decode("utf-8", "replace")
            tree = _parse(source, record.name)
        except ArchiveError as exc:
            archive.problems.append(Problem("unreadable_record", record.display_name, str(exc).split(": ", 1)[-1]))
            continue
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            # the message quotes the record name and may quote source text: both come from the archive
            archive.problems.append(Problem("bad_code", record.display_name,
                                            f"not valid Python ({type(exc).__name__}: {printable(str(exc)[:120])})"))
            continue
        index.trees[record.name] = tree
        index.sources[record.name] = source
        _index_module(index, record.name, tree)
    return index


def _file_version(archive: Archive) -> int | None:
    """The version torch compiles ``code/`` for: ``.data/version``, else ``version`` (its leading digits)."""
    record = archive.by_name.get(".data/version") or archive.by_name.get("version")
    try:  # a damaged record is already a problem of the summary's versions
        digits = re.match(rb"\s*(\d{1,9})", archive.read(record, SMALL_CAP)) if record else None
    except ArchiveError:
        return None
    return int(digits.group(1)) if digits else None


def _index_module(index: CodeIndex, file: str, tree: ast.Module) -> None:
    module = module_of(file)
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            info = ClassInfo(f"{module}.{stmt.name}", file, stmt.lineno,
                             bases=[_expr(b) for b in stmt.bases])
            for item in stmt.body:
                _class_member(info, item, file)
            index.classes[info.qualname] = info
        elif isinstance(stmt, ast.FunctionDef):
            index.functions.append(_method(None, stmt, file))


def _class_member(info: ClassInfo, item: ast.stmt, file: str) -> None:
    if isinstance(item, ast.FunctionDef):
        info.methods.append(_method(info.qualname, item, file))
    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
        info.attributes[item.target.id] = _expr(item.annotation)
    elif isinstance(item, ast.Assign) and len(item.targets) == 1:
        target = item.targets[0]
        if isinstance(target, ast.Name) and target.id in ("__parameters__", "__buffers__"):
            names = [e.value for e in getattr(item.value, "elts", []) if isinstance(e, ast.Constant)
                     and isinstance(e.value, str)]
            (info.parameters if target.id == "__parameters__" else info.buffers).extend(names)
        elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
              and target.value.id == "__annotations__" and isinstance(target.slice, ast.Constant)):
            # attributes whose names are not identifiers ("0" in Sequential) are annotated this way
            info.attributes[str(target.slice.value)] = _expr(item.value)


def _method(owner: str | None, node: ast.FunctionDef, file: str) -> MethodInfo:
    args = [a.arg for a in node.args.args]
    return MethodInfo(owner, node.name, file, node.lineno, node.end_lineno or node.lineno, args, node)


def _expr(node: ast.expr) -> str:
    dotted, inner = [], node  # a name or a dotted name, as unparse writes it, without unparse's set-up
    while isinstance(inner, ast.Attribute):
        dotted.append(inner.attr)
        inner = inner.value
    if isinstance(inner, ast.Name):
        return ".".join([inner.id, *reversed(dotted)])
    try:
        return ast.unparse(node)
    except (ValueError, RecursionError):
        return "?"
