"""The static gate: what torch would run while it loads the archive, judged before any torch child starts.

``torch.jit.load`` runs code of the archive at load time: every ``__setstate__`` of a restored object, the
default arguments of every method and function it compiles (the importer evaluates them by running a
generated function), the ``Final`` class constants (evaluated the same way), the native ``__setstate__``
of TorchBind objects in its pickles (``OpaqueObject``'s runs Python's ``pickle.loads``), and for lite
archives the ``__setstate__`` functions of ``bytecode.pkl``. Calls are resolved as the importer resolves
them (:mod:`tsinspect.safety.resolve`) and the load-time code is judged by everything it reaches,
transitively, allowlist first: attribute assignments and ops of torch's computing namespaces are benign
(a quantized ``Conv2d.__setstate__`` reaching ``ops.quantized.conv2d_prepack``); file I/O, raw memory,
the network, other namespaces, TorchBind methods and calls it cannot resolve are not. File, raw-memory
and network ops anywhere in the code are findings too. Torch-free: the IR extractor refuses to load
unless the result is safe.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import deque
from dataclasses import dataclass, field

from tsinspect.archive.code import ClassInfo, CodeIndex, MethodInfo, index_code, module_of
from tsinspect.archive.reader import Archive
from tsinspect.archive.records import CODE
from tsinspect.archive.text import counted
from tsinspect.collector import paused
from tsinspect.safety import ops
from tsinspect.safety.resolve import Builtin, ByName, CallSite, Code, Custom, Op, Resolver, Unknown, walk, within_depth

UNSAFE, BENIGN, INFO = "unsafe", "benign", "info"
LOAD_TIME = ("__setstate__",)
KNOWN_NAMESPACES = ops.TORCH_NAMESPACES  # ops.<ns> that ship with torch itself
# class-body assignments the importer reads as declarations, not as constants it evaluates
BENIGN_WALK = 64  # methods a benign load-time entry's walk visits to list the ops it calls
NAMED_CHAINS = 50  # unsafe load-time entries whose call chain is walked and named
_DECLARATIONS = frozenset({"__parameters__", "__buffers__", "__annotations__", "__forward_hooks__",
                           "__forward_pre_hooks__"})


@dataclass(frozen=True)
class Finding:
    """One thing the scan found: ``verdict`` is unsafe, benign or info; ``file``/``line`` point into the
    archive (a code/ file and line, or a pickle record, line 0)."""

    kind: str  # setstate, default_argument, class_constant, getstate, file_io, raw_memory, network, custom_class, ...
    verdict: str
    file: str
    line: int
    what: str  # "Writer.__setstate__", "aten::save", "__torch__.torch.classes.aten.OpaqueObject"
    detail: str
    via: tuple[str, ...] = ()  # call chain from the load-time code to here

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_json(self) -> dict:
        return {"kind": self.kind, "verdict": self.verdict, "file": self.file, "line": self.line,
                "what": self.what, "detail": self.detail, "via": list(self.via)}


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)

    @property
    def unsafe(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == UNSAFE]

    @property
    def benign(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == BENIGN]

    @property
    def safe_to_load(self) -> bool:
        return not self.unsafe

    def refusal(self, limit: int = 3) -> str:
        """One line naming what blocks a load (empty when nothing does)."""
        bad = self.unsafe
        if not bad:
            return ""
        parts = [f"{f.what} at {f.where} ({f.detail})" for f in bad[:limit]]
        more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
        return ("refusing to load the archive with torch: " + "; ".join(parts) + more
                + "; rerun with --trust to load it anyway")

    def benign_note(self) -> str:
        good = [f for f in self.benign if f.kind == "setstate"]
        if not good:
            return ""
        shown = ", ".join(f"{f.what} ({f.where})" for f in good[:3])
        more = f" and {len(good) - 3} more" if len(good) > 3 else ""
        runs = "runs" if len(good) == 1 else "run"
        return (f"{counted(len(good), '__setstate__ method')} {runs} at load time, only assigning attributes and "
                f"calling ops of torch's own namespaces (such as quantized weight repacking), no file or raw-memory "
                f"access: {shown}{more}")

    def to_json(self) -> dict:
        return {"safe_to_load": self.safe_to_load, "findings": [f.to_json() for f in self.findings]}


def scan_archive(archive: Archive, index: CodeIndex | None = None, pickles: bool = True) -> ScanResult:
    """scan_code, plus what only the archive shows: code the scan could not read or could read twice, the
    lite loader's ``bytecode.pkl`` and (``pickles``) the TorchBind objects torch's unpickler restores.

    Code that does not parse or is stored under a duplicated name is unsafe: torch might compile a
    version of it the scan never saw.
    """
    from tsinspect.safety import bytecode, torchbind

    index = index if index is not None else index_code(archive)
    with paused():  # a call site, target and environment per call, none in a cycle
        result = scan_code(index)
        seen: set[str] = set()
        # every code member, shadowed twins included: the IR child's copy holds only the one torch reads, but
        # an archive that hides code behind a duplicate name is not one to load
        for record in (r for r in archive.records if r.kind == CODE and r.inside and not r.hidden):
            if record.name in seen or record.shadowed_by is not None:
                result.findings.insert(0, Finding("ambiguous_code", UNSAFE, record.name, 0, record.display_name,
                                                  "the archive holds several members of this name; torch may "
                                                  "compile one the scan did not read"))
            elif record.name not in index.sources:  # indexed files, each with its tree
                result.findings.insert(0, Finding("unreadable_code", UNSAFE, record.name, 0, record.display_name,
                                                  "the scan could not parse it (see the archive's problems)"))
            seen.add(record.name)
        result.findings.extend(bytecode.judge_archive(archive))
        if pickles:
            result.findings.extend(torchbind.judge_archive(archive))
        result.findings.sort(key=lambda f: f.verdict != UNSAFE)
        return result


def scan_code(index: CodeIndex) -> ScanResult:
    try:
        return _scan_code(index)
    except RecursionError:  # expressions nested deeper than the judge's recursive resolution goes
        return ScanResult([Finding("unreadable_code", UNSAFE, "code/", 0, "code/",
                                   "expressions nested too deeply for the scan to resolve; unjudged, so unsafe")])


def _scan_code(index: CodeIndex) -> ScanResult:
    judge = _Judge(index)
    result = ScanResult()
    for info in index.classes.values():
        short = _short_class(info.qualname)
        for method in info.methods:
            if method.name == "__getstate__":
                result.findings.append(Finding(
                    "getstate", INFO, method.file, method.line, f"{short}.__getstate__",
                    "runs when the module is saved, not when it is loaded"))
            elif method.name in LOAD_TIME:
                result.findings.append(judge.load_time("setstate", method.file, method.line,
                                                       f"{short}.__setstate__", judge.sites_of(method),
                                                       start=method))
    result.findings.extend(judge.defaults_and_constants())
    for finding in judge.anywhere():
        if (finding.file, finding.line) not in judge.covered:
            result.findings.append(finding)
    indexed = {(m.file, m.line) for m in index.methods if m.name in LOAD_TIME}
    for file, defs in judge.functions().items():
        for node in defs:
            if node.name in LOAD_TIME and (file, node.lineno) not in indexed:
                result.findings.append(Finding("setstate", UNSAFE, file, node.lineno, node.name,
                                               "a __setstate__ outside a top-level class, which the scan cannot judge"))
    result.findings.sort(key=lambda f: (f.verdict != UNSAFE, f.file, f.line))
    return result


class _Judge:
    def __init__(self, index: CodeIndex):
        self.index = index
        self.resolver = Resolver(index)
        self.covered: set[tuple[str, int]] = set()  # hazards already named by a load-time finding
        self._sites: dict[int, list[CallSite]] = {}
        self._tainted: set[str] | None = None
        self._tainted_names: set[str] = set()
        self._named = 0
        self._functions: dict[str, list[ast.FunctionDef]] | None = None
        self._room = _stack_room()
        self._trees: dict[str, ast.Module] | None = None

    def trees(self) -> dict[str, ast.Module]:
        """The tree of every file the scan must read: all but the quiet ones (see ``quiet``), in index order."""
        if self._trees is None:
            self._trees = {file: self.index.tree(file) for file in self.index.sources
                           if not quiet(self.index, file, self._room)}
        return self._trees

    def owners(self, files) -> dict[int, ClassInfo]:
        """id(method node) -> its class, for the methods of ``files`` (their trees parsed)."""
        return {id(m.node): self.index.classes[m.owner] for file in files for m in self.index.methods_of(file)
                if m.owner}

    def functions(self) -> dict[str, list[ast.FunctionDef]]:
        """Every ``def`` of each file, nested ones too, in ``ast.walk`` order (the defaults are judged in that
        order, and the first NAMED_CHAINS unsafe ones named)."""
        if self._functions is None:
            self._functions = {file: [n for n in _statements(tree) if isinstance(n, ast.FunctionDef)]
                               for file, tree in self.trees().items()}
        return self._functions

    def sites_of(self, method: MethodInfo) -> list[CallSite]:
        key = id(method.node)
        if key not in self._sites:
            owner = self.index.classes.get(method.owner) if method.owner else None
            self._sites[key] = self.resolver.calls(method.node, owner)
        return self._sites[key]

    # -- file, raw-memory and network ops anywhere in code/ ------------------------------------------------
    def anywhere(self) -> list[Finding]:
        found = []
        trees = self.trees()
        owners = self.owners(trees)
        for file, tree in trees.items():
            source = self.index.sources.get(file)
            lines = source.split("\n") if source is not None and "\r" not in source and self._room else None
            for root in _roots(tree):
                if lines is not None and type(root) is ast.FunctionDef and not _may_name_a_hazard(_text(lines, root)) \
                        and within_depth(root, SKIPPED_DEPTH):
                    continue  # the 10,000-line forward of a Sequential: resolving its calls cannot find anything
                owner = owners.get(id(root))
                for site in self.resolver.calls(root, owner, implicit=False):
                    hazard = _site_hazard(site)
                    if hazard:
                        found.append(Finding(hazard[0], UNSAFE, file, site.line, hazard[2], hazard[1]))
        return _unique(found)

    # -- default arguments and class constants: evaluated when the importer compiles the class --------------
    def defaults_and_constants(self) -> list[Finding]:
        out = []
        trees = self.trees()
        owners = {key: _short_class(info.qualname) + "." for key, info in self.owners(trees).items()}
        for file, defs in self.functions().items():
            for node in defs:  # nested defs (closures) too: compiled with their function
                args = node.args
                positional = args.args[len(args.args) - len(args.defaults):]
                pairs = list(zip(positional, args.defaults)) + [
                    (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                for arg, default in pairs:
                    sites = self.resolver.calls(default, None, env={})
                    if sites:
                        out.append(self.load_time(
                            "default_argument", file, default.lineno,
                            f"{owners.get(id(node), '')}{node.name}({arg.arg}=...)", sites,
                            "the default value is evaluated when torch compiles the method"))
        for file, tree in trees.items():
            for cls in (s for s in tree.body if isinstance(s, ast.ClassDef)):
                for item in cls.body:
                    target = item.target if isinstance(item, ast.AnnAssign) else (
                        item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else None)
                    if _item_value(item) is None or not isinstance(target, ast.Name) or target.id in _DECLARATIONS:
                        continue
                    sites = self.resolver.calls(_item_value(item), None, env={})
                    if sites:
                        out.append(self.load_time("class_constant", file, item.lineno, f"{cls.name}.{target.id}",
                                                  sites, "the value is evaluated when torch compiles the class"))
        return out

    # -- what load-time code reaches ------------------------------------------------------------------------
    def load_time(self, kind: str, file: str, line: int, what: str, sites: list[CallSite],
                  why: str = "", start: MethodInfo | None = None) -> Finding:
        """Judge load-time code by what it reaches. Whether it reaches anything bad comes from the
        archive-wide taint (computed once, linear); the walk then only names the chain (following tainted
        methods) or, when benign, the ops it calls (within BENIGN_WALK methods)."""
        tainted = self._taint()
        unsafe = any(self._bad(t, s.text) or self._leads_to(t, tainted) for s in sites for t in s.targets)
        if unsafe:
            self._named += 1
            if self._named > NAMED_CHAINS:  # the verdict stands; naming more chains would cost a walk each
                return Finding(kind, UNSAFE, file, line, what, "runs at load time and reaches code the scan "
                               f"judges unsafe (the chain is named for the first {NAMED_CHAINS} only)", (what,))
        queue = deque([(file, sites, (what,))])
        visited = {start.qualname} if start is not None else set()
        expanded: set[str] = set()  # method names already followed to every method of that name
        benign_ops: list[str] = []
        while queue:
            current_file, current_sites, chain = queue.popleft()
            for site in current_sites:
                for target in site.targets:
                    verdict = self._judge_target(target, site.text)
                    if verdict is None:  # code/ to follow
                        if isinstance(target, ByName):
                            if target.name in expanded:
                                continue
                            expanded.add(target.name)
                        for method in self._methods(target):
                            if not unsafe and len(visited) >= BENIGN_WALK:
                                break
                            if method.qualname in visited or (unsafe and method.qualname not in tainted):
                                continue
                            visited.add(method.qualname)
                            queue.append((method.file, self.sites_of(method), chain + (_short_method(method),)))
                        continue
                    name, bad_kind, why_bad = verdict
                    if bad_kind == ops.OK:
                        if name not in benign_ops:
                            benign_ops.append(name)
                        continue
                    self.covered.add((current_file, site.line))
                    return Finding(kind, UNSAFE, file, line, what,
                                   f"runs at load time and reaches {name} at {current_file}:{site.line}, {why_bad}"
                                   + (f", via {' -> '.join(chain)}" if len(chain) > 1 else ""), chain)
        if unsafe:  # the taint says it reaches something bad the walk could not name (same-named functions)
            return Finding(kind, UNSAFE, file, line, what, "runs at load time and reaches a call the scan judges "
                           "unsafe through methods or functions of the same name", (what,))
        shown = [o for o in benign_ops if o.startswith("ops.") and not o.startswith(("ops.aten.", "ops.prim."))]
        detail = ((why + "; " if why else "") + "runs at load time; only assigns attributes" +
                  (f" and calls {', '.join(shown[:4])}" if shown else "") + "; no file or raw-memory access")
        return Finding(kind, BENIGN, file, line, what, detail, tuple(sorted(visited)))

    def _methods(self, target) -> tuple:
        return tuple(self.resolver.by_name.get(target.name, ())) if isinstance(target, ByName) else (target.method,)

    def _bad(self, target, spelled: str) -> bool:
        verdict = self._judge_target(target, spelled)
        return verdict is not None and verdict[1] != ops.OK

    def _leads_to(self, target, tainted: set[str]) -> bool:
        if isinstance(target, ByName):
            return target.name in self._tainted_names
        return isinstance(target, Code) and target.method.qualname in tainted

    def _taint(self) -> set[str]:
        """Qualnames of the code/ methods and functions from which something bad is reachable: methods with a
        bad call of their own, then backwards over calls (``ByName`` edges go through one node per name)."""
        if self._tainted is not None:
            return self._tainted
        callers: dict[tuple[str, str], set[tuple[str, str]]] = {}  # callee node -> caller nodes
        work = []
        for method in self.index.methods:
            node = ("m", method.qualname)
            for site in self.sites_of(method):
                for target in site.targets:
                    if isinstance(target, ByName):
                        callers.setdefault(("n", target.name), set()).add(node)
                    elif isinstance(target, Code):
                        callers.setdefault(("m", target.method.qualname), set()).add(node)
                    elif self._bad(target, site.text):
                        work.append(node)
        seen = set(work)
        while work:
            node = work.pop()
            parents = set(callers.get(node, ()))
            if node[0] == "m":  # whoever calls any method of this name may reach it
                name = node[1].rsplit(".", 1)[-1]
                parents |= callers.get(("n", name), set())
            for parent in parents - seen:
                seen.add(parent)
                work.append(parent)
        self._tainted = {qualname for kind, qualname in seen if kind == "m"}
        self._tainted_names = {qualname.rsplit(".", 1)[-1] for qualname in self._tainted}
        return self._tainted

    @staticmethod
    def _judge_target(target, spelled: str) -> tuple[str, str, str] | None:
        """(shown name, ops verdict kind, why) or None for code to follow."""
        if isinstance(target, (Code, ByName)):
            return None
        if isinstance(target, Op):
            kind, why = ops.judge_load_time_op(target.name)
            shown = _op_shown(target.name)
            return (shown if shown == spelled else f"{spelled} (the op {target.name})"), kind, why
        if isinstance(target, Custom):
            kind, why = ops.judge_custom_method(target.qualname, target.method)
            return f"{target.qualname}.{target.method}", kind, why
        if isinstance(target, Builtin):
            return target.name, ops.OK, ""
        assert isinstance(target, Unknown)
        return target.text, ops.UNKNOWN, "a call the scan cannot resolve"


def quiet(index: CodeIndex, file: str, room: bool = True) -> bool:
    """Whether the scan finds nothing in ``file`` whatever the rest of the archive holds, told from its shape
    (tsinspect.archive.shapes: the file's text but for the mangled numbers, which parses to the same tree but
    for the names and strings holding them): no ``__setstate__`` and no default argument anywhere, no call in
    a class body or at module level, every method nested no deeper than the hazard search skips
    (SKIPPED_DEPTH), and a text that cannot name a hazard (what ``anywhere`` asks of each method's lines,
    asked of the whole shape). The scan reads no tree of such a file; every other file, and the first
    of each shape, is read on its own. ``room``: ``_stack_room()``."""
    shape = index.shape(file)
    if shape is None or not room:
        return False
    known = shape.facts.get("scan")
    if known is None:
        known = shape.facts["scan"] = not _may_name_a_hazard(shape.text) and _quiet_tree(shape)
    return known


def _quiet_tree(shape) -> bool:
    try:
        tree = shape.tree
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a parser limit the outline did not hit: read alone
        return False
    for root in _roots(tree):
        if type(root) is ast.FunctionDef:
            if not within_depth(root, SKIPPED_DEPTH):
                return False
        elif any(type(node) is ast.Call for node in walk(root)):
            return False
    return not any(isinstance(node, ast.FunctionDef) and (node.name in LOAD_TIME or node.args.defaults or any(
        d is not None for d in node.args.kw_defaults)) for node in _statements(tree))


def names_no_ops(index: CodeIndex, file: str) -> bool:
    """Whether the file's shape names no ``ops`` (then the file calls no op of any namespace by its name): the
    names of a file and its shape differ only in names holding ``___torch_mangle_``, never ``ops``."""
    shape = index.shape(file)
    if shape is None:
        return False
    known = shape.facts.get("ops")
    if known is None:
        try:
            known = not any(type(node) is ast.Name and node.id == "ops" for node in walk(shape.tree))
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # as in _quiet_tree
            known = False
        shape.facts["ops"] = known
    return known


def _item_value(item: ast.stmt) -> ast.expr | None:
    return item.value if isinstance(item, (ast.Assign, ast.AnnAssign)) else None


def _roots(tree: ast.Module):
    """Every top-level function, method and class-body statement (nested defs are walked inside them)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            yield from stmt.body
        else:
            yield stmt


def _statements(tree: ast.Module) -> list[ast.AST]:
    """The statements of a tree (and its except and case clauses) in ``ast.walk``'s breadth-first order,
    without the expressions: a statement is only ever the child of a statement or a clause, in one of the
    fields of _BLOCK_FIELDS, so the nodes skipped never sit between two of them and every level keeps its
    order."""
    out: list[ast.AST] = [tree]
    fields_of = _STATEMENT_FIELDS
    for node in out:  # grows while it is read
        kind = type(node)
        fields = fields_of.get(kind)
        if fields is None:
            fields = fields_of[kind] = tuple(f for f in kind._fields if f in _BLOCK_FIELDS)
        for name in fields:
            value = getattr(node, name, None)
            for item in (value if isinstance(value, list) else (value,)):
                if isinstance(item, _BLOCK_NODES):
                    out.append(item)
    return out


_BLOCK_NODES = (ast.stmt, ast.excepthandler, ast.match_case)
# the fields that hold statements, clauses or cases (checked against the grammar by tests/test_ir_codescan.py)
_BLOCK_FIELDS = frozenset({"body", "orelse", "finalbody", "handlers", "cases"})
_STATEMENT_FIELDS: dict[type, tuple[str, ...]] = {}


# An op the judge calls a hazard (ops.op_hazard) has the name of one in FILE_OPS, MEMORY_OPS or NETWORK_OPS, or a
# network namespace. The resolver takes every name of an op and its namespace from the code of the function it
# resolves (an attribute, or the string of a getattr), or is aten's. So a function whose text holds none of
# those names cannot call a hazard however its names resolve, provided the text spells every name as it is:
# ASCII (the parser folds other letters to ASCII ones: NFKC), no backslash (escapes in strings), no strings
# side by side (the parser joins "sa" "ve").
_HAZARD_NAMES = tuple(sorted({ops.split_op(op)[1] for op in ops.FILE_OPS | ops.MEMORY_OPS | ops.NETWORK_OPS}
                             | ops.NETWORK_NAMESPACES))
_ADJACENT_STRINGS = re.compile(r"""["'](?:\s|#[^\n]*)*[rRuUbBfF]{0,2}["']""")
# A file names a hazard (as _may_name_a_hazard reads it) only if its shape does (quiet): the two differ only
# in digits after "___torch_mangle_", which are ASCII, no backslash or quote, and in no hazard's name (their
# names hold no digit but after a "c": c10d), and in the placeholders standing for them
assert all(re.fullmatch(r"(?:[A-Za-z_]|(?<=c)[0-9]+)+", name) for name in _HAZARD_NAMES)


# ... and its resolution could not have failed either: at most SKIPPED_DEPTH levels of nodes (resolving them
# takes at most ~3.2 frames a level: measured on chains of attributes, calls, operators and subscripts), with
# room for STACK_ROOM more frames (resolving code nested deeper than the stack allows makes it unsafe: scan_code)
SKIPPED_DEPTH, STACK_ROOM = 50, 500


def _stack_room() -> bool:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return sys.getrecursionlimit() - depth >= STACK_ROOM


def _may_name_a_hazard(text: str) -> bool:
    return (not text.isascii() or "\\" in text or _ADJACENT_STRINGS.search(text) is not None
            or any(name in text for name in _HAZARD_NAMES))


def _text(lines: list[str], function: ast.FunctionDef) -> str:
    """The lines of a function, its decorators included: every node its walk visits is on them."""
    first = min([function.lineno, *(d.lineno for d in function.decorator_list)])
    return "\n".join(lines[first - 1:function.end_lineno])


def _site_hazard(site: CallSite) -> tuple[str, str, str] | None:
    for target in site.targets:
        if isinstance(target, Op):
            hazard = ops.op_hazard(target.name)
            if hazard:
                return hazard[0], f"{hazard[1]} (the op {target.name})", site.text
    return None


def _op_shown(name: str) -> str:
    """aten::save -> torch.save, quantized::x -> ops.quantized.x: how code/ spells the op."""
    namespace, _, op = name.partition("::")
    return f"torch.{op}" if namespace == "aten" else f"ops.{namespace}.{op}"


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if (f.file, f.line, f.what) not in seen:
            seen.add((f.file, f.line, f.what))
            out.append(f)
    return out


def _short_class(qualname: str) -> str:
    return qualname.rsplit(".", 1)[-1]


def _short_method(method: MethodInfo) -> str:
    owner = method.owner.rsplit(".", 1)[-1] if method.owner else module_of(method.file)
    return f"{owner}.{method.name}"
