"""The files a command runs on: FILE arguments as given, folders walked for archives by their content.

A file inside a folder is taken when its first bytes are a zip, a pickle (protocol 2+, as torch.save
writes), a tar (the pre-1.0 torch.save format) or a preview/mobile archive, whatever its name; or when its
extension is one models and pickles are saved under (``.pt``, ``.pkl``, ...), since a protocol-0 pickle has
no magic bytes. Links are not followed inside folders (no cycles, nothing outside the folder); a file
named on the command line is always taken.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MODEL_EXTENSIONS = frozenset({".pt", ".pth", ".ptl", ".pt2", ".ckpt", ".bin", ".pkl", ".pickle", ".p", ".pck",
                              ".joblib", ".dat", ".data", ".model", ".tar", ".zip", ".mar", ".npy", ".npz"})


@dataclass
class Found:
    files: list[str] = field(default_factory=list)
    skipped: int = 0  # files in folders that are not archives by content or name
    folders: int = 0
    unreadable: list[str] = field(default_factory=list)  # folders that could not be listed


def looks_like_archive(path: str) -> bool:
    if os.path.splitext(path)[1].lower() in MODEL_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(264)
    except OSError:
        return True  # let the command say what is wrong with it
    return (head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PYTORCH1"))
            or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
            or head[4:8] == b"PTMF" or head[257:262] == b"ustar")


def find_files(paths: list[str]) -> Found:
    """Files in the order given; each folder's archives sorted by path."""
    found = Found()
    for path in paths:
        if not os.path.isdir(path):
            found.files.append(path)
            continue
        found.folders += 1
        inside = []
        for root, dirs, names in os.walk(path, onerror=lambda exc: found.unreadable.append(exc.filename),
                                         followlinks=False):
            dirs.sort()
            for name in names:
                full = os.path.join(root, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                if looks_like_archive(full):
                    inside.append(full)
                else:
                    found.skipped += 1
        found.files.extend(sorted(inside))
    return found
