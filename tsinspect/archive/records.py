"""What each record of an archive is, and what kind of archive the records make."""

from __future__ import annotations

import re

CODE, DEBUG_INFO, PICKLE, TENSOR_DATA, EXTRA, VERSION, METADATA, DIRECTORY, OTHER = (
    "code", "debug_info", "pickle", "tensor_data", "extra", "version", "metadata", "directory", "other")
PROGRAM, NATIVE_CODE = "program", "native_code"  # pt2: models/<name>.json; AOTInductor shared libraries

# Formats (info JSON "format").
TORCHSCRIPT, LITE, TORCH_SAVE, TORCH_PACKAGE, PT2, LEGACY, UNKNOWN = (
    "torchscript", "lite", "torch.save", "torch.package", "pt2", "legacy", "unknown")

_METADATA = {"byteorder", ".data/serialization_id", ".format_version", ".storage_alignment", "archive_format",
             "archive_version", ".data/python_version", ".data/extern_modules"}
_STORAGE = re.compile(r"^(data|constants|traced_inputs)/[^/]+$|^\.data/[^/]+\.storage$|^data/(weights|constants)/")

# The pickle whose persistent ids name storages, and the folder those storages live in.
STORAGE_DIRS = {"data.pkl": "data", "constants.pkl": "constants", "traced_inputs.pkl": "traced_inputs",
                "bytecode.pkl": "constants"}


def classify(name: str) -> str:
    """Kind of a record, by its path inside the archive's top folder, ignoring ASCII case as torch's lookups
    do (``CODE/__torch__/m.PY`` is code torch compiles, ``Data.Pkl`` the pickle it reads)."""
    name = ascii_lower(name)
    if name.endswith("/"):
        return DIRECTORY
    if name.endswith(".debug_pkl"):
        return DEBUG_INFO
    if name.endswith(".pkl"):
        return PICKLE
    if name.startswith("code/") and name.endswith(".py") or name.startswith(".data/ts_code/code/"):
        return CODE
    if name.startswith("extra/"):
        return EXTRA
    if name.startswith("models/") and name.endswith(".json"):
        return PROGRAM
    if name.startswith("data/") and name.endswith("_config.json"):
        return METADATA
    if name.startswith("data/aotinductor/") and re.search(r"\.(so|dll|dylib|pyd)(\.|$)", name):
        return NATIVE_CODE
    if name in ("version", ".data/version"):
        return VERSION
    if name in _METADATA:
        return METADATA
    if _STORAGE.match(name):
        return TENSOR_DATA
    return OTHER


def ascii_lower(name: str) -> str:
    """``name`` with only A-Z lowered (miniz's MZ_TOLOWER; str.lower() would also fold other letters)."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def detect_zip_format(names: set[str], archive_format: bytes | None) -> str:
    """Format of a zip archive from its record names (inside the top folder)."""
    if archive_format is not None and archive_format.strip() == b"pt2":
        return PT2
    if "model.json" in names:
        return LEGACY
    if "bytecode.pkl" in names:
        return LITE
    has_code = any(n.startswith("code/") for n in names)
    if "constants.pkl" in names and (has_code or "data.pkl" in names):
        return TORCHSCRIPT
    if ".data/extern_modules" in names or any(n.startswith(".data/ts_code/") for n in names):
        return TORCH_PACKAGE
    if "data.pkl" in names:
        return TORCH_SAVE
    if any(n.startswith("models/") for n in names) and "archive_format" in names:
        return PT2
    return UNKNOWN


def sniff(head: bytes) -> tuple[str, str | None]:
    """(container, note) from a file's first bytes, as torch decides: zip, pickle, flatbuffer or unknown."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip", None
    if head.startswith(b"PYTORCH1"):
        return "unknown", "a PyTorch preview-release archive (PYTORCH1), which no current torch reads"
    if head[4:8] == b"PTMF":
        return "flatbuffer", "a FlatBuffer mobile model (PTMF); tsinspect reads zip-based archives only"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle", None
    return "unknown", None
