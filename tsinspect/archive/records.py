"""What each record of an archive is, and what kind of archive the records make."""

from __future__ import annotations

import re

CODE, DEBUG_INFO, PICKLE, TENSOR_DATA, EXTRA, VERSION, METADATA, DIRECTORY, OTHER = (
    "code", "debug_info", "pickle", "tensor_data", "extra", "version", "metadata", "directory", "other")
PROGRAM, NATIVE_CODE = "program", "native_code"  # pt2: models/<name>.json; AOTInductor shared libraries

# Formats (info JSON "format").
TORCHSCRIPT, LITE, TORCH_SAVE, TORCH_PACKAGE, PT2, LEGACY, UNKNOWN = (
    "torchscript", "lite", "torch.save", "torch.package", "pt2", "legacy", "unknown")
TORCHSCRIPT_JSON = "torchscript-json"  # torch 1.0-1.3: model.json instead of data.pkl (archive.modeljson)
# Formats with an IR view: torch loads the first two in a child, pt2 and torchscript-json are read without it
IR_FORMATS = (TORCHSCRIPT, LITE, PT2, TORCHSCRIPT_JSON)

_METADATA = {"byteorder", ".data/serialization_id", ".format_version", ".storage_alignment", "archive_format",
             "archive_version", ".data/python_version", ".data/extern_modules",
             "model.json"}  # torch 1.0-1.3's module tree and tensor table (archive.modeljson)
_STORAGE = re.compile(r"^(data|constants|traced_inputs)/[^/]+$|^\.data/[^/]+\.storage$|^data/(weights|constants)/"
                      r"|^tensors/\d+$")  # the last: torch 1.0-1.3's tensor table

# The pickle whose persistent ids name storages, and the folder those storages live in.
STORAGE_DIRS = {"data.pkl": "data", "constants.pkl": "constants", "traced_inputs.pkl": "traced_inputs",
                "bytecode.pkl": "constants"}


def classify(name: str) -> str:
    """Kind of a record, by its path inside the archive's top folder, ignoring ASCII case as torch's lookups
    do (``CODE/__torch__/m.PY`` is code torch compiles, ``Data.Pkl`` the pickle it reads)."""
    if name.startswith("data/") and name[5:].isdigit():  # a storage, by the thousand: what the tests below give
        return TENSOR_DATA
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
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)  # the same on ASCII, 8x faster


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def detect_zip_format(names: set[str], archive_format: bytes | None) -> str:
    """Format of a zip archive from its record names (inside the top folder)."""
    if archive_format is not None and archive_format.strip() == b"pt2":
        return PT2
    if "model.json" in names:
        return TORCHSCRIPT_JSON
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


# first bytes of files people mistake for a model, or save under a model's name
_MAGICS = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
           (b"%PDF-", "a PDF document"), (b"\x1f\x8b", "a gzip file"), (b"BZh", "a bzip2 file"),
           (b"\xfd7zXZ\x00", "an xz file"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
           (b"\x7fELF", "an ELF executable"),
           (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5?)"), (b"GGUF", "a GGUF model (llama.cpp)"),
           (b"\x93NUMPY", "a NumPy .npy array"))
_PICKLE0 = re.compile(rb"^(c[\w.]+\n|\((dp|lp|t|S'|V)|[]}]q?)")


def what_it_is(head: bytes) -> str | None:
    """What a file that is not an archive is, from its first bytes, for the error message."""
    if not head:
        return "an empty file, not a PyTorch archive"
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name + ", not a PyTorch archive"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file (not a PyTorch archive)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # a multi-byte character cut at the end is still text
        text = head[:-3].decode("utf-8", "ignore") if len(head) > 3 else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        if _PICKLE0.match(head):
            return "text that starts like a protocol-0 pickle, not a PyTorch archive (tsinspect scan judges it)"
        if text.lstrip().startswith(("{", "[")):
            return "a text file (JSON?), not a PyTorch archive"
        if text.startswith("version https:"):
            return "a Git LFS pointer, not a PyTorch archive: fetch the file itself with git lfs pull"
        return "a text file, not a PyTorch archive"
    return None
