"""IR commands: ``graph`` (the IR of methods as a node tree or JSON) and ``ops`` (operator inventory).

torch runs only in the extraction child (tsinspect.ir.run); this process never imports it. When the
safety scan finds load-time code that touches files (exit status 1), or torch cannot load the archive,
the output is the ``ast`` view of ``code/`` instead, and stderr says why.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import defaultdict

from tsinspect.archive import records as rk
from tsinspect.archive.reader import open_archive
from tsinspect.archive.text import counted, printable
from tsinspect.cli import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, UsageError, add_command
from tsinspect.cli.progress import Progress
from tsinspect.cli.output import emit_json
from tsinspect.cli.style import Style, style_for
from tsinspect.ir.fallback import ast_methods, ast_view_json
from tsinspect.ir.lines import graph_lines, where
from tsinspect.ir.model import IR, Graph, LoadError, ir_sandbox
from tsinspect.ir.run import DEFAULT_TIMEOUT, Extraction, Options, early_child, extract_ir

# Load failures that are a fact about the archive and this torch, not an error of the input.
HANDLED = {"missing_op", "missing_class", "unsupported_version", "torch_refuses_zip"}


_LOAD_EXITS = {"1": "the safety scan refused the load, or torch could not load the archive (missing op, class "
                   "or version); the code/ view is printed instead",
               "2": "an error, a timeout or the memory limit (one line on stderr)"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "graph", "print the IR graph of methods (loads the archive with torch in a sandboxed child)",
        "Print the IR torch builds for each method, blocks nested under their prim::If/prim::Loop, each node "
        "with its line in code/ and in your source. torch runs only in a limited child process, after a static "
        "scan of code/ for load-time code; when the scan refuses or torch cannot load the archive, the methods "
        "of code/ and the ops they call are printed instead (read with ast), and stderr says why.",
        ["tsinspect graph model.pt", "tsinspect graph model.pt --module encoder.layers.0 --method forward",
         "tsinspect graph model.pt --inline --json > ir.json"], _LOAD_EXITS)
    p.add_argument("file", help="a TorchScript archive")
    p.add_argument("--method", help="only this method (default: every method)")
    p.add_argument("--module", help="only this submodule, by path such as encoder.layers.0 ('' is the root)")
    p.add_argument("--inline", action="store_true", help="show the inlined graph (submodule calls expanded)")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.ir/2, see docs/ir.md)")
    _common(p)
    p.set_defaults(run=run_graph)

    p = add_command(
        sub, "ops", "print the operator inventory: each op, how often, and where it is used",
        "Count every operator of the IR (each module type once) and say where it is used: Class.method, code/ "
        "file and line. Without the IR (refused or failed load) the ops are counted from code/.",
        ["tsinspect ops model.pt", "tsinspect ops model.pt --inline --json"], _LOAD_EXITS)
    p.add_argument("file", help="a TorchScript archive")
    p.add_argument("--inline", action="store_true", help="count ops of the inlined graphs")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.ops/1)")
    _common(p)
    p.set_defaults(run=run_ops, module=None, method=None)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", action="store_true",
                   help="load even when the safety scan finds load-time code that touches files or raw memory")
    p.add_argument("--library", action="append", default=[], metavar="PATH.so",
                   help="load a custom-op library (torch.ops.load_library) into the extractor; repeatable")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds torch may take (default 120)")
    p.add_argument("--memory-limit", type=int, metavar="MIB", help="address-space limit of the extractor in MiB")
    p.add_argument("--full", action="store_true", help="load the storages too (skip the meta-device attempt)")


def _extract(args: argparse.Namespace) -> tuple[IR | Extraction, int]:
    """A pt2 archive's programs as IR, read torch-free (the JSON is data: no child, no gate); else run the
    extraction and print what stderr should say. Returns either with the exit status it implies."""
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    options = Options(module=args.module, method=args.method, inline=args.inline, trust=args.trust,
                      libraries=args.library, timeout=args.timeout,
                      memory_limit=args.memory_limit * 1024 * 1024 if args.memory_limit else None, full=args.full)
    # torch is imported while the archive is opened and judged
    with early_child(args.file, options) as early, open_archive(args.file) as archive:
        if archive.format == rk.PT2:
            return _pt2(archive, args), EXIT_OK
        with Progress("extracting the IR (torch, in a sandboxed child)"):
            _check_names(archive, args)
            result = extract_ir(archive, options, early)
    doc, scan = result.header, result.scan
    error = LoadError.from_json(doc["error"]) if doc.get("error") else None
    err = Style(style_for(args.color).enabled and sys.stderr.isatty())
    if doc.get("load") == "refused":
        _say(err, "refused", "red", scan.refusal() + "; showing the methods of code/ and the ops they call instead")
        return result, EXIT_FINDINGS
    note = scan.benign_note()
    if note:
        _say(err, "note", "cyan", note)
    sandbox = ir_sandbox(doc)
    if sandbox is not None and sandbox.state != "on":
        _say(err, "warning", "yellow", sandbox.message)
    if error is not None:
        hint = f"; {error.hint}" if error.hint else ""
        tail = "; showing the methods of code/ and the ops they call instead"
        if error.kind in HANDLED:  # a fact about the archive and this torch: like a refused load, exit 1
            _say(err, "warning", "yellow", error.message + hint + tail)
            return result, EXIT_FINDINGS
        _say(err, "error", "red", error.message + hint + tail)
        return result, EXIT_ERROR
    return result, EXIT_OK


def _check_names(archive, args: argparse.Namespace) -> None:
    """A --method or --module that the archive does not have, known before torch starts: code/ declares every
    method and data.pkl every submodule."""
    if args.method is None and args.module is None:
        return
    from tsinspect.archive.summary import summarize

    summary = summarize(archive)
    if args.method is not None and any(m.owner for m in summary.methods):
        names = sorted({m.name for m in summary.methods if m.owner})
        if args.method not in names:
            raise UsageError(f"no method {printable(args.method)!r}; the archive's methods: "
                             + printable(", ".join(names[:40])) + (" ..." if len(names) > 40 else ""))
    if args.module is not None and summary.modules is not None:
        paths = [m.path for m in summary.modules.walk()]
        if args.module not in paths:
            close = difflib.get_close_matches(args.module, paths, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise UsageError(f"no submodule {printable(args.module)!r} (module paths look like 'encoder.layers.0'; "
                             f"'' is the root){printable(hint)}")


def _say(err: Style, label: str, colour: str, message: str) -> None:
    print(f"tsinspect: {err(label, colour)}: {printable(message)}", file=sys.stderr)



# ----- graph


def _pt2(archive, args: argparse.Namespace) -> IR:
    """A pt2 archive's programs as IR, the ones --module and --method name."""
    from tsinspect.ir.pt2graph import pt2_ir

    ir = pt2_ir(archive)
    ir.modules = [m for m in ir.modules if args.module is None or m.path == args.module]
    if not ir.modules:
        raise UsageError(f"no exported program {printable(args.module)!r} (--module takes a program name)")
    for module in ir.modules:
        module.methods = [m for m in module.methods if args.method is None or m.name == args.method]
        if not module.methods:
            raise UsageError(f"no method {printable(args.method)!r} (an exported program has 'forward')")
    return ir


def run_graph(args: argparse.Namespace) -> int:
    result, status = _extract(args)
    if isinstance(result, IR):  # pt2
        if args.json:
            emit_json(dict(result.to_json(), path=args.file))
        else:
            _print_ir(result, args, style_for(args.color))
        return status
    loaded = result.loaded
    if loaded:
        _check_selection(args, result)
    if args.json:
        extra = {"path": args.file, "gate": result.scan.to_json()}
        if not loaded:
            extra["fallback"] = ast_view_json(result.index)
        if sys.stdout.isatty():
            emit_json(dict(extra, **result.document))
        else:  # the child's text relayed as it came: no decoding and encoding again of a large document
            result.write_json(sys.stdout, **extra)
        return status
    style = style_for(args.color)
    if not loaded:
        for line in ast_lines(result, style):
            print(line)
        return status
    _print_ir(result.ir, args, style)
    return status


def _print_ir(ir, args: argparse.Namespace, style: Style) -> None:
    sandbox = f"; {ir.sandbox.message}" if ir.sandbox else ""
    print(style(f"# load: {ir.load} (torch {ir.torch_version}){printable(sandbox)}", "dim"))
    for note in ir.notes:
        print(style(f"# note: {printable(note)}", "dim"))
    first_of_type: dict[str, str] = {}
    for module in ir.modules:
        title = module.path or "<root>"
        print(style(f"module {printable(title)}", "bold") + style(f"  ({printable(module.type)})", "dim"))
        if module.type in first_of_type:
            print(style(f"  same type as {printable(first_of_type[module.type])}: same methods", "dim"))
            continue
        first_of_type[module.type] = title
        for method in module.methods:
            print(f"  {style('method', 'bold')} {printable(method.schema or method.name)}")
            if method.error:
                print(f"    {style('error', 'red')}: {printable(method.error)}")
                continue
            graph = method.inlined if args.inline and method.inlined else method.graph
            for line in graph_text(graph, style, indent=4):
                print(line)


def _check_selection(args: argparse.Namespace, result: Extraction) -> None:
    if args.module is not None and not result.header.get("modules"):
        raise UsageError(f"no submodule {printable(args.module)!r} (module paths look like 'encoder.layers.0'; "
                         "'' is the root)")
    if args.method is not None and not any(result.method_names.values()):
        where = f" in module {printable(args.module)!r}" if args.module is not None else ""
        raise UsageError(f"no method {printable(args.method)!r}{where}")


_ROLE_STYLES = {"block": ("blue",), "ret": ("dim",)}


def graph_text(graph: Graph, style: Style, indent: int = 0):
    """The graph as an indented tree: blocks under their prim::If/prim::Loop, source per node (and, for
    exported programs, whose nodes carry the module path without a code/ line, the module path)."""
    scopes = {id(n.source): n.scope for n, _ in graph.walk() if n.source and n.scope and not n.source.code_file}
    for depth, pieces, source in graph_lines(graph):
        text = "".join(style(printable(t), *_ROLE_STYLES.get(role, ())) for t, role in pieces)
        at = where(source) + (f" in {scopes[id(source)]}" if id(source) in scopes else "")
        yield " " * indent + "  " * depth + text + (style(f"  # {printable(at)}", "dim") if at else "")


def ast_lines(result: Extraction, style: Style):
    load = result.header.get("load")
    yield style(f"# load: {load}; methods of code/ and the ops they call (from the code, not torch)", "dim")
    for method in ast_methods(result.index):
        where = printable(f"  {method.file}:{method.line}")
        yield style(printable(method.qualname), "bold") + style(where, "dim")
        for use in method.ops:
            yield f"  {use.line:5d}  {printable(use.op)}"


# ----- ops


def run_ops(args: argparse.Namespace) -> int:
    result, status = _extract(args)
    ir = result if isinstance(result, IR) else result.ir
    if ir.load in ("meta", "full", "pt2"):
        from tsinspect.ir.views import op_inventory

        rows = []
        for entry in op_inventory(ir, inlined=args.inline):
            uses = [u.to_json() for u in entry.uses]
            rows.append({"op": entry.kind, "count": entry.count, "uses": uses})
        origin = "ir"
    else:
        counts: dict[str, list] = defaultdict(list)
        for method in ast_methods(result.index):
            for use in method.ops:
                if "::" in use.op:
                    counts[use.op].append({"module_type": method.owner, "method": method.name,
                                           "code": f"{method.file}:{use.line}", "source": None})
        rows = [{"op": op, "count": len(uses), "uses": uses}
                for op, uses in sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
        origin = "ast"
    if args.json:
        emit_json({"schema": "tsinspect.ops/1", "path": args.file, "load": ir.load, "from": origin,
               "error": ir.error.to_json() if ir.error else None, "ops": rows})
        return status
    style = style_for(args.color)
    total = sum(r["count"] for r in rows)
    source = "the IR, load: " + ir.load if origin == "ir" else "code/"
    print(style(f"# {counted(len(rows), 'op')}, {counted(total, 'use')} (from {source})",
                "dim"))
    width = max((len(r["op"]) for r in rows), default=10)
    for row in rows:
        print(f"{row['count']:6d}  {printable(row['op']).ljust(width)}  {printable(_sites(row['uses']))}")
    return status


def _sites(uses: list[dict], limit: int = 4) -> str:
    """'Gate.forward code/__torch__/models.py:12,14; ...': grouped by method, then code file."""
    groups: dict[str, dict[str, set[int]]] = {}
    for use in uses:
        owner = (use.get("module_type") or "").rsplit(".", 1)[-1]
        name = f"{owner}.{use['method']}" if owner else use["method"]
        files = groups.setdefault(name, {})
        at = use.get("code") or (use.get("source") or "").rsplit("/", 1)[-1]  # pt2 nodes: the user's file
        file, _, line = at.rpartition(":")
        if file and line.isdigit():
            files.setdefault(file, set()).add(int(line))
    parts = []
    for name, files in groups.items():
        where = " ".join(f"{file}:{','.join(str(n) for n in sorted(lines))}" for file, lines in files.items())
        parts.append(f"{name} {where}" if where else name)
    more = f"; +{len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more
