"""Torch-free commands over the archive layer: ls, info, cat, pickle, extract."""

from __future__ import annotations

import argparse
import difflib
import re
import sys

from tsinspect.archive import records as rk
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import CODE_CAP, PICKLE_CAP, Archive, open_archive
from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.cli import add_command
from tsinspect.cli.output import emit_json, warn_problems
from tsinspect.cli.style import Style, style_for

PREVIEW_CAP = 64 * 1024
BLAME_MAX_LINES = 1_000_000  # generated code files have thousands of lines; plain `cat` has no such limit


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "ls", "list the records of an archive",
        "List every zip entry in directory order: kind, size, stored size and name relative to the archive's "
        "top folder (entries outside it are flagged). Problems of the zip structure are warnings on stderr.",
        ["tsinspect ls model.pt", "tsinspect ls model.pt --json"])
    p.add_argument("file", help="a PyTorch archive (.pt, .ptl, torch.save zip)")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.ls/1)")
    p.set_defaults(run=run_ls)

    p = add_command(
        sub, "info", "summarise an archive: format, versions, traced or scripted, modules, tensors, methods, problems",
        "Summarise each archive without running it: format and versions, whether it was traced or scripted "
        "(and how sure that is), the module tree, tensors, constants, the example inputs of a trace, methods, "
        "extra files and problems. Repeated modules and tensors (layers.0-23) are shown once; --all shows "
        "every one. Several files, or folders (walked for archives as scan does), give JSON Lines with --json.",
        ["tsinspect info model.pt", "tsinspect info model.pt --json", "tsinspect info models/ --json > info.jsonl"])
    p.add_argument("files", nargs="+", metavar="PATH", help="archives, or folders to walk for archives")
    p.add_argument("--json", action="store_true",
                   help="print JSON (schema tsinspect.info/1): one document, or one line per file for several")
    p.add_argument("--all", action="store_true", help="every module, tensor and method, none grouped or cut")
    p.set_defaults(run=run_info)

    p = add_command(
        sub, "cat", "print one record (code with --blame shows the original file:line of each line)",
        "Print one record: text as is, binary records as raw bytes to a pipe and as a hex dump to a terminal. "
        "--blame puts the original file:line of each generated code line beside it, from its .debug_pkl. A "
        "name that is not a record gets the names it may have meant (TorchScript saves a second class of one "
        "name as models/___torch_mangle_2.py).",
        ["tsinspect cat model.pt code/__torch__/models.py --blame", "tsinspect cat model.pt extra/config.json",
         "tsinspect cat model.pt data/0 > weight.bin"])
    p.add_argument("file", help="a PyTorch archive")
    p.add_argument("member", help="record name, with or without the archive's top folder")
    p.add_argument("--blame", action="store_true", help="show the original source file:line beside each code line")
    p.add_argument("--json", action="store_true", help="print JSON lines with their origins (schema tsinspect.cat/1)")
    p.set_defaults(run=run_cat)

    p = add_command(
        sub, "pickle", "show a pickle record as a tree, without running it",
        "Show a pickle record (default data.pkl) as a tree of plain values and inert placeholders: globals stay "
        "names, calls stay calls, tensors are summarised. Nothing is imported or called. --ops lists the "
        "opcodes with their byte offsets.",
        ["tsinspect pickle model.pt", "tsinspect pickle model.pt constants.pkl --depth 3",
         "tsinspect pickle model.pt --ops"])
    p.add_argument("file", help="a PyTorch archive")
    p.add_argument("member", nargs="?", default=None, help="pickle record (default: data.pkl)")
    p.add_argument("--ops", action="store_true", help="print the opcodes instead of the tree")
    p.add_argument("--depth", type=int, default=64, metavar="N", help="levels to show (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON (schema tsinspect.pickle/1)")
    p.set_defaults(run=run_pickle)

    p = add_command(
        sub, "extract", "copy records into a directory (regular files only, never outside it)",
        "Copy records (all, or the ones named) to DEST/<entry name>: only regular files, only inside DEST, never "
        "over an existing file and never through a link. Members with unsafe names, links, duplicates or "
        "bomb-like compression are skipped with a warning.",
        ["tsinspect extract model.pt out/", "tsinspect extract model.pt out/ code/__torch__/models.py"],
        {"1": "written, but some members were skipped as unsafe"})
    p.add_argument("file", help="a PyTorch archive")
    p.add_argument("dest", help="destination directory (created if missing; existing files are never replaced)")
    p.add_argument("members", nargs="*", help="records to extract (default: all)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON (schema tsinspect.extract/1)")
    p.set_defaults(run=run_extract)


def _require_zip(archive: Archive) -> None:
    if archive.zip is None:
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
    import os

    paths = getattr(args, "files", None) or [args.file]
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        with open_archive(paths[0]) as archive:
            summary = _summary(archive)
            if args.json:
                emit_json(summary.to_json())
                return 0
            style = style_for(args.color)
            for line in info_lines(summary, style, args.all):
                print(line)
            warn_problems(summary.problems, style)
        return 0
    return _info_many(paths, args)


def _summary(archive):
    from tsinspect.archive.summary import summarize

    return summarize(archive)


def _info_many(paths: list[str], args: argparse.Namespace) -> int:
    """Several files or folders: JSON Lines (one tsinspect.info/1 object per file, or {"path", "error"}), or
    the text summaries one after another. A file that cannot be read is reported and the others go on."""
    import json

    from tsinspect.archive.text import json_safe
    from tsinspect.cli import report_error
    from tsinspect.cli.files import find_files
    from tsinspect.cli.progress import Progress, print_above

    found = find_files(paths)
    style = style_for(args.color)
    status = 0
    with Progress("reading", total=len(found.files)) as progress:
        for n, path in enumerate(found.files):
            progress.advance()
            try:
                with open_archive(path) as archive:
                    summary = _summary(archive)
            except Exception as exc:  # noqa: BLE001 - reported like any command's error, then the next file
                status = report_error(exc)
                if args.json:
                    print_above(json_safe(json.dumps({"schema": "tsinspect.info/1", "path": printable(path),
                                                      "error": str(exc)}, ensure_ascii=False)))
                continue
            if args.json:
                print_above(json_safe(json.dumps(summary.to_json(), ensure_ascii=False)))
                continue
            lines = list(info_lines(summary, style, args.all))
            print_above("\n".join(([""] if n else []) + lines))
            warn_problems(summary.problems, style)
    return status


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
    if s.made_by is not None:
        yield head("made by") + s.made_by.describe()
    if s.modules is not None:
        yield head("modules") + counted(sum(1 for _ in s.modules.walk()), "module")
        yield from _limited(module_lines(s.modules, style, show_all), None if show_all else MODULE_LINES, style)
    if s.tensors:
        yield (head("tensors") + f"{len(s.tensors)}, {human_bytes(s.weight_bytes)} of storage: "
               + ", ".join(f"{n} {d}" for d, n in s.dtype_counts().items()))
        groups = [(t.name, [t]) for t in s.tensors] if show_all else tensor_groups(s.tensors)
        shown = groups if show_all else groups[:tensor_limit]
        width = min(48, max(len(name) for name, _ in shown))
        for name, group in shown:
            t = group[0]
            kind = s.tensor_kinds.get(t.name, "")
            note = style(f"  ! {t.problem}", "red") if t.problem else ""
            times = f" x{len(group)}" if len(group) > 1 else ""
            yield (f"  {printable(name):<{width}}  {t.dtype:<9} {_shape(t.shape):<16} "
                   f"{human_bytes(t.nbytes):>10}{times}  {style(kind, 'dim')}{note}")
        if len(groups) > len(shown):
            rest = sum(len(g) for _, g in groups[len(shown):])
            yield style(f"  ... {counted(rest, 'more tensor')} (--all)", "dim")
    if s.constants:
        yield head("constants") + ", ".join(f"{t.name} {t.dtype}{_shape(t.shape)}" for t in s.constants[:20]) + (
            " ..." if len(s.constants) > 20 else "")
    if s.traced_inputs:
        yield head("traced with") + ", ".join(f"{t.name}: {t.dtype}{_shape(t.shape)}" for t in s.traced_inputs)
    if s.methods:
        yield head("methods") + counted(len(s.methods), "method")
        groups: dict[tuple, list] = {}
        for m in s.methods:  # one line per method of a class, however many mangled copies of the class
            groups.setdefault((m.owner if show_all else short_type(m.owner or ""), m.name), []).append(m)
        lines = (f"  {printable(short_type(m.owner) + '.' if m.owner else '')}{style(printable(m.name), 'green')}"
                 f"  {style(f'{printable(m.file)}:{m.line}', 'dim')}"
                 + style(f" (and {counted(len(copies) - 1, 'copy', 'copies')} of the class)" if len(copies) > 1
                         else "", "dim")
                 for copies in groups.values() for m in copies[:1])
        yield from _limited(lines, None if show_all else METHOD_LINES, style)
    if s.extra_files:
        yield head("extra files") + ", ".join(f"{r.display_name[6:]} ({human_bytes(r.size)})" for r in s.extra_files)
    yield head("problems") + (style(f"{len(s.problems)} (see below)", "yellow") if s.problems else "none")


MODULE_LINES, METHOD_LINES = 60, 30  # without --all; each module's repeated children are grouped too


def _limited(lines, limit: int | None, style: Style):
    for n, line in enumerate(lines):
        if limit is not None and n == limit:
            rest = 1 + sum(1 for _ in lines)
            yield style(f"  ... {counted(rest, 'more line')} (--all)", "dim")
            return
        yield line


def module_lines(root, style: Style, show_all: bool = False):
    """The module tree, one line per module; without ``show_all``, a run of sibling modules with the same
    structure (``layers.0`` ... ``layers.23``) is one line and only the first of them is expanded."""
    from tsinspect.archive.modules import short_type

    signatures = _signatures(root)
    stack = [(root, 0, None)]
    while stack:
        module, depth, names = stack.pop()
        count = len(module.parameters) + len(module.buffers)
        label = style(printable(module.name if names is None else _names(names)), "cyan")
        times = f" x{len(names)}" if names else ""
        tensors = f"  {counted(count, 'tensor')}{' each' if names else ''}" if count else ""
        methods = f"  [{', '.join(module.methods)}]" if module.methods else ""
        yield f"  {'  ' * depth}{label}  {printable(short_type(module.type))}{times}{tensors}{style(methods, 'dim')}"
        groups: list[list] = []
        for child in module.children:
            if not show_all and groups and signatures[id(groups[-1][0])] == signatures[id(child)]:
                groups[-1].append(child)
            else:
                groups.append([child])
        for group in reversed(groups):
            stack.append((group[0], depth + 1, [m.name for m in group] if len(group) > 1 else None))


_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")  # a numeric path component: layers.3.linear1.weight


def tensor_groups(tensors) -> list[tuple[str, list]]:
    """Tensors that differ only in the numbers of their paths and share dtype, shape and problem, as
    ``(encoder.layers.0-23.linear1.weight, [24 tensors])``, in the order of the first of each group."""
    groups: dict[tuple, list] = {}
    for t in tensors:
        key = (_INDEX.sub("*", t.name), t.dtype, tuple(t.shape), t.problem)
        groups.setdefault(key, []).append(t)
    out = []
    for (pattern, *_), group in groups.items():
        if len(group) == 1:
            out.append((group[0].name, group))
            continue
        numbers = [[int(n) for n in _INDEX.findall(t.name)] for t in group]
        if len(numbers[0]) == 1:  # one varying index: show its range
            first, last = numbers[0][0], numbers[-1][0]
            label = _INDEX.sub(f"{first}-{last}" if [n[0] for n in numbers] == list(range(first, last + 1))
                               else "*", pattern.replace("*", "0", 1), count=1)
        else:
            label = pattern
        out.append((label, group))
    return out


def _signatures(root) -> dict[int, tuple]:
    """id(module) -> a hashable summary of its structure (type, tensors, methods, children's), bottom up."""
    from tsinspect.archive.modules import short_type

    order = list(root.walk())
    ids: dict[tuple, int] = {}  # structure -> small int, so signatures stay small however deep the tree
    out: dict[int, tuple] = {}
    for module in reversed(order):  # children before parents
        key = (short_type(module.type), len(module.parameters) + len(module.buffers), tuple(module.methods),
               tuple(ids[out[id(c)]] for c in module.children))
        ids.setdefault(key, len(ids))
        out[id(module)] = key
    return out


def _names(names: list[str]) -> str:
    if all(n.isdigit() for n in names):
        numbers = [int(n) for n in names]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ... {names[-1]}"


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# ----- cat


def run_cat(args: argparse.Namespace) -> int:
    with open_archive(args.file) as archive:
        _require_zip(archive)
        record = find_record(archive, args.member)
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


_MANGLE = re.compile(r"/___torch_mangle_\d+(?=\.py$|/)|\.___torch_mangle_\d+")


def find_record(archive: Archive, name: str):
    """``archive.find``, and when the name is not there, an error naming the records it may have meant:
    TorchScript saves a second class of one name as ``models/___torch_mangle_2.py``, so the name the
    user knows (``code/__torch__/models.py``) is not a record; other near names come from difflib."""
    try:
        return archive.find(name)
    except ArchiveError:
        wanted = name[len(archive.prefix):] if archive.prefix and name.startswith(archive.prefix) else name
        names = [r.display_name for r in archive.records]
        close = [n for n in names if n != wanted and _MANGLE.sub("", n) == _MANGLE.sub("", wanted)]
        close = close or difflib.get_close_matches(wanted, names, n=3, cutoff=0.7)
        if not close:
            raise
        raise ArchiveError(f"no such record in the archive; did you mean {' or '.join(close[:4])}?",
                           printable(name)) from None


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
        record = find_record(archive, member)
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
