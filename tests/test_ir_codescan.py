"""The static safety gate (tsinspect.safety.codescan): what a __setstate__ reaches, file and memory ops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

from tsinspect.safety.codescan import BENIGN, UNSAFE, scan_archive
from tsinspect.archive.reader import open_archive


def code_archive(tmp_path: Path, files: dict[str, str]) -> Path:
    """A zip holding only code/ records under a top folder: enough for the scan, which never loads."""
    path = tmp_path / "code_only.pt"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(f"code_only/code/{name}", textwrap.dedent(text).lstrip("\n"))
    return path


def scan(path: Path):
    with open_archive(str(path)) as archive:
        return scan_archive(archive)


MODULE_HEAD = """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  helper : __torch__.m.Helper
  packed : __torch__.torch.classes.quantized.LinearPackedParamsBase
  def forward(self: __torch__.m.M, x: Tensor) -> Tensor:
    return x
"""


def test_quantized_setstate_is_benign_and_named(quantized_archive):
    result = scan(quantized_archive)
    assert result.safe_to_load
    (setstate,) = [f for f in result.findings if f.kind == "setstate"]
    assert setstate.verdict == BENIGN
    assert setstate.what == "Conv2d.__setstate__"
    assert setstate.file == "code/__torch__/torch/ao/nn/quantized/modules/conv.py"
    assert "ops.quantized.conv2d_prepack" in setstate.detail
    # the reach followed self.set_weight_bias
    assert any(v.endswith("Conv2d.set_weight_bias") for v in setstate.via)
    assert "weight repacking" in result.benign_note()
    assert any(f.kind == "getstate" and f.verdict == "info" for f in result.findings)


def test_file_writing_setstate_is_unsafe_with_location(setstate_file_writer_archive):
    result = scan(setstate_file_writer_archive)
    assert not result.safe_to_load
    (bad,) = result.unsafe
    assert bad.what == "Writer.__setstate__"
    assert bad.file.startswith("code/__torch__/")
    assert f"torch.save at {bad.file}:" in bad.detail
    message = result.refusal()
    assert f"Writer.__setstate__ at {bad.file}:{bad.line}" in message and "--trust" in message


def test_real_and_sample_archives_are_clean(silero_vad_archive, sample_archives):
    assert scan(silero_vad_archive).findings == []
    for name in ("gate_scripted", "gate_traced", "gate_lite", "plain_traced"):
        assert scan(sample_archives[name]).findings == [], name


def test_setstate_reaching_file_io_through_helper_class(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": MODULE_HEAD + """
  def __setstate__(self: __torch__.m.M, state: Tuple[str]) -> NoneType:
    helper = self.helper
    _0 = (helper).restore((state)[0], )
    return None
class Helper(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def restore(self: __torch__.m.Helper, where: str) -> NoneType:
    _1 = (self).really(where, )
    return None
  def really(self: __torch__.m.Helper, where: str) -> NoneType:
    _2 = torch.load(where)
    return None
"""})
    result = scan(path)
    bad = [f for f in result.unsafe if f.kind == "setstate"]
    assert len(bad) == 1
    assert "torch.load at code/__torch__/m.py:" in bad[0].detail
    assert bad[0].via == ("M.__setstate__", "Helper.restore", "Helper.really")


def test_setstate_with_unknown_op_namespace_or_unresolved_call_is_unsafe(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": MODULE_HEAD + """
  def __setstate__(self: __torch__.m.M, state: Tuple[Tensor]) -> NoneType:
    _0 = ops.evil.run((state)[0])
    return None
""", "__torch__/n.py": """
class N(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def __setstate__(self: __torch__.n.N, state: Tuple[Tensor]) -> NoneType:
    _0 = mystery((state)[0])
    return None
"""})
    result = scan(path)
    details = {f.what: f.detail for f in result.unsafe}
    assert "unknown namespace 'evil'" in details["M.__setstate__"]
    assert "cannot resolve" in details["N.__setstate__"]


def test_setstate_with_known_ops_and_custom_class_is_benign(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": MODULE_HEAD + """
  def __setstate__(self: __torch__.m.M, state: Tuple[Tensor, int]) -> NoneType:
    self.training = False
    w = torch.contiguous((state)[0])
    packed = self.packed
    _0 = (packed).unpack()
    self.packed = ops.quantized.linear_prepack(w, None)
    n = int((state)[1])
    return None
"""})
    result = scan(path)
    assert result.safe_to_load
    assert [f.verdict for f in result.findings if f.kind == "setstate"] == [BENIGN]


def test_file_and_raw_memory_calls_anywhere_are_findings(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def forward(self: __torch__.m.M, x: Tensor) -> Tensor:
    y = torch.as_strided(x, [100000], [1])
    _0 = ops.aten.from_file("/etc/passwd")
    return y
"""})
    result = scan(path)
    kinds = {(f.kind, f.what, f.line) for f in result.unsafe}
    assert ("raw_memory", "torch.as_strided", 6) in kinds
    assert ("file_io", "ops.aten.from_file", 7) in kinds


def test_scan_does_not_import_torch(setstate_file_writer_archive):
    code = ("import sys\nfrom tsinspect.archive.reader import open_archive\n"
            "from tsinspect.safety.codescan import scan_archive\n"
            f"r = scan_archive(open_archive({str(setstate_file_writer_archive)!r}))\n"
            "assert not r.safe_to_load\nprint('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unsafe_findings_sort_first(tmp_path, setstate_file_writer_archive):
    result = scan(setstate_file_writer_archive)
    assert result.findings[0].verdict == UNSAFE


def test_unparsable_duplicated_or_hidden_code_is_unsafe(tmp_path):
    path = tmp_path / "odd.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("odd/code/__torch__/a.py", "class A(Module):\n  def forward(self) -> None:\n    return None\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
            z.writestr("odd/code/__torch__/a.py", "class A(Module):\n  def forward(self) -> None:\n    return None\n")
        z.writestr("odd/code/__torch__/b.py", "def broken(:\n")
        z.writestr("odd/code/__torch__/c.py",
                   "if True:\n  class C(Module):\n    def __setstate__(self, s: int) -> None:\n      ops.x.y()\n")
    result = scan(path)
    kinds = {(f.kind, f.file) for f in result.unsafe}
    assert ("ambiguous_code", "code/__torch__/a.py") in kinds
    assert ("unreadable_code", "code/__torch__/b.py") in kinds
    assert ("setstate", "code/__torch__/c.py") in kinds


# ----- names as torch's importer resolves them, and every kind of load-time code


def unsafe_by_kind(result) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in result.unsafe:
        out.setdefault(f.kind, []).append(f)
    return out


def test_importer_spellings_of_file_and_memory_ops_are_found_anywhere(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def forward(self: __torch__.m.M, x: Tensor) -> Tensor:
    _0 = torch.autograd.autograd.save(x, "a")
    s = ops.whatever.autograd
    _1 = s.save(x, "b")
    _2 = getattr(torch, "from_file")("c")
    y = x.as_strided([2], [1])
    _3 = ops.c10d.allreduce_([x])
    return y
"""})
    found = {(f.kind, f.what) for f in scan(path).unsafe}
    assert ("file_io", "torch.autograd.autograd.save") in found
    assert ("file_io", "s.save") in found
    assert ("file_io", "getattr(torch, 'from_file')") in found
    assert ("raw_memory", "x.as_strided") in found
    assert ("network", "ops.c10d.allreduce_") in found


def test_default_arguments_and_class_constants_are_load_time_code(tmp_path):
    # nothing here is a file op: only the load-time judgement (allowlist) can refuse them
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  k : Final[int] = ops.evil.make()
  fine : Final[int] = 3
  def forward(self: __torch__.m.M, x: Tensor, n: int=__torch__.m.helper(), m: int=4) -> Tensor:
    return x
def helper() -> int:
  return ops.evil_lib.count()
"""})
    result = scan(path)
    bad = unsafe_by_kind(result)
    (constant,) = bad["class_constant"]
    assert constant.what == "M.k" and "unknown namespace 'evil'" in constant.detail
    (default,) = bad["default_argument"]
    assert default.what == "M.forward(n=...)" and "ops.evil_lib.count" in default.detail
    assert default.via == ("M.forward(n=...)", "__torch__.m.helper")
    assert not any(f.what in ("M.fine", "M.forward(m=...)") for f in result.findings)


def test_setstate_reaches_implementations_of_interfaces_dunders_and_fork(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class Api(Interface):
  def run(self: __torch__.m.Api, p: str) -> int:
    pass
class Impl(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def run(self: __torch__.m.Impl, p: str) -> int:
    return ops.evil.run(p)
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  api : __torch__.m.Api
  def __setstate__(self: __torch__.m.M, state: str) -> NoneType:
    api = self.api
    _0 = (api).run(state)
    return None
class N(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def __setstate__(self: __torch__.m.N, state: str) -> NoneType:
    fut = fork(self.later, state)
    return None
  def later(self: __torch__.m.N, p: str) -> int:
    return ops.evil.later(p)
class Box:
  v : int
  def __setstate__(self: __torch__.m.Box, state: int) -> NoneType:
    if self:
      self.v = state
    return None
  def __bool__(self: __torch__.m.Box) -> bool:
    return bool(ops.evil.truth())
"""})
    details = {f.what: f for f in scan(path).unsafe if f.kind == "setstate"}
    assert details["M.__setstate__"].via == ("M.__setstate__", "Impl.run")
    assert details["N.__setstate__"].via == ("N.__setstate__", "N.later")
    assert details["Box.__setstate__"].via == ("Box.__setstate__", "Box.__bool__")


def test_torchbind_methods_are_allowed_only_for_the_packed_weight_classes(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  packed : __torch__.torch.classes.quantized.LinearPackedParamsBase
  thing : __torch__.torch.classes.evil_lib.Thing
  def __setstate__(self: __torch__.m.M, state: Tuple[Tensor, str]) -> NoneType:
    packed = self.packed
    _0 = (packed).unpack()
    thing = self.thing
    _1 = (thing).fetch((state)[1])
    return None
"""})
    (bad,) = scan(path).unsafe
    assert "__torch__.torch.classes.evil_lib.Thing.fetch" in bad.detail and "TorchBind" in bad.detail


def test_a_name_assigned_several_meanings_keeps_them_all(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def forward(self: __torch__.m.M, x: Tensor) -> Tensor:
    s = ops.c10d
    _0 = s.allreduce_([x])
    s = torch
    _1 = s.relu(x)
    return x
"""})
    assert ("network", "s.allreduce_") in {(f.kind, f.what) for f in scan(path).unsafe}


def test_code_nested_too_deeply_to_judge_is_unsafe_not_an_error(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": "def f(x: int) -> int:\n  y = x" + ".a" * 900 + "()\n"
                                                    "  return 1\n"})
    result = scan(path)
    assert not result.safe_to_load and result.unsafe[0].kind == "unreadable_code"
    assert "nested too deeply" in result.refusal()


def test_a_method_called_on_a_value_of_unknown_type_reaches_every_method_of_that_name(tmp_path):
    path = code_archive(tmp_path, {"__torch__/m.py": """
class M(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def __setstate__(self: __torch__.m.M, state: Tuple[Tensor, int]) -> NoneType:
    _0 = ((state)[0]).refresh()
    return None
class Cache:
  v : int
  def refresh(self: __torch__.m.Cache) -> int:
    return ops.evil_lib.fetch()
"""})
    (bad,) = scan(path).unsafe
    assert bad.what == "M.__setstate__" and bad.via == ("M.__setstate__", "Cache.refresh")


# -- the scan's shared walks: the same answers as the straightforward ones ------------------------------

AWKWARD = """
def a(x=1):
    try:
        def b(): pass
    except E:
        def c():
            def d(): pass
    else:
        def e(): pass
    finally:
        for i in x:
            def f(): pass
        else:
            def g(): pass
    match x:
        case 1:
            def h(): pass
    with q:
        def i(y=[k for k in z]): pass
    class K:
        def j(self): pass
    def k(): pass
class L:
    @deco(lambda: 1)
    def m(self):
        while x:
            if y:
                def n(): pass
            def o(): pass
"""


def test_the_scans_walks_visit_what_ast_walk_visits_in_its_order():
    """(but Load/Store/Del, which are neither calls nor assignments)"""
    import ast

    from tsinspect.archive.code import index_code
    from tsinspect.safety.codescan import _statements
    from tsinspect.safety.resolve import walk

    trees = [ast.parse(AWKWARD)]
    for sample in ("gate_scripted.pt", "gate_extra.pt", "gate_lite.ptl"):
        with open_archive(str(Path(__file__).parent.parent / "samples" / sample)) as archive:
            trees += index_code(archive).trees.values()
    for tree in trees:
        assert walk(tree) == [n for n in ast.walk(tree) if not isinstance(n, ast.expr_context)]
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert [n for n in _statements(tree) if isinstance(n, ast.FunctionDef)] == defs
    assert len([n for n in ast.walk(trees[0]) if isinstance(n, ast.FunctionDef)]) == 14  # a to o but l, a class


def test_cached_call_sites_are_the_ones_resolved_afresh():
    from tsinspect.archive.code import index_code
    from tsinspect.safety.resolve import Resolver

    with open_archive(str(Path(__file__).parent.parent / "samples" / "gate_extra.pt")) as archive:
        index = index_code(archive)
    cached = Resolver(index)
    for method in index.methods:
        owner = index.classes.get(method.owner) if method.owner else None
        for implicit in (False, True, False):  # either list first, then the other from the cache
            fresh = Resolver(index).calls(method.node, owner, implicit=implicit)
            assert cached.calls(method.node, owner, implicit=implicit) == fresh
            assert Resolver(index).calls(method.node, owner, env=Resolver(index).environment(method.node, owner),
                                         implicit=implicit) == fresh


def test_torchbind_objects_are_judged_the_same_from_the_summary_walk_of_data_pkl(tmp_path):
    import evil_code_cases
    from tsinspect.archive.summary import summarize

    case = next(c for c in evil_code_cases.CASES if c.id == "opaque_object_in_module_state")
    path = tmp_path / "model.pt"
    path.write_bytes(case.build(str(tmp_path / "marker")))
    with open_archive(str(path)) as fresh:
        expected = scan_archive(fresh).to_json()
    with open_archive(str(path)) as archive:
        summary = summarize(archive)  # walks data.pkl: the scan reuses that walk
        assert archive.walked(archive.find("data.pkl")) is not None
        assert scan_archive(archive, summary.code).to_json() == expected
    assert any(f["kind"] == "custom_class" and "OpaqueObject" in f["what"] for f in expected["findings"])


# -- the TorchBind judge's pre-check: a pickle that cannot spell "classes" is not walked -------------------------

def _spelled(text: str, how: list[int]) -> tuple[bytes, bytes]:
    """``text`` as a pickle string, each character spelled one of the ways the walk decodes: (opcode bytes of
    a string pushed on the stack, the same text as a GLOBAL line). ``how`` picks the spelling per character."""
    line, unicode = b"", b""
    for char, pick in zip(text, how + [0] * len(text)):
        code = ord(char)
        line += [char.encode(), b"\\x%02x" % code, b"\\x%02X" % code, b"\\%03o" % code,
                 b"\\%03o" % (code + 256)][pick % 5]
        unicode += [char.encode(), b"\\u%04x" % code, b"\\U%08X" % code][pick % 3]
    choice = how[0] % 4 if how else 0
    pushed = [b"V" + unicode + b"\n",  # UNICODE: raw-unicode-escape
              b"S'" + line + b"'\n",  # STRING: quoted, escape_decode
              b"T" + len(text).to_bytes(4, "little") + text.encode("latin-1"),  # BINSTRING: latin-1
              b"\x8c" + len(text.encode()).to_bytes(1, "little") + text.encode()][choice]  # SHORT_BINUNICODE
    return pushed, line


def _torchbind_pickles(module: str, name: str, how: list[int]) -> list[bytes]:
    """Pickles restoring an object of class module.name: by GLOBAL (escaped lines) and by STACK_GLOBAL."""
    pushed_module, line_module = _spelled(module, how)
    pushed_name, line_name = _spelled(name, how[::-1])
    tail = b")\x81}b."  # EMPTY_TUPLE NEWOBJ EMPTY_DICT BUILD STOP
    return [b"\x80\x02c" + line_module + b"\n" + line_name + b"\n" + tail,
            b"\x80\x04" + pushed_module + pushed_name + b"\x93" + tail,
            b"\x80\x02(c" + line_module + b"\n" + line_name + b"\n" + b"i" + line_module + b"\n" + line_name
            + b"\n."]  # MARK, then INST of the class (the GLOBAL before it is popped by INST's MARK)


def test_a_pickle_that_names_a_torchbind_class_in_any_spelling_is_walked():
    """The pre-check (may_name_torchbind) lets a pickle skip the walk only when it cannot name a TorchBind
    class: every spelling the walk decodes (escapes of GLOBAL lines and STRING, raw-unicode-escape of UNICODE,
    latin-1, UTF-8; module and name split at each dot) is caught, and the walk does find the class."""
    from hypothesis import given, settings, strategies as st

    from tsinspect.safety.torchbind import judge_pickle, may_name_torchbind

    qualnames = ["__torch__.torch.classes.aten.OpaqueObject", "__torch__.torch.classes.evil.Runner",
                 "__torch__.torch.classes.x.Y\t"]

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.sampled_from(qualnames), st.integers(0, 4), st.lists(st.integers(0, 59), min_size=1, max_size=50))
    def check(qualname, split, how):
        parts = qualname.split(".")
        split = min(split, len(parts) - 1) or 1
        module, name = ".".join(parts[:split]), ".".join(parts[split:])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # escape_decode's octal escapes over 0o377
            for data in _torchbind_pickles(module, name, how):
                found = judge_pickle(data)
                assert [r.qualname for r in found] == [qualname.strip()], (data, found)
                assert may_name_torchbind(data), data

    check()


def test_pickles_that_cannot_name_a_torchbind_class_are_judged_empty_both_ways(tmp_path):
    """Where the pre-check skips the walk, the walk finds nothing either: the samples' pickles (the pre-check's
    common case) and pickles cut, flipped and spliced from them and from TorchBind ones."""
    import random

    from tsinspect.safety.torchbind import judge_pickle, may_name_torchbind

    root = Path(__file__).resolve().parents[1] / "samples"
    pickles = []
    for sample in sorted(root.glob("*.pt*")):
        with zipfile.ZipFile(sample) as z:
            pickles += [z.read(n) for n in z.namelist() if n.endswith((".pkl", ".debug_pkl"))]
    assert pickles and not any(may_name_torchbind(p) for p in pickles if b"classes" not in p)
    evil = _torchbind_pickles("__torch__.torch", "classes.aten.OpaqueObject", [1, 2, 3])
    rng = random.Random(14)
    skipped = 0
    for _ in range(3000):
        data = bytearray(rng.choice(pickles + evil))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.random()
            if action < 0.4:
                data[at:at + 1] = bytes([rng.randrange(256)])
            elif action < 0.7:
                other = rng.choice(pickles + evil)
                start = rng.randrange(len(other))
                data[at:at] = other[start:start + rng.randint(1, 64)]
            else:
                del data[at:at + rng.randint(1, 32)]
        data = bytes(data)
        if not may_name_torchbind(data):
            skipped += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # escape_decode on octal escapes over 0o377
                assert judge_pickle(data) == [], data
    assert skipped > 1000


# -- the resolver's shortcuts, run both ways -----------------------------------------------------------------

def _code_sources() -> list[str]:
    """The code/ files of the samples, of tests/real and of the hostile code cases (torch-free ones)."""
    import io

    import evil_code_cases

    root = Path(__file__).resolve().parents[1]
    sources = []
    for path in [*sorted(root.glob("samples/*.pt*")), *sorted(root.glob("tests/real/*.p*")),
                 *sorted(root.glob("tests/real/*.jit"))]:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                sources += [z.read(n).decode("utf-8", "replace") for n in z.namelist()
                            if "/code/" in n and n.endswith(".py")]
    for case in evil_code_cases.CASES:
        if not case.torch:
            try:
                with zipfile.ZipFile(io.BytesIO(case.build("/nonexistent/marker"))) as z:
                    sources += [z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith(".py")]
            except Exception:  # noqa: BLE001 - cases that are no zip
                pass
    assert len(sources) > 100
    return sources


def test_the_walks_skip_only_fields_that_never_hold_what_they_look_for():
    """resolve.walk skips fields the grammar says hold no node, codescan._statements looks only in fields that
    may hold statements: both checked against the running Python's node classes, and both give ast.walk's
    nodes in its order on real and hostile code."""
    import ast
    import re

    from tsinspect.safety import codescan, resolve

    for name in dir(ast):
        kind = getattr(ast, name)
        if not (isinstance(kind, type) and issubclass(kind, ast.AST)) or not kind._fields:
            continue
        signature = re.match(r"\w+\((.*)\)$", (kind.__doc__ or "").strip().splitlines()[0])
        if signature is None:  # the deprecated aliases of Constant
            continue
        for part in signature.group(1).split(", "):
            typ, field = part.rsplit(" ", 1)
            typ = typ.rstrip("?*")
            if field in resolve.NOT_NODES:
                assert typ in ("identifier", "string", "int", "constant", "expr_context"), (name, field)
            if typ in ("stmt", "excepthandler", "match_case"):
                assert field in codescan._BLOCK_FIELDS, (name, field)
    for source in _code_sources():
        tree = ast.parse(source)
        expected = [n for n in ast.walk(tree) if not isinstance(n, ast.expr_context)]
        assert resolve.walk(tree) == expected
        assert codescan._statements(tree) == [n for n in expected if n is tree or isinstance(n, codescan._BLOCK_NODES)]


ALIASES = ["torch", "ops", "ops.c10d", "ops.quantized", "getattr(self, \"helper\")", "self.helper", "(a).b",
           "a", "b", "s", "t", "s.save", "getattr(s, \"load\")", "torch.nn", "__torch__.m.Helper",
           "__torch__.m.Helper()", "annotate(List[int], t)", "x", "1", "(c := torch)", "f(a)"]


def test_the_environment_is_the_same_with_and_without_its_second_pass():
    """Resolver.environment stops after one pass when every name was bound before it was first looked up: the
    environments and calls are the ones of the passes it skips, on real code and on random alias chains."""
    import random
    from unittest import mock

    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety import resolve

    rng = random.Random(11)
    sources = _code_sources()
    helper = "class Helper(Module):\n  def save(self, x):\n    return torch.save(x, \"p\")\n"
    for _ in range(1500):
        body = [f"    {rng.choice('abcst')} = {rng.choice(ALIASES)}" for _ in range(rng.randint(1, 8))]
        body += [f"    {rng.choice('abcst')}.{rng.choice(('save', 'load', 'forward', 'x'))}(1)"
                 for _ in range(rng.randint(0, 2))]
        sources.append(textwrap.dedent(MODULE_HEAD) + "\n".join(body) + "\n" + helper)
    skipped = 0
    for source in sources:
        index = CodeIndex()
        if index_file(index, "code/__torch__/m.py", source, False) is not None:
            continue
        for method in index.methods:
            owner = index.classes.get(method.owner) if method.owner else None
            with mock.patch.object(resolve._Lookups, "settled", lambda self: False):
                slow = resolve.Resolver(index)
                expected = (slow.environment(method.node, owner), slow.calls(method.node, owner))
            fast = resolve.Resolver(index)
            settled = []
            real = resolve._Lookups.settled
            with mock.patch.object(resolve._Lookups, "settled", lambda self: settled.append(real(self)) or settled[-1]):
                assert (fast.environment(method.node, owner), fast.calls(method.node, owner)) == expected, source
            skipped += any(settled)
    assert skipped > 500


HAZARD_SPELLINGS = [
    "torch.save(x, p)", "getattr(torch, \"save\")(x, p)", "getattr(torch, \"sa\" \"ve\")(x, p)",
    "getattr(torch, 'sa'  # cut\n      r've')(x, p)", "getattr(torch, \"\\x73ave\")(x, p)",
    "torch.\uff53\uff41\uff56\uff45(x, p)", "s = torch\n    s.save(x, p)", "c = ops.c10d\n    c.broadcast(x)",
    "getattr(ops, \"c10d\").allreduce(x)", "t = torch.autograd\n    t.as_strided(x, [1], [1])", "x.set_(y)",
    "ops.prim.rpc_async(x)", "ops.anything.autograd.from_file(p)", "getattr(torch, \"save.out\")(x, p)",
    "x.data_ptr()", "fork(torch.load, p)", "q = getattr(ops, 'symm_mem')\n    q.rendezvous(x)",
]
HARMLESS = ["y = torch.add(x, x)", "y = (self).forward(x, )", "y = getattr(self, \"0\")", "return x",
            "y = ops.quantized.linear(x)", "z = [x, \"b\"]", "w = \"\"", "v = x.size(0)"]


def test_functions_that_cannot_name_a_hazard_are_not_resolved_for_hazards():
    """anywhere() skips resolving a function whose text names no hazardous op or namespace (ASCII, no
    backslash, no strings side by side): every hazard the full resolution finds, in any spelling, is in a
    function the check keeps, and scan_code gives the same findings with and without the shortcut."""
    import ast
    import random
    from unittest import mock

    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety import codescan
    from tsinspect.safety.codescan import scan_code

    rng = random.Random(3)
    sources = _code_sources()
    for _ in range(800):
        body = [rng.choice(HAZARD_SPELLINGS + HARMLESS * 3) for _ in range(rng.randint(1, 4))]
        decorator = rng.choice(["", "", "  @torch.jit.unused\n", "  @torch.save\n"])
        sources.append(textwrap.dedent(MODULE_HEAD) + decorator + "  def g(self, x: Tensor, p: str):\n"
                       + "".join(f"    {line}\n" for line in body) + "    return x\n")
    named = 0
    for source in sources:
        index = CodeIndex()
        if index_file(index, "code/__torch__/m.py", source, False) is not None:
            continue
        lines = source.split("\n")
        owners = {id(m.node): info for info in index.classes.values() for m in info.methods}
        resolver = codescan._Judge(index).resolver
        for root in codescan._roots(index.tree("code/__torch__/m.py")):
            sites = resolver.calls(root, owners.get(id(root)), implicit=False)
            if type(root) is ast.FunctionDef and any(codescan._site_hazard(site) for site in sites):
                named += 1
                assert codescan._may_name_a_hazard(codescan._text(lines, root)), ast.get_source_segment(source, root)
        with mock.patch.object(codescan, "_may_name_a_hazard", lambda text: True):
            expected = scan_code(index).to_json()
        assert scan_code(index).to_json() == expected
    assert named > 300


def stack_depth() -> int:
    """Frames on the stack, this one's included (the recursion room left is the limit less this)."""
    frame, n = sys._getframe(), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


NESTINGS = {"attributes": lambda d: "x" + ".a" * d + "()", "calls": lambda d: "f(" * d + "x" + ")" * d,
            "callees": lambda d: "x" + "()" * d, "getattrs": lambda d: "getattr(" * d + "x" + ", 'a')" * d,
            "operators": lambda d: "(" * d + "x" + " + 1)" * d, "subscripts": lambda d: "x" + "[0]" * d,
            "lambdas": lambda d: "lambda: " * d + "x", "names": lambda d: "(" * d + "a, b" + ")" * d}


def test_the_hazard_search_skips_only_what_it_could_have_resolved():
    """Code nested too deeply to resolve is unsafe (scan_code), so the hazard search skips a function only when
    its full resolution would have gone through: nested at most SKIPPED_DEPTH levels, with STACK_ROOM frames
    left. Both ways agree at the edge: nestings of every kind around that depth, resolved with just that room
    on the stack and with less."""
    import sys
    from unittest import mock

    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety import codescan
    from tsinspect.safety.codescan import SKIPPED_DEPTH, STACK_ROOM, scan_code

    skipped = 0
    for kind, make in NESTINGS.items():
        for nesting in (5, SKIPPED_DEPTH - 4, SKIPPED_DEPTH - 3, SKIPPED_DEPTH - 2, SKIPPED_DEPTH, 200, 900):
            line = f"{make(nesting)} = 1" if kind == "names" else f"y = {make(nesting)}"
            source = f"def f(x: int) -> int:\n  {line}\n  return 1\n"
            index = CodeIndex()
            if index_file(index, "code/__torch__/m.py", source, False) is not None:
                continue  # deeper than the parser goes
            for room in (STACK_ROOM + 20, STACK_ROOM - 50, 120):  # scan_code -> anywhere: a few frames
                old = sys.getrecursionlimit()
                sys.setrecursionlimit(stack_depth() + room)
                try:
                    fast = scan_code(index).to_json()
                    with mock.patch.object(codescan, "_may_name_a_hazard", lambda text: True):
                        full = scan_code(index).to_json()
                finally:
                    sys.setrecursionlimit(old)
                assert fast == full, (kind, nesting, room, fast, full)
                skipped += room > STACK_ROOM and nesting < SKIPPED_DEPTH - 3
    assert skipped > 10
