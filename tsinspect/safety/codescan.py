"""Static safety scan of ``code/``: what would run while torch loads the archive, and what touches files.

``torch.jit.load`` runs every TorchScript ``__setstate__`` of the archive. This module reads the
generated code with ``ast`` only and judges each ``__setstate__`` by what it reaches transitively
(``self.method`` calls, methods of typed attributes, free functions of ``code/``): assigning attributes
and calling ops of known namespaces (``ops.quantized.conv2d_prepack``) is benign; file I/O
(``torch.save``/``torch.load``/``from_file``/``open``), raw-memory ops (``as_strided``, ``set_``),
ops of unknown namespaces and calls it cannot resolve are not. File and raw-memory calls anywhere in
``code/`` are findings too. Torch-free: the IR extractor refuses to load unless the result is safe.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field

from tsinspect.archive.code import CodeIndex, MethodInfo, index_code, module_of
from tsinspect.archive.reader import Archive
from tsinspect.archive.records import CODE

UNSAFE, BENIGN, INFO = "unsafe", "benign", "info"

FILE_OPS = frozenset({"save", "load", "from_file", "open", "_load_for_lite_interpreter", "_save_parameters",
                      "_load_parameters", "_jit_pass_onnx"})
RAW_MEMORY_OPS = frozenset({"as_strided", "as_strided_", "as_strided_copy", "as_strided_scatter", "set_",
                            "_set_storage", "data_ptr", "from_blob", "_unsafe_set_version_counter"})
# ops.<namespace> that ship with torch itself.
KNOWN_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized", "quantized_decomposed", "_caffe2",
                              "xnnpack", "prepacked", "mkldnn", "mkldnn_prepacked", "sparse", "fbgemm",
                              "_nested", "profiler", "cuda", "_c10d_functional", "c10d_functional",
                              "_dtensor", "rngprims", "higher_order", "inductor", "_inductor_test"})
# Custom classes (``__torch__.torch.classes.<ns>.<Class>``) that ship with torch.
KNOWN_CLASS_NAMESPACES = frozenset({"quantized", "xnnpack", "mkldnn", "sparse", "_TorchScriptTesting",
                                    "dist_c10d", "cuda", "profiling", "c10d", "dist_rpc"})
SAFE_BUILTINS = frozenset({
    "int", "float", "bool", "str", "len", "annotate", "uninitialized", "unchecked_cast", "isinstance",
    "range", "enumerate", "zip", "list", "tuple", "dict", "min", "max", "abs", "print", "getattr", "hasattr",
    "round", "divmod", "ord", "chr", "hash", "sorted", "any", "all", "sum", "hex", "oct", "bin", "complex",
    "fork", "wait", "id", "reversed", "isfinite", "_unwrap_optional", "rpc_async", "interface"})
LOAD_TIME = ("__setstate__",)


@dataclass(frozen=True)
class Finding:
    """One thing the scan found: ``verdict`` is unsafe, benign or info; ``file``/``line`` point into code/."""

    kind: str  # setstate, getstate, file_io, raw_memory, ambiguous_code, unreadable_code
    verdict: str
    file: str
    line: int
    what: str  # "Writer.__setstate__", "torch.save", "ops.torchvision.nms"
    detail: str
    via: tuple[str, ...] = ()  # call chain from a __setstate__ to here

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

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
        return (f"{len(good)} __setstate__ method(s) run at load time but only assign attributes and call "
                f"ops of torch's own namespaces (such as quantized weight repacking), no file or raw-memory "
                f"access: {shown}{more}")

    def to_json(self) -> dict:
        return {"safe_to_load": self.safe_to_load, "findings": [f.to_json() for f in self.findings]}


def scan_archive(archive: Archive, index: CodeIndex | None = None) -> ScanResult:
    """scan_code, plus what only the archive shows: code the scan could not read, or could read twice.

    Code that does not parse or is stored under a duplicated name is unsafe: torch might compile a
    version of it the scan never saw.
    """
    index = index if index is not None else index_code(archive)
    result = scan_code(index)
    seen: set[str] = set()
    for record in archive.records_of(CODE):
        if record.name in seen:
            result.findings.insert(0, Finding("ambiguous_code", UNSAFE, record.name, 0, record.display_name,
                                              "the archive holds several members of this name; torch may "
                                              "compile one the scan did not read"))
        elif record.name not in index.trees:
            result.findings.insert(0, Finding("unreadable_code", UNSAFE, record.name, 0, record.display_name,
                                              "the scan could not parse it (see the archive's problems)"))
        seen.add(record.name)
    return result


def scan_code(index: CodeIndex) -> ScanResult:
    scanner = _Scanner(index)
    result = ScanResult()
    for info in index.classes.values():
        short = info.qualname.rsplit(".", 1)[-1]
        for method in info.methods:
            if method.name == "__getstate__":
                result.findings.append(Finding(
                    "getstate", INFO, method.file, method.line, f"{short}.__getstate__",
                    "runs when the module is saved, not when it is loaded"))
            elif method.name in LOAD_TIME:
                result.findings.append(scanner.judge_setstate(short, method))
    for finding in scanner.anywhere():
        if (finding.file, finding.line) not in scanner.covered:
            result.findings.append(finding)
    indexed = {(m.file, m.line) for m in index.methods if m.name in LOAD_TIME}
    for file, tree in index.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in LOAD_TIME and (file, node.lineno) not in indexed:
                result.findings.append(Finding("setstate", UNSAFE, file, node.lineno, node.name,
                                               "a __setstate__ outside a top-level class, which the scan cannot judge"))
    result.findings.sort(key=lambda f: (f.verdict != UNSAFE, f.file, f.line))
    return result


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _strip_optional(annotation: str) -> str:
    while annotation.startswith("Optional[") and annotation.endswith("]"):
        annotation = annotation[len("Optional["):-1]
    return annotation


class _Scanner:
    def __init__(self, index: CodeIndex):
        self.index = index
        self.functions = {f"{module_of(f.file)}.{f.name}": f for f in index.functions}
        self.covered: set[tuple[str, int]] = set()  # hazards already named by a __setstate__ finding

    # -- calls anywhere in code/ ---------------------------------------------------------------------
    def anywhere(self) -> list[Finding]:
        found = []
        for file, tree in self.index.trees.items():
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = _dotted(node.func)
                    hazard = self._hazard(name) if name else None
                    if hazard:
                        found.append(Finding(hazard[0], UNSAFE, file, node.lineno, name, hazard[1]))
        return found

    @staticmethod
    def _hazard(name: str) -> tuple[str, str] | None:
        parts = name.split(".")
        if name == "open":
            return "file_io", "opens a file"
        if parts[0] == "torch" and len(parts) == 2 or parts[0] == "ops" and len(parts) == 3:
            op = parts[-1]
            if op in FILE_OPS:
                return "file_io", "reads or writes files"
            if op in RAW_MEMORY_OPS:
                return "raw_memory", "reinterprets raw tensor memory"
        return None

    # -- what a __setstate__ reaches ------------------------------------------------------------------
    def judge_setstate(self, short: str, method: MethodInfo) -> Finding:
        what = f"{short}.__setstate__"
        queue = deque([(method, (what,))])
        visited = {method.qualname}
        benign_ops: list[str] = []
        while queue:
            current, chain = queue.popleft()
            for call in self._calls(current):
                kind, target, detail = call[0], call[1], call[2]
                if kind == "follow":
                    if target.qualname not in visited:
                        visited.add(target.qualname)
                        queue.append((target, chain + (_short(target),)))
                elif kind == "ok":
                    if target not in benign_ops:
                        benign_ops.append(target)
                else:
                    self.covered.add((current.file, call[3]))
                    return Finding("setstate", UNSAFE, method.file, method.line, what,
                                   f"runs at load time and reaches {target} at {current.file}:{call[3]}, "
                                   f"{detail}" + (f", via {' -> '.join(chain)}" if len(chain) > 1 else ""),
                                   chain)
        ops = [o for o in benign_ops if o.startswith("ops.")]
        detail = ("runs at load time; only assigns attributes" +
                  (f" and calls {', '.join(ops[:4])}" if ops else "") + "; no file or raw-memory access")
        return Finding("setstate", BENIGN, method.file, method.line, what, detail,
                       tuple(sorted(visited)))

    def _calls(self, method: MethodInfo):
        """(kind, target, detail, line) for every call in a method: follow, ok, or a hazard kind."""
        owner = self.index.classes.get(method.owner) if method.owner else None
        aliases: dict[str, str] = {}
        for node in ast.walk(method.node):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _dotted(node.value)
                if value and (value.startswith("self.") or value.startswith("__torch__.")):
                    aliases[node.targets[0].id] = value
        for node in ast.walk(method.node):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name is None:
                yield ("unresolved_call", ast.unparse(node.func)[:60], "a call the scan cannot resolve",
                       node.lineno)
                continue
            head, _, rest = name.partition(".")
            if head in aliases:
                name = aliases[head] + ("." + rest if rest else "")
            yield self._classify(name, owner, node.lineno)

    def _classify(self, name: str, owner, line: int):
        hazard = self._hazard(name)
        if hazard:
            return (hazard[0], name, hazard[1], line)
        parts = name.split(".")
        if parts[0] == "torch":
            return ("ok", name, "", line)
        if parts[0] == "ops" and len(parts) == 3:
            if parts[1] in KNOWN_NAMESPACES:
                return ("ok", name, "", line)
            return ("unknown_op", name, f"an op of the unknown namespace '{parts[1]}'", line)
        if len(parts) == 1 and name in SAFE_BUILTINS:
            return ("ok", name, "", line)
        if parts[0] == "self" and owner is not None:
            target = self._method_via_self(owner, parts[1:])
            if target is not None:
                return target[:3] + (line,) if isinstance(target, tuple) else ("follow", target, "", line)
        if parts[0] == "__torch__":
            target = self._global(name)
            if target is not None:
                return target[:3] + (line,) if isinstance(target, tuple) else ("follow", target, "", line)
        return ("unresolved_call", name, "a call the scan cannot resolve", line)

    def _method_via_self(self, owner, path: list[str]):
        """Resolve self.a.b.method through the class annotations of each attribute."""
        info = owner
        for attr in path[:-1]:
            annotation = _strip_optional(info.attributes.get(attr, ""))
            custom = _custom_class(annotation, path[-1])
            if custom is not None:
                return custom
            info = self.index.classes.get(annotation)
            if info is None:
                return None
        return info.method(path[-1]) if path else None

    def _global(self, name: str):
        custom = _custom_class(name.rsplit(".", 1)[0], name.rsplit(".", 1)[-1])
        if custom is not None:
            return custom
        if name in self.functions:
            return self.functions[name]
        cls = self.index.classes.get(name)  # a constructor
        if cls is not None:
            return cls.method("__init__") or ("ok", name, "", 0)
        owner, _, meth = name.rpartition(".")
        cls = self.index.classes.get(owner)
        return cls.method(meth) if cls else None


def _custom_class(qualname: str, member: str):
    prefix = "__torch__.torch.classes."
    if not qualname.startswith(prefix):
        return None
    namespace = qualname[len(prefix):].split(".", 1)[0]
    if namespace in KNOWN_CLASS_NAMESPACES:
        return ("ok", f"{qualname}.{member}", "", 0)
    return ("unknown_op", f"{qualname}.{member}", f"a method of the unknown custom class namespace '{namespace}'", 0)


def _short(method: MethodInfo) -> str:
    owner = method.owner.rsplit(".", 1)[-1] if method.owner else module_of(method.file)
    return f"{owner}.{method.name}"
