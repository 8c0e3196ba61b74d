"""Copy records out of an archive, safely.

Only regular files are written, only inside the destination, never over an existing file, never through a
symbolic link; names that are absolute, climb with ``..``, hold NUL bytes or characters a terminal acts on
(C0/C1 controls, DEL, bidi overrides) are skipped, as are members that inflate past their declared size or at
a ratio no PyTorch archive has.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import Archive, Record
from tsinspect.archive.text import has_unsafe_chars, printable

_NAME_ERRORS = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}
MAX_DEPTH = 64
MAX_RATIO = 200  # deflate ratio beyond which a member is treated as a bomb (PyTorch code compresses ~4:1)


@dataclass
class ExtractResult:
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, reason)


def _unsafe_reason(record: Record) -> str | None:
    entry = record.entry
    raw = entry.raw_name
    if b"\0" in raw:
        return "name contains a NUL byte"
    if not entry.valid_name:
        return "name is not valid UTF-8"
    if b"\\" in raw or raw.startswith(b"/") or (len(raw) > 1 and raw[1:2] == b":"):
        return "name is absolute or uses backslashes"
    parts = entry.name.split("/")
    if ".." in parts:
        return "name climbs out with '..'"
    if "." in parts or not any(parts):  # '', 'a/.', '.': the target would be DEST or a folder above it
        return "name is empty or has '.' components"
    if len(parts) > MAX_DEPTH:  # 3,000 nested folders: a tree that recursive tools (shutil.rmtree) cannot delete
        return f"name is nested more than {MAX_DEPTH} folders deep"
    if has_unsafe_chars(entry.name):  # C0 and C1 controls, DEL, bidi overrides: a terminal or `ls` acts on them
        return "name contains control or bidirectional-override characters"
    if entry.is_symlink:
        return "member is a symbolic link"
    if entry.encrypted:
        return "member is encrypted"
    if entry.method == 8 and entry.size > MAX_RATIO * entry.compressed_size + (1 << 20):
        return f"inflates {entry.size} bytes from {entry.compressed_size} (zip bomb?)"
    return None


def extract(archive: Archive, dest: str | os.PathLike, members: list[str] | None = None) -> ExtractResult:
    """Write the chosen records (all by default) under ``dest`` with their full names."""
    if archive.members is None:
        raise ArchiveError("nothing to extract: not a zip archive")
    chosen = [archive.find(m) for m in members] if members else list(archive.records)
    root = Path(dest)
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise ArchiveError(f"destination {printable(str(root))} exists and is not a directory")
    result = ExtractResult()
    plan: list[tuple[Record, Path]] = []
    seen: set[str] = set()
    for record in chosen:
        reason = _unsafe_reason(record)
        if reason is None and record.entry.name in seen:
            reason = "another member has the same name"
        if reason is not None:
            result.skipped.append((record.entry.display_name, reason))
            continue
        seen.add(record.entry.name)
        target = root.joinpath(*[p for p in record.entry.name.split("/") if p])
        if not record.entry.is_dir and os.path.lexists(target):
            raise ArchiveError(f"{printable(str(target))} already exists; nothing was written")
        plan.append((record, target))
    root.mkdir(parents=True, exist_ok=True)
    for record, target in plan:
        try:
            # a member can need a folder that an earlier member wrote as a file ('d', then 'd/x')
            _make_dirs(root, target if record.entry.is_dir else target.parent)
            if not record.entry.is_dir:
                _write(archive, record, target)
        except ArchiveError as exc:
            result.skipped.append((record.entry.display_name, str(exc).split(": ", 1)[-1]))
            continue
        except OSError as exc:  # a name this file system will not take (a 300-byte component, 3000 levels)
            if exc.errno not in _NAME_ERRORS:
                raise
            result.skipped.append((record.entry.display_name, f"cannot be written here ({exc.strerror})"))
            continue
        if not record.entry.is_dir:
            result.written.append(str(target))
    return result


def _make_dirs(root: Path, path: Path) -> None:
    """Create ``path`` below ``root`` one component at a time, refusing to pass through links."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise ArchiveError(f"{printable(str(current))} is a symbolic link; refusing to write through it")
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise ArchiveError(f"{printable(str(current))} exists and is not a directory")


def _write(archive: Archive, record: Record, target: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except (FileExistsError, IsADirectoryError):  # e.g. 'd/x' was written before a member named 'd'
        raise ArchiveError(f"{printable(str(target))} already exists") from None
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in archive.members.iter_chunks(record.entry, limit=record.entry.size):
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
