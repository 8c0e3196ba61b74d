"""``verify(result)``: run both archives of a trace-vs-script diff on generated inputs and give every finding a
verdict (``tsinspect diff --verify``).

Steps: the safety gate on both archives (tsinspect.safety.codescan; refused unless ``trust``), the plan of
input variants (tsinspect.verify.plan, from ``traced_inputs.pkl`` and the findings), full copies of both
archives rebuilt from tsinspect's own reading (tsinspect.ir.metacopy) in a private temporary folder, ONE
child (tsinspect.verify.child) started like the IR child (tsinspect.ir.run: limits, sandbox, timeout),
then the verdicts. Nothing here imports torch. Whatever goes wrong, the static result stays and says why
it was not verified.

Verdicts (``Finding.verdict``), from what the child recorded in the scripted model (tsinspect.verify.instrument):
``confirmed`` (on some variant the scripted model took the finding's other side, the outputs differ, and
freezing that finding alone the traced way changes the scripted output), ``not reproduced`` (no variant took
its other side, or those that did gave equal outputs or were unchanged by freezing it), ``not tested``
(why). Variants whose outputs differ although no finding explains them are listed in
``verification["unexplained"]``; those explained only by several findings frozen together in
``verification["together"]``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from tsinspect.archive.code import index_code
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import summarize
from tsinspect.archive.text import printable
from tsinspect.diff.model import DiffResult, Finding
from tsinspect.ir.metacopy import write_full_copy
from tsinspect.ir.run import GIB, run_confined_child
from tsinspect.safety.codescan import scan_archive
from tsinspect.verify.child import SCHEMA
from tsinspect.verify.plan import MAX_VARIANTS, Plan, build_plan, example_inputs, site_of

DEFAULT_TIMEOUT = 120.0
CONFIRMED, NOT_REPRODUCED, NOT_TESTED = "confirmed", "not reproduced", "not tested"
Progress = Callable[[str], None]


def verify(result: DiffResult, trust: bool = False, timeout: float = DEFAULT_TIMEOUT,
           max_variants: int = MAX_VARIANTS, progress: Progress | None = None) -> DiffResult:
    """Set ``result.verification`` and every finding's ``verdict``; returns ``result``."""
    progress = progress or (lambda text: None)
    started = time.perf_counter()
    if result.mode != "trace_vs_script":
        return _not_run(result, "not_run", "verification compares a traced archive with a scripted one")
    sig = result.accepts.get("forward") or {}
    names = list(sig.get("scripted") or [])[:len(sig.get("traced") or [])] or list(sig.get("traced") or [])
    try:
        with open_archive(result.traced) as traced, open_archive(result.scripted) as scripted:
            progress("safety gate")
            for path, archive in ((result.traced, traced), (result.scripted, scripted)):
                scan = scan_archive(archive, index_code(archive))
                if not scan.safe_to_load and not trust:
                    return _not_run(result, "refused", f"the safety gate refused {printable(path)}: {scan.refusal()}",
                                    "not run: the safety gate refused an archive (--trust runs it anyway)")
            base = example_inputs(summarize(traced).traced_inputs, names)
            plan = build_plan(base, result.findings, names, "traced_inputs.pkl", max_variants)
            site_index = {}
            for f in result.findings:
                site = site_of(f)
                if site is not None:
                    site_index[id(f)] = len(plan.sites)
                    plan.sites.append(site)
            if not plan.base:
                return _not_run(result, "not_run", "no example inputs: the traced archive has no usable "
                                                   "traced_inputs.pkl (traced by an older torch?)")
            if not plan.variants:
                return _not_run(result, "not_run", "; ".join(plan.skipped))
            with tempfile.TemporaryDirectory(prefix="tsinspect-verify-") as workdir:
                work = Path(workdir)
                copies, run_dir = work / "copies", work / "cwd"  # the child may read copies/ only
                copies.mkdir()
                run_dir.mkdir()
                memory = 8 * GIB + 3 * (os.path.getsize(traced.path) + os.path.getsize(scripted.path))
                progress("copying the archives")
                write_full_copy(traced, copies / "traced.pt", memory)
                write_full_copy(scripted, copies / "scripted.pt", memory)
                (copies / "plan.json").write_text(json.dumps(plan.to_json()), encoding="utf-8")
                progress(f"running {len(plan.variants)} input variants in a sandboxed child")
                args = ["--plan", str(copies / "plan.json"), "--traced", str(copies / "traced.pt"),
                        "--scripted", str(copies / "scripted.pt"), "--budget", f"{timeout * 0.6:g}"]
                stdout, error = run_confined_child("tsinspect.verify.child", args, run_dir, memory, timeout,
                                                   doing="running the input variants")
    except ArchiveError as exc:
        return _not_run(result, "failed", str(exc))
    if error is not None:
        return _not_run(result, "failed", error.message)
    try:
        doc = json.loads(stdout)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document")
    except (ValueError, RecursionError) as exc:
        return _not_run(result, "failed", f"the verification child wrote unreadable output ({exc})")
    progress("verdicts")
    _judge(result, plan, doc, site_index)
    result.verification["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _not_run(result: DiffResult, status: str, why: str, short: str | None = None) -> DiffResult:
    result.verification = {"status": status, "message": why, "variants": [], "unexplained": [], "skipped": []}
    for f in result.findings:
        f.verdict = {"verdict": NOT_TESTED, "text": short or why}
    return result


def _judge(result: DiffResult, plan: Plan, doc: dict, site_index: dict[int, int]) -> None:
    failed = [f"the {side} archive cannot be loaded: {(info.get('error') or {}).get('message')}"
              for side, info in (doc.get("load") or {}).items() if not info.get("ok")]
    if failed or doc.get("error"):
        _not_run(result, "failed", "; ".join(failed) or f"the verification child failed: {doc['error']}")
        return
    by_id = {r["id"]: r for r in doc.get("results") or [] if isinstance(r, dict) and "id" in r}
    reference = doc.get("reference")
    variants = []
    for v in plan.variants:
        r = by_id.get(v.id, {"outcome": "skipped", "why": "the child gave no result"})
        variants.append({**v.to_json(), **{k: r.get(k) for k in ("outcome", "why", "raised", "max_abs",
                                                                     "max_rel", "what", "seconds")},
                         "values": r.get("values", v.values), "reached": r.get("reached"), "explains": []})
    frozen: dict[int, list[dict]] = {}
    for entry in doc.get("frozen") or []:
        frozen.setdefault(entry.get("site"), []).append(entry)
    sites = doc.get("sites")
    for f in result.findings:
        s = site_index.get(id(f))
        f.verdict = _verdict(f, s, plan, sites, variants, frozen.get(s, []), doc.get("instrument_error"))
    # confirmed first, within the user's files and within library code
    order = (CONFIRMED, NOT_REPRODUCED, NOT_TESTED)
    result.findings.sort(key=lambda f: (f.rank()[0], order.index(f.verdict["verdict"]), f.rank()))
    for n, f in enumerate(result.findings):
        for v in variants:
            if f.verdict["verdict"] == CONFIRMED and v["id"] in f.verdict.get("variants", ()):
                v["explains"].append(n)
    open_sites = {(e["site"], e["variant"]) for entries in frozen.values() for e in entries if e.get("changed") is not False}
    together, joint = [], {e["variant"]: e for e in doc.get("together") or [] if e.get("changed")}
    unexplained = []
    for v in variants:
        if v["outcome"] != "differs" or v["explains"]:
            continue
        if v["id"] in joint:
            lines = ", ".join(f"{Path(plan.sites[s]['file']).name}:{plan.sites[s]['line']}" for s in joint[v["id"]]["sites"])
            together.append(f"outputs differ for {v['label']} ({_effect(v)}): the findings at {lines} change the "
                            "result only together (frozen together the traced way, the scripted output changes; "
                            "frozen one at a time, it does not)")
            continue
        reached = v.get("reached")
        if reached is None:
            why = "which branches the scripted model took is unknown: it raised" if (v.get("raised") or {}).get(
                "scripted") else "which branches the scripted model took is unknown"
        elif not reached:
            why = "the scripted model took the traced side of every finding"
        elif all((s, v["id"]) not in open_sites and any(e["variant"] == v["id"] for e in frozen.get(s, []))
                 for s in reached):
            why = "freezing each finding it reached the traced way changed nothing"
        else:
            continue  # a finding it reached was not tried on it: not known to be a miss
        unexplained.append(f"outputs differ for {v['label']}; no finding explains it ({_effect(v)}; {why})")
    note = None if reference else ("no value distribution gave the same outputs on the example shapes: the "
                                   "other variants use positive values, and only raises and shape changes count there")
    sandbox = doc.get("sandbox") or {}
    confined = ("in a sandboxed child" if sandbox.get("state") == "on" else
                f"in a child, sandbox {sandbox.get('state', '?')}: {sandbox.get('reason') or 'unknown'}")
    frozen_runs = sum(1 for e in doc.get("frozen") or [] if "changed" in e)
    result.verification = {
        "status": "ran", "message": f"{sum(v['outcome'] != 'skipped' for v in variants)} input variants and "
                                    f"{frozen_runs} frozen runs on both archives {confined} (inputs from {plan.source})",
        "reference_values": reference, "note": note, "sandbox": sandbox,
        "torch_version": doc.get("torch_version"), "variants": variants, "unexplained": unexplained,
        "together": together,
        "skipped": list(plan.skipped) + [f"{v['label']}: {v['why']}" for v in variants if v["outcome"] == "skipped"]
                   + [f"frozen run of finding site {e['site']} on variant {e['variant']}: {e['skipped']}"
                      for e in doc.get("frozen") or [] if e.get("skipped")],
        "instrument_error": doc.get("instrument_error"), "child_seconds": doc.get("seconds")}


_SITE_WORDS = {"if": "its if", "loop": "its loop", "value": "the op taking the constant"}


def _verdict(f: Finding, s: int | None, plan: Plan, sites: list | None, variants: list[dict], frozen: list[dict],
             instrument_error: str | None) -> dict:
    if s is None:
        why = ("the traced archive has no such method: there is nothing to call it with" if f.kind == "missing_method"
               else "nothing in the scripted code to run for it")
        return {"verdict": NOT_TESTED, "text": why}
    if instrument_error or not sites or s >= len(sites) or "status" not in sites[s]:
        return {"verdict": NOT_TESTED, "text": "the scripted graph could not be instrumented: "
                                               f"{instrument_error or 'no result'}"}
    site, info = plan.sites[s], sites[s]
    status = info.get("status")
    where = f"{_SITE_WORDS[site['kind']]} at line {site['line']}"
    if status == "absent":
        return {"verdict": NOT_TESTED, "text": f"{where} is not reached from the scripted {plan.method} (only "
                                               f"{plan.method} runs: traced_inputs.pkl holds its example inputs alone)"}
    if status == "constant":
        return {"verdict": NOT_REPRODUCED, "reached": 0, "tried": 0,
                "text": "the scripted model passes constants at this line too: no input can change them"}
    if status == "per_iteration":
        return {"verdict": NOT_TESTED, "text": "each iteration decides this if on its own, and no reference run "
                                               "recorded the decisions to freeze it to"}
    if status in ("no_slot", "no_reference"):
        return {"verdict": NOT_TESTED, "text": "the traced constant is not among the values computed at this line on "
                                               "the example's shapes" if status == "no_slot" else
                                               "no reference run recorded the values computed at this line"}
    recorded = [v for v in variants if v.get("reached") is not None and v["outcome"] in ("same", "differs")]
    reached = [v for v in recorded if s in v["reached"]]
    by_variant = {v["id"]: v for v in variants}
    changed = [e for e in frozen if e.get("changed")]
    if changed:
        best = by_variant[changed[0]["variant"]]
        alone = " (frozen alone, it gives the traced model's output)" if changed[0].get("like_traced") else ""
        return {"verdict": CONFIRMED, "variant": best["label"], "variant_id": best["id"],
                "text": f"{best['label']}: {_effect(best)}; the scripted model takes the other side there, and "
                        f"frozen the traced way its output changes{alone}",
                "raised": (best.get("raised") or {}).get("traced") or (best.get("raised") or {}).get("scripted"),
                "max_abs": best.get("max_abs"), "max_rel": best.get("max_rel"), "reached": len(reached),
                "variants": [e["variant"] for e in changed]}
    if not recorded:
        return {"verdict": NOT_TESTED, "text": "no variant ran on both models with the scripted model's decisions "
                                               "recorded (raised or skipped)"}
    if not reached:
        return {"verdict": NOT_REPRODUCED, "reached": 0, "tried": len(recorded),
                "text": f"no input took its other side: the scripted model did as the trace on all "
                        f"{len(recorded)} variants run"}
    agreed = [v["label"] for v in reached if v["outcome"] == "same"]
    harmless = [by_variant[e["variant"]]["label"] for e in frozen if e.get("changed") is False]
    if agreed or harmless:
        parts = []
        if agreed:
            parts.append(f"outputs agree on {_labels(agreed)}")
        if harmless:
            parts.append(f"frozen the traced way, the scripted output does not change on {_labels(harmless)}")
        return {"verdict": NOT_REPRODUCED, "reached": len(reached), "tried": len(recorded),
                "text": f"the scripted model takes its other side on {len(reached)} variant"
                        f"{'s' if len(reached) != 1 else ''}: " + "; ".join(parts)}
    why = next((e.get("skipped") or e.get("error") for e in frozen if e.get("skipped") or e.get("error")),
               "no frozen run")
    return {"verdict": NOT_TESTED, "reached": len(reached),
            "text": f"the scripted model takes its other side on {_labels([v['label'] for v in reached])}, where "
                    f"the outputs differ, but whether it is the cause is unknown ({why})"}


def _labels(labels: list[str]) -> str:
    return ", ".join(labels[:4]) + (", ..." if len(labels) > 4 else "")


def _effect(v: dict) -> str:
    raised = v.get("raised") or {}
    if raised.get("traced"):
        return f"the traced model raised: {raised['traced']}"
    if raised.get("scripted"):
        return f"the scripted model raised: {raised['scripted']}"
    if v.get("max_abs") is not None:
        return f"max abs difference {v['max_abs']:.3g}, max rel {v['max_rel']:.3g}"
    return v.get("what") or "outputs differ"
