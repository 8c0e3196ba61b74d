"""Code files read once per shape (tsinspect.archive.shapes) against each file read on its own: the code index
(outlined and the gate's), every method's tree, ``codescan.scan_archive`` and ``tsinspect scan``'s findings, on
real, generated and hostile archives, and on traced archives edited to abuse the sharing (the scan must still
flag them)."""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path

import pytest

from tsinspect.archive import code as code_mod
from tsinspect.archive import shapes
from tsinspect.archive.code import index_code
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import open_archive
from tsinspect.safety.codescan import UNSAFE, scan_archive
from tsinspect.safety.scan import scan_file

from hostile import CASES as HOSTILE
from evil_code_cases import CASES as EVIL_CODE

REPO = Path(__file__).resolve().parent.parent
ARCHIVES = sorted([*REPO.glob("samples/*.pt*"), *REPO.glob("tests/real/*.p*"), *REPO.glob("tests/real/*.jit"),
                   *REPO.glob("benchmarks/out/info_scale/*.pt"), *REPO.glob("benchmarks/out/traced/*.pt")])
LINEAR = "code/__torch__/torch/nn/modules/linear/"


def _fields(index) -> list:
    classes = [(key, c.qualname, c.file, c.line, c.parameters, c.buffers, list(c.attributes.items()), c.bases,
                [m.to_json() for m in c.methods]) for key, c in index.classes.items()]
    return [classes, [f.to_json() for f in index.functions], list(index.sources.items())]


def _read(path: Path, shaped: bool, monkeypatch) -> dict:
    """Everything the shared readers give for the archive, with shapes shared or every file read alone."""
    with monkeypatch.context() as patch:
        if not shaped:
            patch.setattr(code_mod, "_index_shaped", lambda *args: False)
        out: dict = {"scan_file": scan_file(str(path)).to_json()}
        try:
            with open_archive(str(path)) as archive:
                for outlined in (True, False):
                    index = index_code(archive, outlined)
                    out[f"index {outlined}"] = _fields(index)
                    out[f"trees {outlined}"] = [ast.dump(m.node, include_attributes=True) for m in index.methods]
                    out[f"problems {outlined}"] = [p.to_json() for p in archive.problems]
                    out[f"scan {outlined}"] = json.dumps(scan_archive(archive, index_code(archive, outlined)).to_json())
                    out[f"shaped {outlined}"] = len(index._shapes)
        except ArchiveError as exc:
            out["error"] = str(exc)
    return out


def assert_both_ways(path: Path, monkeypatch) -> dict:
    shared, alone = _read(path, True, monkeypatch), _read(path, False, monkeypatch)
    assert alone["scan_file"]["path"] == shared["scan_file"]["path"]
    assert alone.pop("shaped True", 0) == alone.pop("shaped False", 0) == 0
    counts = shared.pop("shaped True", 0), shared.pop("shaped False", 0)
    assert shared == alone
    shared["shaped"] = counts
    return shared


@pytest.mark.parametrize("path", ARCHIVES, ids=lambda p: p.name)
def test_real_and_generated_archives(path, monkeypatch):
    assert_both_ways(path, monkeypatch)


def test_hostile_and_evil_archives(tmp_path, monkeypatch):
    built = 0
    for case in [*HOSTILE, *(c for c in EVIL_CODE if not c.torch)]:
        target = tmp_path / f"case{built}.pt"
        try:
            target.write_bytes(case.build(str(tmp_path / "marker")))
        except Exception:  # noqa: BLE001 - a builder that needs what this test does not set up
            continue
        assert_both_ways(target, monkeypatch)
        built += 1
    assert built > 100


# ---------------------------------------------------------------------------------- traced archives, edited

TRACE = """
import sys, warnings, torch
warnings.simplefilter("ignore")

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.BatchNorm2d(2)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x

class Both(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(8)])
        self.blocks = torch.nn.Sequential(*[Block() for _ in range(4)]).eval()

    def forward(self, x, y):
        return self.lin(x), self.blocks(y)

torch.jit.trace(Both(), (torch.ones(1, 2), torch.ones(1, 2, 4, 4))).save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> dict[str, bytes]:
    """The members of a traced Sequential of 8 Linear and a net of 4 conv-bn-relu blocks, traced by torch in a
    process of its own (tracing here would change the class names torch mangles for later tests)."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("traced") / "traced.pt"
    subprocess.run([sys.executable, "-c", TRACE, str(path)], check=True, timeout=300)
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write(members: dict[str, bytes] | list[tuple[str, bytes]], path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name, data in (members.items() if isinstance(members, dict) else members):
            z.writestr(zipfile.ZipInfo(name), data)
    path.write_bytes(buffer.getvalue())
    return path


def _mangled(members: dict[str, bytes]) -> list[str]:
    names = sorted((n for n in members if LINEAR in n and "mangle" in n and n.endswith(".py")),
                   key=lambda n: int(n.rsplit("_", 1)[1][:-3]))
    assert len(names) >= 6
    return names


def _edited(members: dict[str, bytes], names: list[str], edit) -> dict[str, bytes]:
    out = dict(members)
    for name in names:
        out[name] = edit(members[name].decode(), name).encode()
    return out


def _module(name: str) -> str:
    return code_mod.module_of(name.split("/", 1)[1])


def test_the_traced_archive_is_shared_and_read_the_same(traced, tmp_path, monkeypatch):
    seen = assert_both_ways(_write(traced, tmp_path / "t.pt"), monkeypatch)
    assert min(seen["shaped"]) >= 8  # the Linear copies and the block's conv/bn/relu copies
    assert json.loads(seen["scan True"])["safe_to_load"]


FORWARD_END = "    return "


def _call_before_return(call: str):
    def edit(text: str, name: str) -> str:
        head, _, tail = text.rpartition(FORWARD_END)
        return f"{head}    _hz = {call}\n{FORWARD_END}{tail}"
    return edit


# (id, which copies are edited: "one" or "all", the edit, True: the scan must call every edited file unsafe,
# "benign": give each a benign finding, False: find nothing unsafe)
ABUSES = [
    ("hazard_in_one_copy", "one", _call_before_return('torch.save(weight, "x.pt")'), True),
    ("hazard_in_every_copy", "all", _call_before_return('torch.save(weight, "x.pt")'), True),
    ("hazard_through_ops", "all", _call_before_return('ops.aten.save(weight, "x.pt")'), True),
    ("hazard_by_getattr", "all", _call_before_return('getattr(torch, "save")(weight, "x.pt")'), True),
    ("setstate_in_every_copy", "all", lambda t, n: t + '  def __setstate__(self: __torch__.X,\n    state: Tuple[Tensor, Tensor]) -> None:\n    _0 = torch.save(state, "f")\n    return None\n', True),
    ("default_in_every_copy", "all", lambda t, n: t + '  def extra(self: __torch__.X,\n    a: int=torch.save(1, "f")) -> int:\n    return a\n', True),
    ("class_constant_in_every_copy", "all", lambda t, n: t.replace("  __buffers__ = []\n", '  __buffers__ = []\n  c : Final[int] = torch.save(1, "f")\n'), True),
    ("nested_setstate", "all", lambda t, n: t + '  def helper(self: __torch__.X) -> None:\n    def __setstate__(s: int) -> None:\n      return None\n    return None\n', True),
    ("hazard_by_escape", "all", _call_before_return('getattr(torch, "s\\x61ve")(weight, "x.pt")'), True),
    ("hazard_by_adjacent_strings", "all", _call_before_return('getattr(torch, "sa" "ve")(weight, "x.pt")'), True),
    ("hazard_by_nfkc", "all", _call_before_return('torch.\uff53ave(weight, "x.pt")'), True),
    ("unresolved_class_constant", "all", lambda t, n: t.replace("  __buffers__ = []\n", '  __buffers__ = []\n  c : Final[int] = foo.bar(1)\n'), "benign"),
    ("benign_class_constant", "all", lambda t, n: t.replace("  __buffers__ = []\n", '  __buffers__ = []\n  c : Final[int] = torch.add(1, 2)\n'), "benign"),
    ("benign_default", "all", lambda t, n: t + '  def extra(self: __torch__.X,\n    a: int=torch.add(1, 2)) -> int:\n    return a\n', "benign"),
    ("custom_op_in_every_copy", "all", _call_before_return("ops.myns.myop(weight)"), False),
    ("hazard_in_a_comment", "all", lambda t, n: t.replace("    bias = self.bias", "    # torch.save\n    bias = self.bias"), False),
    ("hazard_in_a_string", "all", _call_before_return('"torch.save(x)"'), False),
    ("own_path_in_a_string", "all", lambda t, n: _call_before_return(f'"{_module(n)}"')(t, n), False),
    ("own_path_in_a_string_after_text", "all", lambda t, n: _call_before_return(f'"x {_module(n)} y"')(t, n), False),
    ("own_path_glued_to_a_name", "all", lambda t, n: _call_before_return(f"{_module(n)}_x")(t, n), False),
    ("own_path_after_a_dot", "all", lambda t, n: _call_before_return(f"self.{_module(n)}")(t, n), False),
    ("own_path_after_a_backslash", "all", lambda t, n: _call_before_return(f'"\\\\{_module(n)}"')(t, n), False),
    ("own_path_called", "all", lambda t, n: _call_before_return(f"{_module(n)}.Linear.forward(self, weight)")(t, n), False),
    ("another_copys_path", "all", lambda t, n: _call_before_return(
        '__torch__.torch.nn.modules.linear.___torch_mangle_2.Linear.forward(self, weight)')(t, n), False),
    ("deep_nesting", "all", _call_before_return("(" * 70 + "weight" + ")" * 70 + ".add(1)"), False),
    ("non_ascii", "all", _call_before_return('"é"'), False),
    ("crlf", "all", lambda t, n: t.replace("\n", "\r\n"), False),
    ("syntax_error_in_one", "one", lambda t, n: t.replace("    return ", "    return (", 1), True),
    ("syntax_error_in_every", "all", lambda t, n: t.replace("    return ", "    return (", 1), True),
]


@pytest.mark.parametrize("abuse", ABUSES, ids=[a[0] for a in ABUSES])
def test_sharing_abuses_are_read_as_alone(abuse, traced, tmp_path, monkeypatch):
    _, which, edit, unsafe = abuse
    names = _mangled(traced)
    edited = names[3:4] if which == "one" else names
    seen = assert_both_ways(_write(_edited(traced, edited, edit), tmp_path / "t.pt"), monkeypatch)
    findings = json.loads(seen["scan False"])["findings"]
    bad = {f["file"] for f in findings if f["verdict"] == UNSAFE}
    if unsafe:
        flagged = bad if unsafe is True else {f["file"] for f in findings if f["verdict"] == unsafe}
        assert {n.split("/", 1)[1] for n in edited} <= flagged
    assert bool(bad) == (unsafe is True)


def test_a_module_path_naming_a_hazard_or_a_keyword(traced, tmp_path, monkeypatch):
    """Copies at paths holding a hazard's name, a keyword, ``__debug__`` or the placeholder's marker."""
    names = _mangled(traced)
    members = dict(traced)
    top = names[0].split("/", 1)[0]
    for i, word in enumerate(["save", "if", "__debug__", "__tsph0__", "load_x", "None"]):
        for j, source in enumerate(names[:3]):
            text = traced[source].decode().replace(_module(source), f"__torch__.p{i}.{word}.___torch_mangle_{j}")
            members[f"{top}/code/__torch__/p{i}/{word}/___torch_mangle_{j}.py"] = text.encode()
    seen = assert_both_ways(_write(members, tmp_path / "t.pt"), monkeypatch)
    assert min(seen["shaped"]) >= 8


def test_mangled_numbers_of_every_spelling(traced, tmp_path, monkeypatch):
    """Files of one shape whose numbers have leading zeros, other lengths, or stand glued to letters, in
    strings and comments, and name each other's classes; and one that does not parse."""
    members = dict(traced)
    top = next(iter(traced)).split("/", 1)[0]
    numbers = ["0", "7", "007", "70", "12345678901234567890", "8"]
    for i, number in enumerate(numbers):
        module, other = f"__torch__.k.___torch_mangle_{number}", numbers[i - 1]
        text = (f"class C(Module):\n  def forward(self: {module}.C,\n    x: int) -> int:\n"
                f"    _0 = ___torch_mangle_{number}x  # ___torch_mangle_{other}\n"
                f"    _1 = \"{module}.C ___torch_mangle_{other}\"\n"
                f"    _2 = __torch__.k.___torch_mangle_{other}.C.forward(self, x)\n"
                + ("    return (\n" if number == "70" else "    return 1\n"))
        members[f"{top}/code/__torch__/k/___torch_mangle_{number}.py"] = text.encode()
    seen = assert_both_ways(_write(members, tmp_path / "t.pt"), monkeypatch)
    assert {p["member"] for p in seen["problems False"] if p["kind"] == "bad_code"} == {
        "code/__torch__/k/___torch_mangle_70.py"}


def test_shared_files_at_the_depth_and_stack_edge():
    """Files of one shape nested around the depth the hazard search skips, scanned with little stack left:
    the same findings as each file read on its own (too deep to resolve is unsafe)."""
    import sys

    from test_ir_codescan import NESTINGS, stack_depth
    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety.codescan import SKIPPED_DEPTH, STACK_ROOM, scan_code

    shared_files = 0
    for kind, make in NESTINGS.items():
        for nesting in (5, SKIPPED_DEPTH - 3, SKIPPED_DEPTH, SKIPPED_DEPTH + 2, 200, 900):
            line = f"{make(nesting)} = 1" if kind == "names" else f"y = {make(nesting)}"
            files = {f"code/__torch__/p/___torch_mangle_{i}.py": f"class C(Module):\n  def forward(self: __torch__.p.___torch_mangle_{i}.C,\n"
                     f"    x: int) -> int:\n    {line}\n    return 1\n" for i in range(3)}
            shared, alone, shapes_seen = CodeIndex(), CodeIndex(), {}
            for name, source in files.items():
                index_file(shared, name, source, False, shapes_seen)
                index_file(alone, name, source, False)
            if len(alone.sources) < 3:
                continue  # deeper than the parser goes
            shared_files += len(shared._shapes)
            for room in (STACK_ROOM + 20, STACK_ROOM - 50, 120):
                old = sys.getrecursionlimit()
                sys.setrecursionlimit(stack_depth() + room)
                try:
                    fast, full = scan_code(shared).to_json(), scan_code(alone).to_json()
                finally:
                    sys.setrecursionlimit(old)
                assert fast == full, (kind, nesting, room, fast, full)
    assert shared_files > 20


BENIGN_DEFAULT = dict((a[0], a[2]) for a in ABUSES)["benign_default"]
CUSTOM_OP = dict((a[0], a[2]) for a in ABUSES)["custom_op_in_every_copy"]


@pytest.mark.parametrize("copies", ["plain", "benign_default"])
@pytest.mark.parametrize("order", ["shaped_last", "hazard_last"])
def test_duplicate_entries(order, copies, traced, tmp_path, monkeypatch):
    """A name stored twice, one of its texts a copy of a shape and the other a hazard: the file read is the last
    (its own tree, not the other's: the scan reads the benign default's tree where the copies are not quiet)."""
    names = _mangled(traced)
    members = _edited(traced, names, BENIGN_DEFAULT) if copies == "benign_default" else dict(traced)
    text = members[names[4]].decode()
    twins = [(names[4], _call_before_return('torch.save(weight, "x.pt")')(text, names[4]).encode()),
             (names[4], text.encode())]
    members = [(n, d) for n, d in members.items() if n != names[4]] + (twins if order == "shaped_last" else twins[::-1])
    seen = assert_both_ways(_write(members, tmp_path / "t.pt"), monkeypatch)
    findings = json.loads(seen["scan False"])["findings"]
    assert "ambiguous_code" in {f["kind"] for f in findings if f["verdict"] == UNSAFE}
    assert any(f["kind"] == "file_io" for f in findings) == (order == "hazard_last")


def test_index_file_twice_and_the_ops_fact():
    """``index_file`` of a name already indexed (the reader drops shadowed entries, the API does not): a file
    read from its shape does not keep the earlier text's tree; a shape that names ``ops`` is read for them."""
    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety.codescan import names_no_ops

    text = "class C(Module):\n  def forward(self: {m}.C,\n    x: int) -> int:\n    y = {call}\n    return 1\n"
    for call, ops_named in [("torch.add(x, 1)", False), ("ops.myns.op(x)", True)]:
        index, seen = CodeIndex(), {}
        files = [f"code/__torch__/p/___torch_mangle_{i}.py" for i in range(3)]
        for i, name in enumerate(files):
            index_file(index, name, text.format(m=f"__torch__.p.___torch_mangle_{i}", call=call), False, seen)
        index_file(index, files[0], text.format(m="__torch__.q", call="torch.save(x, 'f')"), False, seen)
        index_file(index, files[0], text.format(m="__torch__.p.___torch_mangle_0", call=call), False, seen)
        assert index.shape(files[0]) is not None
        assert "save" not in ast.dump(index.tree(files[0]))
        assert names_no_ops(index, files[2]) == (not ops_named)


def test_the_scan_certificate_parts():
    """Each condition of ``quiet`` on its own (most are also implied by the hazard names or the shape's first
    file, read on its own, so the archive tests above cannot tell them apart)."""
    from tsinspect.archive.code import CodeIndex, index_file
    from tsinspect.safety.codescan import _quiet_tree, quiet

    base = "class C(Module):\n  def forward(self: {m}.C,\n    x: int) -> int:\n{body}    return 1\n"
    bodies = {"": True, "    def __setstate__(s: int) -> None:\n      return None\n": False,
              "    def __getstate__(s: int) -> int:\n      return 1\n": True,
              f"    y = {'x.a' * 1}{'.a' * 60}\n": False, "    y = x\n": True}
    for body, expected in bodies.items():
        for package, expect in [("p", expected), ("save", False), ("p.set_x", False)]:
            index, seen = CodeIndex(), {}
            for i in range(3):
                module = f"__torch__.{package}.___torch_mangle_{i}"
                index_file(index, f"code/{module.replace('.', '/')}.py", base.format(m=module, body=body), False, seen)
            files = list(index.sources)
            assert index.shape(files[0]) is None and index.shape(files[2]) is not None
            assert quiet(index, files[2]) == expect, (body, package)
            assert _quiet_tree(index.shape(files[2])) == expected, body
            assert not quiet(index, files[2], room=False)


# ------------------------------------------------------------------------------------------------- shapes

def test_shape_conditions():
    module = "__torch__.a.___torch_mangle_3"
    text = "x: __torch__.a.___torch_mangle_3.L = ___torch_mangle_12\n'___torch_mangle_3' # ___torch_mangle_007"
    assert shapes.shape_of(module, text) == (
        "__torch__.a.___torch_mangle___tsph0__",
        "x: __torch__.a.___torch_mangle___tsph0__.L = ___torch_mangle___tsph1__\n'___torch_mangle___tsph0__' "
        "# ___torch_mangle___tsph2__", ("3", "12", "007"))
    _, shaped, numbers = shapes.shape_of(module, text)
    assert shapes.placed(shaped, numbers) == text and shapes.whole(shaped, 3) and not shapes.whole(shaped, 2)
    for value in ["__tsph", "__tsph0_", "__tsph01__", "__tsph3__"]:
        assert not shapes.whole(value, 3), value
    assert shapes.shape_of("__torch__.a", "x = 1") is None  # no mangled number: nothing to share
    for bad in [text + "__tsph", text + "é", text + "\n" + "x" * shapes.MAX_LINE]:
        assert shapes.shape_of(module, bad) is None, bad[-10:]
    assert shapes.shape_of(module + "é", text) is None


# ---------------------------------------------------------------------------------------- debug records

def _maps_both_ways(datas: list[bytes]) -> int:
    """SourceMaps' reading of ``datas`` in order against each walked on its own: the same maps, the same
    errors; how many were read from a shape."""
    from tsinspect.archive.debuginfo import SourceMaps, parse_source_map
    from tsinspect.archive.pickles import walk

    def read(how, data):
        try:
            found = how(data)
        except Exception as exc:  # noqa: BLE001 - the same exception either way is the point
            return type(exc).__name__, str(exc)
        return found.layout, [(r.offset, r.source, r.start, r.end, r.tag) for r in found.records]

    maps = SourceMaps()
    for data in datas:
        assert read(maps.read, data) == read(lambda d: parse_source_map(walk(d).value), data)
    return sum(shape.matched - 1 for known in maps._shapes.values() for shape in known
               if shape.tree is not None and not shape.failed)


def _debug_records(path: Path) -> list[bytes]:
    try:
        with zipfile.ZipFile(path) as z:
            return [z.read(i) for i in z.infolist() if i.filename.endswith(".debug_pkl")]
    except (zipfile.BadZipFile, OSError):
        return []


def test_debug_records_both_ways_on_real_archives(traced):
    shared = sum(_maps_both_ways(_debug_records(path)) for path in ARCHIVES)
    shared += _maps_both_ways([d for n, d in traced.items() if n.endswith(".debug_pkl")])
    assert shared > 20


def test_debug_records_of_edited_copies(traced):
    """Copies of a traced debug record with their integers, other bytes or lengths changed at random, read
    in one archive's order: the same maps and errors as each walked on its own."""
    import random
    import struct

    from tsinspect.archive.debuginfo import _int_slots

    rng = random.Random(14)
    bases = [d for n, d in traced.items() if n.endswith(".debug_pkl") and _int_slots(d)]
    datas = []
    for _ in range(3000):
        data = bytearray(rng.choice(bases))
        slots = _int_slots(bytes(data))
        for at, width in rng.sample(slots, rng.randint(0, min(6, len(slots)))):
            value = rng.choice([0, 1, 2, 255, rng.randrange(1 << (8 * width))])
            data[at:at + width] = value.to_bytes(width, "little") if width < 4 else struct.pack(
                "<i", rng.choice([value % (1 << 31), -1, -(1 << 31), (1 << 31) - 1]))
        if rng.random() < 0.1:  # any byte: the layout may change (read on its own) or the walk fail
            data[rng.randrange(len(data))] = rng.randrange(256)
        datas.append(bytes(data))
    assert _maps_both_ways(datas) > 1000


def test_debug_records_over_the_size_limit(monkeypatch):
    """Sources adding up to more than MAX_SOURCE_CHARS in one record, each under it: an error each time, also
    for the copies whose first source was made for an earlier copy (pickles this large shaped for the test)."""
    from hostile import debug_pkl
    from tsinspect.archive import debuginfo
    from tsinspect.archive.debuginfo import MAX_SOURCE_CHARS

    monkeypatch.setattr(debuginfo, "MAX_SHAPED_BYTES", 1 << 30)

    big = "x" * (MAX_SOURCE_CHARS // 20)
    datas = [debug_pkl([big, "f.py", "g"], [(offset, [0] * 12, 1, 1, 0, 5), (offset + 9, [0] * 12 + [2], 1, 2, 0, 5)])
             for offset in range(10, 16)]
    assert _maps_both_ways(datas) >= 3
