"""A corpus of corrupt and hostile files, built from the committed samples with struct and zlib (no torch).

Every :class:`Case` has a short ``id``, a ``build(marker)`` function returning the file's bytes and what
tsinspect must do with it: ``fatal`` cases cannot be opened at all (every command exits 2 with one
``tsinspect: error:`` line containing ``error``); the others open, and ``info --json`` must list the problem
``kinds``. ``expect`` pins the exit status of single commands where it is known. ``marker`` is a path that
a pickle in the file tries to create (``os.system``/``eval`` payloads): nothing may ever create it.

The evil zips are written by :func:`build_zip`, which gives full control of every local and central header
field; the samples are only *read* with :mod:`zipfile`.
"""

from __future__ import annotations

import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"

STORED, DEFLATED = 0, 8
DEFAULT_MAKER = 20  # "version made by": MS-DOS, spec 2.0 (what miniz writes)

# ---------------------------------------------------------------------------------------------- zip writer


@dataclass
class Member:
    """One zip entry. ``data`` is the uncompressed content; every other field can lie about it."""

    name: bytes
    data: bytes = b""
    method: int = STORED  # the method written to both headers
    payload: bytes | None = None  # the bytes actually stored; default: ``data`` compressed per ``method``
    flags: int = 0
    crc: int | None = None  # declared CRC-32 (default: the real one)
    size: int | None = None  # declared uncompressed size (default: len(data))
    csize: int | None = None  # declared compressed size (default: len(payload))
    local_name: bytes | None = None  # name in the local header (default: ``name``)
    local_method: int | None = None
    external_attr: int = 0
    create_system: int = 0  # 3 = unix (external_attr holds the mode in its top 16 bits)
    offset: int | None = None  # declared local header offset (default: where it was written)
    extra: bytes = b""  # central extra field
    local_extra: bytes = b""
    write_local: bool = True  # False: only a central entry (its offset must then be given)

    def stored_bytes(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == DEFLATED:
            return deflate(self.data)
        return self.data


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def build_zip(members: list[Member], *, comment: bytes = b"", count: int | None = None,
              cd_size: int | None = None, cd_offset: int | None = None, eocd_comment_len: int | None = None,
              zip64: dict | None = None) -> bytes:
    """A zip archive laid out as ``members`` say; keyword arguments make the end record lie.

    ``zip64`` (a dict with optional ``count``, ``cd_size``, ``cd_offset``, ``record_offset``) adds a zip64
    end record and locator whose fields can point anywhere.
    """
    out = bytearray()
    offsets = []
    for m in members:
        payload = m.stored_bytes()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        csize = len(payload) if m.csize is None else m.csize
        offsets.append(len(out))
        if not m.write_local:
            continue
        lname = m.name if m.local_name is None else m.local_name
        method = m.method if m.local_method is None else m.local_method
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, m.flags, method, 0, 0x21, crc & 0xFFFFFFFF,
                           csize & 0xFFFFFFFF, size & 0xFFFFFFFF, len(lname), len(m.local_extra))
        out += lname + m.local_extra + payload
    cd_start = len(out)
    for m, offset in zip(members, offsets):
        payload = m.stored_bytes()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        csize = len(payload) if m.csize is None else m.csize
        off = offset if m.offset is None else m.offset
        out += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", (m.create_system << 8) | DEFAULT_MAKER, 20,
                           m.flags, m.method, 0, 0x21, crc & 0xFFFFFFFF, csize & 0xFFFFFFFF, size & 0xFFFFFFFF,
                           len(m.name), len(m.extra), 0, 0, 0, m.external_attr & 0xFFFFFFFF, off & 0xFFFFFFFF)
        out += m.name + m.extra
    real_cd_size = len(out) - cd_start
    if zip64 is not None:
        rec_pos = len(out)
        out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0,
                           zip64.get("count", len(members)), zip64.get("count", len(members)),
                           zip64.get("cd_size", real_cd_size), zip64.get("cd_offset", cd_start))
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, zip64.get("record_offset", rec_pos), 1)
    n = len(members) if count is None else count
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n & 0xFFFF, n & 0xFFFF,
                       (real_cd_size if cd_size is None else cd_size) & 0xFFFFFFFF,
                       (cd_start if cd_offset is None else cd_offset) & 0xFFFFFFFF,
                       len(comment) if eocd_comment_len is None else eocd_comment_len)
    out += comment
    return bytes(out)


@lru_cache(maxsize=None)
def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@lru_cache(maxsize=None)
def _sample_members(name: str) -> tuple[Member, ...]:
    with zipfile.ZipFile(SAMPLES / name) as zf:
        return tuple(Member(info.filename.encode(), zf.read(info), info.compress_type)
                     for info in zf.infolist())


def sample_members(name: str = "gate_scripted.pt") -> list[Member]:
    """The sample's entries as Members (fresh copies), rebuilt byte-for-byte honestly by build_zip."""
    return [replace(m) for m in _sample_members(name)]


def top(name: str = "gate_scripted.pt") -> bytes:
    return sample_members(name)[0].name.split(b"/", 1)[0] + b"/"


def edit(members: list[Member], name: str, **changes) -> list[Member]:
    """Change fields of the member ``<top>/name`` (KeyError if absent)."""
    full = members[0].name.split(b"/", 1)[0] + b"/" + name.encode()
    for i, m in enumerate(members):
        if m.name == full:
            members[i] = replace(m, **changes)
            return members
    raise KeyError(name)


def member(members: list[Member], name: str) -> Member:
    full = members[0].name.split(b"/", 1)[0] + b"/" + name.encode()
    return next(m for m in members if m.name == full)


def drop(members: list[Member], name: str) -> list[Member]:
    full = members[0].name.split(b"/", 1)[0] + b"/" + name.encode()
    return [m for m in members if m.name != full]


def with_data_pkl(data: bytes, sample: str = "gate_scripted.pt") -> bytes:
    return build_zip(edit(sample_members(sample), "data.pkl", data=data))


def deflate_bomb(mib: int) -> bytes:
    """A raw deflate stream that inflates to ``mib`` MiB of zeros (about 1 KiB per MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)  # independent, byte-aligned block
    return block * mib + c.flush()


# ------------------------------------------------------------------------------------------ pickle assembler

PROTO2 = b"\x80\x02"
MARK, STOP, TUPLE, REDUCE, APPEND, APPENDS, BUILD = b"(", b".", b"t", b"R", b"a", b"e", b"b"
EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE, SETITEM, SETITEMS = b"]", b"}", b")", b"s", b"u"
NONE, BINPERSID, NEWOBJ, TUPLE1, TUPLE2, TUPLE3 = b"N", b"Q", b"\x81", b"\x85", b"\x86", b"\x87"


def uni(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def i32(n: int) -> bytes:
    """An int: BININT when it fits, else LONG1."""
    if -(1 << 31) <= n < (1 << 31):
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ints(values: list[int]) -> bytes:
    """A tuple of ints."""
    return MARK + b"".join(i32(v) for v in values) + TUPLE


def debug_pkl(table: list[str], records: list[tuple[int, list[int], int, int, int, int]]) -> bytes:
    """A FORMAT_WITH_STRING_TABLE debug_pkl: records are (offset, line indices, file index, line, start, end)."""
    out = [PROTO2 + MARK + uni("FORMAT_WITH_STRING_TABLE") + MARK + b"".join(uni(t) for t in table) + TUPLE + MARK]
    memo: dict[tuple, int] = {}  # identical sources are written once and shared, as torch does
    for offset, lines, file_index, line, start, end in records:
        key = (tuple(lines), file_index, line)
        if key in memo:
            source = b"j" + struct.pack("<I", memo[key])  # LONG_BINGET
        else:
            memo[key] = len(memo)
            source = (glob("torch.jit._pickle", "build_intlist") + MARK + EMPTY_LIST + MARK
                      + b"".join(i32(i) for i in lines) + APPENDS + TUPLE + REDUCE + i32(file_index) + i32(line)
                      + TUPLE3 + b"r" + struct.pack("<I", memo[key]))  # LONG_BINPUT
        out.append(i32(offset) + source + i32(start) + i32(end) + TUPLE3 + i32(0) + TUPLE3)
    return b"".join(out) + TUPLE + TUPLE3 + STOP


def payload_pickle(marker: str) -> bytes:
    """REDUCE os.system and builtins.eval with payloads that would create ``marker`` if ever run."""
    shell = f"touch '{marker}'"
    code = f"open({marker!r}, 'w').close()"
    return (PROTO2 + MARK + glob("os", "system") + uni(shell) + TUPLE1 + REDUCE
            + glob("builtins", "eval") + uni(code) + TUPLE1 + REDUCE
            + glob("posix", "system") + uni(shell) + TUPLE1 + REDUCE
            + glob("subprocess", "call") + MARK + uni("touch") + uni(marker) + b"l" + TUPLE1 + REDUCE
            + TUPLE + STOP)


# -------------------------------------------------------------------------------------------------- cases

ANY = (0, 1, 2)


@dataclass
class Case:
    id: str
    build: Callable[[str], bytes]  # marker path -> file bytes
    fatal: bool = False  # the file cannot be opened: every command exits 2
    error: str = ""  # substring of the fatal error line
    kinds: tuple[str, ...] = ()  # problem kinds info --json must report
    code: str | None = "code/__torch__/models.py"  # a code record for `cat --blame`, None when there is none
    expect: dict[str, int] = field(default_factory=dict)  # command id -> exit status
    filename: str = "case.pt"
    preexisting: dict[str, bytes] = field(default_factory=dict)  # files already in DEST before extract
    commands: tuple[str, ...] | None = None  # the commands to run (default: all)


CASES: list[Case] = []


def case(id: str, **kw):
    def register(fn: Callable[..., bytes]) -> Callable[..., bytes]:
        takes_marker = "marker" in fn.__code__.co_varnames[:fn.__code__.co_argcount]
        build = fn if takes_marker else (lambda marker, fn=fn: fn())
        CASES.append(Case(id, build, **kw))
        return fn
    return register


def scripted() -> list[Member]:
    return sample_members("gate_scripted.pt")


# ----- not a zip

NOT_ZIP = dict(fatal=True, code=None)
case("text", error="not a PyTorch archive", **NOT_ZIP)(lambda: b"hello, this is not a model\n" * 20)
case("random_bytes", error="not a PyTorch archive", **NOT_ZIP)(
    lambda: random.Random(7).randbytes(4096).replace(b"PK", b"pk"))
case("empty", error="not a PyTorch archive", **NOT_ZIP)(lambda: b"")
case("one_byte", error="not a PyTorch archive", **NOT_ZIP)(lambda: b"P")
case("zip_magic_only", error="not a zip", **NOT_ZIP)(lambda: b"PK\x03\x04")
case("flatbuffer_magic", code=None, expect={"ls": 2, "info": 0, "info_json": 0, "cat": 2, "pickle": 2,
                                             "pickle_ops": 2, "extract": 2})(
    lambda: b"\x1c\x00\x00\x00PTMF" + b"\x1b[31m" * 100)
case("pytorch1_magic", error="PYTORCH1", **NOT_ZIP)(lambda: b"PYTORCH1" + b"\x1b]0;x\x07" * 100)
case("pickle_magic_only", **dict(NOT_ZIP, fatal=False), expect={"info": 0, "info_json": 0, "ls": 2})(
    lambda: b"\x80\x02")

# ----- truncated

_G = "gate_scripted.pt"
case("truncated_mid_local_header", error="not a zip", **NOT_ZIP)(lambda: sample_bytes(_G)[:17])
case("truncated_mid_data", error="not a zip", **NOT_ZIP)(lambda: sample_bytes(_G)[:len(sample_bytes(_G)) // 2])


@case("truncated_mid_central_directory", error="", **NOT_ZIP)
def _trunc_cd() -> bytes:
    data = sample_bytes(_G)
    cd = data.rfind(b"PK\x01\x02")
    return data[:cd + 20]


case("truncated_mid_end_record", error="not a zip", **NOT_ZIP)(lambda: sample_bytes(_G)[:-9])


@case("truncated_central_directory_kept_end", error="central directory", **NOT_ZIP)
def _trunc_cd_keep_end() -> bytes:
    """Bytes cut out of the middle of the directory, end record intact (its offsets now lie)."""
    data = sample_bytes(_G)
    cd = data.find(b"PK\x01\x02")
    return data[:cd + 10] + data[cd + 300:]


# ----- lying central directory


case("cd_offset_past_eof", error="central directory", **NOT_ZIP)(
    lambda: build_zip(scripted(), cd_offset=0x7FFFFFF0))
case("cd_size_past_eof", error="central directory", **NOT_ZIP)(lambda: build_zip(scripted(), cd_size=0x7FFFFFF0))
case("cd_count_too_high", kinds=("entry_count_mismatch",))(lambda: build_zip(scripted(), count=999))
case("cd_count_zero", kinds=("entry_count_mismatch",))(lambda: build_zip(scripted(), count=0))
case("end_comment_length_lies", kinds=("end_comment_past_eof",))(  # torch reads it all the same
    lambda: build_zip(scripted(), eocd_comment_len=500))
case("entry_offset_past_eof", kinds=("bad_local_header",), expect={"pickle": 2})(
    lambda: build_zip(edit(scripted(), "data.pkl", offset=0xFFFFFF00)))
case("entry_size_past_eof", kinds=("size_out_of_range",), expect={"pickle": 2})(
    lambda: build_zip(edit(scripted(), "data.pkl", csize=0x7FFFFFFF, size=0x7FFFFFFF)))


@case("central_entry_without_local_header", kinds=("bad_local_header",))
def _no_local() -> bytes:
    members = scripted()
    members.append(Member(top() + b"extra/ghost.txt", b"boo", write_local=False, offset=3))
    return build_zip(members)


# ----- zip64

case("zip64_locator_points_nowhere", kinds=("torch_refuses_zip",))(
    lambda: build_zip(scripted(), zip64={"record_offset": 0xFFFFFFFFFF})[:-22 - 20 - 56]
    + struct.pack("<4sIQI", b"PK\x06\x07", 0, 0xFFFFFFFFFF, 1) + build_zip(scripted())[-22:])
case("zip64_cd_offset_past_eof", error="central directory", **NOT_ZIP)(
    lambda: build_zip(scripted(), zip64={"cd_offset": 1 << 60}))
case("zip64_cd_size_huge", error="central directory", **NOT_ZIP)(
    lambda: build_zip(scripted(), zip64={"cd_size": 1 << 62}))
case("zip64_count_huge", kinds=("entry_count_mismatch",))(lambda: build_zip(scripted(), zip64={"count": 1 << 63}))


@case("zip64_extra_offset_nowhere", kinds=("bad_local_header",))
def _zip64_extra() -> bytes:
    extra = struct.pack("<HHQ", 1, 8, 1 << 62)
    return build_zip(edit(scripted(), "data.pkl", offset=0xFFFFFFFF, extra=extra))


@case("zip64_extra_truncated")
def _zip64_extra_short() -> bytes:
    # declares 24 bytes of zip64 fields, holds 3; sizes say 0xFFFFFFFF
    return build_zip(edit(scripted(), "constants.pkl", size=0xFFFFFFFF, csize=0xFFFFFFFF,
                          extra=struct.pack("<HH", 1, 24) + b"abc"))


# ----- entry flood


@case("entry_flood", kinds=("entry_flood",), code=None, commands=("info_json",))
def _flood() -> bytes:
    """200,001 empty stored entries (one over the cap), each with a real local header (~20 MB)."""
    n = 200_001
    local, central = bytearray(), bytearray()
    crc = 0
    for i in range(n):
        name = b"flood/%06d" % i
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, 0, 0,
                               len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, 0, 0, len(name), 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(central), len(local), 0)
    return bytes(local + central + end)


@case("entry_flood_one_local_header", kinds=("entry_count_mismatch", "name_mismatch", "overlapping_entries"),
      code=None, commands=("ls", "info", "info_json", "pickle"))
def _flood_shared() -> bytes:
    """20,000 central entries all pointing at one local header: a small file, many entries."""
    members = [Member(b"flood/a", b"x")]
    members += [Member(b"flood/%05d" % i, b"x", write_local=False, offset=0) for i in range(20_000)]
    return build_zip(members, count=7)


# ----- names

@case("duplicate_data_pkl", kinds=("duplicate_name",))
def _dup() -> bytes:
    members = scripted()
    members.append(replace(member(members, "data.pkl"), data=PROTO2 + uni("the other data.pkl") + STOP))
    return build_zip(members)


@case("nul_shadowed_name", kinds=("nul_in_name", "nul_shadowed_name"), expect={"extract": 1})
def _nul() -> bytes:
    members = scripted()
    members.append(Member(top() + b"data.pkl\x00evil", PROTO2 + uni("shadow") + STOP))
    return build_zip(members)


case("local_central_name_mismatch", kinds=("name_mismatch",))(
    lambda: build_zip(edit(scripted(), "data.pkl", local_name=top() + b"evil.pkl")))
case("method_mismatch", kinds=("method_mismatch",))(
    lambda: build_zip(edit(scripted(), "constants.pkl", local_method=DEFLATED)))
case("encrypted_flag", kinds=("encrypted",), expect={"pickle": 2, "extract": 1})(
    lambda: build_zip(edit(scripted(), "data.pkl", flags=1)))
case("unusual_flags", kinds=("unusual_flags",))(lambda: build_zip(edit(scripted(), "data.pkl", flags=0x4040)))
case("unknown_compression_method", kinds=("unsupported_method",), expect={"pickle": 2})(
    lambda: build_zip(edit(scripted(), "data.pkl", method=99)))
case("bad_crc", kinds=("crc_mismatch",))(
    lambda: build_zip(edit(edit(scripted(), "data.pkl", crc=0x12345678), "code/__torch__/models.py", crc=1)))
case("declared_size_smaller_stored", kinds=("crc_mismatch", "bad_pickle"))(
    lambda: build_zip(edit(scripted(), "data.pkl", csize=100, size=100)))
case("declared_size_larger_stored", kinds=("size_out_of_range",), expect={"pickle": 2})(
    lambda: build_zip(edit(scripted(), "data.pkl", csize=100_000, size=100_000)))
case("declared_usize_smaller_deflate", kinds=("size_mismatch",))(
    lambda: build_zip(edit(scripted(), "code/__torch__/models.py", size=10)))
case("declared_usize_larger_deflate", kinds=("size_mismatch",))(
    lambda: build_zip(edit(scripted(), "code/__torch__/models.py", size=1 << 30)))
case("corrupt_deflate_stream", kinds=("unreadable_record",))(
    lambda: build_zip(edit(scripted(), "code/__torch__/models.py", payload=b"\xff" * 351)))
case("truncated_deflate_stream", kinds=("unreadable_record",))(
    lambda: build_zip(edit(scripted(), "code/__torch__/models.py",
                           payload=deflate(member(scripted(), "code/__torch__/models.py").data)[:100])))


@case("deflate_bomb_code_honest", kinds=("unreadable_record",), expect={"extract": 1})
def _bomb_code() -> bytes:
    """A code record that inflates to 1 GiB (and says so): over every cap; extract skips it by ratio."""
    members = scripted()
    members.append(Member(top() + b"code/__torch__/bomb.py", b"", DEFLATED, payload=deflate_bomb(1024),
                          size=1 << 30, crc=0))
    return build_zip(members)


@case("deflate_bomb_lying_size", kinds=("unreadable_record",), code="code/__torch__/bomb.py",
      expect={"extract": 1, "cat_blame": 2})
def _bomb_lie() -> bytes:
    """A code record declaring 300 bytes that inflates to 1 GiB."""
    members = scripted()
    members.append(Member(top() + b"code/__torch__/bomb.py", b"", DEFLATED, payload=deflate_bomb(1024),
                          size=300, crc=0))
    return build_zip(members)


@case("deflate_bomb_data_pkl", kinds=("bad_pickle",), expect={"pickle": 2, "extract": 1},
      commands=("info_json", "pickle", "extract"))
def _bomb_pkl() -> bytes:
    return build_zip(edit(scripted(), "data.pkl", method=DEFLATED, payload=deflate_bomb(1024), size=1 << 30,
                          crc=0))


@case("overlapping_deflate_bomb", kinds=("overlapping_entries", "unreadable_record"), expect={"extract": 1})
def _overlap_bomb() -> bytes:
    """2,000 code records sharing one local header whose 15 KB of deflate inflate to 15 MiB (180 KB file):
    reading each of them would inflate 30 GB."""
    members = scripted()
    bomb = Member(top() + b"code/__torch__/b0.py", b"", DEFLATED, payload=deflate_bomb(15), size=15 << 20, crc=0)
    offset = build_zip(members + [bomb]).rfind(b"PK\x03\x04")  # where the bomb's local header is written
    shared = [replace(bomb, name=top() + b"code/__torch__/b%d.py" % i, write_local=False, offset=offset)
              for i in range(1, 2000)]
    return build_zip(members + [bomb] + shared)


@case("overlapping_entries", kinds=("overlapping_entries",))
def _overlap() -> bytes:
    members = scripted()
    members.append(Member(top() + b"extra/overlap.bin", b"", write_local=False, offset=0))
    return build_zip(members)


case("entry_spans_next_entry", kinds=("overlapping_entries",))(
    lambda: build_zip(edit(scripted(), "data/0", csize=200, size=200)))


case("invalid_utf8_name", kinds=("invalid_name",), expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(top() + b"extra/\xff\xfe\xc0.txt", b"bad name")]))
case("invalid_utf8_top_folder", kinds=("invalid_name",), expect={"extract": 1})(
    lambda: build_zip([replace(m, name=b"\xff\xfe" + m.name) for m in scripted()]))


@case("path_traversal", kinds=("unsafe_path", "outside_top_folder"), expect={"extract": 1})
def _traversal() -> bytes:
    evil = [b"../../evil", b"/abs/evil", b"C:\\evil", b"..\\..\\evil", top() + b"../../evil2",
            top() + b"extra/../../../evil3", b"\\\\server\\share\\evil"]
    return build_zip(scripted() + [Member(name, b"pwned") for name in evil])


@case("symlink_member", kinds=("symlink",), expect={"extract": 1})
def _symlink() -> bytes:
    return build_zip(scripted() + [Member(top() + b"extra/link", b"/etc/passwd", create_system=3,
                                          external_attr=0o120777 << 16),
                                   Member(top() + b"extra/dirlink", b"../../..", create_system=3,
                                          external_attr=0o120777 << 16)])


@case("symlink_then_write_through", kinds=("symlink",), expect={"extract": 1})
def _symlink_through() -> bytes:
    """A link to the parent folder, then a file 'through' the link."""
    return build_zip(scripted() + [Member(top() + b"extra/up", b"..", create_system=3, external_attr=0o120755 << 16),
                                   Member(top() + b"extra/up/escaped.txt", b"pwned")])


case("directory_and_file_same_name", expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(top() + b"extra/d", b"file"), Member(top() + b"extra/d/x", b"y")]))

case("empty_and_dot_names", kinds=("outside_top_folder",), expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(b"", b"empty name"), Member(b".", b"dot"), Member(b"./", b""),
                                    Member(top() + b".", b"dot in folder"), Member(top() + b"./x", b"x")]))
case("names_too_long_for_the_file_system", expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(top() + b"extra/" + b"a" * 300, b"x"),
                                    Member(top() + b"extra/" + b"d/" * 3000 + b"f", b"y"),
                                    Member(top() + b"extra/" + (b"x" * 250 + b"/") * 60 + b"f", b"z")]))
case("file_after_directory_same_name", expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(top() + b"extra/e/x", b"y"), Member(top() + b"extra/e", b"file")]))

ESC_NAME = "extra/\x1b[31mred\x1b]0;title\x07\x9b2J\u202eevil.txt"
case("control_chars_in_names", expect={"extract": 1})(
    lambda: build_zip(scripted() + [Member(top() + ESC_NAME.encode(), b"\x1b[2J text with escapes")]))


@case("control_chars_in_code_name", code="code/\x1b[31mevil.py")
def _esc_code_name() -> bytes:
    """A code record whose name holds escapes and whose text is not valid Python."""
    return build_zip(scripted() + [Member(top() + "code/\x1b[31mevil.py".encode(), b"def (\x1b]0;x\x07:\n",
                                          DEFLATED),
                                   Member(top() + "code/\x1b[32mgood.py".encode(), b"def f\x1b(): pass\n"
                                          b"class \x1b[33mC: pass\n"),
                                   Member(top() + "code/ok\x1b[34m.py".encode(), b"def f():\n  return 1\n")])


case("control_chars_top_folder", kinds=())(
    lambda: build_zip([replace(m, name=b"\x1b[31m" + m.name) for m in scripted()]))
case("control_chars_file_name", filename="evil\x1b[31m\x07.pt")(lambda: sample_bytes(_G))

# ----- polyglots


@case("legacy_pickle_then_zip", kinds=("appended_container",), code=None,
      expect={"ls": 2, "info": 0, "info_json": 0, "cat": 2, "pickle": 2, "pickle_ops": 2, "extract": 2})
def _legacy_zip() -> bytes:
    return PROTO2 + uni("legacy") + STOP + sample_bytes(_G)


@case("evil_legacy_pickle", code=None, expect={"ls": 2, "info": 0, "info_json": 0, "extract": 2})
def _evil_legacy(marker: str) -> bytes:
    return payload_pickle(marker)


case("junk_prepended", kinds=("data_before_zip",))(lambda: b"#!/bin/sh\necho junk\n" * 50 + sample_bytes(_G))
case("zip_then_zip", kinds=("data_before_zip",))(lambda: sample_bytes(_G) + sample_bytes("gate_state_dict.pt"))
case("zip_then_junk", kinds=("trailing_data",))(lambda: sample_bytes(_G) + b"\0junk" * 100)
case("zip_comment_with_escapes")(lambda: build_zip(scripted(), comment=b"\x1b]0;pwned\x07\x1b[2J"))

# ----- pickles (as data.pkl of an otherwise intact archive)

PICKLE_BAD = dict(kinds=("bad_pickle",), expect={"pickle": 2})
case("pickle_truncated", **PICKLE_BAD)(lambda: with_data_pkl(member(scripted(), "data.pkl").data[:200]))
case("pickle_no_stop", **PICKLE_BAD)(lambda: with_data_pkl(member(scripted(), "data.pkl").data[:-1]))
case("pickle_empty", **PICKLE_BAD)(lambda: with_data_pkl(b""))
case("pickle_stop_on_empty_stack", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + STOP))
case("pickle_deep_nesting_append")(
    lambda: with_data_pkl(PROTO2 + EMPTY_LIST * 10_000 + APPEND * 9_999 + STOP))
case("pickle_deep_nesting_mark")(
    lambda: with_data_pkl(PROTO2 + (MARK + EMPTY_LIST) * 5_000 + APPENDS * 5_000 + STOP))
case("pickle_deep_tuples")(lambda: with_data_pkl(PROTO2 + NONE + TUPLE1 * 20_000 + STOP))
case("pickle_deep_dicts")(lambda: with_data_pkl(PROTO2 + (EMPTY_DICT + uni("k")) * 10_000 + NONE
                                                + SETITEM * 10_000 + STOP))
case("pickle_deep_dicts_mark")(lambda: with_data_pkl(PROTO2 + (MARK + uni("k")) * 5_000 + NONE + b"d" * 5_000 + STOP))
case("pickle_deep_persistent_ids")(lambda: with_data_pkl(PROTO2 + NONE + BINPERSID * 10_000 + STOP))
case("pickle_deep_persistent_ids_in_tuples")(
    lambda: with_data_pkl(PROTO2 + NONE + (BINPERSID + TUPLE1) * 10_000 + STOP))
case("pickle_deep_reduce_chain")(
    lambda: with_data_pkl(PROTO2 + glob("x", "f") * 10_000 + NONE + (TUPLE1 + REDUCE) * 10_000 + STOP))
case("pickle_deep_build_chain")(
    lambda: with_data_pkl(PROTO2 + NONE + _build_chain(10_000) + STOP))


def _build_chain(n: int) -> bytes:
    # x BUILD(state) where the state of each is the next: Build(Build(...)) nested n deep
    return EMPTY_LIST * n + BUILD * (n - 1)

case("pickle_deep_build_state_chain")(
    lambda: with_data_pkl(PROTO2 + (glob("x", "f") + EMPTY_TUPLE + REDUCE) * 10_000 + BUILD * 9_999 + STOP))
case("pickle_long_key_over_wide_list")(
    lambda: build_zip(edit(scripted(), "data.pkl", method=DEFLATED, data=PROTO2 + EMPTY_DICT + uni("k" * (1 << 20))
                           + EMPTY_LIST + MARK + EMPTY_LIST * 20_000 + APPENDS + SETITEM + STOP)))


def _module_chain(n: int, key: str) -> bytes:
    """n TorchScript module objects, each the attribute ``key`` of the one before (the key is memoized)."""
    obj = glob("__torch__.M", "M") + EMPTY_TUPLE + NEWOBJ
    out = [PROTO2, obj, EMPTY_DICT, uni(key), b"r\x00\x00\x00\x00"]
    for _ in range(n - 1):
        out += [obj, EMPTY_DICT, b"j\x00\x00\x00\x00"]
    out += [NONE + SETITEM + BUILD]
    out += [SETITEM + BUILD] * (n - 1)
    return b"".join(out) + STOP


case("pickle_deep_module_chain_long_key")(
    lambda: build_zip(edit(scripted(), "data.pkl", method=DEFLATED, data=_module_chain(5_000, "m" * 1000))))
case("pickle_self_referencing")(
    lambda: with_data_pkl(PROTO2 + EMPTY_LIST + b"q\x00" + b"h\x00" + APPEND + EMPTY_DICT + b"q\x01"
                          + uni("self") + b"h\x01" + SETITEM + APPEND + STOP))
case("pickle_memo_missing_key", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + b"h\x07" + STOP))
case("pickle_memo_huge_index")(
    lambda: with_data_pkl(PROTO2 + NONE + b"r\xff\xff\xff\xff" + b"j\xff\xff\xff\xff" + b"p99999999999999999\n"
                          + TUPLE2 + STOP))
case("pickle_memo_flood")(lambda: with_data_pkl(PROTO2 + NONE + b"\x94" * 50_000 + STOP))
case("pickle_mark_flood", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + MARK * 100_000 + STOP))
case("pickle_huge_binunicode_length", **PICKLE_BAD)(
    lambda: with_data_pkl(PROTO2 + b"X\xf0\xff\xff\xff" + b"abc" + STOP))
case("pickle_huge_binunicode8_length", **PICKLE_BAD)(
    lambda: with_data_pkl(b"\x80\x04" + b"\x8d" + b"\xff" * 8 + b"abc" + STOP))
case("pickle_huge_binbytes8_length", **PICKLE_BAD)(
    lambda: with_data_pkl(b"\x80\x04" + b"\x8e" + struct.pack("<Q", 1 << 62) + b"abc" + STOP))
case("pickle_frame_lying_length")(
    lambda: with_data_pkl(b"\x80\x04" + b"\x95" + struct.pack("<Q", 1 << 40) + NONE + STOP))
case("pickle_frame_negative_length")(
    lambda: with_data_pkl(b"\x80\x04" + b"\x95" + b"\xff" * 8 + NONE + STOP))
case("pickle_protocol5_opcodes")(
    lambda: with_data_pkl(b"\x80\x05" + b"\x96" + struct.pack("<Q", 3) + b"abc" + b"\x97" + b"\x98"
                          + TUPLE3[:0] + b"\x86" + b"\x8f" + STOP))
case("pickle_protocol_99")(lambda: with_data_pkl(b"\x80\x63" + NONE + STOP))
case("pickle_unknown_opcode", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + NONE + b"\xff" + STOP))
case("pickle_huge_long")(
    lambda: with_data_pkl(PROTO2 + b"\x8b" + struct.pack("<i", 1 << 20) + b"\x7f" * (1 << 20) + STOP))
case("pickle_long_text_digits", **PICKLE_BAD)(lambda: with_data_pkl(b"L" + b"9" * 100_000 + b"L\n" + STOP))
case("pickle_float_text_garbage", **PICKLE_BAD)(lambda: with_data_pkl(b"F1e999999\x1b[31m\n" + STOP))
case("pickle_extension_codes")(lambda: with_data_pkl(PROTO2 + b"\x82\x01\x83\x01\x00" + TUPLE2 + STOP))
case("pickle_stack_global_not_strings", **PICKLE_BAD)(
    lambda: with_data_pkl(b"\x80\x04" + NONE + NONE + b"\x93" + STOP))
case("pickle_setitems_odd", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + EMPTY_DICT + MARK + NONE + SETITEMS + STOP))
case("pickle_build_on_empty", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + BUILD + STOP))
case("pickle_obj_without_class", **PICKLE_BAD)(lambda: with_data_pkl(PROTO2 + MARK + b"o" + STOP))
case("pickle_dict_keys_unhashable")(
    lambda: with_data_pkl(PROTO2 + MARK + EMPTY_LIST + NONE + EMPTY_DICT + NONE + b"d" + STOP))
case("pickle_escapes_in_strings")(
    lambda: with_data_pkl(PROTO2 + MARK + uni("\x1b[31mkey\x1b]0;title\x07") + uni("\x1b[2J\x9b31m\u202evalue")
                          + glob("\x1b[31mmod", "na\x1b]0;t\x07me") + MARK + uni("\x1b[5m") + TUPLE + REDUCE
                          + b"d" + STOP))
SURROGATE = b"X\x03\x00\x00\x00\xed\xa0\x80"  # BINUNICODE of a lone surrogate: pickle decodes with surrogatepass
case("pickle_lone_surrogates")(
    lambda: with_data_pkl(PROTO2 + MARK + SURROGATE + SURROGATE + SURROGATE + TUPLE1 + b"d" + STOP))
case("tensor_lone_surrogate_storage_key", kinds=("missing_storage",), code=None)(
    lambda: build_zip(edit(sample_members("gate_state_dict.pt"), "data.pkl", data=(
        PROTO2 + MARK + SURROGATE + glob("torch._utils", "_rebuild_tensor_v2") + MARK + MARK + uni("storage")
        + glob("torch", "FloatStorage") + SURROGATE + SURROGATE + i32(4) + TUPLE + BINPERSID + i32(0)
        + ints([4]) + ints([1]) + TUPLE + REDUCE + b"d" + STOP))))
case("pickle_invalid_utf8_string", **PICKLE_BAD)(
    lambda: with_data_pkl(PROTO2 + b"X\x03\x00\x00\x00\xff\xfe\xfd" + STOP))
case("pickle_global_invalid_utf8")(lambda: with_data_pkl(PROTO2 + b"c\xff\xfe\n\x1b[31m\n" + STOP))


@case("pickle_reduce_os_system")
def _reduce_payload(marker: str) -> bytes:
    return with_data_pkl(payload_pickle(marker))


@case("pickle_reduce_in_constants")
def _reduce_constants(marker: str) -> bytes:
    return build_zip(edit(scripted(), "constants.pkl", data=payload_pickle(marker)))


@case("pickle_reduce_in_debug_pkl", kinds=())
def _reduce_debug(marker: str) -> bytes:
    return build_zip(edit(scripted(), "code/__torch__/models.py.debug_pkl", data=payload_pickle(marker),
                          method=STORED))


# ----- debug info

_DBG = "code/__torch__/models.py.debug_pkl"


def _with_debug(data: bytes) -> bytes:
    return build_zip(edit(scripted(), _DBG, data=data, method=STORED))


case("debug_index_past_table")(lambda: _with_debug(debug_pkl(["a\n", "f.py"], [(0, [0, 99], 1, 1, 0, 1)])))
case("debug_file_index_past_table")(lambda: _with_debug(debug_pkl(["a\n"], [(0, [0], 7, 1, 0, 1)])))
case("debug_negative_indices")(lambda: _with_debug(debug_pkl(["a\n", "f.py"], [(0, [-1], -2, 1, 0, 1)])))
case("debug_wrong_types")(
    lambda: _with_debug(PROTO2 + MARK + uni("FORMAT_WITH_STRING_TABLE") + EMPTY_DICT + uni("x") + TUPLE + STOP))
case("debug_not_a_tuple")(lambda: _with_debug(PROTO2 + uni("hello") + STOP))
case("debug_records_wrong_shapes")(
    lambda: _with_debug(PROTO2 + MARK + MARK + uni("x") + TUPLE + MARK + i32(0) + TUPLE + MARK + i32(0) + NONE
                        + TUPLE + TUPLE + STOP))
case("debug_huge_index_list")(
    lambda: _with_debug(debug_pkl(["x" * (1 << 20), "f.py"], [(0, [0] * 200_000, 1, 1, 0, 1)])))


@case("debug_many_records_huge_source")
def _debug_quadratic() -> bytes:
    """5,000 code lines, each with its own debug record, all sharing one 4 MB source without newlines."""
    lines = 5_000
    code = b"x = 1\n" * lines
    big = "y" * (4 << 20)
    records = [(i * 6, [0], 1, 1, 2 << 20, (2 << 20) + 1) for i in range(lines)]
    dbg = debug_pkl([big, "f.py"], records)
    members = edit(scripted(), "code/__torch__/models.py", data=code, method=DEFLATED)
    return build_zip(edit(members, _DBG, data=dbg, method=DEFLATED))


@case("debug_escapes_in_source_and_file")
def _debug_esc() -> bytes:
    table = ["def \x1b[31mforward(self):\x1b]0;title\x07\n", "\x1b[2J/evil\x07/\u202ef.py",
             "\x1b[31mframe(7): \x1b[1mboom\n"]
    return _with_debug(debug_pkl(table, [(0, [0], 1, 3, 0, 5), (100, [2], 1, 1, 0, 5)]))


case("debug_lone_surrogates")(
    lambda: _with_debug(debug_pkl(["def f(\ud800):\n", "\udc00.py"], [(0, [0], 1, 1, 0, 3)])))
case("debug_traced_frame_5000_digit_line")(
    lambda: _with_debug(debug_pkl(["f.py(1): a\ng.py(" + "9" * 5000 + "): b\n", "f.py"], [(0, [0], 1, 1, 0, 3)])))
case("debug_offsets_past_code")(
    lambda: _with_debug(debug_pkl(["a\n", "f.py"], [(1 << 40, [0], 1, 1, 1 << 40, -5), (-7, [0], 1, 1, -9, 1)])))

case("version_record_unicode_digit")(lambda: build_zip(edit(scripted(), "version", data="\u00b2".encode())))
case("version_record_escapes_and_bomb", kinds=("unreadable_record",))(
    lambda: build_zip(edit(edit(scripted(), "version", data=b"\x1b[31m3\x9b"), "byteorder", method=DEFLATED,
                           payload=deflate_bomb(2), data=b"", size=6, crc=0)))

# ----- hostile code text

_CODE = "code/__torch__/models.py"
case("code_nul_bytes", kinds=("bad_code",))(
    lambda: build_zip(edit(scripted(), _CODE, data=b"def f():\n  return 1\0\n")))
case("code_deep_parentheses", kinds=("bad_code",))(
    lambda: build_zip(edit(scripted(), _CODE, data=b"x = " + b"(" * 10_000 + b"1" + b")" * 10_000 + b"\n")))
case("code_deep_unary", kinds=("bad_code",))(
    lambda: build_zip(edit(scripted(), _CODE, data=b"x = " + b"-" * 200_000 + b"1\n")))
case("code_deep_attribute_chain")(
    lambda: build_zip(edit(scripted(), _CODE, data=b"class C:\n  x: " + b"a." * 100_000 + b"b\n")))
case("code_deep_binop_annotation")(
    lambda: build_zip(edit(scripted(), _CODE, data=b"class C:\n  x: " + b"a+" * 100_000 + b"b\n")))
case("code_invalid_utf8")(lambda: build_zip(edit(scripted(), _CODE, data=b"def f():\n  return '\xff\xfe'\n")))
case("code_escapes")(lambda: build_zip(edit(scripted(), _CODE, data=(
    member(scripted(), _CODE).data + b"\n# \x1b[31mred\x1b]0;title\x07\n_s = '\x1b[2J'\n"))))
case("code_bidi_and_c1")(lambda: build_zip(edit(scripted(), _CODE, data=(
    member(scripted(), _CODE).data + "\n# \u202e evil \u2066 \x9b2J\n".encode()))))
case("code_60m_newlines", code="code/__torch__/models.py", expect={"cat_blame": 2}, kinds=("unreadable_record",))(
    lambda: build_zip(edit(scripted(), _CODE, data=b"\n" * (60 << 20), method=DEFLATED)))
case("code_long_line")(lambda: build_zip(edit(scripted(), _CODE, data=b"x = '" + b"a" * (4 << 20) + b"'\n",
                                              method=DEFLATED)))


# ----- exhaustion: work that grows with what references expand to, not with the file (issue 11)


def hidden_bomb_headers(count: int = 100, mib: int = 256) -> bytes:
    """``count`` local headers that no directory entry names, each named data.pkl, each with its extra field
    stretched so that its data starts at one shared deflate bomb of ``mib`` MiB, then an intact archive."""
    bomb = deflate_bomb(mib)
    headers = bytearray()
    name = b"hidden/data.pkl"
    size = 30 + len(name)
    for i in range(count):
        extra = size * (count - i - 1)  # the headers after this one, then the bomb
        headers += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, DEFLATED, 0, 0x21, 0, 0, 1 << 28,
                               len(name), extra) + name
    blob = bytes(headers)
    # the extra fields overlap: header i's extra field covers headers i+1.. so every data start is the bomb
    carrier = Member(top() + b"extra/carrier.bin", blob + bomb)
    data = bytearray(build_zip([carrier] + scripted()))
    cd = data.find(b"PK\x01\x02")  # the carrier's central record comes first: cut it out
    length = 46 + len(carrier.name)
    del data[cd:cd + length]
    end = data.rfind(b"PK\x05\x06")
    n, = struct.unpack_from("<H", data, end + 8)
    cd_size, = struct.unpack_from("<I", data, end + 12)
    cd_offset, = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<HHII", data, end + 8, n - 1, n - 1, cd_size - length, cd_offset)
    return bytes(data)


case("hidden_headers_sharing_a_bomb", commands=("scan", "info_json", "ls"))(lambda: hidden_bomb_headers())


def memo_amplified_globals(mib: int = 8, uses: int = 300) -> bytes:
    """One memoized ``mib`` MiB string, used as the module of ``uses`` STACK_GLOBALs and ``uses`` list items."""
    big = b"m" * (mib << 20)
    body = (b"\x80\x04" + b"\x8d" + struct.pack("<Q", len(big)) + big + b"\x94"  # BINUNICODE8, MEMOIZE
            + b"0" + EMPTY_LIST + MARK)  # POP; the list
    body += (b"h\x00" + b"\x8c\x01n" + b"\x93") * uses  # BINGET 0, SHORT_BINUNICODE 'n', STACK_GLOBAL
    body += b"h\x00" * uses + APPENDS + STOP
    return with_data_pkl(body)


case("memo_amplified_globals", commands=("scan", "pickle", "pickle_json", "info_json"))(
    lambda: memo_amplified_globals())


def shared_deep_tensors(tensors: int = 3000, depth: int = 990, refs: int = 101) -> bytes:
    """``tensors`` tensors in a list nested ``depth`` deep, each reached ``refs`` times through the memo."""
    members = sample_members("gate_state_dict.pt")
    pid = MARK + uni("storage") + glob("torch", "FloatStorage") + uni("0") + uni("cpu") + i32(16) + TUPLE + BINPERSID
    out = bytearray(PROTO2 + EMPTY_LIST * depth)
    out += pid + b"r" + struct.pack("<I", 0) + b"0"  # the storage, memo 0, popped
    out += MARK
    for i in range(tensors):
        out += (glob("torch._utils", "_rebuild_tensor_v2") + MARK + b"j" + struct.pack("<I", 0) + i32(0)
                + ints([4, 4]) + ints([4, 1]) + b"\x89" + glob("collections", "OrderedDict") + EMPTY_TUPLE
                + REDUCE + TUPLE + REDUCE + b"r" + struct.pack("<I", i + 1))
    for _ in range(refs - 1):
        out += b"".join(b"j" + struct.pack("<I", i + 1) for i in range(tensors))
    out += APPENDS + APPEND * (depth - 1) + STOP
    members = [replace(m, data=bytes(out)) if m.name.endswith(b"/data.pkl") else m for m in members]
    return build_zip(members)


case("shared_deep_tensors", code=None, commands=("scan", "info", "info_json", "pickle", "pickle_json"))(
    lambda: shared_deep_tensors())


# ----- tensors and storages

_SD = "gate_state_dict.pt"


@case("tensor_view_past_storage", kinds=("bad_tensor", "storage_size_mismatch"), code=None)
def _view_past() -> bytes:
    members = sample_members(_SD)
    pkl = member(members, "data.pkl").data
    assert pkl.count(b"K\x10t") == 1
    return build_zip(edit(members, "data.pkl", data=pkl.replace(b"K\x10t", b"K\x04t")))


@case("tensor_storage_size_mismatch", kinds=("storage_size_mismatch",), code=None)
def _storage_mismatch() -> bytes:
    return build_zip(edit(sample_members(_SD), "data/0", data=b"\0" * 8))


@case("tensor_missing_storage", kinds=("missing_storage",), code=None)
def _missing_storage() -> bytes:
    return build_zip(drop(sample_members(_SD), "data/0"))


@case("tensor_huge_shape", kinds=("bad_tensor",), code=None)
def _huge_shape() -> bytes:
    members = sample_members(_SD)
    pkl = member(members, "data.pkl").data
    # size (4, 4) -> (2**31-1, 2**31-1), stride (4, 1) -> (-1, 1)
    pkl = pkl.replace(b"K\x00K\x04K\x04\x86", b"K\x00" + i32(2**31 - 1) + i32(2**31 - 1) + b"\x86", 1)
    pkl = pkl.replace(b"K\x04K\x01\x86", b"J\xff\xff\xff\xffK\x01\x86", 1)
    return build_zip(edit(members, "data.pkl", data=pkl))


@case("tensor_malformed_rebuild", kinds=("bad_tensor",), code=None)
def _malformed_rebuild() -> bytes:
    pkl = (PROTO2 + MARK + uni("w") + glob("torch._utils", "_rebuild_tensor_v2")
           + MARK + uni("not a storage") + uni("offset") + EMPTY_DICT + NONE + TUPLE + REDUCE
           + uni("v") + glob("torch._utils", "_rebuild_tensor_v2") + EMPTY_TUPLE + REDUCE
           + uni("q") + glob("torch._utils", "_rebuild_qtensor")
           + MARK + MARK + uni("storage") + glob("torch", "\x1b[31mEvilStorage") + uni("../../x\x1b[2J")
           + uni("cpu\x1b]0;t\x07") + i32(1 << 30) + TUPLE + BINPERSID + i32(-5) + ints([3]) + ints([1])
           + MARK + glob("torch", "per_tensor_affine") + EMPTY_LIST + EMPTY_DICT + TUPLE + TUPLE + REDUCE
           + b"d" + STOP)
    return build_zip(edit(sample_members(_SD), "data.pkl", data=pkl))


@case("tensor_huge_ints", kinds=("bad_tensor",), code=None)
def _huge_ints() -> bytes:
    """Sizes, numel and offset given as 2000-bit LONG1s, a 10-dimension shape of them, and 10,000 dimensions."""
    big = i32(2 ** 2000)

    def tensor(name: str, sizes: bytes, strides: bytes) -> bytes:
        return (uni(name) + glob("torch._utils", "_rebuild_tensor_v2") + MARK + MARK + uni("storage")
                + glob("torch", "FloatStorage") + uni("0") + uni("cpu") + big + TUPLE + BINPERSID + big
                + sizes + strides + TUPLE + REDUCE)
    pkl = (PROTO2 + MARK + tensor("a", MARK + big * 10 + TUPLE, ints([1] * 10))
           + tensor("b", ints([2 ** 62] * 10_000), ints([1] * 10_000)) + b"d" + STOP)
    return build_zip(edit(sample_members(_SD), "data.pkl", data=pkl))


@case("tensor_storage_key_traversal", kinds=("missing_storage",), code=None)
def _key_traversal() -> bytes:
    members = sample_members(_SD)
    pkl = member(members, "data.pkl").data
    pkl = pkl.replace(uni("0"), uni("../../../../etc/passwd"), 1)
    return build_zip(edit(members, "data.pkl", data=pkl))


# ----- extract over existing files

case("extract_over_existing", expect={"extract": 2},
     preexisting={"gate_scripted/data.pkl": b"original, must survive"})(lambda: sample_bytes(_G))
case("extract_dest_has_symlinked_dir", expect={"extract": 1},
     preexisting={"gate_scripted": "->../victim"})(lambda: sample_bytes(_G))

# ----- the intact samples (sanity: the harness itself accepts them)

for _name, _code in (("gate_scripted.pt", "code/__torch__/models.py"),
                     ("gate_traced.pt", "code/__torch__/models/___torch_mangle_2.py"),
                     ("gate_lite.ptl", "code/__torch__/models.py"), ("gate_state_dict.pt", None),
                     ("gate_extra.pt", "code/__torch__/models.py")):
    case(f"sample_{_name.split('.')[0]}", code=_code)(lambda name=_name: sample_bytes(name))

BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"
