"""Fidelity: tsinspect's torch-free view of real third-party archives against ground truth from torch.

    python benchmarks/fidelity.py [--fast] [--json OUT] [--verbose] [FILE ...]

Without FILEs it checks every archive of tests/real/ plus the archives tests/real/SOURCES.md lists as
"from the mirror" (read from a local git snapshot of their public repository when one is present under
/work/.mirror or $TSINSPECT_MIRROR; skipped otherwise). The truth comes from benchmarks/fidelity_truth.py,
run as a child process with torch (this process never imports torch). Compared, per archive:
  tensors      every tensor of data.pkl, constants.pkl, bytecode.pkl, traced_inputs.pkl (or of a legacy
               torch.save stream): name, dtype, shape, stride, offset, storage record and size,
               requires_grad, quantization (scheme, scale, zero point, axis, scale/zero-point tensors)
  storages     the set of storage records and their sizes, weight bytes, and each record's SHA-1
  modules      the module tree (paths, types), training flags, the methods of each module type
  ops          per module-type method, the ops (not prim::) of the torch-free op view vs torch's graph
  blame        per code line, the original file:line of ``cat --blame`` vs the source range torch gives
               the line's first node (the one starting at the smallest column; constants, which torch pools
               across statements, do not count)
  nodes        (full run only) graph node counts of tsinspect's IR extraction vs torch's own load
  records      every record torch's zip reader lists, and its bytes (SHA-1)
  bytecode     lite archives: the op names of bytecode.pkl's operator tables (torch's mobile reader vs
               tsinspect's safety judge, which reads them to judge the archive)
  not loadable where torch cannot load an archive: its module tree (paths, types, training) and bytecode
               operators as Python's own unpickler reads data.pkl and bytecode.pkl with torch's rebuild
               functions (a stand-in checked against torch.jit.load and the mobile reader on every archive
               they do read: a disagreement there is a "truth" difference)
  problems     any problem tsinspect reports on these archives (all were written by torch) is a difference
Exit status 1 when anything differs. --fast skips the IR extraction (what tests/test_fidelity.py runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "real"
TRUTH = Path(__file__).resolve().parent / "fidelity_truth.py"
MIRROR = Path(os.environ.get("TSINSPECT_MIRROR", "/work/.mirror"))

# Archives read from a local git snapshot of their repository: (name, repository, blob id), those whose licence
# does not clearly allow redistribution and those too large for tests/real. Their repository, path and commit
# are in tests/real/SOURCES.md.
FROM_MIRROR = [
    ("android_asl_xnnpack.ptl", "pytorch/android-demo-app", "b4412261dcd429fa832b10012ed62c93696a1c28"),
    ("android_asl_v5.ptl", "pytorch/android-demo-app", "4b7170268dc4ccffba23a654cebffc078ce1dd8b"),
    ("android_d2go.pt", "pytorch/android-demo-app", "3931d1d7cf1372b8bf6655146cab829137559720"),
    ("android_mobile_model.pt", "pytorch/android-demo-app", "ff59abec00d5c4914e0dadc59be346496cc48961"),
    ("android_mobile_model2.pt", "pytorch/android-demo-app", "9c1350a7004c2bdd692062983fa2b6f85558193d"),
    ("android_mobilenet_quantized_v1.pt", "pytorch/android-demo-app", "a634313a9103526a628ab48e667d88216813ae6b"),
    ("android_mobilenet_quantized_925.pt", "pytorch/android-demo-app", "96deea249e771111ffed295bb8a70ce41cca65b6"),
    ("android_vit4mnist.pth", "pytorch/android-demo-app", "843029bf2981e4308ea3c3e1b5353000c5c0a310"),
    ("android_vit4mnist.ptl", "pytorch/android-demo-app", "9c8f6e423a99182cc83ce682f5f29c771329d54c"),
    ("ios_d2go_optimized.pt", "pytorch/ios-demo-app", "8855540d25f56cf7f8f883abc030d7a544e3a607"),
    ("ios_mobilenet_quantized.pt", "pytorch/ios-demo-app", "74b5c6d325b9df0cd8082672ee7c8b44b9bcd396"),
    ("ios_reddit.pt", "pytorch/ios-demo-app", "728e20d78ceefb90ce5a87d00db274d0a83b91c9"),
    ("ios_vit4mnist_xnnpack.pth", "pytorch/ios-demo-app", "37d6557aa882a1a5981c0273b0f70d4de70654fd"),
    ("ios_vit4mnist_v5.ptl", "pytorch/ios-demo-app", "11a15115e27de97132ef3babe675da8c15381c58"),
    ("android_asl_2021-07.ptl", "pytorch/android-demo-app", "f896ec198b596154e269c919ec11c3b8b7ccebbf"),
    ("ios_mobilenet_quantized2.ptl", "pytorch/ios-demo-app", "ad4c5cd8598ae248175023406f4f6fa7ee2e2f72"),
    ("tchdeploy_traced_2025-01.pt", "keithyin/tch-deploy", "00a792be7b99b9ee96a96a9e8af0ae369a2aa26b"),
    ("tchdeploy_traced_2025-07.pt", "keithyin/tch-deploy", "c96aa694ff3bf1ffdf739d4fe0398716d9bfcb36"),
    ("healthport_illumination_2023-04.ptl", "healthport-Inc/image-processing",
     "0bf6c6faec85118c7a27e7712e1e1d5a67f2a552"),
    # larger than tests/real should hold (MIT or Apache-2.0: the licence is not the reason)
    ("djl_deepar_2022-11-09a.pt", "deepjavalibrary/djl", "ff5f0754a3a025e0995022c8ac7c27a8f5c4ae06"),
    ("djl_deepar_2022-11-09b.pt", "deepjavalibrary/djl", "4711baf333465761e3a6ca4489bfa3cd57c704fb"),
    ("tch_foo9_2024-11-22.pt", "LaurentMazare/tch-rs", "ced88724054dc91d775a2753a60b785395c5a453"),
    ("silero_vad_2021-12-10.jit", "snakers4/silero-vad", "9fcd286a7033124b6191184a23f54e2071e84521"),
    ("silero_vad_2021-12-21.jit", "snakers4/silero-vad", "e29f1e14eb8d5f3902121c3da7d2cdbc188d9bfe"),
    ("silero_vad_2022-10-26.jit", "snakers4/silero-vad", "7eddfeb7e7a512d04e89380c82457ebb308cbe73"),
    ("silero_vad_2022-10-27.jit", "snakers4/silero-vad", "501cb7c9ee9a8ac4f518acc05f14694c2a1e8f52"),
    ("silero_vad_2024-06-27.jit", "snakers4/silero-vad", "42a5ed4abfb1e50344e12717862a401fd31e0b21"),
    ("silero_vad_2024-07-09.jit", "snakers4/silero-vad", "63cb73be394528ef8d4936fdaa4884890754d065"),
    ("silero_vad_2025-08-25.jit", "snakers4/silero-vad", "30868c98336746f4fe4b420cc25d4fe2ea7b23f7"),
    ("silero_vad_2025-11-06.jit", "snakers4/silero-vad", "5c6988d663950a93a5f0d6c38c2fe024653ec552"),
]


def real_archives() -> list[Path]:
    return sorted(p for p in REAL.iterdir() if p.is_file() and p.suffix in (".pt", ".ptl", ".pth", ".jit"))


def mirror_archives(dest: Path) -> tuple[list[Path], list[str]]:
    """The FROM_MIRROR archives copied out of local snapshots into ``dest``; and the names not available."""
    found, missing = [], []
    for name, repo, blob in FROM_MIRROR:
        git_dir = MIRROR / repo.replace("/", "+") / "repo"
        target = dest / name
        proc = subprocess.run(["git", "-C", str(git_dir), "cat-file", "blob", blob], capture_output=True) \
            if git_dir.is_dir() else None
        if proc is None or proc.returncode != 0:
            missing.append(name)
            continue
        target.write_bytes(proc.stdout)
        found.append(target)
    return found, missing


def run_truth(paths: list[Path], timeout: float = 900) -> dict[str, dict]:
    """Truth for each path from one torch child (one ``import torch`` for all)."""
    absolute = {str(p.resolve()): str(p) for p in paths}
    proc = subprocess.run([sys.executable, str(TRUTH), *absolute], capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir())
    out = {}
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        out[absolute[doc["path"]]] = doc
    for path in paths:
        out.setdefault(str(path), {"path": str(path), "error": f"no truth (child exit {proc.returncode}): "
                                                               f"{proc.stderr[-300:]}"})
    return out


# ----- tsinspect's view (no torch here)

def view(path: Path) -> dict:
    from tsinspect.archive.code import CodeIndex
    from tsinspect.archive.debuginfo import load_source_map
    from tsinspect.archive.reader import CODE_CAP, open_archive
    from tsinspect.archive.summary import summarize
    from tsinspect.ir.fallback import ast_methods

    with open_archive(str(path)) as archive:
        s = summarize(archive)
        groups: dict[str, list] = {"tensors": [], "bytecode": []}
        for t in s.tensors:
            groups["bytecode" if t.name.startswith("bytecode") else "tensors"].append(t)
        groups["constants"] = s.constants
        groups["traced_inputs"] = s.traced_inputs
        out: dict = {"format": s.format, "weight_bytes": s.weight_bytes,
                     "problems": [p.to_json() for p in s.problems]}
        for key, items in groups.items():
            out[key] = [_tensor_view(t) for t in items]
        # the storage records the tensors use, with the bytes tsinspect reads for them (a traced input's record
        # is empty by design: its tensor keeps the declared storage size, compared per tensor above)
        out["storages"], out["digests"] = {}, {}
        for name in {t.record for ts in groups.values() for t in ts if t.record}:
            record = archive.by_name.get(name)
            data = archive.read(record, 1 << 31) if record is not None else None
            out["storages"][name] = len(data) if data is not None else None
            if data is not None:
                out["digests"][name] = hashlib.sha1(data).hexdigest()
        out["records"] = {r.name: hashlib.sha1(archive.read(r, 1 << 31)).hexdigest()
                          for r in archive.records if not r.entry.is_dir}
        out["bytecode_ops"] = _bytecode_ops(archive)
        out["modules"] = [{"path": m.path, "type": m.type, "training": m.training}
                          for m in (s.modules.walk() if s.modules else [])]
        code: CodeIndex = s.code
        out["methods"] = {q: sorted(m.name for m in c.methods) for q, c in code.classes.items()}
        ops: dict[str, Counter] = {}
        for method in ast_methods(code):
            counts = ops.setdefault(f"{method.owner}.{method.name}", Counter())
            for use in method.ops:
                if "::" in use.op and not use.op.startswith("prim::"):
                    counts[use.op] += 1
        out["ops"] = {k: dict(v) for k, v in ops.items()}
        blame = {}
        for name in s.code_files:
            try:
                source_map = load_source_map(archive, name)
            except Exception as exc:  # noqa: BLE001 - reported as a difference
                blame[name] = {"error": str(exc)}
                continue
            if source_map is None:
                continue
            origins = source_map.line_origins(archive.read(name, CODE_CAP))
            blame[name] = {str(i + 1): [o.file, o.line] for i, o in enumerate(origins) if o is not None}
        out["blame"] = blame
        return out


def _bytecode_ops(archive) -> list[str] | str | None:
    """The op names of every operator table in bytecode.pkl, as the safety judge reads them."""
    from tsinspect.safety.bytecode import parse

    record = archive.by_name.get("bytecode.pkl")
    if record is None:
        return None
    try:
        from tsinspect.archive.pickles import walk
        from tsinspect.archive.reader import PICKLE_CAP

        functions = parse(walk(archive.read(record, PICKLE_CAP)).value)
    except Exception as exc:  # noqa: BLE001 - reported as a difference
        return f"{type(exc).__name__}: {exc}"
    return sorted({op for _, operators, _ in functions for op in operators})


def _tensor_view(t) -> dict:
    return {"name": t.name, "dtype": t.dtype, "shape": t.shape, "stride": t.stride, "offset": t.offset,
            "record": t.record, "storage_nbytes": t.storage_nbytes, "requires_grad": t.requires_grad,
            "quantization": getattr(t, "qparams", None), "aliases": t.aliases}


def ir_node_counts(path: Path) -> dict[str, int] | str:
    """Node counts per module-type method from tsinspect's own IR extraction (its torch child)."""
    from tsinspect.archive.reader import open_archive
    from tsinspect.ir.run import Options, extract_ir

    with open_archive(str(path)) as archive:
        ir = extract_ir(archive, Options(trust=True)).ir
    if ir.error is not None:
        return f"{ir.error.kind}: {ir.error.message}"
    counts = {}
    for type_name, methods in ir.types.items():
        for method in methods:
            if method.graph is not None:
                counts[f"{type_name}.{method.name}"] = sum(1 for _ in method.graph.walk())
    return counts


# ----- comparison

def compare(truth: dict, seen: dict, nodes: dict | str | None = None) -> dict:
    """Differences by category; each a list of short texts. Categories absent from the truth are skipped."""
    diffs: dict[str, list[str]] = {}

    def add(category: str, text: str) -> None:
        diffs.setdefault(category, []).append(text)

    if "error" in truth:
        add("truth", truth["error"])
        return {"diffs": diffs, "checked": {}}
    checked: dict[str, int] = {}
    for problem in seen["problems"]:  # a real archive torch reads has nothing to complain about
        add("problems", f"{problem['kind']}: {problem.get('member')}: {problem.get('detail')}")
    groups = ("tensors",) if truth["kind"] == "legacy" else ("tensors", "constants", "bytecode", "traced_inputs")
    if truth.get("model_json"):  # torch 2.13 reads no tensors from it: nothing to compare (see not_verified)
        groups = ()
    for group in groups:
        want = truth.get(group, [])
        have = {t["name"]: t for t in seen.get(group, [])}
        # a view tsinspect lists once, under another name (a lite archive's bytecode.pkl repeats constants)
        aliases = {a: t for ts in seen.values() if isinstance(ts, list) for t in ts if isinstance(t, dict)
                   for a in t.get("aliases", [])}
        checked["tensors"] = checked.get("tensors", 0) + len(want)
        for t in want:
            got = have.pop(t["name"], None) or aliases.get(t["name"])
            if got is None:
                add("tensors", f"{group}: {t['name']} missing")
                continue
            for key in ("dtype", "shape", "stride", "offset", "storage_nbytes", "requires_grad", "quantization"):
                if _norm(t[key]) != _norm(got[key]):
                    add("tensors", f"{group}: {t['name']} {key} {got[key]!r} != torch {t[key]!r}")
            if truth["kind"] == "zip" and t["record"] != got["record"]:
                add("tensors", f"{group}: {t['name']} record {got['record']!r} != torch {t['record']!r}")
        for name in have:
            add("tensors", f"{group}: {name} not in torch")
    if truth["kind"] == "legacy":
        hashes = sorted(set(seen["digests"].values()))
        checked["storages"] = len(truth["storage_hashes"])
        if hashes != truth["storage_hashes"]:
            add("storages", f"storage bytes: {len(hashes)} distinct, torch {len(truth['storage_hashes'])}")
    elif not truth.get("model_json"):  # torch reads no tensors from a model.json archive
        checked["storages"] = len(truth["storages"])
        if truth["storages"] != seen["storages"]:
            seen_bytes = sum(v or 0 for v in seen["storages"].values())
            add("storages", f"{len(seen['storages'])} storages, {seen_bytes} bytes; torch "
                            f"{len(truth['storages'])}, {sum(truth['storages'].values())} bytes")
        if sum(truth["storages"].values()) != seen["weight_bytes"]:
            add("storages", f"weight_bytes {seen['weight_bytes']} != torch {sum(truth['storages'].values())}")
        for name, digest in truth["digests"].items():
            if seen["digests"].get(name) != digest:
                add("storages", f"{name} bytes differ")
    if truth["kind"] == "zip":
        _compare_records(truth, seen, add, checked, diffs)
    if "load_error" in truth:
        pickled = "pickled_modules" in truth
        diffs.setdefault("not_verified", []).append(
            f"{'' if pickled else 'modules, '}methods, ops, blame (torch cannot load it: {truth['load_error']}"
            f"{'; modules from Python unpickling data.pkl' if pickled else ''})")
        if pickled:
            _compare_modules(truth["pickled_modules"], seen, add, checked)
    elif truth["kind"] == "zip":
        _compare_script(truth, seen, nodes, add, checked, diffs)
    return {"diffs": diffs, "checked": checked}


def _compare_records(truth, seen, add, checked, diffs) -> None:
    checked["records"] = len(truth["records"])
    for name, digest in truth["records"].items():
        if name not in seen["records"]:
            add("records", f"{name} missing")
        elif seen["records"][name] != digest:
            add("records", f"{name} bytes differ")
    for name in seen["records"].keys() - truth["records"].keys():
        add("records", f"{name} not in torch")
    if truth.get("model_json"):
        diffs.setdefault("not_verified", []).append(
            "tensors (a pre-1.4 model.json archive: tsinspect reads them from model.json; torch 2.13 reads "
            "nothing from it to check them against)")
    bytecode_ops = truth.get("bytecode_ops", truth.get("pickled_bytecode_ops"))
    if "bytecode_error" in truth:
        diffs.setdefault("not_verified", []).append(
            f"bytecode operators by torch (its mobile reader fails: {truth['bytecode_error']}; "
            "read by Python unpickling bytecode.pkl)")
    if bytecode_ops is not None:
        checked["bytecode_ops"] = len(bytecode_ops)
        if seen["bytecode_ops"] != bytecode_ops:
            add("bytecode_ops", f"{seen['bytecode_ops']} != torch {bytecode_ops}")
    # the stand-in truth for archives torch cannot load must agree with torch on the ones it can
    if "pickled_error" in truth:
        add("truth", f"Python's unpickler: {truth['pickled_error']}")
    pickled = truth.get("pickled_modules")
    if "modules" in truth and pickled is not None:
        agree = len(pickled) == len(truth["modules"]) and all(
            (p["path"], p["type"]) == (t["path"], t["type"]) and p["training"] in (None, t["training"])
            for p, t in zip(pickled, truth["modules"]))
        if not agree:
            add("truth", "the module tree Python's unpickler gives differs from torch.jit.load's")
    if "bytecode_ops" in truth and truth.get("pickled_bytecode_ops") != truth["bytecode_ops"]:
        add("truth", "bytecode operators from Python's unpickler differ from torch's mobile reader")


def _compare_modules(modules, seen, add, checked) -> None:
    """Paths, types and training flags (a truth of None: not known, not compared)."""
    want = {m["path"]: m for m in modules}
    have = {m["path"]: m for m in seen["modules"]}
    checked["modules"] = len(want)
    for path, m in want.items():
        got = have.pop(path, None)
        training = got["training"] if got is not None and m["training"] is None else m["training"]
        if got is None:
            add("modules", f"module {path or '<root>'} missing")
        elif (got["type"], got["training"]) != (m["type"], training):
            add("modules", f"module {path or '<root>'} {got['type']} training={got['training']}; "
                           f"torch {m['type']} training={m['training']}")
    for path in have:
        add("modules", f"module {path} not in torch")


def _compare_script(truth, seen, nodes, add, checked, diffs) -> None:
    _compare_modules(truth["modules"], seen, add, checked)
    checked["methods"] = sum(len(v) for v in truth["methods"].values())
    for qual, names in truth["methods"].items():
        if sorted(seen["methods"].get(qual, [])) != names:
            add("methods", f"{qual}: {sorted(seen['methods'].get(qual, []))} != torch {names}")
    checked["ops"] = sum(sum(c.values()) for c in truth["ops"].values())
    for key, counts in truth["ops"].items():
        got = seen["ops"].get(key, {})
        if got != counts:
            delta = {k: got.get(k, 0) - counts.get(k, 0) for k in set(got) | set(counts)
                     if got.get(k, 0) != counts.get(k, 0)}
            add("ops", f"{key}: view - torch = {delta}")
    checked["blame"] = 0
    for code_file, lines in truth["blame"].items():
        got_file = seen["blame"].get(code_file, {})
        if "error" in got_file:
            add("blame", f"{code_file}: {got_file['error']}")
            continue
        for line, found in lines.items():
            column, file, orig_line, kind = min(found)
            checked["blame"] += 1
            got = got_file.get(line)
            if got != [file, orig_line]:
                add("blame", f"{code_file}:{line} -> {_short(got)}; torch {_short([file, orig_line])} ({kind})")
    if nodes is not None:
        if isinstance(nodes, str) and nodes.startswith(("missing_op", "missing_class")):
            # the truth child declares torchvision's schemas; tsinspect's extractor needs --library for them
            diffs.setdefault("not_verified", []).append(f"node counts (tsinspect's IR extraction: {nodes})")
        elif isinstance(nodes, str):
            add("nodes", f"IR extraction failed: {nodes}")
        else:
            checked["nodes"] = sum(truth["nodes"].values())
            for key, count in truth["nodes"].items():
                if nodes.get(key) != count:
                    add("nodes", f"{key}: {nodes.get(key)} nodes, torch {count}")


def _short(where) -> str:
    return f"{where[0].rsplit('/', 1)[-1]}:{where[1]}" if where else "nothing"


def _norm(value):
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def check(paths: list[Path], fast: bool = False) -> dict[str, dict]:
    truths = run_truth(paths)
    results = {}
    for path in paths:
        truth = truths[str(path)]
        seen = view(path)
        nodes = None if fast or truth.get("kind") != "zip" or "load_error" in truth else ir_node_counts(path)
        results[path.name] = compare(truth, seen, nodes)
        results[path.name]["format"] = seen["format"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--fast", action="store_true", help="skip the IR extraction's node counts")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every difference")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tsinspect-fidelity-") as tmp:
        missing: list[str] = []
        paths = args.files
        if not paths:
            mirrored, missing = mirror_archives(Path(tmp))
            paths = real_archives() + mirrored
        results = check(paths, fast=args.fast)
    exact = 0
    print(f"{'archive':34} {'format':12} {'checked':44} differences")
    for name, result in results.items():
        diffs = {k: v for k, v in result["diffs"].items() if k != "not_verified"}
        exact += not diffs
        checked = " ".join(f"{k}={v}" for k, v in result["checked"].items())
        summary = ", ".join(f"{k} {len(v)}" for k, v in diffs.items()) or "none"
        note = "; not verified: " + "; ".join(t.split(" (")[0] for t in result["diffs"]["not_verified"]) \
            if "not_verified" in result["diffs"] else ""
        print(f"{name:34} {result['format']:12} {checked:44} {summary}{note}")
        if args.verbose:
            for category, texts in result["diffs"].items():
                for text in texts[:40]:
                    print(f"    {category}: {text}")
    partial = sum(1 for r in results.values() if "not_verified" in r["diffs"])
    print(f"{exact} of {len(results)} archives match torch exactly ({partial} of them only in part: torch cannot "
          f"read the rest, see 'not verified')" + (f"; not available: {', '.join(missing)}" if missing else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if exact == len(results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
