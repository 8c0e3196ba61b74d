"""Every torch-free command survives every file of the hostile corpus (tests/hostile.py).

For each case all the commands run in one child process (``tsinspect.cli.main`` called in turn, with
stdout/stderr captured as pipes would be) under a 2 GiB address-space limit and a timeout; a representative
subset also runs each command as its own ``python -m tsinspect`` process. Asserted for every run: exit
status 0/1/2 as documented (2 = exactly one ``tsinspect: error: ...`` line), no traceback or internal error,
no raw terminal escape in the output, the marker file a pickle payload would create never appears, and
``extract`` writes nothing outside DEST, creates no links and overwrites nothing. Damaged-but-readable
archives must name their problem ``kind`` in ``info --json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402

MEMORY_LIMIT = 2 << 30
TIMEOUT = 60

# command id -> argv, with FILE / DEST / CODE substituted
COMMANDS = {
    "ls": ["ls", "FILE"],
    "ls_json": ["ls", "FILE", "--json"],
    "info": ["info", "FILE"],
    "info_json": ["info", "FILE", "--json"],
    "cat": ["cat", "FILE", "data.pkl"],
    "cat_blame": ["cat", "FILE", "CODE", "--blame"],
    "cat_blame_json": ["cat", "FILE", "CODE", "--json"],
    "pickle": ["pickle", "FILE"],
    "pickle_ops": ["pickle", "FILE", "--ops"],
    "pickle_json": ["pickle", "FILE", "--json"],
    "scan": ["scan", "FILE"],
    "extract": ["extract", "FILE", "DEST"],  # last: the only command that writes
}
# commands whose stdout is the record's raw bytes when it is a pipe (documented: `cat` of a record)
RAW_STDOUT = {"cat"}
# what may never reach a terminal unescaped: ESC, BEL, CSI as a C1 control (UTF-8), bidi override
UNSAFE = (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode())

_DRIVER = r"""
import io, json, sys, base64
from tsinspect.cli import main
out_stream, err_stream = sys.stdout, sys.stderr
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.BytesIO(), io.BytesIO()
    sys.stdout = io.TextIOWrapper(out, encoding=out_stream.encoding, errors=out_stream.errors,
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding=err_stream.encoding, errors=err_stream.errors,
                                  write_through=True)
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:
        import traceback
        traceback.print_exc()
        rc = 99
    sys.stdout.flush(); sys.stderr.flush()
    results.append([rc, base64.b64encode(out.getvalue()).decode(),
                    base64.b64encode(err.getvalue()).decode(), len(out.getvalue())])
sys.stdout, sys.stderr = out_stream, err_stream
json.dump(results, sys.stdout)
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TSINSPECT_DEBUG"}
    env.pop("NO_COLOR", None)  # colour must be off because output is a pipe, not because we asked
    return env


class Workspace:
    """tmp_path laid out as: in/<file>, marker (must never exist), out/dest (extract), out/victim."""

    def __init__(self, tmp_path: Path, case: hostile.Case):
        self.root = tmp_path
        self.case = case
        self.marker = tmp_path / "marker"
        (tmp_path / "in").mkdir()
        self.file = tmp_path / "in" / case.filename
        self.file.write_bytes(case.build(str(self.marker)))
        self.out = tmp_path / "out"
        self.dest = self.out / "dest"
        (self.out / "victim").mkdir(parents=True)
        (self.out / "victim" / "keep.txt").write_bytes(b"must not change")
        (self.out / "evil").write_bytes(b"a file a traversal would overwrite")
        for rel, content in case.preexisting.items():
            target = self.dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str) and content.startswith("->"):
                target.symlink_to(content[2:])
            else:
                target.write_bytes(content)
        self.before = self.snapshot()

    def argv(self, command: str) -> list[str]:
        subst = {"FILE": str(self.file), "DEST": str(self.dest), "CODE": self.case.code or ""}
        return [subst.get(a, a) for a in COMMANDS[command]]

    def commands(self) -> list[str]:
        return [c for c in COMMANDS if (self.case.code or not c.startswith("cat_blame"))
                and (self.case.commands is None or c in self.case.commands)]

    def snapshot(self) -> dict[str, tuple]:
        """Every path under tmp_path outside DEST (and DEST's pre-existing files): type and content hash."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                rel = str(path.relative_to(self.root))
                st = path.lstat()
                if path.is_symlink():
                    out[rel] = ("link", os.readlink(path))
                elif path.is_file():
                    out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
                else:
                    out[rel] = ("dir",)
        return out


def run_in_child(ws: Workspace, commands: list[str]) -> dict[str, tuple[int, bytes, bytes]]:
    """All ``commands`` in one memory-limited child; {command: (exit status, stdout, stderr)}."""
    argvs = [ws.argv(c) for c in commands]
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(argvs)], capture_output=True,
                          timeout=TIMEOUT, preexec_fn=_limit_memory, env=_env(), cwd=ws.root)
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode(errors="replace")[-3000:])
    results = json.loads(proc.stdout)
    return {c: (rc, base64.b64decode(out), base64.b64decode(err)) for c, (rc, out, err, _) in zip(commands, results)}


def run_as_process(ws: Workspace, command: str) -> tuple[int, bytes, bytes]:
    proc = subprocess.run([sys.executable, "-m", "tsinspect", *ws.argv(command)], capture_output=True,
                          timeout=TIMEOUT, preexec_fn=_limit_memory, env=_env(), cwd=ws.root)
    return proc.returncode, proc.stdout, proc.stderr


def check_run(ws: Workspace, command: str, rc: int, out: bytes, err: bytes) -> None:
    case = ws.case
    where = f"{case.id} / {command}: exit {rc}\nstderr: {err[-2000:]!r}\nstdout: {out[:600]!r}"
    text = err.decode("utf-8", "replace")
    assert "Traceback" not in text, where
    assert "internal error" not in text, where
    assert rc in (0, 1, 2), where
    lines = text.splitlines()
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith("tsinspect: error: "), where
    else:
        assert all(line.startswith("tsinspect: ") for line in lines), where
    for bad in UNSAFE:
        assert bad not in err, f"raw {bad!r} on stderr: {where}"
        if command not in RAW_STDOUT:
            assert bad not in out, f"raw {bad!r} on stdout: {where}"
    if case.fatal:
        assert rc == 2, where
        assert case.error.lower() in text.lower(), where
    elif command in case.expect or command.removesuffix("_json") in case.expect:
        assert rc == case.expect.get(command, case.expect.get(command.removesuffix("_json"))), where
    elif command in ("ls", "ls_json", "info", "info_json"):
        assert rc == 0, where
    if command == "info_json" and rc == 0:
        info = json.loads(out)
        kinds = {p["kind"] for p in info["problems"]}
        assert set(case.kinds) <= kinds, (where, sorted(kinds))
    if command == "ls_json" and rc == 0:
        json.loads(out)
    assert not ws.marker.exists(), f"the payload ran: {where}"


def check_filesystem(ws: Workspace) -> None:
    """Nothing outside DEST changed; inside DEST only regular files and folders, nothing overwritten."""
    after = ws.snapshot()
    dest_rel = str(ws.dest.relative_to(ws.root))
    for rel, state in ws.before.items():
        assert after.get(rel) == state, f"{ws.case.id}: {rel} changed or vanished"
    for rel, state in after.items():
        if rel in ws.before:
            continue
        assert rel == dest_rel or rel.startswith(dest_rel + os.sep), f"{ws.case.id}: extract wrote {rel}"
        assert state[0] != "link", f"{ws.case.id}: extract created link {rel}"
        if rel == dest_rel:
            continue
        real = os.path.realpath(ws.root / rel)
        assert real.startswith(os.path.realpath(ws.dest) + os.sep), f"{ws.case.id}: {rel} resolves outside DEST"


def _case_params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.fixture(scope="module")
def corpus_runs(request, tmp_path_factory):
    """Runs the cases this session selected, several children at a time: {case id: Future of (ws, results)}.

    The children are independent processes, so running them side by side keeps the module fast on CI.
    """
    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.name.startswith("test_every_command_survives[")}

    def run(case: hostile.Case):
        ws = Workspace(tmp_path_factory.mktemp(case.id), case)
        return ws, run_in_child(ws, ws.commands())

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {c.id: pool.submit(run, c) for c in hostile.CASES if c.id in selected}


@pytest.mark.parametrize("case", _case_params(hostile.CASES))
def test_every_command_survives(case: hostile.Case, corpus_runs) -> None:
    ws, results = corpus_runs[case.id].result()
    for command in ws.commands():
        check_run(ws, command, *results[command])
    check_filesystem(ws)


# Cases run once more command by command in real processes: one of each family.
PROCESS_CASES = ["random_bytes", "nul_shadowed_name", "path_traversal", "symlink_then_write_through",
                 "control_chars_in_names", "legacy_pickle_then_zip", "pickle_reduce_os_system",
                 "debug_escapes_in_source_and_file"]


@pytest.mark.parametrize("case", _case_params(hostile.BY_ID[i] for i in PROCESS_CASES))
def test_each_command_as_its_own_process(case: hostile.Case, tmp_path: Path) -> None:
    ws = Workspace(tmp_path, case)
    readers = [c for c in ws.commands() if c != "extract"]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        runs = dict(zip(readers, pool.map(lambda command: run_as_process(ws, command), readers)))
    runs["extract"] = run_as_process(ws, "extract")  # alone: the only command that writes
    for command, run in runs.items():
        check_run(ws, command, *run)
    check_filesystem(ws)


def test_extract_skips_every_unsafe_member(tmp_path: Path) -> None:
    """The traversal, link, NUL and control-character members are reported as skipped, by name."""
    members = hostile.scripted()
    top = hostile.top()
    evil = [b"../../evil", b"/abs/evil", b"C:\\evil", top + b"extra/../../../evil3", top + b"data.pkl\x00x",
            top + b"extra/\x1b[31mred", top + b"extra/\xff.txt", top + "extra/del\x7f.txt".encode(),
            top + "extra/csi\x9b2J.txt".encode(), top + "extra/bidi\u202etxt.exe".encode()]
    link = hostile.Member(top + b"extra/link", b"/etc", create_system=3, external_attr=0o120777 << 16)
    data = hostile.build_zip(members + [hostile.Member(n, b"x") for n in evil] + [link])
    case = hostile.Case("extract_report", lambda marker: data)
    ws = Workspace(tmp_path, case)
    rc, out, err = run_in_child(ws, ["extract"])["extract"]
    check_run(ws, "extract", rc, out, err)
    check_filesystem(ws)
    assert rc == 1
    skipped = [line for line in err.decode().splitlines() if "skipped" in line]
    assert len(skipped) == len(evil) + 1, skipped
    written = {p.relative_to(ws.dest).as_posix() for p in ws.dest.rglob("*") if p.is_file()}
    assert written == {m.name.decode() for m in members}


def test_hostile_arguments_are_escaped(tmp_path: Path) -> None:
    """Member names and paths typed by the user (or pasted from a listing) are escaped in errors too."""
    sample = str(hostile.SAMPLES / "gate_scripted.pt")
    argvs = [["cat", sample, "\x1b[31mnope"], ["pickle", sample, "\x1b]0;title\x07"],
             ["info", str(tmp_path / "no\x1b[2Jfile.pt")], ["ls", str(tmp_path / "\u202eevil.pt")],
             ["extract", sample, str(tmp_path / "dest"), "a\x1b[1m"],
             ["cat", sample, "code/__torch__/models.py.debug_pkl", "--blame"]]
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(argvs)], capture_output=True,
                          timeout=TIMEOUT, preexec_fn=_limit_memory, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    for argv, (rc, out, err, _) in zip(argvs, json.loads(proc.stdout)):
        out, err = base64.b64decode(out), base64.b64decode(err)
        assert rc == 2 and out == b"", (argv, rc, out, err)
        lines = err.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tsinspect: error: "), (argv, err)
        assert not any(bad in err for bad in UNSAFE), (argv, err)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("to_stdout", [False, True], ids=["file", "stdout"])
def test_report_json_escapes_c1_and_bidi(tmp_path: Path, to_stdout: bool) -> None:
    """The JSON report, to a file or to stdout, carries archive strings with C1 and bidi characters escaped
    (``\\u009b``), never raw: the same JSON value, safe to cat."""
    path = tmp_path / "case.pt"
    path.write_bytes(hostile.BY_ID["code_bidi_and_c1"].build(str(tmp_path / "marker")))  # raw in code text
    out = tmp_path / "report.json"
    target = "-" if to_stdout else str(out)
    proc = subprocess.run([sys.executable, "-m", "tsinspect", "report", str(path), "-o", target, "--format", "json",
                           "--no-ir"], capture_output=True, timeout=TIMEOUT, env=_env(), cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    data = proc.stdout if to_stdout else out.read_bytes()
    assert not any(bad in data for bad in UNSAFE), [bad for bad in UNSAFE if bad in data]
    assert "\u202e evil \u2066 \x9b2J" in json.dumps(json.loads(data), ensure_ascii=False)  # the same value
