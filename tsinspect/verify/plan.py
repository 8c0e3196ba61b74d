"""Which inputs to run both archives on, and what each finding is about (torch-free).

A variant changes one thing against the example input (``traced_inputs.pkl``'s dtypes and shapes): the
value distribution, one dimension's size (the condition's threshold, one, one more, twice), one dimension
fewer (unbatched), the dtype, train() instead of eval(), no_grad instead of grad, None for an argument.
Each variant carries ``keys`` naming what it changes. ``finding_keys`` guesses from a finding's text which
variants can show it; the plan uses that only to choose the dimensions worth resizing (``x.size(0) > 2``:
x's dimension 0, at 2 and 3). Whether a variant really takes a finding's other side is not guessed: the
child records it (``site_of``, tsinspect.verify.instrument). Values are drawn by the child, seeded; a
variant's ``values`` is "reference" when it uses whichever distribution the child found to agree on the
example shapes (the trace was made on values nobody stored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_VARIANTS = 24
MAX_GROWTH = 4  # a variant's inputs hold at most this many times the example's elements
MAX_ELEMENTS = 1 << 26  # example inputs larger than this (in elements, all inputs) are not run
# uniform [0.5, 1.5), its negation, randn; the first two keep their sign whatever the shape, so a test on
# the values' sign takes the same side in every variant drawn like the reference
VALUE_KINDS = ("positive", "negative", "normal", "large")  # large: positive times 1000
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
_SIZE = re.compile(r"\bsize\((\w+),\s*(-?\d+)\)|\b(\w+)\.size\((-?\d+)\)|\b(\w+)\.shape\[(-?\d+)\]")
_DIM = re.compile(r"\bdim\(|\.dim\(\)|\bndim\b|\blen\(")
_SHAPE_WORDS = re.compile(r"\bsize\(|\.size\(|\.shape\b|\bnumel\(|\blen\(|\bdim\(")
_INT = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


@dataclass
class Input:
    """One positional argument of the traced forward: a tensor (dtype, shape) or None."""

    name: str
    dtype: str | None = None
    shape: list[int] | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


@dataclass
class Variant:
    id: int
    label: str  # what it changes, for people ("x.size(0) = 1 (traced with 2)")
    keys: list[str]  # what it changes, for matching findings ("values", "shape:0:0", "train", ...)
    inputs: list[Input]
    values: str = "reference"  # one of VALUE_KINDS, or "reference"
    train: bool = False
    grad: bool = True

    def to_json(self) -> dict:
        return {"id": self.id, "label": self.label, "keys": list(self.keys),
                "inputs": [i.to_json() for i in self.inputs], "values": self.values, "train": self.train,
                "grad": self.grad}


@dataclass
class Plan:
    base: list[Input]  # the example inputs ([] when unknown: nothing can run)
    variants: list[Variant] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # variants left out, and why
    source: str = ""  # where the example inputs came from
    sites: list[dict] = field(default_factory=list)  # what each finding is about (``site_of``)
    method: str = "forward"

    def to_json(self) -> dict:
        return {"base": [i.to_json() for i in self.base], "variants": [v.to_json() for v in self.variants],
                "skipped": list(self.skipped), "source": self.source, "sites": self.sites, "method": self.method}


def site_of(finding) -> dict | None:
    """The scripted code a finding is about, for the child to record and freeze (tsinspect.verify.instrument):
    an ``if`` and the side the trace kept (None: per iteration), a loop and the traced trip count, the
    values an op received as constants in the trace. None when there is nothing to run (a missing method)."""
    d = finding.details or {}
    if not finding.file or not finding.line:
        return None
    where = {"file": finding.file, "line": finding.line}
    if finding.kind == "dropped_branch" and d.get("kept") in ("then", "else"):
        return {"kind": "if", **where, "kept": d["kept"]}
    if finding.kind == "per_iteration_branch":
        return {"kind": "if", **where, "kept": None}
    if finding.kind == "unrolled_loop" and isinstance(d.get("count"), int):
        return {"kind": "loop", **where, "count": d["count"]}
    if finding.kind == "baked_constant" and d.get("values"):
        return {"kind": "value", **where, "values": [str(v.get("trace")) for v in d["values"] if isinstance(v, dict)]}
    return None


def finding_keys(finding, arg_names: list[str], ranks: list[int] | None = None) -> set[str]:
    """The variant keys that can show ``finding`` (a diff Finding); empty when no variant can. ``ranks``:
    the example inputs' numbers of dimensions (a negative dimension is counted from there)."""
    d = finding.details or {}
    if finding.kind == "missing_method":
        return set()
    texts = [d.get("condition") or "", d.get("header") or "", finding.code or ""]
    texts += [v.get("script") or "" for v in d.get("values") or [] if isinstance(v, dict)]
    text = " ".join(texts)
    keys: set[str] = set()
    if re.search(r"\btraining\b", text):
        keys.add("train")
    if "grad_enabled" in text:
        keys.add("grad")
    if finding.severity == "mode" and not keys:
        keys = {"train", "grad"}  # the static analysis found it depends on the mode only
    if finding.kind in ("dropped_branch", "per_iteration_branch") and "None" in (d.get("condition") or finding.code or ""):
        cond = d.get("condition") or finding.code or ""
        named = {f"none:{i}" for i, name in enumerate(arg_names) if re.search(rf"\b{re.escape(name)}\b", cond)}
        keys |= named or {f"none:{i}" for i in range(1, len(arg_names))}
    if keys:
        return keys
    example = d.get("example_input") or {}
    if finding.kind == "unrolled_loop" and isinstance(example.get("dim"), int):
        index = _input_index(example.get("name"), arg_names)
        if index is not None:
            return {f"shape:{index}:{example['dim']}"}
    dims = _dims(text, arg_names)
    if dims:
        keys |= {f"shape:{i}:{dim % ranks[i] if ranks and i < len(ranks) and ranks[i] else dim}" for i, dim in dims}
    elif _SHAPE_WORDS.search(text) or finding.kind in ("unrolled_loop", "baked_constant", "per_iteration_branch"):
        keys.add("shape:*")
    if _DIM.search(text):
        keys.add("unbatched")
    if finding.kind == "dropped_branch" and not keys:
        # a test on something computed: from values, from sizes (``t < 8``) or from the mode (``dropout_p > 0``
        # where ``dropout_p = 0.0`` unless training)
        keys |= {"values", "shape:*", "train", "grad"}
    if finding.kind == "baked_constant" and not dims and not _SHAPE_WORDS.search(text):
        keys.add("values")  # a folded Python number may come from values (float(x.sum()))
    return keys


def build_plan(base: list[Input], findings: list, arg_names: list[str], source: str,
               max_variants: int = MAX_VARIANTS) -> Plan:
    """The variants for ``base`` (the traced forward's example inputs), most telling first, at most
    ``max_variants``; what was left out goes to ``skipped``."""
    plan = Plan(base, source=source)
    if not base:
        return plan
    if _elements(base) > MAX_ELEMENTS:
        plan.skipped.append(f"every variant: the example inputs hold {_elements(base)} elements, over {MAX_ELEMENTS}")
        return plan
    wanted: list[tuple[str, list[str], dict]] = []  # (label, keys, changes)
    for kind in VALUE_KINDS:
        wanted.append((f"{kind} values", ["values"], {"values": kind}))
    targets = [finding_keys(f, arg_names, [len(i.shape or []) for i in base]) for f in findings]
    thresholds = _thresholds(findings, arg_names)
    dims = _resizable(base, targets)
    for index, dim in dims:
        tensor = base[index]
        size = tensor.shape[dim]
        for new in _sizes(size, thresholds.get((index, dim), [])):
            inputs = _resized(base, index, dim, size, new)
            if inputs is None:
                plan.skipped.append(f"{tensor.name}.size({dim}) = {new}: over {MAX_GROWTH}x the example's elements")
                continue
            wanted.append((f"{tensor.name}.size({dim}) = {new} (traced with {size})", [f"shape:{index}:{dim}"],
                           {"inputs": inputs}))
    unbatched = _unbatched(base)
    if unbatched is not None:
        wanted.append((f"unbatched (dimension {unbatched[0]} removed)", ["unbatched"], {"inputs": unbatched[1]}))
    wanted.append(("train() instead of eval()", ["train"], {"train": True}))
    wanted.append(("torch.no_grad()", ["grad"], {"grad": False}))
    for index in range(1, len(base)):
        if base[index].dtype is not None:
            inputs = [Input(i.name, None, None) if n == index else i for n, i in enumerate(base)]
            wanted.append((f"{base[index].name} = None", [f"none:{index}"], {"inputs": inputs}))
    for dtype in ("float64", "bfloat16"):
        if any(i.dtype in FLOAT_DTYPES and i.dtype != dtype for i in base):
            inputs = [Input(i.name, dtype, i.shape) if i.dtype in FLOAT_DTYPES else i for i in base]
            wanted.append((f"{dtype} inputs", ["dtype"], {"inputs": inputs}))
    for label, keys, changes in wanted:
        if len(plan.variants) >= max_variants:
            plan.skipped.append(f"{label}: over the limit of {max_variants} variants")
            continue
        plan.variants.append(Variant(len(plan.variants), label, keys, changes.get("inputs", base),
                                     changes.get("values", "reference"), changes.get("train", False),
                                     changes.get("grad", True)))
    return plan


def example_inputs(traced_inputs: list, arg_names: list[str]) -> list[Input]:
    """The forward's example inputs from ``traced_inputs.pkl`` (summary TensorInfo named "forward[i]")."""
    found: dict[int, Input] = {}
    for info in traced_inputs:
        match = re.fullmatch(r"forward\[(\d+)\]", info.name)
        if match:
            i = int(match.group(1))
            name = arg_names[i] if i < len(arg_names) else f"arg{i}"
            found[i] = Input(name, info.dtype, list(info.shape))
    if not found or sorted(found) != list(range(len(found))):
        return []
    return [found[i] for i in range(len(found))]


def _input_index(name: str | None, arg_names: list[str]) -> int | None:
    match = re.fullmatch(r"forward\[(\d+)\]", name or "")
    if match:
        return int(match.group(1))
    return arg_names.index(name) if name in arg_names else None


def _dims(text: str, arg_names: list[str]) -> list[tuple[int, int]]:
    out = []
    for match in _SIZE.finditer(text):
        groups = [g for g in match.groups() if g is not None]
        name, dim = groups[0], int(groups[1])
        if name in arg_names:
            out.append((arg_names.index(name), dim))
    return out


def _thresholds(findings: list, arg_names: list[str]) -> dict[tuple[int, int], list[int]]:
    """(input, dim) -> integers its size is compared with in a condition (``x.size(0) > 2`` -> [2])."""
    out: dict[tuple[int, int], list[int]] = {}
    for f in findings:
        cond = (f.details or {}).get("condition") or ""
        dims = _dims(cond, arg_names)
        if len(dims) != 1:
            continue
        rest = _SIZE.sub(" ", cond)
        out.setdefault(dims[0], []).extend(int(n) for n in _INT.findall(rest) if int(n) < 1 << 16)
    return out


def _resizable(base: list[Input], targets: list[set[str]]) -> list[tuple[int, int]]:
    """(input, dim) pairs to resize: those a finding names, then (for findings naming none, and to find
    what no finding explains) every dimension of the first tensor."""
    named = []
    for keys in targets:
        for key in sorted(keys):
            if key.startswith("shape:") and key != "shape:*":
                _, i, d = key.split(":")
                named.append((int(i), int(d)))
    first = next((n for n, i in enumerate(base) if i.shape), None)
    generic = [] if first is None else [(first, d) for d in range(len(base[first].shape))]
    out = []
    for index, dim in named + generic:
        if index >= len(base) or not base[index].shape:
            continue
        dim = dim % len(base[index].shape) if -len(base[index].shape) <= dim < len(base[index].shape) else None
        if dim is not None and (index, dim) not in out:
            out.append((index, dim))
    return out


def _sizes(size: int, thresholds: list[int]) -> list[int]:
    """Other sizes for a dimension of ``size``: each side of a compared threshold, then 1, one more, twice."""
    out: list[int] = []
    for k in thresholds:
        out += [k, k + 1]
    out += [1, size + 1, 2 * size]
    seen = []
    for n in out:
        if n >= 1 and n != size and n not in seen:
            seen.append(n)
    return seen[:3]


def _resized(base: list[Input], index: int, dim: int, size: int, new: int) -> list[Input] | None:
    """The inputs with ``base[index]``'s dimension ``dim`` set to ``new``, and the same dimension of other
    inputs that had the same size (a mask follows its sequence); None when that grows past MAX_GROWTH."""
    out = []
    for n, i in enumerate(base):
        shape = list(i.shape) if i.shape is not None else None
        if shape is not None and (n == index or (dim < len(shape) and shape[dim] == size)):
            shape[dim] = new
        out.append(Input(i.name, i.dtype, shape))
    if _elements(out) > MAX_GROWTH * max(_elements(base), 1):
        return None
    return out


def _unbatched(base: list[Input]) -> tuple[int, list[Input]] | None:
    """The inputs without their batch dimension: 0, or 1 (sequence-first) when every tensor has the same
    size there."""
    tensors = [i for i in base if i.shape is not None]
    if not tensors or any(len(i.shape) < 2 for i in tensors):
        return None
    for dim in (0, 1):
        if len({i.shape[dim] for i in tensors}) == 1:
            return dim, [Input(i.name, i.dtype, i.shape[:dim] + i.shape[dim + 1:] if i.shape is not None else None)
                         for i in base]
    return None


def _elements(inputs: list[Input]) -> int:
    total = 0
    for i in inputs:
        n = 1
        for s in i.shape or []:
            n *= s
        total += n if i.shape is not None else 0
    return total
