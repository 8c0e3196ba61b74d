"""TorchBind objects in TorchScript pickles: torch runs their native ``__setstate__`` while it unpickles.

The TorchScript unpickler resolves ``__torch__.torch.classes.<ns>.<Class>`` to a TorchBind class and
hands the object's state to that class's C++ ``__setstate__``. For the packed-weight classes that is
repacking; for ``aten.OpaqueObject`` it is ``pickle.loads(base64.b64decode(state))``: a full Python
unpickle of bytes the archive chose. So every such global is judged by its class (allowlist), and an
OpaqueObject's state is decoded the way torch decodes it and handed back to the caller as a nested
pickle to judge with the same walker (bounded: at most 16 states per pickle, each under the walk's caps).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from tsinspect.archive.pickles import Call, Global, PDict, PickleError, PList, PTuple, walk
from tsinspect.archive.reader import Archive
from tsinspect.archive.text import printable
from tsinspect.safety import ops

MAX_NODES = 200_000  # values visited per pickle when looking for object states
MAX_NESTED = 16  # nested pickles decoded per pickle


@dataclass(frozen=True)
class Restored:
    """One TorchBind global of a pickle and what its objects' states decode to."""

    qualname: str
    offset: int  # of the GLOBAL opcode
    verdict: str  # ok or unsafe
    why: str
    nested: tuple[bytes, ...] = ()  # OpaqueObject states, base64-decoded: Python pickles torch would load


def restored_objects(globals_: list, value=None) -> list[Restored]:
    """TorchBind globals of a walked pickle (``globals_``: (Global, offset) pairs), with the decoded
    states of OpaqueObjects found in ``value`` (the walk's top value; None when the walk broke)."""
    opaque = any(glob.qualname.strip() == ops.OPAQUE_OBJECT for glob, _ in globals_)
    # the states only matter to an OpaqueObject global: no walk of a value without one (data.pkl)
    states = _opaque_states(value) if value is not None and opaque else []
    out, seen = [], set()
    for glob, offset in globals_:
        qualname = glob.qualname.strip()
        if not qualname.startswith(ops.CUSTOM_CLASS_PREFIX) or qualname in seen:
            continue
        seen.add(qualname)
        verdict, why = ops.judge_custom_class(qualname)
        nested = tuple(states) if qualname == ops.OPAQUE_OBJECT else ()
        out.append(Restored(qualname, offset, verdict, why, nested))
    return out


def decode_state(state) -> bytes | None:
    """OpaqueObject's state as torch decodes it: base64 of a str, characters outside the alphabet dropped."""
    if not isinstance(state, (str, bytes)):
        return None
    raw = state.encode("utf-8", "surrogatepass") if isinstance(state, str) else state
    try:
        return base64.b64decode(raw)
    except (binascii.Error, ValueError):
        return None


def _opaque_states(value) -> list[bytes]:
    """States handed to OpaqueObject objects (by BUILD or as a REDUCE argument), decoded."""
    found: list[bytes] = []
    stack, seen, visited = [value], set(), 0
    while stack and visited < MAX_NODES and len(found) < MAX_NESTED:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        visited += 1
        if isinstance(node, Call):
            if isinstance(node.func, Global) and node.func.qualname.strip() == ops.OPAQUE_OBJECT:
                for state in list(node.states) + list(node.arg_list):
                    decoded = decode_state(state)
                    if decoded:
                        found.append(decoded)
            stack.extend(node.states)
            stack.extend(node.arg_list)
            stack.append(node.func)
        elif isinstance(node, (PList, PTuple)):
            stack.extend(node.items)
        elif isinstance(node, PDict):
            for key, item in node.items:
                stack.extend((key, item))
    return found


def judge_archive(archive: Archive):
    """codescan Findings for every TorchBind object of every pickle record torch's loaders read."""
    from tsinspect.safety.codescan import UNSAFE, Finding

    findings = []
    for record in archive.records:
        if record.entry.is_dir or not record.name.lower().endswith((".pkl", ".debug_pkl")):
            continue
        walked = archive.walked(record)  # data.pkl and constants.pkl, walked already by a summary
        if walked is not None:
            restored = restored_objects(walked.globals, walked.value)
        else:
            try:
                data = archive.pickle_record_bytes(record)  # read once, also for a summary that read it
            except Exception:  # noqa: BLE001 - an unreadable record is the archive's problem, reported there
                continue
            restored = judge_pickle(data) if may_name_torchbind(data) else []
        for item in restored:
            if item.verdict != ops.OK:
                detail = f"at byte {item.offset}: {item.why}" + _nested_note(item)
                findings.append(Finding("custom_class", UNSAFE, printable(record.name), 0, printable(item.qualname),
                                        printable(detail)))
    return findings


# A TorchBind qualname holds the word "classes" whole in its module or in its name (the walk joins them with
# the "." before or after it, never inside it). The walk takes every string from the pickle's bytes: one
# byte per character (latin-1), UTF-8 (which spells an ASCII letter only by its own byte), or through
# escapes (GLOBAL and INST lines and STRING: ``escape_decode``'s \xhh and \ooo, whose value it takes modulo
# 256: \543 is "c"; UNICODE: raw-unicode-escape's \uXXXX and \UXXXXXXXX). So a pickle without the bytes
# "classes" and without an escape that may spell one of its letters (a, c, e, l, s) names no TorchBind class,
# whatever its opcodes: nothing to walk.
_LETTER_ESCAPE = re.compile(rb"\\(?:x(?:6[135c]|73)|[0-7](?:4[135]|54|63)|u00(?:6[135c]|73)|U000000(?:6[135c]|73))",
                            re.IGNORECASE)


def may_name_torchbind(data: bytes) -> bool:
    """False when no walk of ``data`` can meet a TorchBind global (see above): its judge finds nothing."""
    return b"classes" in data or _LETTER_ESCAPE.search(data) is not None


def judge_pickle(data: bytes) -> list[Restored]:
    try:
        walked = walk(data)
        return restored_objects(walked.globals, walked.value)
    except PickleError as exc:
        return restored_objects(exc.globals)


def _nested_note(item: Restored) -> str:
    if not item.nested:
        return ""
    names = []
    for nested in item.nested:
        try:
            names += [g.qualname for g, _ in walk(nested).globals]
        except PickleError as exc:
            names += [g.qualname for g, _ in exc.globals]
    shown = ", ".join(dict.fromkeys(names)) if names else "no globals"
    return f"; its state unpickles to a Python pickle importing {shown[:200]}"
