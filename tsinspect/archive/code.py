"""An index of the generated TorchScript code in ``code/``: classes, their declared members, methods.

The files are valid Python syntax, so ``ast`` reads them without running anything. The class body
declares ``__parameters__``/``__buffers__`` and annotates every attribute; ``def`` s are the methods.

The index is built from each file's outline (:mod:`tsinspect.archive.outline`: the generated one-line
statements set aside, the rest parsed); a method's full tree (``MethodInfo.node``, ``CodeIndex.trees``)
is parsed when first asked for. An index for the safety judge (``outlined=False``) parses every method at
once and sets aside only the class-body annotations by subscript (``__annotations__["0"] = <dotted type>``,
one per module of a Sequential): no call, no name binding, no operator, nothing the judge reads in them but
the type, which the index records.
"""

from __future__ import annotations

import ast
import keyword
import re
import threading
from itertools import accumulate
from dataclasses import dataclass, field

from tsinspect.archive import shapes as shaping
from tsinspect.archive.outline import outline
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import SMALL_CAP, Archive
from tsinspect.archive.records import CODE
from tsinspect.archive.text import printable
from tsinspect.collector import paused

MAX_CODE_FILE = 16 * 1024 * 1024
# an if, for or while statement starts a line (no compound statement follows a ';' or a ':' on its line);
# searching for the words anywhere took 14 ms on 700 KB, for the 'for' of every 'forward'
_CONTROL_STATEMENT = re.compile(r"[\r\n][ \t\f]*(?:if|for|while)\b")
_NEWLINE = re.compile("\r\n|\r|\n")  # line ends as ast counts them
# CPython before 3.12 keeps ast's recursion-depth counter per interpreter, not per thread: a parse in a
# worker thread while another thread builds an AST (Textual's main thread parses action strings with
# ast.literal_eval while composing the footer) fails at random with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905; it failed the TUI's IR view in 2 of 6 starts).
# Our own parses go one at a time, and a parse that hit the race is retried.
_PARSE_LOCK = threading.Lock()
_TREE_LOCK = threading.RLock()
_PARSE_ATTEMPTS = 5
# a class-body annotation by subscript, as torch writes it; at most 32 names in its type, so that it nests no
# deeper than a parse of the rest of the file could fail on (the parser's limit is thousands of levels)
_ANNOTATION_LINE = re.compile(r'^( +)__annotations__\["([ !#-\[\]-~]*)"\] = '
                              r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,31})$", re.M)
_KEYWORDS = frozenset(keyword.kwlist)  # None, True, False too: ``a.None`` is no name
_UNSUITED = ("\r", "\0", "'''", '"""', "\\\n")  # the outline's conditions (see outline's docstring)


def _parse(source: str, filename: str) -> ast.Module:
    with _PARSE_LOCK:
        for attempt in range(_PARSE_ATTEMPTS):
            try:
                return ast.parse(source, filename=filename)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc) or attempt == _PARSE_ATTEMPTS - 1:
                    raise
    raise AssertionError("unreachable")


def _parse_detached(source: str, filename: str) -> ast.Module:
    """``_parse`` in a thread of its own: a tree asked for later, from deep in a caller, gets at least the
    recursion room the outline had at index time (the AST builder's limit counts the caller's frames). One
    thread for all parses: starting one per file cost more than parsing 5,000 small files."""
    global _PARSER
    with _PARSER_LOCK:
        if _PARSER is None:
            from concurrent.futures import ThreadPoolExecutor  # here: 3 ms of imports (logging) info rarely needs

            _PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsinspect-parse")
    return _PARSER.submit(_parse, source, filename).result()


_PARSER = None  # the ThreadPoolExecutor, once a parse needs it
_PARSER_LOCK = threading.Lock()


@dataclass
class MethodInfo:
    owner: str | None  # class qualname, None for a free function
    name: str
    file: str  # record name, e.g. "code/__torch__.py"
    line: int
    end_line: int
    args: list[str]
    _node: ast.FunctionDef | None = field(default=None, repr=False, compare=False)
    _index: "CodeIndex | None" = field(default=None, repr=False, compare=False)  # parses _node when asked

    @property
    def node(self) -> ast.FunctionDef:
        """The method's tree, a node of ``CodeIndex.trees[file]`` (parsed on first use)."""
        if self._node is None and self._index is not None:
            self._index.tree(self.file)
        return self._node

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
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    _trees: dict[str, ast.Module] = field(default_factory=dict, repr=False, compare=False)  # parsed so far
    _line_starts: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)  # file -> line offsets
    _every_tree: dict[str, ast.Module] | None = field(default=None, repr=False, compare=False)  # trees, made once
    _by_file: dict[str, list[MethodInfo]] | None = field(default=None, repr=False, compare=False)  # methods_of
    _shapes: dict[str, "CodeShape"] = field(default_factory=dict, repr=False, compare=False)  # file -> its shape

    def shape(self, file: str) -> "CodeShape | None":
        """The shape the file was indexed from (tsinspect.archive.shapes), None when it was read on its own."""
        return self._shapes.get(file)

    @property
    def trees(self) -> dict[str, ast.Module]:
        """Every indexed file's full tree, in index order (parsed now for those not parsed yet). Made once, not
        per call: a caller asking it per code record made the scan quadratic (5,000 files: 25 M lookups)."""
        every = self._every_tree
        if every is None or len(every) != len(self.sources):
            every = self._every_tree = {file: self.tree(file) for file in self.sources}
        return every

    def tree(self, file: str) -> ast.Module:
        """The full tree of one indexed file; its methods' ``node`` s become its FunctionDefs."""
        with _TREE_LOCK:  # one parse per file, its nodes from that one tree, whichever thread asks first
            return self._tree(file)

    def _tree(self, file: str) -> ast.Module:
        tree = self._trees.get(file)
        if tree is None:
            try:
                with paused():
                    tree = _parse_detached(self.sources[file], file)
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                # its outline parsed: only a parser limit hit where the outline's was not can land here
                raise ArchiveError(f"not valid Python ({type(exc).__name__}: {printable(str(exc)[:120])})",
                                   printable(file)) from None
            self._set_nodes(file, tree)
            self._trees[file] = tree
        return tree

    def _set_nodes(self, file: str, tree: ast.Module) -> None:
        """Give the file's methods their nodes in ``tree``: the outline had the same defs in the same order."""
        methods = self.methods_of(file)
        nodes = [item for stmt in tree.body if isinstance(stmt, ast.ClassDef)
                 for item in stmt.body if isinstance(item, ast.FunctionDef)]
        nodes += [stmt for stmt in tree.body if isinstance(stmt, ast.FunctionDef)]
        by_place = {(n.name, n.lineno): n for n in nodes}
        for method in methods:
            node = by_place.get((method.name, method.line))
            if node is None or (node.end_lineno or node.lineno) != method.end_line:
                raise AssertionError(f"the outline of {file} disagrees with its tree at {method.qualname}")
            method._node = node

    def release_trees(self) -> None:
        """Forget every parsed tree; a method's ``node`` is parsed again when next asked for. The safety scan
        reads every file's tree, the IR's gate little after it (8,000 traced classes: 210 MB of trees)."""
        with _TREE_LOCK:
            self._trees.clear()
            self._every_tree = None
            for method in self.methods:
                method._node = None

    @property
    def methods(self) -> list[MethodInfo]:
        return [m for c in self.classes.values() for m in c.methods] + self.functions

    def methods_of(self, file: str) -> list[MethodInfo]:
        """``[m for m in self.methods if m.file == file]``, grouped once for all files (asked per file, the
        filter was quadratic: 5,000 traced classes, 15 s in a diff)."""
        if self._by_file is None:
            by_file: dict[str, list[MethodInfo]] = {}
            for method in self.methods:
                by_file.setdefault(method.file, []).append(method)
            self._by_file = by_file
        return self._by_file.get(file, [])

    def has_control_flow(self, method: MethodInfo) -> bool:
        """Whether the method holds an ``if``, ``for`` or ``while`` statement. Its lines are searched for a line
        starting with one of the three words first: the forward of a Sequential of 5,000
        modules is 10,000 lines without one, and walking its tree cost more than parsing it."""
        source = self.sources.get(method.file)
        if source is not None:
            starts = self._line_starts.get(method.file)
            if starts is None:
                starts = [0, *(m.end() for m in _NEWLINE.finditer(source))] if "\r" in source else \
                    [0, *accumulate(map((1).__add__, map(len, source.split("\n")[:-1])))]  # the same, in C
                self._line_starts[method.file] = starts
            end = starts[method.end_line] if method.end_line < len(starts) else len(source)
            if not _CONTROL_STATEMENT.search(source, starts[min(method.line, len(starts)) - 1], end):
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


def index_code(archive: Archive, outlined: bool = True) -> CodeIndex:
    """Parse every code record; files that do not parse become problems on the archive. ``outlined=False``
    for callers that read every method's tree anyway (the safety scan): the outline would be work twice."""
    with paused():  # ASTs are large and acyclic
        return _index_code(archive, outlined)


def _index_code(archive: Archive, outlined: bool) -> CodeIndex:
    index = CodeIndex(file_version=_file_version(archive))
    shapes: dict[tuple[str, str], CodeShape | None] = {}
    for record in archive.records_of(CODE):
        try:
            source = archive.read(record, MAX_CODE_FILE).decode("utf-8", "replace")
        except ArchiveError as exc:
            archive.problems.append(Problem("unreadable_record", record.display_name, str(exc).split(": ", 1)[-1]))
            continue
        error = index_file(index, record.name, source, outlined, shapes)
        if error is not None:
            archive.problems.append(Problem("bad_code", record.display_name, error))
    return index


@dataclass
class CodeShape:
    """Code files of one shape (tsinspect.archive.shapes), indexed once: the shape's classes and functions, with
    placeholders where each file's mangled numbers go (``classes`` None: every file of the shape is read on
    its own). ``facts``: what other readers derived from the shape's tree, by reader."""

    module: str
    text: str
    classes: list[ClassInfo] | None = None
    functions: list[MethodInfo] = field(default_factory=list)
    facts: dict = field(default_factory=dict, repr=False)
    _tree: ast.Module | None = field(default=None, repr=False)

    @property
    def tree(self) -> ast.Module:
        """The shape's whole tree (parsed on first use)."""
        if self._tree is None:
            with paused():
                self._tree = _parse_detached(self.text, "<shape>")
        return self._tree


def _shape(module: str, text: str, count: int, outlined: bool) -> CodeShape:
    shape = CodeShape(module, text)
    scratch = CodeIndex()
    if _index_alone(scratch, "<shape>", text, outlined, module) is None:
        strings = [s for info in scratch.classes.values() for s in _class_strings(info)]
        strings += [s for f in scratch.functions for s in _method_strings(f)]
        if all(shaping.whole(s, count) for s in strings):
            shape.classes, shape.functions = list(scratch.classes.values()), scratch.functions
            for method in scratch.methods:  # models only: no tree kept for them
                method._node = method._index = None
    return shape


def _class_strings(info: ClassInfo) -> list[str]:
    return [info.qualname, *info.parameters, *info.buffers, *info.attributes, *info.attributes.values(),
            *info.bases, *(s for m in info.methods for s in _method_strings(m))]


def _method_strings(method: MethodInfo) -> list[str]:
    return [method.owner or "", method.name, *method.args]


def _placed_method(method: MethodInfo, owner: str | None, file: str, numbers: tuple[str, ...]) -> MethodInfo:
    return MethodInfo(owner, shaping.placed(method.name, numbers), file, method.line, method.end_line,
                      [shaping.placed(a, numbers) for a in method.args])


def _index_shaped(index: CodeIndex, name: str, source: str, outlined: bool, shapes: dict) -> bool:
    """Index a file from its shape's index (True), or False when it has none to share."""
    found = shaping.shape_of(module_of(name), source)
    if found is None:
        return False
    module, text, numbers = found
    shape = shapes.get((module, text), False)
    if shape is False:  # the shape's first file: read on its own (a shape of one file costs no more)
        shapes[module, text] = None
        return False
    if shape is None:
        shape = shapes[module, text] = _shape(module, text, len(numbers), outlined)
    if shape.classes is None:
        return False
    index.sources[name] = source
    index._by_file = None
    index._shapes[name] = shape
    put = shaping.placed
    for model in shape.classes:
        qualname = put(model.qualname, numbers)
        info = ClassInfo(qualname, name, model.line, [put(p, numbers) for p in model.parameters],
                         [put(b, numbers) for b in model.buffers],
                         {put(k, numbers): put(v, numbers) for k, v in model.attributes.items()},
                         [_placed_method(m, qualname, name, numbers) for m in model.methods],
                         [put(b, numbers) for b in model.bases])
        index.classes[qualname] = info
        for method in info.methods:
            method._index = index
    for model in shape.functions:
        index.functions.append(_placed_method(model, None, name, numbers))
        index.functions[-1]._index = index
    return True


def index_file(index: CodeIndex, name: str, source: str, outlined: bool = True,
               shapes: dict | None = None) -> str | None:
    """Index one code file from its outline (``outlined``, when it has one) or its tree (without its class-body
    annotations by subscript: see the module's docstring); None, or why it is not valid Python (the file's own
    parse error, whatever the outline gave). With ``shapes`` ((module, text) of a shape -> CodeShape, shared by
    the files of one index), the second and later files of a shape are indexed from it
    (tsinspect.archive.shapes)."""
    for known in (index._shapes, index._trees, index._line_starts):  # of a file of this name indexed before
        known.pop(name, None)  # (a duplicate entry): its tree would stand for this one's
    index._every_tree = None
    if shapes is not None and _index_shaped(index, name, source, outlined, shapes):
        return None
    return _index_alone(index, name, source, outlined)


def _index_alone(index: CodeIndex, name: str, source: str, outlined: bool, module: str | None = None) -> str | None:
    skeleton, runs = outline(source) if outlined else _annotations_aside(source)
    tree = None
    if skeleton is not None:
        try:
            tree = _parse(skeleton, name)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            skeleton, runs = None, {}  # the file itself decides, and words the error
        if tree is not None and not outlined and not _in_class_bodies(tree, runs):
            tree, skeleton, runs = None, None, {}  # annotations of a nested class or a function: parse it all
    if tree is None:
        try:
            tree = _parse(source, name)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            # the message quotes the record name and may quote source text: both come from the archive
            return f"not valid Python ({type(exc).__name__}: {printable(str(exc)[:120])})"
    index.sources[name] = source
    index._by_file = None
    methods = _index_module(index, name, tree, runs, module)
    if skeleton is None or not outlined:
        index._trees[name] = tree
    for method in methods:  # parsed again from its file when asked for after release_trees
        method._index = index
        if skeleton is not None and outlined:
            method._node = None
    return None


def _annotations_aside(source: str) -> tuple[str | None, dict[int, list[tuple[str, str]]]]:
    """The file with its runs of annotations by subscript set aside as the outline sets its lines aside (blank
    lines, one ``pass`` at the run's last line; the outline's docstring says why the result parses exactly when
    the file does) and {line of each ``pass``: its (name, type) pairs}; (None, {}) when there are none. Types
    starting at ``ops`` are kept (the scan lists the ops of unknown namespaces named anywhere)."""
    if source.endswith("\\") or any(text in source for text in _UNSUITED):
        return None, {}
    pieces: list[str] = []
    runs: dict[int, list[tuple[str, str]]] = {}
    copied = counted = 0  # the source is copied up to ``copied``; its lines are counted up to ``counted``
    line = 1
    run: list[tuple[str, str]] = []
    indent, run_end = "", -1

    def close() -> None:
        nonlocal line, counted
        line += source.count("\n", counted, run_end)
        counted = run_end
        pieces.append("\n" * (len(run) - 1) + indent + "pass")
        runs[line] = list(run)

    for match in _ANNOTATION_LINE.finditer(source):
        words = match.group(3).split(".")
        if words[0] == "ops" or not _KEYWORDS.isdisjoint(words):
            continue
        start = match.start()
        if run and (start != run_end + 1 or match.group(1) != indent):
            close()
            run = []
        if not run:
            pieces.append(source[copied:start])
        run.append((match.group(2), match.group(3)))
        indent, run_end = match.group(1), match.end()
        copied = run_end
    if not run:
        return None, {}
    close()
    pieces.append(source[copied:])
    return "".join(pieces), runs


def _in_class_bodies(tree: ast.Module, runs: dict) -> bool:
    """Whether every run's ``pass`` is a statement of a top-level class's body (where the index reads it)."""
    places = {item.lineno for stmt in tree.body if isinstance(stmt, ast.ClassDef)
              for item in stmt.body if isinstance(item, ast.Pass)}
    return places.issuperset(runs)


def _file_version(archive: Archive) -> int | None:
    """The version torch compiles ``code/`` for: ``.data/version``, else ``version`` (its leading digits)."""
    record = archive.by_name.get(".data/version") or archive.by_name.get("version")
    try:  # a damaged record is already a problem of the summary's versions
        digits = re.match(rb"\s*(\d{1,9})", archive.read(record, SMALL_CAP)) if record else None
    except ArchiveError:
        return None
    return int(digits.group(1)) if digits else None


def _index_module(index: CodeIndex, file: str, tree: ast.Module, runs: dict, module: str | None = None) -> list[MethodInfo]:
    """Index one file's tree (the file's, or its outline's with ``runs``, see outline); its methods."""
    module = module_of(file) if module is None else module
    methods = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            info = ClassInfo(f"{module}.{stmt.name}", file, stmt.lineno,
                             bases=[_expr(b) for b in stmt.bases])
            for item in stmt.body:
                _class_member(info, item, file, runs)
            index.classes[info.qualname] = info
            methods += info.methods
        elif isinstance(stmt, ast.FunctionDef):
            index.functions.append(_method(None, stmt, file))
            methods.append(index.functions[-1])
    return methods


def _class_member(info: ClassInfo, item: ast.stmt, file: str, runs: dict) -> None:
    if isinstance(item, ast.Pass) and item.lineno in runs:  # statements the outline set aside
        for name, annotation in runs[item.lineno]:
            info.attributes[name] = annotation
    elif isinstance(item, ast.FunctionDef):
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
    return MethodInfo(owner, node.name, file, node.lineno, node.end_lineno or node.lineno, args, _node=node)


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
