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


EVIL: list[Evil] = []


def evil(id: str, what: str, verdict: str = "unsafe", filename: str = "model.pt"):
    def register(fn: Callable[[str], bytes]) -> Callable[[str], bytes]:
        EVIL.append(Evil(id, what, fn, verdict, filename))
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


BY_ID = {e.id: e for e in EVIL}
assert len(BY_ID) == len(EVIL), "evil ids must be unique"
