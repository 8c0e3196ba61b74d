"""Torch-free commands over the archive layer: ls, info, cat, pickle, extract."""

from __future__ import annotations

import argparse
import re
import sys

from tsinspect.archive import records as rk
from tsinspect.archive.problems import ArchiveError, Problem
from tsinspect.archive.reader import CODE_CAP, PICKLE_CAP, Archive, open_archive
from tsinspect.archive.text import printable
from tsinspect.cli import add_command
from tsinspect.cli.output import emit_json, json_line, warn_problems
from tsinspect.cli.style import style_for

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
    import os

    paths = getattr(args, "files", None) or [args.file]
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        with open_archive(paths[0]) as archive:
            summary = _summary(archive)
            if args.json:  # emit_json(summary.to_json()), the same text
                write = sys.stdout.write
                for piece in summary.json_pieces(indent=1 if sys.stdout.isatty() else None):
                    write(piece)
                write("\n")
                return 0
            style = style_for(args.color)
            for line in info_lines(summary, style, args.all):
                print(line)
            warn_problems(summary.problems, style)
        return 0
    return _info_many(paths, args)


def info_lines(*args, **kwargs):
    """``cli.info_text.info_lines``, imported when first used: ``info --json`` has no need of it."""
    from tsinspect.cli.info_text import info_lines as lines

    return lines(*args, **kwargs)


def _summary(archive):
    from tsinspect.archive.summary import summarize

    return summarize(archive)


def _info_many(paths: list[str], args: argparse.Namespace) -> int:
    """Several files or folders: JSON Lines (one tsinspect.info/1 object per file, or {"path", "error"}), or
    the text summaries one after another. A file that cannot be read is reported and the others go on."""
    from tsinspect.cli import error_message, report_error
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
                    print_above(json_line({"schema": "tsinspect.info/1", "path": printable(path),
                                           "error": printable(error_message(exc))}))
                continue
            if args.json:
                print_above(summary.json_text())  # json_line(summary.to_json()), the same text
                continue
            lines = list(info_lines(summary, style, args.all))
            print_above("\n".join(([""] if n else []) + lines))
            warn_problems(summary.problems, style)
    if not found.files:
        print("tsinspect: warning: no archives found", file=sys.stderr)
    return status


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
        import difflib

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
