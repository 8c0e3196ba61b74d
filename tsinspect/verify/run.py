"""``verify(result)``: run both archives of a trace-vs-script diff on generated inputs and give every finding a
verdict (``tsinspect diff --verify``).

Steps: the safety gate on both archives (tsinspect.safety.codescan; refused unless ``trust``), the plan of
input variants (tsinspect.verify.plan, from ``traced_inputs.pkl`` and the findings), full copies of both
archives rebuilt from tsinspect's own reading (tsinspect.ir.metacopy) in a private temporary folder, ONE
child (tsinspect.verify.child) started like the IR child (tsinspect.ir.run: limits, sandbox, timeout),
then the verdicts. Nothing here imports torch. Whatever goes wrong, the static result stays and says why
it was not verified.

Verdicts (``Finding.verdict``): ``confirmed`` (a variant the finding predicts made the outputs differ, or
the traced model raise), ``not reproduced`` (its variants ran and the outputs agreed), ``not tested``
(why). Variants whose outputs differ although no finding predicts them are listed in
``verification["unexplained"]``.
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
from tsinspect.verify.plan import MAX_VARIANTS, Plan, build_plan, example_inputs, finding_keys, matches

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
    _judge(result, plan, doc)
    result.verification["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _not_run(result: DiffResult, status: str, why: str, short: str | None = None) -> DiffResult:
    result.verification = {"status": status, "message": why, "variants": [], "unexplained": [], "skipped": []}
    for f in result.findings:
        f.verdict = {"verdict": NOT_TESTED, "text": short or why}
    return result


def _judge(result: DiffResult, plan: Plan, doc: dict) -> None:
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
                         "values": r.get("values", v.values), "explains": []})
    names, ranks = [i.name for i in plan.base], [len(i.shape or []) for i in plan.base]
    for f in result.findings:
        f.verdict = _verdict(f, finding_keys(f, names, ranks), variants, reference)
    chosen: dict[str, int] = {}
    for f in result.findings:
        if f.verdict["verdict"] == CONFIRMED:
            chosen[f.verdict["variant"]] = chosen.get(f.verdict["variant"], 0) + 1
    for f in result.findings:
        others = chosen.get(f.verdict.get("variant"), 0) - 1
        if f.verdict["verdict"] == CONFIRMED and others > 0:  # one input, several findings: any may be the cause
            f.verdict["shared"] = others
            f.verdict["text"] += f" (the same input confirms {others} other finding{'s' if others > 1 else ''})"
    # confirmed first, within the user's files and within library code
    order = (CONFIRMED, NOT_REPRODUCED, NOT_TESTED)
    result.findings.sort(key=lambda f: (f.rank()[0], order.index(f.verdict["verdict"]), f.rank()))
    for n, f in enumerate(result.findings):
        for v in variants:
            if v["id"] in f.verdict.get("variants", []):
                v["explains"].append(n)
    unexplained = [f"outputs differ for {v['label']}; no finding explains it ({_effect(v)})"
                   for v in variants if v["outcome"] == "differs" and not v["explains"]]
    note = None if reference else ("no value distribution gave the same outputs on the example shapes: the "
                                   "other variants use positive values, and only raises and shape changes count there")
    sandbox = doc.get("sandbox") or {}
    confined = ("in a sandboxed child" if sandbox.get("state") == "on" else
                f"in a child, sandbox {sandbox.get('state', '?')}: {sandbox.get('reason') or 'unknown'}")
    result.verification = {
        "status": "ran", "message": f"{sum(v['outcome'] != 'skipped' for v in variants)} input variants run on "
                                    f"both archives {confined} (inputs from {plan.source})",
        "reference_values": reference, "note": note, "sandbox": sandbox,
        "torch_version": doc.get("torch_version"), "variants": variants, "unexplained": unexplained,
        "skipped": list(plan.skipped) + [f"{v['label']}: {v['why']}" for v in variants if v["outcome"] == "skipped"],
        "child_seconds": doc.get("seconds")}


def _verdict(f: Finding, keys: set[str], variants: list[dict], reference: str | None) -> dict:
    if not keys:
        why = ("the traced archive has no such method: there is nothing to call it with" if f.kind == "missing_method"
               else "no generated input varies what it depends on")
        return {"verdict": NOT_TESTED, "text": why}
    relevant = [v for v in variants if matches(v["keys"], keys)]
    ran = [v for v in relevant if v["outcome"] in ("same", "differs", "both_raised")]
    credible = [v for v in ran if v["outcome"] == "differs"
                and (reference or "values" in v["keys"] or v.get("raised") or v.get("max_abs") is None)]
    if credible:
        best = max(credible, key=lambda v: (bool((v.get("raised") or {}).get("traced")), v.get("max_abs") or 0.0))
        return {"verdict": CONFIRMED, "variant": best["label"], "text": f"{best['label']}: {_effect(best)}",
                "raised": (best.get("raised") or {}).get("traced") or (best.get("raised") or {}).get("scripted"),
                "max_abs": best.get("max_abs"), "max_rel": best.get("max_rel"),
                "variants": [v["id"] for v in credible]}
    agreed = [v for v in ran if v["outcome"] == "same"]
    if agreed:
        return {"verdict": NOT_REPRODUCED, "tried": len(ran),
                "text": f"outputs agree on {len(agreed)} variant{'s' if len(agreed) != 1 else ''} "
                        f"({', '.join(v['label'] for v in agreed[:4])}{', ...' if len(agreed) > 4 else ''})"}
    if ran:
        return {"verdict": NOT_TESTED, "text": f"both models raised on its {len(ran)} variant(s): "
                                               f"{next(iter(ran[0]['raised'].values()))}"}
    why = relevant[0]["why"] if relevant else "no variant could be built for it"
    return {"verdict": NOT_TESTED, "text": why}


def _effect(v: dict) -> str:
    raised = v.get("raised") or {}
    if raised.get("traced"):
        return f"the traced model raised: {raised['traced']}"
    if raised.get("scripted"):
        return f"the scripted model raised: {raised['scripted']}"
    if v.get("max_abs") is not None:
        return f"max abs difference {v['max_abs']:.3g}, max rel {v['max_rel']:.3g}"
    return v.get("what") or "outputs differ"
