"""Evil files for ``tsinspect scan``: payloads hidden where PyTorch archives let them hide.

Built torch-free from the committed samples with the zip writer and pickle assembler of tests/hostile.py
(imported, not changed). Each :class:`Evil` has an ``id``, a one-line ``what``, ``build(marker) -> bytes``
and the verdict ``scan`` must give (``unsafe`` for every payload a loader or a common tool would run,
``suspicious`` for tricks without a known-dangerous callable). ``marker`` is a path the payloads would
create if anything ever ran them. ``benchmarks/scanners.py`` writes the same files for other scanners.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, replace
from typing import Callable

import hostile
from hostile import (BINPERSID, DEFLATED, EMPTY_DICT, MARK, NONE, PROTO2, REDUCE, STOP, STORED, TUPLE, TUPLE1,
                     Member, build_zip, edit, glob, member, payload_pickle, sample_bytes, sample_members, top, uni)

_DBG = "code/__torch__/models.py.debug_pkl"
FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE = b"\x95", b"\x94", b"\x93", b"\x8c"


@dataclass(frozen=True)
class Evil:
    id: str
    what: str
    build: Callable[[str], bytes]
    verdict: str = "unsafe"
    filename: str = "model.pt"
    kinds: tuple[str, ...] = ("dangerous_global", "dangerous_call")  # unsafe findings scan must give


EVIL: list[Evil] = []


def evil(id: str, what: str, verdict: str = "unsafe", filename: str = "model.pt",
         kinds: tuple[str, ...] = ("dangerous_global", "dangerous_call")):
    def register(fn: Callable[[str], bytes]) -> Callable[[str], bytes]:
        EVIL.append(Evil(id, what, fn, verdict, filename, kinds))
        return fn
    return register


def scripted() -> list[Member]:
    return sample_members("gate_scripted.pt")


def shell(marker: str) -> str:
    return f"touch '{marker}'"


def os_system(marker: str) -> bytes:
    """The smallest payload: os.system('touch MARKER') as a protocol-2 pickle."""
    return PROTO2 + glob("os", "system") + uni(shell(marker)) + TUPLE1 + REDUCE + STOP


def short(s: str) -> bytes:
    raw = s.encode()
    return SHORT_BINUNICODE + bytes([len(raw)]) + raw


def framed(body: bytes, frame_len: int | None = None) -> bytes:
    return FRAME + struct.pack("<Q", len(body) if frame_len is None else frame_len) + body


# ----- the plain cases


@evil("data_pkl_os_system", "os.system REDUCE in a TorchScript data.pkl")
def _data(marker: str) -> bytes:
    return hostile.with_data_pkl(payload_pickle(marker))


@evil("state_dict_os_system", "os.system REDUCE in a torch.save data.pkl (what torch.load(weights_only=False) runs)")
def _state_dict(marker: str) -> bytes:
    return build_zip(edit(sample_members("gate_state_dict.pt"), "data.pkl", data=os_system(marker)))


@evil("constants_pkl", "payload in constants.pkl")
def _constants(marker: str) -> bytes:
    return build_zip(edit(scripted(), "constants.pkl", data=os_system(marker)))


@evil("bytecode_pkl", "payload in a lite archive's bytecode.pkl")
def _bytecode(marker: str) -> bytes:
    return build_zip(edit(sample_members("gate_lite.ptl"), "bytecode.pkl", data=os_system(marker)),)


@evil("debug_pkl_stored", "payload pickle in a code/*.debug_pkl (stored)")
def _debug(marker: str) -> bytes:
    return build_zip(edit(scripted(), _DBG, data=payload_pickle(marker), method=STORED))


@evil("debug_pkl_deflated", "payload pickle in a code/*.debug_pkl (deflated, as torch writes them)")
def _debug_deflated(marker: str) -> bytes:
    return build_zip(edit(scripted(), _DBG, data=payload_pickle(marker), method=DEFLATED))


# ----- zip tricks


@evil("nul_shadowed_data_pkl", "a second 'data.pkl\\0x' entry holds the payload: zipfile shows two data.pkl")
def _nul(marker: str) -> bytes:
    return build_zip(scripted() + [Member(top() + b"data.pkl\x00x", os_system(marker))])


@evil("duplicate_data_pkl_last", "two data.pkl entries; the last one (the copy zipfile reads) holds the payload")
def _dup(marker: str) -> bytes:
    members = scripted()
    return build_zip(members + [replace(member(members, "data.pkl"), data=os_system(marker))])


@evil("outside_top_folder", "payload pickle in an entry outside the archive's top folder")
def _outside(marker: str) -> bytes:
    return build_zip(scripted() + [Member(b"other/data.pkl", os_system(marker))])


@evil("unnamed_pickle_entry", "payload pickle in extra/readme.txt (a pickle by content, not by name)")
def _unnamed(marker: str) -> bytes:
    return build_zip(scripted() + [Member(top() + b"extra/readme.txt", os_system(marker), DEFLATED)])


@evil("local_name_differs", "data.pkl holds the payload; its local header calls it extra/notes.txt")
def _local(marker: str) -> bytes:
    return build_zip(edit(scripted(), "data.pkl", data=os_system(marker), local_name=top() + b"extra/notes.txt"))


@evil("central_name_innocent", "a central entry named extra/notes.txt whose local header says data.pkl")
def _central(marker: str) -> bytes:
    return build_zip(scripted() + [Member(top() + b"extra/notes.txt", os_system(marker),
                                          local_name=top() + b"data.pkl")])


@evil("bad_crc_payload", "payload data.pkl with a wrong CRC (PyTorch does not check; careful tools skip it)")
def _crc(marker: str) -> bytes:
    return build_zip(edit(scripted(), "data.pkl", data=os_system(marker), crc=0x1234))


@evil("second_pickle_in_member", "a harmless pickle, then the payload in the same data.pkl")
def _second(marker: str) -> bytes:
    first = member(scripted(), "data.pkl").data
    return hostile.with_data_pkl(first + os_system(marker))


@evil("payload_after_zip", "a zip, then a payload pickle after its end record")
def _after(marker: str) -> bytes:
    return sample_bytes("gate_scripted.pt") + os_system(marker)


# ----- legacy streams and polyglots


def _legacy(objects: list[bytes]) -> bytes:
    """A torch.save legacy stream: magic number, protocol, sys info, the object, storage keys."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    proto = pickle.dumps(1001, protocol=2)
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    keys = pickle.dumps([], protocol=2)
    parts = [magic, proto, info, None, keys]
    for i, obj in enumerate(objects):
        if obj is not None:
            parts[i] = obj
    if parts[3] is None:
        parts[3] = pickle.dumps({}, protocol=2)
    return b"".join(parts)


@evil("polyglot_legacy_then_zip", "legacy pickle stream (payload as the object) before an intact TorchScript zip")
def _polyglot(marker: str) -> bytes:
    return _legacy([None, None, None, os_system(marker)]) + sample_bytes("gate_scripted.pt")


@evil("polyglot_payload_in_sys_info", "legacy stream + zip, payload in the third pickle (sys info)")
def _polyglot_info(marker: str) -> bytes:
    return _legacy([None, None, os_system(marker)]) + sample_bytes("gate_scripted.pt")


@evil("legacy_payload_in_storage_keys", "legacy torch.save stream, payload in the last pickle (storage keys)",
      filename="legacy.pt")
def _legacy_keys(marker: str) -> bytes:
    return _legacy([None, None, None, None, os_system(marker)])


@evil("protocol0_text_pickle", "a protocol-0 (plain text) pickle file: torch.load unpickles it", filename="x.pt")
def _proto0(marker: str) -> bytes:
    return b"cos\nsystem\n(V" + shell(marker).encode() + b"\ntR."


# ----- pickle opcode tricks


@evil("frame_protocol4", "protocol-4 pickle, the payload in a second FRAME")
def _frames(marker: str) -> bytes:
    first = short("harmless") + MEMOIZE + b"0"  # POP
    second = glob("os", "system") + short(shell(marker)) + TUPLE1 + REDUCE + STOP
    return hostile.with_data_pkl(b"\x80\x04" + framed(first) + framed(second))


@evil("frame_lying_length", "FRAME declaring fewer bytes than follow, splitting the payload's opcodes")
def _frame_lie(marker: str) -> bytes:
    body = glob("os", "system") + uni(shell(marker)) + TUPLE1 + REDUCE + STOP
    return hostile.with_data_pkl(b"\x80\x04" + framed(body, 5))


@evil("stack_global_memoized", "STACK_GLOBAL of os.system built from memoized strings (no GLOBAL opcode)")
def _stack_global(marker: str) -> bytes:
    body = (short("os") + MEMOIZE + short("system") + MEMOIZE + b"0" + b"0"  # push, memoize, pop both
            + b"h\x00" + b"h\x01" + STACK_GLOBAL + short(shell(marker)) + TUPLE1 + REDUCE + STOP)
    return hostile.with_data_pkl(b"\x80\x04" + framed(body))


@evil("inst_opcode", "INST os system (protocol 0 call opcode, no REDUCE)")
def _inst(marker: str) -> bytes:
    return hostile.with_data_pkl(PROTO2 + MARK + uni(shell(marker)) + b"ios\nsystem\n" + STOP)


@evil("getattr_import_chain", "builtins.getattr(builtins.__import__('os'), 'system')(...)")
def _getattr(marker: str) -> bytes:
    body = (PROTO2 + glob("builtins", "getattr") + glob("builtins", "__import__") + uni("os") + TUPLE1 + REDUCE
            + uni("system") + b"\x86" + REDUCE + uni(shell(marker)) + TUPLE1 + REDUCE + STOP)
    return hostile.with_data_pkl(body)


@evil("python2_builtin_eval", "__builtin__.eval (a Python 2 name pickle maps to builtins)")
def _py2(marker: str) -> bytes:
    return hostile.with_data_pkl(PROTO2 + glob("__builtin__", "eval") + uni(f"open({marker!r}, 'w')") + TUPLE1
                                 + REDUCE + STOP)


@evil("dotted_attribute_walk", "STACK_GLOBAL posixpath 'os.system' (protocol 4 resolves dotted names)")
def _dotted(marker: str) -> bytes:
    body = short("posixpath") + short("os.system") + STACK_GLOBAL + short(shell(marker)) + TUPLE1 + REDUCE + STOP
    return hostile.with_data_pkl(b"\x80\x04" + framed(body))


@evil("unknown_class_in_torchscript", "a TorchScript data.pkl naming mypkg.Model (not __torch__): needs an import",
      verdict="suspicious")
def _unknown(marker: str) -> bytes:
    return hostile.with_data_pkl(PROTO2 + glob("mypkg.models", "Model") + b")" + b"\x81" + EMPTY_DICT + b"b" + STOP)


@evil("persistent_id_called", "REDUCE on the result of a persistent id (a computed callable)", verdict="suspicious")
def _computed(marker: str) -> bytes:
    return hostile.with_data_pkl(PROTO2 + MARK + uni("storage") + TUPLE + BINPERSID + NONE + TUPLE1 + REDUCE + STOP)


@evil("hidden_local_entry", "a local entry data.pkl with the payload that no central-directory entry points to")
def _hidden(marker: str) -> bytes:
    hidden = Member(top() + b"data.pkl", os_system(marker))
    data = bytearray(build_zip([hidden] + scripted()))
    cd = data.find(b"PK\x01\x02")  # the hidden member's central record comes first: cut it out
    length = 46 + len(hidden.name)
    del data[cd:cd + length]
    end = data.rfind(b"PK\x05\x06")
    count, = struct.unpack_from("<H", data, end + 8)
    cd_size, = struct.unpack_from("<I", data, end + 12)
    struct.pack_into("<HHI", data, end + 8, count - 1, count - 1, cd_size - length)
    return bytes(data)


@evil("legacy_tar_pickle", "the pre-1.0 tar format of torch.save, payload in its 'pickle' member", filename="old.pt")
def _tar(marker: str) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2)),
                           ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
                           ("tensors", pickle.dumps(0, protocol=2)), ("pickle", os_system(marker))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# ----- the zip torch reads (issue 11, classes 4 and 5): each is proven against torch by tests/test_torch_view.py


@dataclass(frozen=True)
class Proof:
    """How torch shows it reads the payload: ``loader`` runs in a child in a temp dir; ``records`` are names
    whose bytes torch's own reader (``torch._C.PyTorchFileReader``) must give exactly as tsinspect's lookup
    does; ``marker`` says whether the load creates the marker file; ``sentinel`` must be in the code torch compiled."""

    loader: str  # "torch.load" (weights_only=False), "torch.jit.load", or "torch.jit.load+forward"
    records: tuple[str, ...] = ("data.pkl",)
    marker: bool = True
    sentinel: str = ""


PROOFS: dict[str, Proof] = {}


def proven(proof: Proof):
    def register(fn):
        PROOFS[EVIL[-1].id] = proof
        return fn
    return register


def _state_dict_members() -> list[Member]:
    return sample_members("gate_state_dict.pt")


def _shadowing_order(members: list[Member], extra: Member) -> list[Member]:
    """``members`` with ``extra`` inserted where miniz's lookup finds it instead of its same-named twin, after
    the twin if any such place exists (a benign copy first, as a reader going in order would take)."""
    import tempfile
    from tsinspect.archive.zipread import open_zip

    twin = max(i for i, m in enumerate(members) if m.name.lower() == extra.name.lower())
    for at in list(range(twin + 1, len(members) + 1)) + list(range(twin + 1)):
        trial = members[:at] + [extra] + members[at:]
        with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
            fh.write(build_zip(trial))
            fh.flush()
            with open_zip(fh.name) as z:
                found = z.locate(extra.name)
                if found is not None and found.raw_name == extra.name:
                    return trial
    raise AssertionError("no order makes torch read the extra member")


@proven(Proof("torch.load"))
@evil("case_variant_data_pkl", "a benign data.pkl and a payload DATA.PKL: torch matches names case-insensitively "
      "and its lookup lands on DATA.PKL (torch.load(weights_only=False) runs it)")
def _case_variant(marker: str) -> bytes:
    members = _state_dict_members()
    t = members[0].name.split(b"/", 1)[0] + b"/"
    return build_zip(_shadowing_order(members, Member(t + b"DATA.PKL", os_system(marker))))


@proven(Proof("torch.load"))
@evil("protocol0_Data_Pkl_alone", "the only data pickle is named Data.Pkl and is protocol 0 (plain text, not "
      "starting like a pickle): torch.load finds it for data.pkl and runs it")
def _proto0_upper(marker: str) -> bytes:
    members = _state_dict_members()
    t = members[0].name.split(b"/", 1)[0] + b"/"
    text = b"cos\nsystem\n(V" + shell(marker).encode() + b"\ntR."
    return build_zip([replace(m, name=t + b"Data.Pkl", data=text) if m.name == t + b"data.pkl" else m
                      for m in members])


def _save_in_forward(marker: str) -> bytes:
    code = member(scripted(), "code/__torch__/models.py").data.decode()
    return code.replace("    proj = self.proj\n", f"    torch.save(x, {marker!r})\n    proj = self.proj\n").encode()


@proven(Proof("torch.jit.load+forward", records=("code/__torch__/models.py",), sentinel="torch.save"))
@evil("code_folder_upper_case", "code/__torch__/models.py replaced by CODE/__torch__/models.PY whose forward "
      "writes a file: torch compiles it (case-insensitive lookup)", kinds=("file_io",))
def _code_upper(marker: str) -> bytes:
    members = scripted()
    t = top()
    old = t + b"code/__torch__/models.py"
    return build_zip([replace(m, name=t + b"CODE/__torch__/models.PY",
                              data=_save_in_forward(marker)) if m.name == old else m
                      for m in members])


@proven(Proof("torch.jit.load+forward", records=("code/__torch__/models.py",), sentinel="torch.save"))
@evil("code_case_twin", "a benign code/__torch__/models.py and a code/__torch__/models.PY twin that writes a "
      "file: torch's lookup lands on the twin", kinds=("file_io",))
def _code_twin(marker: str) -> bytes:
    members = scripted()
    twin = Member(top() + b"code/__torch__/models.PY", _save_in_forward(marker))
    return build_zip(_shadowing_order(members, twin))


@proven(Proof("torch.jit.load+forward", records=("code/__torch__/models.py",), sentinel="torch.save"))
@evil("top_folder_case_variant", "code/__torch__/models.py stored under GATE_SCRIPTED/ (the top folder in upper "
      "case) with a forward that writes a file: torch's lookup ignores case in the folder too",
      kinds=("file_io",))
def _top_case(marker: str) -> bytes:
    members = scripted()
    t = top()
    old = t + b"code/__torch__/models.py"
    return build_zip([replace(m, name=t.upper() + b"code/__torch__/models.py", data=_save_in_forward(marker))
                      if m.name == old else m for m in members])


def _moved_directory(directory: bytes, shift: int) -> bytes:
    """A central directory whose local header offsets all point ``shift`` bytes further on."""
    out = bytearray(directory)
    pos = 0
    while pos < len(out):
        off = struct.unpack_from("<I", out, pos + 42)[0]
        struct.pack_into("<I", out, pos + 42, off + shift)
        nlen, elen, clen = struct.unpack_from("<HHH", out, pos + 28)
        pos += 46 + nlen + elen + clen
    return bytes(out)


def _two_directories(benign: list[Member], evil_members: list[Member]) -> bytes:
    """Local entries of both lists, then the benign directory and an end record whose comment reaches the end
    of the file exactly, then the evil directory and an end record whose comment length runs past the end."""
    body = bytearray(build_zip(benign))
    end = body.rfind(b"PK\x05\x06")
    first = bytes(body[:end])  # benign locals + benign directory
    cd_benign = struct.unpack_from("<I", body, end + 16)[0]
    evil_zip = build_zip(evil_members)
    evil_cd = struct.unpack_from("<I", evil_zip, evil_zip.rfind(b"PK\x05\x06") + 16)[0]
    evil_locals, evil_dir = evil_zip[:evil_cd], evil_zip[evil_cd:evil_zip.rfind(b"PK\x05\x06")]
    # evil locals go first (their offsets stay right), benign ones after them
    out = bytearray(evil_locals)
    shift = len(out)
    benign_dir_at = shift + cd_benign
    benign_dir = _moved_directory(first[cd_benign:], shift)  # the evil locals sit in front of the benign ones
    out += first[:cd_benign]
    out += benign_dir
    n_benign = len(benign)
    evil_dir_at = len(out) + 22
    tail = evil_dir + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(evil_members), len(evil_members),
                                  len(evil_dir), evil_dir_at, 500)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n_benign, n_benign, len(benign_dir), benign_dir_at,
                       len(tail))
    out += tail
    return bytes(out)


@proven(Proof("torch.load"))
@evil("two_end_records", "two directories: the last end record (its comment length runs past the end of the "
      "file) names the payload data.pkl, an earlier one with a consistent comment names the benign one")
def _two_ends(marker: str) -> bytes:
    return _two_directories(_state_dict_members(), edit(_state_dict_members(), "data.pkl", data=os_system(marker)))


@proven(Proof("torch.load"))
@evil("zip64_locator_elsewhere", "a zip64 end record right before the locator names the benign directory; the "
      "locator points at another one, naming the payload's (torch follows the locator)")
def _zip64_moved(marker: str) -> bytes:
    benign = bytearray(build_zip(_state_dict_members()))
    benign_cd = struct.unpack_from("<I", benign, benign.rfind(b"PK\x05\x06") + 16)[0]
    evil_zip = build_zip(edit(_state_dict_members(), "data.pkl", data=os_system(marker)))
    evil_end = evil_zip.rfind(b"PK\x05\x06")
    evil_cd = struct.unpack_from("<I", evil_zip, evil_end + 16)[0]
    n = len(_state_dict_members())
    # the evil zip's locals and directory first, then the benign locals (offsets moved) and directory
    out = bytearray(evil_zip[:evil_end])
    shift = len(out)
    benign_dir = _moved_directory(benign[benign_cd:benign.rfind(b"PK\x05\x06")], shift)
    out += benign[:benign_cd]
    benign_dir_at = len(out)
    out += benign_dir
    evil_record_at = len(out)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, evil_end - evil_cd, evil_cd)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(benign_dir), benign_dir_at)
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, evil_record_at, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


BY_ID = {e.id: e for e in EVIL}
assert len(BY_ID) == len(EVIL), "evil ids must be unique"
