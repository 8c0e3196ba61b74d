"""Torch-free commands over the archive layer: ls, info, cat, pickle, extract."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from tsinspect.archive import records as rk
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import CODE_CAP, PICKLE_CAP, Archive, open_archive
from tsinspect.archive.text import human_bytes, printable
from tsinspect.cli.output import emit_json, warn_problems
from tsinspect.cli.style import Style, style_for

PREVIEW_CAP = 64 * 1024
BLAME_MAX_LINES = 1_000_000  # generated code files have thousands of lines; plain `cat` has no such limit


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list the records of an archive")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.ls/1)")
    p.set_defaults(run=run_ls)

    p = sub.add_parser("info", help="summarise an archive: format, versions, modules, tensors, methods, problems")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.info/1)")
    p.add_argument("--all", action="store_true", help="list every tensor, not the first 20")
    p.set_defaults(run=run_info)

    p = sub.add_parser("cat", help="print one record (code with --blame shows the original file:line of each line)")
    p.add_argument("file")
    p.add_argument("member", help="record name, with or without the archive's top folder")
    p.add_argument("--blame", action="store_true", help="show the original source file:line beside each code line")
    p.add_argument("--json", action="store_true", help="print JSON lines with their origins (schema tsinspect.cat/1)")
    p.set_defaults(run=run_cat)

    p = sub.add_parser("pickle", help="show a pickle record as a tree, without running it")
    p.add_argument("file")
    p.add_argument("member", nargs="?", default=None, help="pickle record (default: data.pkl)")
    p.add_argument("--ops", action="store_true", help="print the opcodes instead of the tree")
    p.add_argument("--depth", type=int, default=64, help="levels to show (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.pickle/1)")
    p.set_defaults(run=run_pickle)

    p = sub.add_parser("extract", help="copy records into a directory (regular files only, never outside it)")
    p.add_argument("file")
    p.add_argument("dest", help="destination directory (created if missing; existing files are never replaced)")
    p.add_argument("members", nargs="*", help="records to extract (default: all)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON (schema tsinspect.extract/1)")
    p.set_defaults(run=run_extract)


def _require_zip(archive: Archive) -> None:
    if archive.members is None:
        raise ArchiveError(f"{printable(archive.path)} is {archive.note or 'a ' + archive.format + ' file'}; "
                           "it has no records to show")


# ----- ls


def run_ls(args: argparse.Namespace) -> int:
    with open_archive(args.file) as archive:
        _require_zip(archive)
        if args.json:
            emit_json({"schema": "tsinspect.ls/1", "path": printable(archive.path),
                       "top_folder": archive.prefix.rstrip("/"),
                       "records": [{"name": r.display_name, "full_name": r.entry.display_name, "kind": r.kind,
                                    "size": r.size, "compressed_size": r.compressed_size,
                                    "compression": r.entry.method_name, "inside_top_folder": r.inside}
                                   for r in archive.records],
                       "problems": [p.to_json() for p in archive.problems]})
            return 0
        style = style_for(args.color)
        print(style(f"{'KIND':<12} {'SIZE':>10} {'STORED':>10}  NAME", "bold"))
        for r in archive.records:
            name = r.display_name if r.inside else style(r.entry.display_name + "  (outside the top folder)", "red")
            print(f"{r.kind:<12} {r.size:>10} {r.compressed_size:>10}  {name}")
        warn_problems(archive.problems, style)
    return 0


# ----- info


def run_info(args: argparse.Namespace) -> int:
    from tsinspect.archive.summary import summarize

    with open_archive(args.file) as archive:
        summary = summarize(archive)
        if args.json:
            emit_json(summary.to_json())
            return 0
        style = style_for(args.color)
        for line in info_lines(summary, style, args.all):
            print(line)
        warn_problems(summary.problems, style)
    return 0


def info_lines(s, style: Style, show_all: bool = False, tensor_limit: int = 20):
    """Text rendering of an ArchiveSummary."""
    from tsinspect.archive.modules import short_type

    def head(title: str) -> str:
        return style(f"{title:<14}", "bold")

    yield (f"{style(printable(s.path), 'bold', 'cyan')}  {human_bytes(s.file_size)}, "
           f"{style(s.format, 'green')}" + (f", top folder {printable(s.prefix)}" if s.prefix else ""))
    if s.note:
        yield f"{head('note')}{s.note}"
    if s.versions:
        yield head("versions") + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.versions.items())
    kinds: dict[str, int] = {}
    for r in s.records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    if s.records:
        yield head("records") + f"{len(s.records)}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
    if s.modules is not None:
        yield head("modules")
        for module in s.modules.walk():
            depth = module.path.count(".") + (1 if module.path else 0)
            params = len(module.parameters) + len(module.buffers)
            extra = f"  {params} tensors" if params else ""
            methods = f"  [{', '.join(module.methods)}]" if module.methods else ""
            yield (f"  {'  ' * depth}{style(module.name, 'cyan')}  {printable(short_type(module.type))}"
                   f"{extra}{style(methods, 'dim')}")
    if s.tensors:
        yield (head("tensors") + f"{len(s.tensors)}, {human_bytes(s.weight_bytes)} of storage: "
               + ", ".join(f"{n} {d}" for d, n in s.dtype_counts().items()))
        shown = s.tensors if show_all else s.tensors[:tensor_limit]
        width = min(48, max(len(t.name) for t in shown))
        for t in shown:
            kind = s.tensor_kinds.get(t.name, "")
            note = style(f"  ! {t.problem}", "red") if t.problem else ""
            yield (f"  {printable(t.name):<{width}}  {t.dtype:<9} {_shape(t.shape):<16} "
                   f"{human_bytes(t.nbytes):>10}  {style(kind, 'dim')}{note}")
        if len(s.tensors) > len(shown):
            yield style(f"  ... {len(s.tensors) - len(shown)} more (--all)", "dim")
    if s.constants:
        yield head("constants") + ", ".join(f"{t.name} {t.dtype}{_shape(t.shape)}" for t in s.constants[:20]) + (
            " ..." if len(s.constants) > 20 else "")
    if s.pt2 is not None:
        yield from pt2_lines(s.pt2, style, head, show_all)
    if s.traced_inputs:
        yield head("traced with") + ", ".join(f"{t.name}: {t.dtype}{_shape(t.shape)}" for t in s.traced_inputs)
    if s.methods:
        yield head("methods")
        for m in s.methods:
            owner = short_type(m.owner) + "." if m.owner else ""
            where = f"{printable(m.file)}:{m.line}"
            yield f"  {printable(owner)}{style(printable(m.name), 'green')}  {style(where, 'dim')}"
    if s.extra_files:
        yield head("extra files") + ", ".join(f"{r.display_name[6:]} ({human_bytes(r.size)})" for r in s.extra_files)
    yield head("problems") + (style(f"{len(s.problems)} (see below)", "yellow") if s.problems else "none")


def pt2_lines(contents, style: Style, head, show_all: bool = False):
    """The exported programs of a pt2 archive: versions, signature, dynamic dimensions, payloads. Inputs
    bound to weights are counted (they are the tensors above) unless ``show_all``."""
    for p in contents.programs:
        yield (head("program") + style(printable(p.name), "green") + f"  schema {p.schema_text}, torch "
               f"{printable(p.torch_version or '?')}, {p.node_count} nodes" + (f", {', '.join(p.verifiers)}"
                                                                                if p.verifiers else ""))
        bound_kinds = ("parameter", "buffer", "buffer (not persistent)", "constant")
        held = Counter(e.kind for e in p.inputs if e.kind in bound_kinds)
        if held and not show_all:
            text = ", ".join(f"{n} {k}" if n == 1 else f"{n} {k.replace('buffer', 'buffers', 1)}" if "buffer" in k
                             else f"{n} {k}s" for k, n in held.items())
            yield "  in   " + style(text + " (--all lists them)", "dim")
        for e in p.inputs:
            if e.kind in bound_kinds and not show_all:
                continue
            bound = f" {printable(e.target)}" if e.target else ""
            yield f"  in   {printable(e.name)}: {e.type or '?'}  {style(e.kind + bound, 'dim')}"
        for e in p.outputs:
            bound = f" {printable(e.target)}" if e.target else ""
            yield f"  out  {printable(e.name)}: {e.type or '?'}  {style(e.kind + bound, 'dim')}"
        if p.range_constraints:
            yield head("  dynamic") + ", ".join(f"{printable(k)} in [{lo}, {'inf' if hi is None else hi}]"
                                                 for k, (lo, hi) in p.range_constraints.items())
        else:
            yield head("  dynamic") + "none: every shape is fixed"
        pickled = [t for t in p.weights + p.constants if t.pickled]
        if pickled:
            yield head("  pickled") + ", ".join(f"{printable(t.name)} ({t.record})" for t in pickled[:10])
        if p.sample_inputs:
            yield head("  sample in") + p.sample_inputs
        if p.unknown_fields:
            yield head("  not read") + style(", ".join(p.unknown_fields[:10]), "yellow")
    if contents.aoti:
        yield (head("aotinductor") + f"{len(contents.aoti)} records, " +
               style(f"{len(contents.native)} shared libraries (native code, never loaded)", "red"))


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# ----- cat


def run_cat(args: argparse.Namespace) -> int:
    with open_archive(args.file) as archive:
        _require_zip(archive)
        record = archive.find(args.member)
        if args.blame or args.json:
            if record.kind != rk.CODE:
                raise ArchiveError("--blame and --json need a code record (code/...py)", record.display_name)
            return _cat_blame(archive, record, args)
        data = archive.read(record, CODE_CAP if record.kind == rk.CODE else PICKLE_CAP)
        text = _as_text(data)
        if text is not None:
            out = printable(text, keep_lines=True) if sys.stdout.isatty() else text
            sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
        elif sys.stdout.isatty():
            hint = " (try: tsinspect pickle FILE MEMBER)" if record.kind in (rk.PICKLE, rk.DEBUG_INFO) else ""
            print(f"binary record, {len(data)} bytes{hint}; first bytes:", file=sys.stderr)
            for line in hexdump(data[:512]):
                print(line)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
    return 0


def _as_text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def hexdump(data: bytes, width: int = 16):
    for pos in range(0, len(data), width):
        chunk = data[pos:pos + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        yield f"{pos:08x}  {hexes:<{width * 3}} {text}"


def _cat_blame(archive: Archive, record, args: argparse.Namespace) -> int:
    from tsinspect.archive.debuginfo import load_source_map

    code = archive.read(record, CODE_CAP)
    newlines = code.count(b"\n")
    if newlines > BLAME_MAX_LINES:  # 64 MB of newlines deflate to 64 KB; each line costs time and memory
        raise ArchiveError(f"has {newlines} lines, over the --blame/--json limit of {BLAME_MAX_LINES}",
                           record.display_name)
    source_map = None
    try:
        source_map = load_source_map(archive, record.name)
    except ArchiveError as exc:
        archive.problems.append(Problem("bad_debug_info", record.display_name + ".debug_pkl", str(exc)))
    lines = code.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    origins = source_map.line_origins(code)[:len(lines)] if source_map else [None] * len(lines)
    if args.json:
        emit_json({"schema": "tsinspect.cat/1", "member": record.display_name,
                   "debug_info": source_map.layout if source_map else None,
                   "lines": [{"line": i + 1, "text": text, "origin": o.to_json() if o else None}
                             for i, (text, o) in enumerate(zip(lines, origins))],
                   "problems": [p.to_json() for p in archive.problems]})
        return 0
    style = style_for(args.color)
    if source_map is None:
        print(f"tsinspect: note: {record.display_name} has no debug info; showing code only", file=sys.stderr)
    labels = [f"{_basename(o.file)}:{o.line}" if o else "" for o in origins]
    width = min(40, max(map(len, labels), default=0))
    for i, (text, where) in enumerate(zip(lines, labels)):
        print(f"{style(f'{i + 1:>4}', 'dim')} {style(f'{printable(where):<{width}}', 'cyan')} | "
              f"{printable(text, keep_lines=False)}")
    warn_problems(archive.problems, style)
    return 0


def _basename(path: str | None) -> str:
    return (path or "?").replace("\\", "/").rsplit("/", 1)[-1]


# ----- pickle


def run_pickle(args: argparse.Namespace) -> int:
    from tsinspect.archive.pickles import disassemble
    from tsinspect.archive.pickletree import render_lines, to_json

    with open_archive(args.file) as archive:
        _require_zip(archive)
        member = args.member or _default_pickle(archive)
        record = archive.find(member)
        if args.ops:
            ops = _ops(disassemble(archive.read(record, PICKLE_CAP)), record.display_name)
            if args.json:
                emit_json({"schema": "tsinspect.pickle/1", "member": record.display_name,
                           "ops": [{"offset": op.offset, "op": op.name, "arg": op.arg} for op in ops]})
            else:
                for op in ops:
                    print(f"{op.offset:>8}  {op.name:<16} {op.arg}")
            return 0
        walked = archive.pickle(record.name)
        summarize = _tensor_summarizer(record.name)
        if args.json:
            emit_json({"schema": "tsinspect.pickle/1", "member": record.display_name, "protocol": walked.protocol,
                       "opcodes": walked.ops, "globals": sorted({g.qualname for g, _ in walked.globals}),
                       "value": to_json(walked.value, summarize)})
            return 0
        for line in render_lines(walked.value, summarize, max_depth=args.depth):
            print(line)
    return 0


def _ops(ops, member: str):
    """The opcodes; a pickle that breaks midway ends with ArchiveError naming the record."""
    from tsinspect.archive.pickles import PickleError

    try:
        yield from ops
    except PickleError as exc:
        raise ArchiveError(str(exc), member) from None


def _default_pickle(archive: Archive) -> str:
    for name in ("data.pkl", "bytecode.pkl", "constants.pkl"):
        if name in archive.by_name:
            return name
    pickles = archive.records_of(rk.PICKLE)
    if not pickles:
        raise ArchiveError(f"{printable(archive.path)} has no pickle records")
    return pickles[0].name


def _tensor_summarizer(member: str):
    from tsinspect.archive.tensors import tensor_from

    storage_dir = rk.STORAGE_DIRS.get(member, "")

    def summarize(value):
        tensor = tensor_from(value)
        if tensor is None:
            return None
        tensor.record = f"{storage_dir}/{tensor.storage_key}" if storage_dir else tensor.storage_key
        text = f"{tensor.describe()} storage {printable(tensor.record)}" + (f" offset {tensor.offset}" if tensor.offset else "")
        return text, {"$tensor": tensor.to_json()}

    return summarize


# ----- extract


def run_extract(args: argparse.Namespace) -> int:
    from tsinspect.archive.extract import extract

    with open_archive(args.file) as archive:
        _require_zip(archive)
        result = extract(archive, args.dest, args.members)
        if args.json:
            emit_json({"schema": "tsinspect.extract/1", "dest": printable(str(args.dest)),
                       "written": [printable(p) for p in result.written],
                       "skipped": [{"member": m, "reason": r} for m, r in result.skipped]})
        else:
            for path in result.written:
                print(printable(path))
            for member, reason in result.skipped:
                print(f"tsinspect: warning: skipped {member}: {reason}", file=sys.stderr)
    return 1 if result.skipped else 0
