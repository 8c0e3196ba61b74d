"""The IR extraction child: ``python -m tsinspect.ir.extract --archive COPY [--full] ...``.

The only tsinspect module that imports torch. It is started by tsinspect.ir.run in a fresh empty
working directory; before anything else it lowers its resource limits and confines itself
(tsinspect.safety.sandbox: no exec, no network, no file writes, reads limited), then loads the archive,
reads every method graph of every module (from torch's printer with ``--positions``:
tsinspect.ir.printed; else, and where that reader gives up, walked node by node), and writes one
``tsinspect.ir/2`` JSON document (docs/ir.md) to its original stdout. Anything the archive's code prints
goes to stderr. A load failure is reported inside the JSON, never as a traceback.

``--archive`` is always a copy tsinspect rebuilt from its own reading of the archive
(tsinspect.ir.metacopy), never the user's file. Meta copy: its tensor storages are empty; with
``--rewritten`` its parameters and buffers already say device meta and small constants are real; without,
it is loaded with ``map_location="meta"``. ``--full``: a full copy, storages included, loaded normally (the
parent runs that when meta loading fails for another reason than a missing op/class: quantized tensors
have no meta kernels).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import sys
import time
import warnings

from tsinspect.ir import SCHEMA
from tsinspect.ir.printed import GraphReader
from tsinspect.ir.sourcerange import parse_source
from tsinspect.safety.sandbox import Confinement, confine, set_limits

SMALL_TENSOR = 16  # tensor constants up to this many elements carry their values

_MISSING_OP = re.compile(r"Unknown builtin op: ([\w.:]+?)\.?\s*$", re.M)
_MISSING_TYPE = re.compile(r"Unknown type name '([^']+)'")
_MISSING_CUSTOM_CLASS = re.compile(r"Unknown custom class type ([\w.]+)")
_ARGUMENT_TYPE = re.compile(r"^\s*([\w:.]+)\(.*\n\s*Expected a value of type '([^' ]+)[^']*' for argument '(\w+)' "
                            r"but instead found type '([^']+)'", re.M)
_VERSION = re.compile(r"version (\d+), but the (maximum|minimum) supported version for reading is (\d+)")
_CODE_AT = re.compile(r'File "(code/[^"]+)", line (\d+)')


def classify_error(exc: BaseException) -> dict:
    """A load exception as the ``error`` object of the JSON: kind, message, missing, hint."""
    text = str(exc)
    where = _CODE_AT.search(text)
    at = f" (used at {where.group(1)}:{where.group(2)})" if where else ""
    match = _MISSING_OP.search(text)
    if match:
        op = match.group(1)
        return {"kind": "missing_op", "missing": op,
                "message": f"torch has no operator {op}{at}",
                "hint": f"load the library that defines {op.split('::')[0]}::* ops into the extractor with "
                        f"--library PATH.so (for example the _C.so of a matching torchvision/torchaudio "
                        f"install, or your extension's .so)"}
    match = _MISSING_TYPE.search(text) or _MISSING_CUSTOM_CLASS.search(text)
    if match:
        name = match.group(1)
        if match.re is _MISSING_CUSTOM_CLASS:
            name = f"__torch__.torch.classes.{name}"
        if "torch.classes." in name:
            namespace = name.split("torch.classes.", 1)[1].split(".")[0]
            return {"kind": "missing_class", "missing": name,
                    "message": f"torch has no custom class {name}{at}",
                    "hint": f"load the library that registers torch.classes.{namespace} with --library PATH.so, "
                            f"or use a torch build that includes it (xnnpack classes need XNNPACK)"}
        return {"kind": "missing_class", "missing": name, "message": f"torch cannot resolve the type {name}{at}",
                "hint": "the archive may come from a different torch version"}
    match = _VERSION.search(text)
    if match:
        newer = match.group(2) == "maximum"
        return {"kind": "unsupported_version", "missing": None,
                "message": f"archive format version {match.group(1)} is {'newer' if newer else 'older'} than "
                           f"this torch reads (at {'most' if newer else 'least'} {match.group(3)})",
                "hint": f"use {'a newer' if newer else 'an older'} torch in tsinspect's environment"}
    if isinstance(exc, MemoryError) or any(s in text for s in ("bad_alloc", "allocate memory", "map segment")):
        return {"kind": "out_of_memory", "missing": None,
                "message": "torch ran out of memory loading the archive (the extractor's memory limit)",
                "hint": "raise the limit with --memory-limit"}
    match = _ARGUMENT_TYPE.search(text)
    if match:  # a class named in the schema text is no missing class: the archive's call does not fit
        op, wanted, arg, found = match.groups()
        return {"kind": "load_failed", "missing": None,
                "message": f"{type(exc).__name__}: the archive calls {op} with {found} for argument '{arg}', "
                           f"which this torch declares as {wanted}{at}",
                "hint": "the archive was written by a torch whose operator signatures differ from this one's; "
                        "load it with a torch of its time"}
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    first = first.split(". ", 1)[0]  # torch appends paragraphs of generic advice
    return {"kind": "load_failed", "missing": None, "message": f"{type(exc).__name__}: {first[:300]}{at}",
            "hint": None}


def _jsonable(value, depth: int = 0):
    import torch

    if isinstance(value, (bool, int, float, str)) or value is None:
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return repr(value)
        return value
    if isinstance(value, torch.Tensor):
        desc = {"dtype": str(value.dtype).replace("torch.", ""), "shape": list(value.shape),
                "device": str(value.device)}
        if value.device.type != "meta" and value.numel() <= SMALL_TENSOR and not value.is_quantized:
            try:
                desc["value"] = _jsonable(value.detach().cpu().tolist(), depth + 1)
            except Exception:  # noqa: BLE001 - best effort: sparse/opaque tensors keep no value
                pass
        return {"tensor": desc}
    if isinstance(value, (list, tuple)) and depth < 4:
        return [_jsonable(v, depth + 1) for v in value[:64]]
    if isinstance(value, dict) and depth < 4:
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())[:64]}
    return repr(value)[:200]


def _attributes(node) -> dict:
    out = {}
    for name in node.attributeNames():
        kind = node.kindOf(name)
        try:
            if kind == "g":
                value = "<graph>"
            elif kind == "gs":
                value = "<graphs>"
            elif kind == "ty":
                value = str(node.ty(name))
            elif kind == "tys":
                value = [str(t) for t in node.tys(name)]
            else:
                value = _jsonable(getattr(node, kind)(name))
        except Exception as exc:  # noqa: BLE001 - an unreadable attribute must not stop the walk
            value = f"<{kind}: {type(exc).__name__}>"
        out[name] = value
    return out


# Most frequent node kinds that never own blocks: blocks() (a pybind iterator, about 10 us a call) is asked
# only of the other prim:: and onnx:: kinds, so a kind missing here costs time, never nodes.
NO_BLOCKS = frozenset({
    "prim::Constant", "prim::GetAttr", "prim::SetAttr", "prim::ListConstruct", "prim::ListUnpack",
    "prim::TupleConstruct", "prim::TupleUnpack", "prim::TupleIndex", "prim::DictConstruct", "prim::CallMethod",
    "prim::CallFunction", "prim::RaiseException", "prim::unchecked_cast", "prim::Uninitialized", "prim::device",
    "prim::dtype", "prim::type", "prim::is_nested", "prim::requires_grad", "prim::NumToTensor", "prim::Print",
    "prim::isinstance", "prim::layout", "prim::min", "prim::max", "prim::data", "prim::Enter", "prim::Exit",
    "prim::CreateObject", "prim::unchecked_unwrap_optional", "prim::TupleSlice", "prim::ListIndex",
    "prim::StringIndex", "prim::grad", "prim::is_cuda", "prim::name", "prim::rpc_async", "prim::AutogradZero",
})


class Tables:
    """The document-wide tables of the compact transport (docs/ir.md): repeated strings (kinds, types,
    scopes, schemas) and distinct source locations are written once and referred to by index.

    ``positions``: the copy was loaded without debug records, so a node's place is its ``code/`` position
    (file, line, column); the table then holds those positions, which the parent maps to the original source
    as torch maps them (tsinspect.ir.origins: the debug records are read there, not in this process).
    ``reader`` (tsinspect.ir.printed.GraphReader) reads graphs from torch's printer instead of walking them."""

    def __init__(self, positions: bool = False) -> None:
        self.strings: dict[str, int] = {}
        self.sources: list = []  # parse_source dicts, or [file, line, column] with ``positions``
        self._source_of: dict = {}  # Node.sourceRange() text or code/ position -> index in sources
        self.positions = positions
        self.reader = None

    def string(self, text: str) -> int:
        index = self.strings.get(text)
        if index is None:
            index = self.strings[text] = len(self.strings)
        return index

    def source(self, text: str) -> int | None:
        """The index of a node's source, from its ``Node.sourceRange()`` text."""
        try:
            return self._source_of[text]
        except KeyError:
            if not self.positions:
                index = self._add(parse_source(text))
            else:
                where = code_position(text)
                index = None if where is None else self.position(*where)
            self._source_of[text] = index
            return index

    def position(self, file: str, line: int, col: int) -> int | None:
        """The index of the source of a node at a ``code/`` position (``positions`` only); none for the
        empty file name torch prints for a node that has no place."""
        if not file:
            return None
        key = (file, line, col)
        try:
            return self._source_of[key]
        except KeyError:
            index = self._source_of[key] = self._add([file, line, col])
            return index

    def _add(self, parsed) -> int | None:
        if parsed is None:
            return None
        self.sources.append(parsed)
        return len(self.sources) - 1

    def to_json(self) -> dict:
        if self.positions:  # the parent fills "sources" (see encode)
            return {"strings": list(self.strings), "positions": self.sources}
        return {"strings": list(self.strings), "sources": self.sources}


_CODE_AT_LINE = re.compile(r'\s*File "(.*)", line (\d+)')
_UNDERLINE = re.compile(r"^( *)~", re.M)


def code_position(text: str) -> tuple[str, int, int] | None:
    """(file, line, column) of a ``sourceRange()`` text of a copy without debug records: the column is
    where torch's ``~~~`` underline of the range starts."""
    match = _CODE_AT_LINE.match(text)
    under = _UNDERLINE.search(text)
    if match is None or under is None:
        return None
    return match.group(1), int(match.group(2)), len(under.group(1))


class Walked:
    """A walked graph: its GRAPH array already as JSON text (docs/ir.md), kept in pieces that are written out
    as they are (``head``: ``[inputs,outputs,``, then the JSON of each top-level node, or of several joined by
    commas), and what it calls
    (``calls``: ``(type, None)`` for a ``prim::CallFunction`` of a function of that type, ``(type, method)`` for
    a ``prim::CallMethod`` on an object of that type)."""

    __slots__ = ("head", "nodes", "calls")

    def __init__(self, head: str, nodes: list[str], calls: list[tuple[str, str | None]]):
        self.head, self.nodes, self.calls = head, nodes, calls

    def pieces(self):
        yield self.head
        yield "["
        for i, node in enumerate(self.nodes):
            if i:
                yield ","
            yield node
        yield "]]"


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # ASCII only: see encode()


def walk_graph(graph, tables: Tables) -> Walked:
    """A torch Graph as the compact GRAPH array ``[inputs, outputs, nodes]`` (docs/ir.md), iteratively.

    A NODE is ``[kind, inputs, outputs, attributes, blocks, source, scope, schema]``; strings that repeat
    are indices into ``tables``. Only ``*At`` accessors are used: every ``inputs()``/``outputs()``/``blocks()``
    iterator costs several times more through pybind. Each top-level node is written as JSON text as soon as
    its blocks are walked, so the objects of only one node's subtree are alive at a time (a 51k-node
    inlined graph as Python lists is 47 MB, as text 4 MB).
    """
    string, source = tables.string, tables.source
    inputs = _dumps([[v.debugName(), string(str(v.type()))] for v in graph.inputs()])
    outputs = _dumps([v.debugName() for v in graph.outputs()])
    texts: list[str] = []
    calls: list[tuple[str, str | None]] = []
    top: list = []  # the top-level node being walked, with its blocks
    todo = [(iter(list(graph.nodes())), top)]
    while todo:
        nodes, dest = todo[-1]
        if len(todo) == 1 and top:
            texts.append(_dumps(top.pop()))
        node = next(nodes, None)
        if node is None:
            todo.pop()
            continue
        kind = node.kind()
        schema = None
        if not kind.startswith("prim::"):  # prim nodes have no schema
            try:
                text = str(node.schema())
                schema = None if text == "(no schema)" else string(text)
            except Exception:  # noqa: BLE001
                schema = None
        outs = []
        for i in range(node.outputsSize()):
            v = node.outputsAt(i)
            outs.append([v.debugName(), string(str(v.type()))])
        scope = node.scopeName()
        attributes = _attributes(node) if node.hasAttributes() else None
        item = [string(kind), [node.inputsAt(i).debugName() for i in range(node.inputsSize())], outs,
                attributes, None, source(node.sourceRange()), string(scope) if scope else None, schema]
        dest.append(item)
        if kind in NO_BLOCKS or kind.startswith("aten::"):
            if kind in ("prim::CallFunction", "prim::CallMethod") and item[1]:
                method = (attributes or {}).get("name") if kind == "prim::CallMethod" else None
                calls.append((str(node.inputsAt(0).type()), method))
            continue
        blocks = list(node.blocks())
        if blocks:
            item[4] = []
            pending = []
            for block in blocks:
                # a block's parameters are its param node's outputs, its results its return node's inputs
                params, results = block.paramNode(), block.returnNode()
                b = [[[v.debugName(), string(str(v.type()))]
                      for v in map(params.outputsAt, range(params.outputsSize()))],
                     [results.inputsAt(i).debugName() for i in range(results.inputsSize())], []]
                item[4].append(b)
                pending.append((iter(list(block.nodes())), b[2]))
            todo.extend(reversed(pending))  # pre-order: a node, then its blocks' nodes, block 0 first
    return Walked(f"[{inputs},{outputs},", texts, calls)


def read_graph(graph, tables: Tables) -> Walked:
    """The graph from torch's printer when ``tables`` has a reader (tsinspect.ir.printed), walked when not
    or when the reader does not read its text exactly."""
    if tables.reader is not None:
        try:
            return Walked(*tables.reader.read(graph))
        except Exception:  # noqa: BLE001 - Unsupported, or a reader bug: the walk is slower, never wrong
            if os.environ.get(PRINTED_ONLY_ENV) == "1":
                raise
    return walk_graph(graph, tables)


PRINTED_ONLY_ENV = "TSINSPECT_TEST_ONLY_PRINTED"  # tests: fail where the printed text is not read


class KeptGraphs:
    """Inlined graphs left alive until the process ends (``os._exit``, no teardown): torch takes about as long
    to free a graph as to build it (205k nodes: 0.6-0.8 s). Before another is built, the kept ones are freed
    unless the new one is expected to be small beside the largest kept (an eighth), so that two large graphs
    are never alive together. Expected size: the number of modules under the method's module instance, whose
    calls the inlining expands; none for a method that calls nothing (it inlines to itself: an encoder's
    ``ModuleList.__len__`` once freed the 205k-node forward, 0.56 s)."""

    def __init__(self) -> None:
        self.graphs: list = []
        self.largest = self.rest = 0

    def make_room(self, expected: int) -> None:
        if self.graphs and self.rest + expected > self.largest / 8:
            self.graphs.clear()
            self.largest = self.rest = 0
            # the freed graphs' heap back to the system: Python's objects come from arenas of their own and would
            # never reuse it (1.7k nodes: the child's peak 0.4 MiB lower)
            _release_free_heap()

    def keep(self, graph, expected: int) -> None:
        self.graphs.append(graph)
        self.rest += min(expected, self.largest)
        self.largest = max(expected, self.largest)


def walk_modules(root, want_module: str | None, want_method: str | None, inline: bool | str | None,
                 tables: Tables, kept: KeptGraphs | None = None) -> tuple[list, dict, set[str]]:
    """(modules, types, all types): every module instance by path (``want_module``'s only when given), the
    methods of each of their types, walked once, and the types of every module.

    Methods belong to the type in TorchScript, so 24 instances of one layer type share one set of graphs.
    ``inline``: True for the inlined graphs of every type, a module path for those of that module's type only.
    ``kept``: where inlined graphs are left alive (freed after each read without it).
    """
    modules, types = [], {}
    found = [(path, cpp, cpp._type().qualified_name()) for path, cpp in named_modules(root)]
    inlined = {t for path, _, t in found if inline is True or path == inline}
    under = _modules_under(path for path, _, _ in found)
    for path, cpp, type_name in found:
        if want_module is not None and path != want_module:
            continue
        modules.append({"path": path, "type": type_name})
        if type_name not in types:
            expected = under[path] if type_name in inlined else 0
            types[type_name] = {"methods": [_walk_method(cpp, name, type_name in inlined, tables, kept, expected)
                                            for name in cpp._method_names()
                                            if want_method is None or name == want_method]}
    return modules, types, {t for _, _, t in found}


def _modules_under(paths) -> dict[str, int]:
    """Module path -> the number of modules in its subtree (itself included)."""
    under: dict[str, int] = {}
    for path in paths:
        under[""] = under.get("", 0) + 1
        if path:
            parts = path.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                under[prefix] = under.get(prefix, 0) + 1
    return under


def _walk_method(cpp, name: str, inline: bool, tables: Tables, kept: KeptGraphs | None = None,
                 expected: int = 0) -> dict:
    method = {"name": name, "schema": None, "error": None, "graph": None}
    try:
        fn = cpp._get_method(name)
        method["schema"] = str(fn.schema)
        method["graph"] = read_graph(fn.graph, tables)
        if inline:
            if not method["graph"].calls:  # it inlines to itself, small whatever its module holds
                expected = 0
            if kept is not None:
                kept.make_room(expected)
            inlined = fn.inlined_graph  # keep alive while walking: its nodes die with it
            method["inlined"] = read_graph(inlined, tables)
            if kept is not None:
                kept.keep(inlined, expected)
            del inlined
    except Exception as exc:  # noqa: BLE001 - one bad method must not lose the others
        text = str(exc).strip()
        method["error"] = f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
    return method


def load_module(path: str, map_location: str | None):
    """``torch.jit.load(path, map_location)`` as torch's C++ module (``torch._C.ScriptModule``), with the
    compilation unit (None when this torch offers no way to keep it): the unit holds the free functions the
    methods call (``prim::CallFunction``), whose graphs no module method has. Without the Python wrapper
    torch.jit.load builds around every submodule, which nothing here uses (0.45 s of CPU for 5,000 modules)."""
    import torch

    try:
        cu = torch._C.CompilationUnit()
        location = torch.device(map_location) if map_location else None
        cpp = torch._C.import_ir_module(cu, path, location, {}, False)
    except (AttributeError, TypeError):  # private API of another torch version: no functions then
        return torch.jit.load(path, map_location=map_location)._c, None
    return cpp, cu


def named_modules(root) -> list[tuple[str, object]]:
    """(path, C++ module) of ``root`` and every submodule, as ``named_modules()`` of torch.jit.load's wrapper
    lists them: pre-order, children in their order (the wrapper makes one object per path, so none is
    dropped as a duplicate)."""
    import torch

    out, todo = [], [("", root)]
    while todo:
        path, cpp = todo.pop()
        out.append((path, cpp))
        children = [(f"{path}.{name}" if path else name, child) for name, child in torch._C.ModuleDict(cpp).items()]
        todo.extend(reversed(children))
    return out


def walk_functions(cu, types: dict, module_types: set[str], tables: Tables, limit: int = 10_000) -> dict:
    """{qualified name: METHOD} for everything a walked graph calls outside the module types, transitively:
    free functions and methods of TorchScript classes (``__torch__.m.Clipper.apply``)."""
    out: dict = {}
    todo = [m["graph"] for t in types.values() for m in t["methods"] if m.get("graph")]
    while todo and len(out) < limit:
        for name in called_functions(todo.pop(), module_types):
            if name in out:
                continue
            out[name] = method = {"name": name, "schema": None, "error": None, "graph": None}
            try:
                fn = cu.find_function(name)
                if fn is None:
                    raise LookupError("not in the compilation unit")
                method["schema"] = str(fn.schema)
                method["graph"] = read_graph(fn.graph, tables)
                todo.append(method["graph"])
            except Exception as exc:  # noqa: BLE001 - one bad function must not lose the others
                text = str(exc).strip()
                method["error"] = f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
    return out


def called_functions(graph: Walked, module_types: set[str]) -> list[str]:
    """Qualified names of what a walked graph calls outside the module types: the function of a
    ``prim::CallFunction``, ``Type.method`` for a ``prim::CallMethod`` on an object of a class."""
    return ([t for t, method in graph.calls if method is None]
            + [f"{t}.{method}" for t, method in graph.calls if method and t not in module_types])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsinspect.ir.extract")
    parser.add_argument("--archive", required=True, help="tsinspect's copy of the archive (tsinspect.ir.metacopy)")
    parser.add_argument("--module")
    parser.add_argument("--method")
    parser.add_argument("--inline", action="store_true")
    parser.add_argument("--inline-module", help="the inlined graphs of this module path's methods only")
    parser.add_argument("--library", action="append", default=[])
    parser.add_argument("--full", action="store_true", help="the copy holds the real storages: load it normally")
    parser.add_argument("--limit-memory", type=int, help="address-space limit in bytes")
    parser.add_argument("--limit-cpu", type=int, help="CPU-time limit in seconds")
    parser.add_argument("--limit-file-size", type=int, help="largest file this process may write, in bytes")
    parser.add_argument("--rewritten", action="store_true",
                        help="the archive's storages already say device meta (tsinspect.ir.metacopy)")
    parser.add_argument("--positions", action="store_true",
                        help="the copy has no debug records: write each node's code/ position, which the parent "
                        "maps to the original source (tsinspect.ir.origins); graphs are read from torch's printer")
    parser.add_argument("--no-sandbox", metavar="WHY", help="run unconfined (TSINSPECT_SANDBOX=off; measurement)")
    parser.add_argument("--await-rest", action="store_true",
                        help="started before the gate judged the archive: confine, import torch, then read the "
                        "rest of the arguments as one JSON line on stdin (EOF: exit)")
    args = parser.parse_args(argv)
    set_limits(args.limit_memory, args.limit_cpu, args.limit_file_size)
    # before torch is imported (one thread: Landlock confines the calling thread and those it starts)
    # and before a byte of the archive is read
    if args.no_sandbox:
        sandbox = Confinement("off", [], args.no_sandbox)
    else:
        # readable: the copy's folder, and each --library's folder (for the libraries it loads beside it)
        readable = [args.archive, *args.library]
        sandbox = confine([os.path.dirname(os.path.abspath(path)) for path in readable])
    if args.await_rest:
        args = _rest_of(parser, argv if argv is not None else sys.argv[1:], args)
        if args is None:
            return 0

    # Our JSON goes to the real stdout; whatever the archive's code prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Nothing this process builds forms cycles worth collecting: without the collector, 51k walked nodes no
    # longer trigger full collections that rescan every object allocated so far.
    gc.disable()
    doc = {"schema": SCHEMA, "load": "failed", "torch_version": None, "notes": [], "error": None,
           "timings": {}, "sandbox": sandbox.to_json(), "modules": [], "types": {}, "functions": {}, "strings": [],
           "sources": []}
    try:
        run(args, doc)
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback
        doc["error"] = classify_error(exc)
        doc["load"] = "failed"
    out.writelines(encode(doc))
    out.flush()
    return 0


def encode(doc: dict) -> list[str]:
    """The transport (docs/ir.md) as pieces to write in order: a one-line header (the document without its
    graphs, plus the method names of each type), a newline, then the whole document. The parent reads the
    header alone and relays the document to ``graph --json`` as it is. Nodes' ``code/`` positions
    (``positions``) go in the header only: the parent maps them and fills the document's empty ``sources``.

    The graphs are JSON text already (``Walked``): their pieces go in where placeholders holding a random
    token stand, which no string of the archive can forge; nothing is joined into one string (a 205k-node
    graph is 17 MB of text). ``json.dumps``, not ``json.dump`` (which streams through the pure-Python
    encoder, 13x slower); ASCII only, so no control, C1 or bidi character of an archive string reaches a
    terminal unescaped.
    """
    started = time.perf_counter()
    token = os.urandom(8).hex()
    graphs: list[Walked] = []

    def placeholder(obj):
        if not isinstance(obj, Walked):
            raise TypeError(f"{type(obj).__name__} is not JSON serializable")
        graphs.append(obj)
        return f"{token}:{len(graphs) - 1}"

    # with code/ positions, "sources" is the document's last field, left empty for the parent to fill
    whole = {k: v for k, v in doc.items() if k != "positions"}
    body = re.split(f'"{token}:([0-9]+)"', json.dumps(whole, separators=(",", ":"), default=placeholder))
    header = {k: v for k, v in doc.items() if k not in GRAPH_FIELDS}
    header["timings"] = dict(doc["timings"], encode=round(time.perf_counter() - started, 4))
    header["method_names"] = {name: [m["name"] for m in t["methods"]] for name, t in doc["types"].items()}
    pieces = [json.dumps(header, separators=(",", ":")), "\n"]
    for i, piece in enumerate(body):
        if i % 2:
            pieces.extend(graphs[int(piece)].pieces())
        else:
            pieces.append(piece)
    return pieces


GRAPH_FIELDS = ("types", "functions", "strings", "sources")
_EARLY: dict = {}  # torch imported before the rest of the arguments: "seconds" it took, or the "error" (run raises it)
_LATE = frozenset({"--archive", "--rewritten", "--full"})  # what the parent may decide after the gate


def _rest_of(parser: argparse.ArgumentParser, argv: list[str], early: argparse.Namespace):
    """Import torch while the parent judges the archive, then read what it decided: the copy to load and
    how (``_LATE`` only; the copy in the folder the sandbox was given). None when the parent closed stdin
    without a word (it refused the archive, or gave up)."""
    started = time.perf_counter()
    warnings.simplefilter("ignore")
    try:
        import torch  # noqa: F401
    except BaseException as exc:  # noqa: BLE001 - out of memory, say: reported in the document by run
        _EARLY["error"] = exc
    else:
        _EARLY["seconds"] = time.perf_counter() - started
    line = sys.stdin.readline()
    if not line.strip():
        return None
    rest = json.loads(line)
    if not (isinstance(rest, list) and all(isinstance(a, str) for a in rest)
            and {a for a in rest if a.startswith("-")} <= _LATE):
        raise SystemExit(f"unexpected late arguments: {line[:200]!r}")
    args = parser.parse_args([*argv, *rest])
    if os.path.dirname(os.path.abspath(args.archive)) != os.path.dirname(os.path.abspath(early.archive)):
        raise SystemExit("the late --archive is outside the folder the sandbox was given")
    return args


def run(args, doc: dict) -> None:
    started = time.perf_counter()
    warnings.simplefilter("ignore")
    if "error" in _EARLY:
        raise _EARLY["error"]
    import torch

    doc["torch_version"] = torch.__version__
    doc["timings"]["import"] = round(_EARLY.get("seconds", time.perf_counter() - started), 4)
    for lib in args.library:
        try:
            torch.ops.load_library(lib)
        except Exception as exc:  # noqa: BLE001
            doc["error"] = {"kind": "library_failed", "missing": None,
                            "message": f"cannot load library {lib}: {str(exc).strip().splitlines()[0][:200]}",
                            "hint": "pass a .so built for this torch version"}
            return
    equal_calls = _meta_equal()
    started = time.perf_counter()
    # the copy is all this process knows of the archive; the parent retries with --full when meta fails
    module, cu = load_module(args.archive, None if args.full or args.rewritten else "meta")
    doc["load"] = "full" if args.full else "meta"
    doc["timings"]["load"] = round(time.perf_counter() - started, 4)
    _release_free_heap()
    if equal_calls:
        doc["notes"].append(f"{len(equal_calls)} {'comparison' if len(equal_calls) == 1 else 'comparisons'} of "
                            "tensor constants were skipped on meta tensors: equal tensor constants are not "
                            "pooled into one node")
    started = time.perf_counter()
    tables = Tables(args.positions)
    if args.positions:
        tables.reader = GraphReader(tables, _attributes, _dumps, NO_BLOCKS)
    inline = True if args.inline else args.inline_module
    doc["modules"], doc["types"], module_types = walk_modules(module, args.module, args.method, inline, tables, _KEPT)
    doc["functions"] = walk_functions(cu, doc["types"], module_types, tables) if cu is not None else {}
    doc.update(tables.to_json())
    doc["timings"]["walk"] = round(time.perf_counter() - started, 4)


_KEPT = KeptGraphs()  # alive until os._exit


def _release_free_heap() -> None:
    """Give back to the system the heap torch's load used and freed (glibc's ``malloc_trim``; about 8 MiB on a
    1.7k-node model): the load's transient peak is the process's, and reading the graphs then grows from below
    it instead of on top of it."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _meta_equal() -> list:
    """Give aten::equal a meta kernel that answers "not equal".

    Loading runs constant pooling, which compares tensor constants with aten::equal; on meta tensors that
    op has no kernel and the whole load fails (traced archives have tensor constants). Values are unknown
    on meta, so the only honest answer is "not known equal": constants then stay separate nodes.
    """
    import torch

    calls: list = []

    def equal(a, b):
        calls.append(1)
        return False

    try:
        lib = torch.library.Library("aten", "IMPL")
        lib.impl("equal", equal, "Meta")
        _meta_equal.lib = lib  # the registration lives as long as the Library object
    except Exception:  # noqa: BLE001 - older torch: traced archives then take the full path
        pass
    return calls


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)  # skip tearing down torch and the loaded module: seconds on big models, nothing to gain
