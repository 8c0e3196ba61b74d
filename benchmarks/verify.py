"""What ``tsinspect diff --verify`` confirms and refutes on the real pairs of benchmarks/diff_real, and what it
costs (docs/diff.md, "Verifying findings").

    python -m benchmarks.diff_real build       # once: the pairs' archives into benchmarks/out/diff_real/
    python -m benchmarks.verify [--pair P] [--big] [--zoo] [--ir] [-v]

Per pair, the CLI runs as a user would: ``diff --json --all --ir never`` (the static result alone; with
``--ir``: ``--ir always --trust``) and the same with ``--verify``, timed in one run. A finding is real when
its file and line point at one of pairs.py's truth entries (the truth was written from running both
archives on hand-made variants, not from tsinspect). Reported: real divergences (truth tags) with a confirmed finding, verdicts on findings that point
at the truth and on the others ("noise": refuted when not reproduced), divergences --verify saw that no
finding explains. ``--big`` adds torch.nn.Transformer() at its default size (d_model 512, 6+6 layers,
44M parameters), built here, for the time goal (under 30 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import warnings
from pathlib import Path

from benchmarks.diff_real.__main__ import OUT, _pairs, _paths, run_diff, score_doc

VERDICTS = ("confirmed", "not reproduced", "not tested")


IR = ["--ir", "never"]  # --ir always: the findings of the IR path (our own archives, so --trust)


def _diff(a, b, *extra) -> tuple[dict, float]:
    return run_diff(a, b, "--all", *IR, *extra)


def _cpu() -> float:
    """CPU seconds of the finished child processes so far (the CLI and the verification child it waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hits(pair, f) -> list[str]:
    path = "/" + (f.get("file") or "").replace("\\", "/")
    return [t.tag for t in pair.truth if path.endswith("/" + t.file) and f.get("line") in t.lines]


def measure(pair) -> dict:
    traced, scripted = _paths(pair)
    _static, t_static = _diff(traced, scripted)
    doc, t_verify = _diff(traced, scripted, "--verify")
    real = {v: 0 for v in VERDICTS}
    noise = {v: 0 for v in VERDICTS}
    confirmed_tags = set()
    lines = []
    for f in doc["findings"]:
        verdict = (f.get("verdict") or {}).get("verdict", "not tested")
        tags = _hits(pair, f)
        (real if tags else noise)[verdict] += 1
        if verdict == "not reproduced" and (f.get("verdict") or {}).get("reached"):
            (real if tags else noise)["reached"] = (real if tags else noise).get("reached", 0) + 1
        if verdict == "confirmed":
            confirmed_tags.update(tags)
        lines.append(f"{'REAL ' if tags else 'noise'} {f['kind']:15} {Path(f['file'] or '').name}:{f['line']}  "
                     f"{verdict}: {(f.get('verdict') or {}).get('text', '')[:140]}")
    tags = list(dict.fromkeys(t.tag for t in pair.truth))
    found = score_doc(pair, doc)
    v = doc.get("verification") or {}
    return {"pair": pair.name, "tags": len(tags), "found": found["found"], "confirmed_tags": len(confirmed_tags),
            "unconfirmed_tags": [t for t in tags if t not in confirmed_tags],
            "real": real, "noise": noise, "unexplained": v.get("unexplained", []), "status": v.get("status"),
            "message": v.get("message"), "variants": len(v.get("variants", [])),
            "static_s": t_static, "verify_s": t_verify, "child": v.get("child_seconds"), "lines": lines}


def zoo() -> None:
    """The verdicts on the test zoo (built into OUT/zoo), per model; RawMemory's archives are refused by the
    gate, as in the tests."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import diff_zoo

    totals = {v: 0 for v in VERDICTS}
    unexplained = 0
    for name, (traced, scripted) in diff_zoo.build_zoo(OUT / "zoo").items():
        doc, took = _diff(traced, scripted, "--verify")
        verdicts = [(f["verdict"]["verdict"], f"{f['kind']}:{f['line']}") for f in doc["findings"]]
        for verdict, _ in verdicts:
            totals[verdict] += 1
        lines = doc["verification"].get("unexplained", [])
        unexplained += len(lines)
        print(f"zoo {name:16} {took:4.1f}s  {verdicts}  {lines if lines else ''}")
    print(f"zoo: {totals}, unexplained divergences {unexplained}")


def build_big() -> tuple:
    """torch.nn.Transformer() at its default size, traced and scripted into OUT (once)."""
    traced, scripted = OUT / "big_Transformer_traced.pt", OUT / "big_Transformer_scripted.pt"
    if not traced.exists():
        import torch

        torch.manual_seed(0)
        model = torch.nn.Transformer().eval()
        example = (torch.randn(10, 2, 512), torch.randn(9, 2, 512))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(traced))
            torch.jit.save(torch.jit.script(model), str(scripted))
    return traced, scripted


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify")
    parser.add_argument("--pair", action="append", help="only this pair (repeatable)")
    parser.add_argument("--big", action="store_true", help="also the default-size nn.Transformer (time only)")
    parser.add_argument("--zoo", action="store_true", help="also the test zoo's pairs (tests/diff_zoo.py)")
    parser.add_argument("--ir", action="store_true", help="verify the IR path's findings (--ir always --trust)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.ir:
        IR[:] = ["--ir", "always", "--trust"]
    if args.zoo:
        zoo()
    rows = []
    for pair in _pairs(args.pair):
        if not _paths(pair)[0].exists():
            print(f"{pair.name}: not built (python -m benchmarks.diff_real build)")
            continue
        rows.append(row := measure(pair))
        print(f"{row['pair']:28} divergences {row['confirmed_tags']}/{row['tags']} confirmed (static found "
              f"{row['found']});  real findings {row['real']};  noise {row['noise']};  unexplained "
              f"{len(row['unexplained'])};  {row['variants']} variants;  diff {row['static_s']:.1f}s, "
              f"diff --verify {row['verify_s']:.1f}s")
        if args.verbose:
            for line in row["lines"]:
                print(f"      {line}")
            for tag in row["unconfirmed_tags"]:
                print(f"      not confirmed: {tag}")
            for line in row["unexplained"]:
                print(f"      {line[:160]}")
            if row["status"] != "ran":
                print(f"      {row['status']}: {row['message']}")
    if rows:
        total = lambda key: sum(r[key] for r in rows)  # noqa: E731
        sums = {side: {v: sum(r[side].get(v, 0) for r in rows) for v in (*VERDICTS, "reached")}
                for side in ("real", "noise")}
        print()
        print(f"real divergences confirmed: {total('confirmed_tags')}/{total('tags')} (the static diff points at "
              f"{total('found')})")
        print(f"findings pointing at a real divergence: {sums['real']}")
        print(f"other findings (noise): {sums['noise']}  -> refuted (not reproduced): {sums['noise']['not reproduced']}"
              f" ({sums['noise']['reached']} of them with inputs that took their other side)")
        print(f"divergences no finding explains: {sum(len(r['unexplained']) for r in rows)}")
        print(f"time: diff {total('static_s'):.1f}s, diff --verify {total('verify_s'):.1f}s "
              f"(ratio {total('verify_s') / total('static_s'):.2f})")
    if args.big:
        traced, scripted = build_big()
        _static, t_static = _diff(traced, scripted)
        cpu = _cpu()
        doc, t_verify = _diff(traced, scripted, "--verify")
        cpu = _cpu() - cpu
        v = doc.get("verification") or {}
        counts = {k: sum((f.get("verdict") or {}).get("verdict") == k for f in doc["findings"]) for k in VERDICTS}
        print(f"nn.Transformer() default size ({os.path.getsize(traced) / 2**20:.0f} MiB per archive): "
              f"diff {t_static:.1f}s, diff --verify {t_verify:.1f}s ({cpu:.1f}s CPU, load average "
              f"{os.getloadavg()[0]:.1f}); {v.get('status')}, {len(v.get('variants', []))} "
              f"variants, verdicts {counts}, child {v.get('child_seconds')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
