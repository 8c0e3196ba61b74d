"""The verification child: ``python -m tsinspect.verify.child --plan PLAN.json --traced COPY --scripted COPY``.

Started by tsinspect.verify.run in a fresh empty working directory, like tsinspect.ir.extract (the other
torch child): it lowers its resource limits and confines itself (tsinspect.safety.sandbox) before reading
a byte of the archives or importing torch, loads both full copies tsinspect rebuilt from its own reading
(never the user's files), runs the traced forward and a recording copy of the scripted one
(tsinspect.verify.instrument: what the scripted model did at each finding) on every variant of the plan
(tsinspect.verify.plan) in a fixed order with fixed seeds, then frozen copies (one finding set the traced
way) on the variants that differ, and writes one ``tsinspect.verify/1`` JSON document to its original
stdout. Whatever the archives' code prints goes to stderr.

Values: each input is drawn from a generator seeded by its position; both models get clones of
the same tensors, and the global RNG is reseeded before each call (dropout draws the same masks when both
models draw in the same order). The value-distribution variants run first; the first that agrees becomes
the "reference" distribution of every other variant (the trace was made on values nobody stored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

from tsinspect.ir.extract import classify_error  # imported before confine(): reads only what is on sys.path
from tsinspect.safety.sandbox import Confinement, confine, set_limits
from tsinspect.verify import instrument

SCHEMA = "tsinspect.verify/1"
SEED = 20261206
_REL_FLOOR = 1e-12
VARIANT_SHARE = 0.7  # of the time budget for the variants; the rest, and what they left, for frozen runs
MAX_FROZEN_PER_SITE = 2  # frozen runs per finding: on the first differing variants that took its other side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsinspect.verify.child")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--traced", required=True)
    parser.add_argument("--scripted", required=True)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for running variants")
    parser.add_argument("--limit-memory", type=int)
    parser.add_argument("--limit-cpu", type=int)
    parser.add_argument("--limit-file-size", type=int)
    parser.add_argument("--no-sandbox", metavar="WHY")
    args = parser.parse_args(argv)
    set_limits(args.limit_memory, args.limit_cpu, args.limit_file_size)
    if args.no_sandbox:
        sandbox = Confinement("off", [], args.no_sandbox)
    else:
        sandbox = confine(sorted({os.path.dirname(os.path.abspath(p)) for p in (args.plan, args.traced, args.scripted)}))
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    doc = {"schema": SCHEMA, "torch_version": None, "sandbox": sandbox.to_json(), "load": {}, "reference": None,
           "results": [], "error": None, "seconds": {}}
    try:
        run(args, doc)
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback
        doc["error"] = f"{type(exc).__name__}: {_first_line(exc)}"
    out.write(json.dumps(doc, separators=(",", ":")))
    out.flush()
    return 0


def run(args, doc: dict) -> None:
    started = time.perf_counter()
    warnings.simplefilter("ignore")
    with open(args.plan, encoding="utf-8") as fh:
        plan = json.load(fh)
    import torch

    doc["torch_version"] = torch.__version__
    torch.set_num_threads(1)  # two threads on a shared 2-core machine cost 2-3x the CPU time (docs/diff.md)
    try:  # plain interpretation: no profiling runs and re-optimization per new shape (seconds per variant
        torch._C._set_graph_executor_optimize(False)  # on big models), and no fusion to tell the two apart
    except AttributeError:
        pass
    models = {}
    for side, path in (("traced", args.traced), ("scripted", args.scripted)):
        try:
            models[side] = torch.jit.load(path, map_location="cpu")
            doc["load"][side] = {"ok": True}
        except Exception as exc:  # noqa: BLE001
            doc["load"][side] = {"ok": False, "error": classify_error(exc)}
    doc["seconds"]["load"] = round(time.perf_counter() - started, 3)
    if len(models) < 2:
        return
    sites = plan.get("sites") or []
    method = plan.get("method") or "forward"
    recorder = _recorder(torch, models["scripted"], method, sites, doc)
    started = time.perf_counter()
    deadline = started + args.budget * VARIANT_SHARE
    reference, kept = None, {}
    for variant in plan["variants"]:
        if time.perf_counter() > deadline:
            doc["results"].append({"id": variant["id"], "outcome": "skipped",
                                   "why": f"over the time budget of {args.budget * VARIANT_SHARE:g} s for variants"})
            continue
        values = variant["values"]
        if values == "reference":
            values = reference or "positive"
        begun = time.perf_counter()
        result, records, outputs = _run_variant(torch, models, method, variant, values, recorder, sites)
        if recorder and not doc["results"] and outputs.get("check") is False:
            doc["instrument_error"] = "the recording copy of the scripted graph gave other outputs than the model"
            recorder = None
        result = {"id": variant["id"], "values": values, **result, "seconds": round(time.perf_counter() - begun, 4)}
        doc["results"].append(result)
        if result["outcome"] != "differs":  # outputs are kept for frozen runs on differing variants only
            outputs = {}
        kept[variant["id"]] = (variant, values, records, outputs)
        if variant["values"] != "reference" and reference is None and result["outcome"] == "same":
            reference = values
    doc["reference"] = reference
    doc["seconds"]["variants"] = round(time.perf_counter() - started, 3)
    if recorder:
        started = time.perf_counter()
        _judge_sites(torch, models, method, sites, recorder[1], kept, reference, doc,
                     started + args.budget * (1 - VARIANT_SHARE) + max(0.0, deadline - started))
        doc["seconds"]["frozen"] = round(time.perf_counter() - started, 3)


def _recorder(torch, scripted, method: str, sites: list[dict], doc: dict):
    """(recording function, its instrument.Instrumented) for ``method`` of the scripted model, or None (said
    in the doc)."""
    if not sites:
        return None
    try:
        graph = instrument.Instrumented(torch, getattr(scripted, method), sites)
        fn = graph.recording()
    except Exception as exc:  # noqa: BLE001 - the verdicts then say the sites could not be read
        doc["instrument_error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        return None
    doc["sites"] = [{"instances": len(items), "ops_at_line": here} for items, here in zip(graph.layout, graph.present)]
    return fn, graph


def _call(torch, fn, args: list, train: bool, grad: bool, module=None):
    """fn(*args) with the RNG reseeded and the mode set: ("ok", output) or ("raised", message)."""
    if module is not None:
        module.train(train)
    torch.manual_seed(SEED)
    try:
        with torch.set_grad_enabled(grad):
            return "ok", fn(*[x.clone() if isinstance(x, torch.Tensor) else x for x in args])
    except Exception as exc:  # noqa: BLE001 - a raise is a result
        line = _first_line(exc)
        return "raised", line if line.split(":", 1)[0].endswith(("Error", "Exception")) else \
            f"{type(exc).__name__}: {line}"


def _graph_args(scripted, method: str, inputs: list) -> list:
    """The arguments of a function made from the method's graph: self, the inputs, then the defaults of
    the arguments the traced model does not take (such a function has no defaults of its own)."""
    rest = getattr(scripted, method).schema.arguments[1 + len(inputs):]
    return [scripted._c, *inputs, *(a.default_value for a in rest)]


def _run_variant(torch, models: dict, method: str, variant: dict, values: str, recorder, sites):
    """(result, the scripted site records or None, {"traced", "scripted": flattened outputs, "check"})."""
    try:
        inputs = _make_inputs(torch, variant, values)
    except Exception as exc:  # noqa: BLE001 - a dtype torch cannot draw (quantized, ...): this variant only
        return {"outcome": "skipped", "why": f"cannot build its inputs: {type(exc).__name__}: {_first_line(exc)}"}, \
            None, {}
    train, grad = variant["train"], variant["grad"]
    traced = models["traced"]
    runs = {"traced": _call(torch, getattr(traced, method), inputs, train, grad, traced)}
    scripted = models["scripted"]
    records, outputs = None, {}
    if recorder:
        status, value = _call(torch, recorder[0], _graph_args(scripted, method, inputs), train, grad, scripted)
        if status == "ok":
            value, raw = value
            records = instrument.parse_records(list(raw), sites)
        runs["scripted"] = (status, value)
        plain = _call(torch, getattr(scripted, method), inputs, train, grad, scripted) if variant["id"] == 0 else None
        if plain is not None:
            outputs["check"] = plain[0] == status and (status == "raised" or _compare(
                torch, _flatten(torch, plain[1]), _flatten(torch, value))["outcome"] == "same")
    else:
        runs["scripted"] = _call(torch, getattr(scripted, method), inputs, train, grad, scripted)
    raised = {side: v for side, (status, v) in runs.items() if status == "raised"}
    outputs.update({side: _flatten(torch, v) for side, (status, v) in runs.items() if status == "ok"})
    if len(raised) == 2:
        return {"outcome": "both_raised", "raised": raised}, records, outputs
    result = {"outcome": "differs", "raised": raised} if raised else \
        _compare(torch, outputs["traced"], outputs["scripted"])
    return result, records, outputs


def _judge_sites(torch, models, method, sites, graph, kept, reference, doc, deadline) -> None:
    """Which variants took each site's other side (``reached``), and, on variants whose outputs differ,
    whether freezing that site the traced way changes the scripted output (``doc["frozen"]``).

    The traced side of an ``if`` instance is the one it took on the reference run (the example's shapes, the
    mode it was traced in, outputs equal to the trace's), else the side the static analysis says the trace
    kept; a baked value is the value its slot held on the reference run. A differing variant whose reached
    sites change nothing one at a time is run once with all of them frozen (``doc["together"]``)."""
    ref = next((r for v, vals, r, _ in kept.values() if r is not None and v["keys"] == ["values"]
                and vals == reference), None) or {}  # no reference: no run is known to do as the trace
    info, layout = doc["sites"], graph.layout
    baked, traced = {}, []
    for s, site in enumerate(sites):
        traced.append(dict(site))
        if not layout[s]:  # a line with ops but no computed argument: constants in the script too
            info[s]["status"] = "constant" if site["kind"] == "value" and info[s]["ops_at_line"] else "absent"
            continue
        info[s]["status"] = "ok"
        if site["kind"] == "value":
            baked[s] = _baked_slots(site, layout[s], ref.get(s, {}))
            info[s]["slots"] = len(baked[s])
            if not baked[s]:
                info[s]["status"] = "no_slot" if ref else "no_reference"
        elif site["kind"] == "if" and site.get("kept") is None:  # each instance's decisions on the reference run
            traced[s]["sequences"] = {k: ds for k, ds in ref.get(s, {}).items() if ds}
            if not traced[s]["sequences"]:
                info[s]["status"] = "per_iteration"
        elif site["kind"] == "if":  # per instance: what it decided on the reference run, if it ran there
            traced[s]["sides"] = {k: ds[0] for k, ds in ref.get(s, {}).items() if len(set(ds)) == 1}
            info[s]["reference_sides"] = {"then": sum(traced[s]["sides"].values()),
                                          "else": sum(not d for d in traced[s]["sides"].values())}
    for result in doc["results"]:
        records = kept.get(result["id"], (None, None, None))[2]
        if records is not None:
            result["reached"] = [s for s, site in enumerate(traced) if info[s]["status"] == "ok"
                                 and _reached(site, records.get(s, {}), baked.get(s))]
    doc["frozen"] = []
    for s in range(len(sites)):
        if info[s]["status"] != "ok":
            continue
        fn, tried = None, 0
        for result in doc["results"]:
            if tried >= MAX_FROZEN_PER_SITE or s not in result.get("reached", ()) or result["outcome"] != "differs":
                continue
            if time.perf_counter() > deadline:
                doc["frozen"].append({"site": s, "variant": result["id"], "skipped": "over the time budget"})
                break
            fn = fn or _frozen_function(graph, [s], traced, baked)
            variant, values, _, outputs = kept[result["id"]]
            tried += 1
            doc["frozen"].append({"site": s, "variant": result["id"],
                                  **({"error": fn} if isinstance(fn, str) else
                                     _frozen_run(torch, models, method, fn, variant, values, outputs))})
    # a differing variant that reached several sites, none of which changes the result alone: together?
    doc["together"] = []
    for result in doc["results"]:
        reached = result.get("reached") or []
        on_it = [e for e in doc["frozen"] if e["variant"] == result["id"]]
        if (result["outcome"] != "differs" or len(reached) < 2 or time.perf_counter() > deadline
                or {e["site"] for e in on_it if e.get("changed") is False} != set(reached)):
            continue
        fn = _frozen_function(graph, reached, traced, baked)
        variant, values, _, outputs = kept[result["id"]]
        doc["together"].append({"sites": reached, "variant": result["id"],
                                **({"error": fn} if isinstance(fn, str) else
                                   _frozen_run(torch, models, method, fn, variant, values, outputs))})


def _baked_slots(site: dict, layout: list, ref: dict) -> dict[int, tuple[str, str]]:
    """instance -> (slot kind, its value on the reference run), for the value slots holding a traced
    constant there (the example's shapes: where the trace took its constants)."""
    out = {}
    for k, (kind, (has_default, default)) in enumerate(layout):
        seen = ref.get(k)
        if not seen:
            continue
        for text in site.get("values") or []:
            if text == "its default":
                if not has_default:
                    continue
                text = "None" if default is None else str(default)
            if _same_value(seen[0], "True" if kind == "none" and text == "None" else text):
                out[k] = (kind, seen[0])
    return out


def _same_value(recorded: str, text: str) -> bool:
    """Whether a recorded value is the traced constant's text: numbers of the same kind (an int slot never
    matches a float constant: ``3`` is not ``3.0``) and equal, or the same text."""
    if recorded == text:
        return True
    try:
        a, b = float(recorded), float(text)
    except ValueError:
        return recorded.replace(" ", "") == text.replace(" ", "")
    return _is_float(recorded) == _is_float(text) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _is_float(text: str) -> bool:
    return any(c in text for c in ".eEn")  # "3." (TorchScript's str), "1e+20", "inf", "nan"


def _reached(site: dict, seen: dict, baked: dict | None) -> bool:
    """Whether a run took the other side of a site: an ``if`` instance decided against its traced side, a
    loop ran another number of times, a baked slot held another value."""
    if site["kind"] == "if" and site["kept"] is None:  # per iteration: another decision at a step the trace had
        return any(d != want for k, ds in seen.items() for d, want in zip(ds, site["sequences"].get(k, ())))
    if site["kind"] == "if":
        return any(d != site["sides"].get(k, site["kept"] == "then") for k, decisions in seen.items() for d in decisions)
    if site["kind"] == "loop":
        return any(n != site["count"] for counts in seen.values() for n in counts)
    return any(not _same_value(v, want) for k, (_, want) in (baked or {}).items() for v in seen.get(k, ()))


def _frozen_run(torch, models, method, fn, variant, values, outputs) -> dict:
    """The scripted model with sites frozen the traced way (``fn``), on ``variant``: did its output change,
    and is it the traced model's output?"""
    try:
        inputs = _make_inputs(torch, variant, values)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
    scripted = models["scripted"]
    status, value = _call(torch, fn, _graph_args(scripted, method, inputs), variant["train"], variant["grad"], scripted)
    if status == "raised":
        return {"changed": True, "raised": value, "like_traced": False}
    flat = _flatten(torch, value)
    out = {"changed": _compare(torch, flat, outputs["scripted"])["outcome"] != "same"}
    if "traced" in outputs:
        out["like_traced"] = _compare(torch, flat, outputs["traced"])["outcome"] == "same"
    return out


def _frozen_function(graph, indices: list[int], traced: list[dict], baked: dict):
    """The function with the sites ``indices`` frozen the traced way, or an error text."""
    parts = []
    for s in indices:
        fixed = {}
        for k, (kind, text) in (baked.get(s) or {}).items():
            ok, value = instrument.parse_value(text, kind)
            if ok:
                fixed[k] = value
        parts.append((s, traced[s], fixed))
    try:
        return graph.frozen(parts)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {_first_line(exc)}"


def _make_inputs(torch, variant: dict, values: str) -> list:
    out = []
    for n, spec in enumerate(variant["inputs"]):
        if spec["dtype"] is None:
            out.append(None)
            continue
        gen = torch.Generator().manual_seed(SEED + n)  # the same draws as the example where the shape is
        dtype = getattr(torch, spec["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unsupported input dtype {spec['dtype']}")
        shape = spec["shape"]
        if dtype.is_floating_point or dtype.is_complex:
            if values == "normal":
                x = torch.randn(shape, generator=gen)
            else:
                x = torch.rand(shape, generator=gen) + 0.5
                x = -x if values == "negative" else x * 1000 if values == "large" else x
            out.append(x.to(dtype))
        elif dtype == torch.bool:  # most often a padding mask: row r has its last r % 3 positions True
            out.append(_padding_mask(torch, shape))
        else:  # integer inputs are most often indices (token ids): keep them small
            out.append(torch.randint(0, 8, shape, generator=gen).to(dtype))
    return out


def _padding_mask(torch, shape: list[int]):
    if not shape:
        return torch.tensor(False)
    length, rows = shape[-1], math.prod(shape[:-1])
    pads = torch.arange(rows) % 3
    mask = torch.arange(length)[None, :] >= (length - pads.clamp(max=max(length - 1, 0)))[:, None]
    return mask.reshape(shape)


def _flatten(torch, value) -> list:
    """The output as a list of leaves (tensors and plain values), in a fixed order."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(torch, item)]
    if isinstance(value, dict):
        return [leaf for key in sorted(value, key=str) for leaf in [str(key), *_flatten(torch, value[key])]]
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    return [value]


def _compare(torch, traced: list, scripted: list) -> dict:
    try:
        return _compare_leaves(torch, traced, scripted)
    except Exception as exc:  # noqa: BLE001 - an output torch cannot compare (a nested tensor, ...)
        return {"outcome": "differs", "what": f"outputs not comparable: {type(exc).__name__}: {_first_line(exc)}"}


def _compare_leaves(torch, traced: list, scripted: list) -> dict:
    if len(traced) != len(scripted):
        return {"outcome": "differs", "what": f"{len(traced)} outputs against {len(scripted)}"}
    worst_abs = worst_rel = 0.0
    for n, (a, b) in enumerate(zip(traced, scripted)):
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            if type(a) is not type(b) or a != b:
                return {"outcome": "differs", "what": f"output {n}: {_short(a)} against {_short(b)}"}
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return {"outcome": "differs", "what": f"output {n}: {_desc(a)} against {_desc(b)}"}
        if a.numel() == 0:
            continue
        x, y = a.to(torch.float64), b.to(torch.float64)
        diff = (x - y).abs()
        both_nan = torch.isnan(x) & torch.isnan(y)
        same_inf = torch.isinf(x) & (x == y)
        diff = torch.where(both_nan | same_inf, torch.zeros_like(diff), diff)
        diff = torch.nan_to_num(diff, nan=math.inf)
        abs_ = float(diff.max())
        rel = float((diff / y.abs().clamp_min(_REL_FLOOR)).max())
        worst_abs, worst_rel = max(worst_abs, abs_), max(worst_rel, rel)
        tol = 1e-2 if a.dtype in (torch.float16, torch.bfloat16) else 1e-4
        if not bool((diff <= tol * 0.1 + tol * y.abs()).all()):
            return {"outcome": "differs", "max_abs": abs_, "max_rel": rel, "what": f"output {n}"}
    return {"outcome": "same", "max_abs": worst_abs, "max_rel": worst_rel}


def _desc(t) -> str:
    return f"{str(t.dtype).replace('torch.', '')}{list(t.shape)}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: BaseException) -> str:
    """The line that says what went wrong (for TorchScript's interpreter errors, the last one)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return (lines[-1] if "TorchScript interpreter" in lines[0] else lines[0])[:300]


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)
