"""The verification child: ``python -m tsinspect.verify.child --plan PLAN.json --traced COPY --scripted COPY``.

Started by tsinspect.verify.run in a fresh empty working directory, like tsinspect.ir.extract (the other
torch child): it lowers its resource limits and confines itself (tsinspect.safety.sandbox) before reading
a byte of the archives or importing torch, loads both full copies tsinspect rebuilt from its own reading
(never the user's files), runs both forwards on every variant of the plan (tsinspect.verify.plan) in a
fixed order with fixed seeds, and writes one ``tsinspect.verify/1`` JSON document to its original stdout.
Whatever the archives' code prints goes to stderr.

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

SCHEMA = "tsinspect.verify/1"
SEED = 20261206
_REL_FLOOR = 1e-12


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
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
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
    started = time.perf_counter()
    reference = None
    for variant in plan["variants"]:
        if time.perf_counter() - started > args.budget:
            doc["results"].append({"id": variant["id"], "outcome": "skipped",
                                   "why": f"over the time budget of {args.budget:g} s"})
            continue
        values = variant["values"]
        if values == "reference":
            values = reference or "positive"
        begun = time.perf_counter()
        result = {"id": variant["id"], "values": values, **_run_variant(torch, models, variant, values)}
        result["seconds"] = round(time.perf_counter() - begun, 4)
        doc["results"].append(result)
        if variant["values"] != "reference" and reference is None and result["outcome"] == "same":
            reference = values
    doc["reference"] = reference
    doc["seconds"]["variants"] = round(time.perf_counter() - started, 3)


def _run_variant(torch, models: dict, variant: dict, values: str) -> dict:
    try:
        inputs = _make_inputs(torch, variant, values)
    except Exception as exc:  # noqa: BLE001 - a dtype torch cannot draw (quantized, ...): this variant only
        return {"outcome": "skipped", "why": f"cannot build its inputs: {type(exc).__name__}: {_first_line(exc)}"}
    outputs, raised = {}, {}
    for side, model in models.items():
        args = [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]
        model.train(variant["train"])
        torch.manual_seed(SEED)
        try:
            with torch.set_grad_enabled(variant["grad"]):
                outputs[side] = _flatten(torch, model(*args))
        except Exception as exc:  # noqa: BLE001 - a raise is a result
            line = _first_line(exc)
            raised[side] = line if line.split(":", 1)[0].endswith(("Error", "Exception")) else \
                f"{type(exc).__name__}: {line}"
    if len(raised) == 2:
        return {"outcome": "both_raised", "raised": raised}
    if raised:
        return {"outcome": "differs", "raised": raised}
    return _compare(torch, outputs["traced"], outputs["scripted"])


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
        elif dtype == torch.bool:
            out.append(torch.rand(shape, generator=gen) > 0.5)
        else:  # integer inputs are most often indices (token ids): keep them small
            out.append(torch.randint(0, 8, shape, generator=gen).to(dtype))
    return out


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
