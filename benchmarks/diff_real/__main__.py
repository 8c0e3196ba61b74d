"""Recall and precision of ``tsinspect diff`` on real traced/scripted pairs (benchmarks/diff_real/pairs.py).

    python -m benchmarks.diff_real build            # trace and script every pair into benchmarks/out/diff_real/
    python -m benchmarks.diff_real truth            # run every variant on both archives, check pairs.py's truth
    python -m benchmarks.diff_real score [--pair P] # tsinspect diff on both paths and orders: recall, precision

``truth`` loads the archives with torch.jit.load: they are the ones ``build`` just wrote. ``score`` runs the
CLI as a user would (``--json``, ``--ir never`` and ``--ir always --trust``: our own archives) and times it.
A finding counts as pointing at a divergence when its file and line are one of a truth entry's ``lines``;
precision counts every finding in the JSON, the library ones included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "out" / "diff_real"  # ignored by git


def _pairs(only):
    from benchmarks.diff_real.pairs import PAIRS
    return [p for p in PAIRS if not only or p.name in only]


def _paths(pair):
    stem = "".join(c if c.isalnum() else "_" for c in pair.name)
    return OUT / f"{stem}_traced.pt", OUT / f"{stem}_scripted.pt"


def build(only) -> None:
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    for pair in _pairs(only):
        torch.manual_seed(0)
        model = pair.build().eval()
        traced, scripted = _paths(pair)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, pair.example(), check_trace=False), str(traced))
            torch.jit.save(torch.jit.script(model), str(scripted))
        print(f"built {pair.name}")


def _run(model, variant):
    import torch

    model.train(variant.train)
    torch.manual_seed(0)
    try:
        with torch.set_grad_enabled(variant.grad):
            return "ok", model(*variant.inputs())
    except Exception as exc:  # noqa: BLE001 -- a variant that raises is a behaviour to compare
        return "raises", f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"


def _flat(value):
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat(v)]
    return [] if value is None else [value]


def _differ(a, b) -> str | None:
    import torch

    if a[0] != b[0]:
        return f"traced {a[0]}, scripted {b[0]}: {a[1] if a[0] == 'raises' else b[1]}"
    if a[0] == "raises":
        return None
    fa, fb = _flat(a[1]), _flat(b[1])
    if len(fa) != len(fb):
        return "different number of outputs"
    for x, y in zip(fa, fb):
        if not isinstance(x, torch.Tensor):
            if x != y:
                return f"value {x} vs {y}"
            continue
        if x.shape != y.shape:
            return f"shape {tuple(x.shape)} vs {tuple(y.shape)}"
        if x.dtype != y.dtype:
            return f"dtype {x.dtype} vs {y.dtype}"
        if not torch.allclose(x.double(), y.double(), rtol=1e-4, atol=1e-5, equal_nan=True):
            return f"values differ (max {float((x.double() - y.double()).abs().nan_to_num(0).max()):.3g})"
    return None


def behaviour(pair) -> dict[str, str]:
    """variant -> how the traced and the scripted archive differ on it (variants that agree are absent)."""
    import torch

    traced_path, scripted_path = _paths(pair)
    traced, scripted = torch.jit.load(str(traced_path)), torch.jit.load(str(scripted_path))
    out = {}
    for variant in pair.variants:
        why = _differ(_run(traced, variant), _run(scripted, variant))
        if why:
            out[variant.name] = why
    return out


def truth(only) -> int:
    bad = 0
    for pair in _pairs(only):
        seen = behaviour(pair)
        claimed = {v for t in pair.truth for v in t.variants}
        print(f"{pair.name}: {len(seen)} of {len(pair.variants)} variants differ")
        for name, why in seen.items():
            tags = [t.tag for t in pair.truth if name in t.variants]
            print(f"  {name:22} {'/'.join(tags) or 'UNEXPLAINED':28} {why}")
        for name in sorted(claimed - set(seen)):
            print(f"  {name:22} CLAIMED BY THE TRUTH BUT THE ARCHIVES AGREE")
        bad += len(set(seen) ^ claimed)
    return 1 if bad else 0


def run_diff(a, b, *options: str) -> tuple[dict, float]:
    """``tsinspect diff A B --json OPTIONS`` as a user runs it: the JSON document and the seconds it took."""
    cmd = [sys.executable, "-m", "tsinspect", "diff", str(a), str(b), "--json", *options]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=OUT, env=os.environ | {"NO_COLOR": "1"})
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"tsinspect diff {Path(a).name} {Path(b).name} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout), took


def score_doc(pair, doc) -> dict:
    def hits(f):
        path = "/" + (f.get("file") or "").replace("\\", "/")
        return [t.tag for t in pair.truth if path.endswith("/" + t.file) and f.get("line") in t.lines]

    findings = doc["findings"]
    found = {tag for f in findings for tag in hits(f)}
    tags = list(dict.fromkeys(t.tag for t in pair.truth))
    good = sum(1 for f in findings if hits(f))
    user_truth = {t.tag for t in pair.truth if t.file in pair.user_files}
    return {"truth": len(tags), "found": len(found), "findings": len(findings), "good": good,
            "missed": [t for t in tags if t not in found],
            "noise": [f"{f['kind']} {(f.get('file') or '?').rsplit('/', 1)[-1]}:{f.get('line')}"
                      for f in findings if not hits(f)],
            "user_missed": [t for t in user_truth if t not in found]}


def score(only, verbose, paths=("never", "always")) -> int:
    totals: dict = {}
    rows = []
    for pair in _pairs(only):
        traced, scripted = _paths(pair)
        for ir in paths:
            for order, (a, b) in (("traced first", (traced, scripted)), ("scripted first", (scripted, traced))):
                doc, took = run_diff(a, b, "--ir", ir, *(["--trust"] if ir != "never" else []))
                s = score_doc(pair, doc)
                key = (ir, order)
                t = totals.setdefault(key, {"truth": 0, "found": 0, "findings": 0, "good": 0, "user_missed": 0,
                                            "seconds": 0.0})
                for k in ("truth", "found", "findings", "good"):
                    t[k] += s[k]
                t["user_missed"] += len(s["user_missed"])
                t["seconds"] += took
                rows.append((pair.name, ir, order, s, took, doc.get("analysis")))
    print(f"{'pair':28} {'path':6} {'order':15} {'recall':>10} {'precision':>12}  time")
    for name, ir, order, s, took, analysis in rows:
        rec = f"{s['found']}/{s['truth']}"
        prec = f"{s['good']}/{s['findings']}"
        path = "ast" if ir == "never" else analysis
        print(f"{name:28} {path:6} {order:15} {rec:>10} {prec:>12}  {took:.1f}s")
        if verbose and (s["missed"] or s["noise"]):
            for m in s["missed"]:
                print(f"      missed {m}")
            for n in s["noise"]:
                print(f"      noise  {n}")
    print()
    worst = 0
    for (ir, order), t in totals.items():
        recall = t["found"] / t["truth"] if t["truth"] else 1.0
        precision = t["good"] / t["findings"] if t["findings"] else 1.0
        print(f"overall {'ast' if ir == 'never' else 'ir':4} {order:15} recall {recall:.2f} ({t['found']}/{t['truth']})"
              f"  precision {precision:.2f} ({t['good']}/{t['findings']})  user-file misses {t['user_missed']}"
              f"  {t['seconds']:.1f}s")
        worst |= recall < 0.9 or precision < 0.7 or t["user_missed"] > 0
    return 1 if worst else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diff_real")
    parser.add_argument("command", choices=("build", "truth", "score"))
    parser.add_argument("--pair", action="append", help="only this pair (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="score: list misses and noise")
    parser.add_argument("--ir", choices=("never", "always", "both"), default="both",
                        help="score: the torch-free path (never), the IR path (always) or both (default)")
    args = parser.parse_args()
    if args.command == "build":
        build(args.pair)
        return 0
    if args.command == "truth":
        return truth(args.pair)
    return score(args.pair, args.verbose, ("never", "always") if args.ir == "both" else (args.ir,))


if __name__ == "__main__":
    sys.exit(main())
