"""Align a traced program with the scripted one and name what the trace lost.

The key is the user's source location: every scripted op knows its (file, line); every traced op carries
the Python call stack it was recorded under. A traced op is placed at the first frame of its stack that
the scripted program knows (so an op inside ``nn.Linear`` lands on ``linear.py``, and one inside a helper
on the helper's line), and every frame counts as "this line ran" (so a call site ran when anything below
it did). Then, walking the scripted code:

- an ``if`` whose one side ran and whose other did not: ``dropped_branch``; both ran:
  ``per_iteration_branch``; neither, but one side is empty and the code around it ran: the empty side won;
- a loop whose body ran k times per run of its function: ``unrolled_loop``;
- an op whose argument is computed in the script and a constant at the same line of the trace:
  ``baked_constant``;
- exported methods the trace lacks: ``missing_method``.

Only what some input the traced model accepts (or the mode) can change is a finding (``dynamic``): not the
module's configuration, not arguments the traced forward cannot take, not identity checks, sides that only
raise, or torch's fused fast paths.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tsinspect.archive.text import counted
from tsinspect.diff.dynamic import Dynamic
from tsinspect.diff.model import Finding, TracedLine, origin_of
from tsinspect.diff.program import GRAD, TRAINING, Arg, Function, If, Item, Loc, Loop, Op, Program, ops_in

# ops that move values around rather than compute: never evidence, never a divergence on their own
PLUMBING = {"prim::NumToTensor", "aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit",
            "aten::__is__", "aten::__isnot__", "prim::unchecked_cast", "aten::__getitem__", "aten::append",
            "aten::list", "aten::__not__", "aten::len", "aten::size", "aten::dim", "prim::Uninitialized",
            "aten::format", "aten::warn", "prim::TupleConstruct", "prim::ListConstruct", "prim::Constant",
            "aten::str", "aten::__contains__", "aten::keys", "aten::values", "aten::items", "prim::device",
            "prim::dtype", "aten::numel", "aten::item", "prim::tolist", "aten::eq", "aten::ne", "aten::lt",
            "aten::gt", "aten::le", "aten::ge", "aten::remainder", "aten::floordiv", "prim::min", "prim::max",
            "aten::is_floating_point", "prim::is_cuda", "prim::isinstance", "aten::_set_item", "aten::dict",
            "prim::TupleUnpack", "prim::ListUnpack", "prim::TupleIndex", "aten::__and__", "aten::__or__",
            "prim::is_nested", "aten::is_nested", "prim::requires_grad", "aten::is_grad_enabled", "aten::dtype",
            "aten::contiguous"}
GUARDS = {"prim::RaiseException", "aten::format", "aten::warn", "prim::Uninitialized"}
MAX_TRACED_LINES = 60  # traced code lines given per finding
SHAPE_WORDS = ("torch.size(", "len(", "torch.dim(", "torch.numel(", "ops.prim.shape")
OPEN_BOUND = "9223372036854775807"  # a slice's open end, the same in both
# arithmetic on Python numbers that a trace does in Python, leaving only its result
SCALAR_MATH = {"aten::ceil", "aten::floor", "aten::round", "aten::div", "aten::mul", "aten::sub", "aten::add",
               "aten::neg", "aten::pow", "aten::sqrt", "aten::log", "aten::exp", "prim::min", "prim::max",
               "aten::floordiv", "aten::remainder"}
DEVICE_WORDS = ("dtype", "device", "layout")  # a trace is tied to its example's device and dtype anyway


class FileMatcher:
    """Maps a traced frame's file to the scripted file it names (paths may differ between machines)."""

    def __init__(self, files: set[str]):
        self.files = files
        self.by_base: dict[str, list[str]] = defaultdict(list)
        for f in files:
            self.by_base[_parts(f)[-1]].append(f)
        self.cache: dict[str, str] = {}

    def __call__(self, file: str) -> str:
        if file in self.files:
            return file
        if file not in self.cache:
            parts = _parts(file)
            best, score = file, 0
            for cand in self.by_base.get(parts[-1], ()):
                common = 0
                for x, y in zip(reversed(parts), reversed(_parts(cand))):
                    if x != y:
                        break
                    common += 1
                if common > score:
                    best, score = cand, common
            self.cache[file] = best
        return self.cache[file]


def _parts(path: str) -> list[str]:
    return path.replace("\\", "/").split("/")


class TraceIndex:
    """Where the traced ops sit, seen from the scripted program's known lines."""

    def __init__(self, traced: Program, scripted: Program):
        known: set[Loc] = set()
        self.scripted_count: Counter = Counter()
        files = set()
        for fn in scripted.functions:
            for item in _items(fn.body):
                if item.loc:
                    known.add(item.loc)
                    files.add(item.loc[0])
                    if isinstance(item, Op):
                        self.scripted_count[(*item.loc, item.kind)] += 1
        self.match = match = FileMatcher(files)
        self.matched: Counter = Counter()  # (file, line, kind) -> traced ops placed there
        self.frames: Counter = Counter()  # (file, line) -> traced ops below that frame
        self.under: dict[Loc, Counter] = defaultdict(Counter)  # frame -> Counter of placed keys below it
        self.at: dict[Loc, list[Op]] = defaultdict(list)  # placed loc -> traced ops
        self.code_at: dict[Loc, set[str]] = defaultdict(set)  # frame -> traced code/ lines ("file:line") below it
        for fn in traced.functions:
            for op in ops_in(fn.body):
                if not op.stack:
                    continue
                stack = tuple((match(f), n) for f, n in op.stack)
                if op.code:
                    for loc in stack:
                        self.code_at[loc].add(op.code)
                if op.is_call:
                    continue
                place = next((loc for loc in stack if loc in known), None)
                for loc in set(stack):
                    self.frames[loc] += 1
                    if place:
                        self.under[loc][(*place, op.kind)] += 1
                if place:
                    self.matched[(*place, op.kind)] += 1
                    self.at[place].append(op)

    def ran(self, op: Op, ambiguous: set[Loc] = frozenset()) -> bool:
        """Whether the trace holds this scripted op (calls: anything ran below the call site)."""
        if op.loc is None or op.kind in GUARDS:
            return False
        if op.is_call:
            return self.frames[op.loc] > 0
        if self.matched[(*op.loc, op.kind)]:
            return True
        return op.loc not in ambiguous and op.kind not in PLUMBING and self.frames[op.loc] > 0

    def count(self, op: Op) -> float:
        """How many times this scripted op ran in the trace, per copy of it in the script."""
        if op.loc is None:
            return 0
        if op.is_call:
            counts = self.under[op.loc]
            return Counter(counts.values()).most_common(1)[0][0] if counts else 0
        return self.matched[(*op.loc, op.kind)] / max(1, self.scripted_count[(*op.loc, op.kind)])


def _items(items: list[Item]):
    from tsinspect.diff.program import walk

    return walk(items)


@dataclass
class _Ctx:
    fn: Function
    runs: float  # times the function ran in the trace
    in_loop: bool = False
    entered: bool = False  # this code ran in the trace, even if it recorded no op (a call that returned early)


@dataclass
class Aligner:
    traced: Program
    scripted: Program
    findings: list[Finding] = field(default_factory=list)
    kept_ops: list[tuple[Function, Op]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = TraceIndex(self.traced, self.scripted)
        self.dynamic = Dynamic(self.traced, self.scripted)
        self._code_cache: dict[str, list[str]] = {}

    def run(self) -> list[Finding]:
        done: set[int] = set()
        for fn in self.scripted.functions:
            if self._reached(fn):
                done.add(id(fn))
                self._block(fn.body, _Ctx(fn, self._runs(fn), entered=True))
        # functions that recorded no op but were called from code the trace kept: they returned early
        while True:
            called = {op.callee or op.kind[5:] for _, op in self.kept_ops if op.is_call}
            todo = [fn for fn in self.scripted.functions if id(fn) not in done
                    and (fn.qualname in called or fn.name in called and not fn.owner)]
            if not todo:
                break
            for fn in todo:
                done.add(id(fn))
                self._block(fn.body, _Ctx(fn, 1, entered=True))
        self._baked()
        self._missing_methods()
        seen: set[tuple] = set()  # one finding per kind and line (a line may hold several ifs: a and b)
        self.findings = [f for f in self.findings if (f.kind, f.file, f.line) not in seen
                         and not seen.add((f.kind, f.file, f.line))]
        for finding in self.findings:
            finding.traced, finding.traced_total = self._traced_side(finding)
            if finding.origin != "user" and finding.severity != "mode" and finding.kind in _CODE_FIXES:
                finding.fix = _library_fix(finding.package)
        return self.findings

    # -- functions -----------------------------------------------------------------------------------
    def _reached(self, fn: Function) -> bool:
        if any(self.index.ran(op) for op in ops_in(fn.body)):
            return True
        return fn.owner == self.scripted.root_type and fn.name in _traced_methods(self.traced)

    def _runs(self, fn: Function) -> float:
        ratios = [self.index.count(op) for op in fn.body if isinstance(op, Op) and not op.is_call
                  and op.kind not in PLUMBING]
        ratios = [r for r in ratios if r > 0]
        return min(ratios) if ratios else 1

    # -- blocks --------------------------------------------------------------------------------------
    def _block(self, items: list[Item], ctx: _Ctx) -> None:
        for item in items:
            if isinstance(item, If):
                self._if(item, ctx)
            elif isinstance(item, Loop):
                self._loop(item, ctx)
            elif ctx.in_loop:
                continue
            else:
                self.kept_ops.append((ctx.fn, item))
                ctx.entered = ctx.entered or self.index.ran(item)

    def _if(self, node: If, ctx: _Ctx) -> None:
        then_ops, else_ops = _meaningful(node.then), _meaningful(node.orelse)
        then_lines = {op.loc for op in then_ops if op.loc}
        else_lines = {op.loc for op in else_ops if op.loc}
        cond = {node.loc} if node.loc else set()
        then_ran = any(self.index.ran(op, else_lines | cond) for op in then_ops)
        else_ran = any(self.index.ran(op, then_lines | cond) for op in else_ops)
        varies = self.dynamic.decides(ctx.fn, node)
        if then_ran and else_ran:
            if varies:
                self._add_per_iteration(node, ctx)
            self._block(node.then, ctx)
            self._block(node.orelse, ctx)
            return
        if not then_ran and not else_ran:
            # an empty side won when the other would have left ops; or, where the code ran, a side of calls
            # only (which may return before recording an op) against one with ops of its own
            if not then_ops or not else_ops:
                if not then_ops and not else_ops:
                    return  # nothing to lose
                then_ran = not then_ops
            else:
                quiet = [all(op.is_call for op in ops) for ops in (then_ops, else_ops)]
                if quiet[0] == quiet[1] or not ctx.entered:
                    return  # nothing tells the sides apart, or this code never ran
                then_ran = quiet[0]
        kept, dropped = (node.then, node.orelse) if then_ran else (node.orelse, node.then)
        dropped_ops = _meaningful(dropped)
        if node.loc is None or not varies or _raises(dropped) or _fast_path(dropped_ops, _meaningful(kept)):
            # no line to name; a condition no input can change (the module's configuration, an argument the
            # traced forward does not accept, an identity check); an argument check that only raises; or a
            # fast path that computes the same result through one of torch's fused kernels
            self._block(kept, ctx)
            return
        self._add_dropped(node, ctx, "then" if then_ran else "else", kept, dropped)
        self._block(kept, ctx)

    def _loop(self, node: Loop, ctx: _Ctx) -> None:
        runs = self._body_runs(node.body)
        if runs is None:
            self._block(node.body, ctx)
            return
        k = runs / ctx.runs if ctx.runs else runs
        k = int(round(k))
        if self.dynamic.varies(ctx.fn, node.deps):  # else it runs k times for every input, as the trace does
            self._add_unrolled(node, ctx, k)
        if k:
            self._block(node.body, _Ctx(ctx.fn, ctx.runs, True))

    def _body_runs(self, items: list[Item]) -> float | None:
        """Times a loop body ran in the trace: the most any of its parts ran; None when nothing countable."""
        best = None
        for item in items:
            if isinstance(item, Op):
                if item.kind in PLUMBING or item.kind in GUARDS or item.loc is None:
                    continue
                n = self.index.count(item)
            elif isinstance(item, If):
                sides = [self._body_runs(item.then), self._body_runs(item.orelse)]
                if all(s is None for s in sides):
                    continue
                n = sum(s or 0 for s in sides)
            else:
                continue  # a nested loop's body runs k_outer * k_inner times
            best = n if best is None else max(best, n)
        return best

    # -- findings ------------------------------------------------------------------------------------
    def _src(self, loc: Loc | None) -> str | None:
        return self.scripted.sources.get(loc[0], {}).get(loc[1]) if loc else None

    def _excerpt(self, first: int, last: int, file: str, marks: dict[int, str]) -> list[tuple[int, str, str]]:
        table = self.scripted.sources.get(file, {})
        return [(n, table[n], marks.get(n, "")) for n in range(first, min(last, first + 40) + 1) if n in table]

    def _traced_side(self, finding: Finding) -> tuple[list[TracedLine], int]:
        """The traced code/ lines holding ops recorded at the finding's source lines (its excerpt's): the
        first MAX_TRACED_LINES of them, and how many there are."""
        if not finding.file:
            return [], 0
        lines = [n for n, _, _ in finding.excerpt] or ([finding.line] if finding.line else [])
        found: dict[tuple[str, int], list[int]] = {}
        for n in lines:
            for ref in self.index.code_at.get((finding.file, n), ()):
                file, _, line = ref.rpartition(":")
                if line.isdigit():
                    found.setdefault((file, int(line)), []).append(n)
        out = []
        for file, line in sorted(found)[:MAX_TRACED_LINES]:
            code = self._code_lines(file)
            text = code[line - 1] if 0 < line <= len(code) else ""
            out.append(TracedLine(file, line, text, sorted(set(found[(file, line)]))))
        return out, len(found)

    def _code_lines(self, file: str) -> list[str]:
        """Lines of a code record of the traced archive (its code/ read at once, on the first call: the archive
        is opened once, not once per file)."""
        if not self._code_cache:
            from tsinspect.archive.problems import ArchiveError
            from tsinspect.archive.reader import open_archive
            from tsinspect.archive.records import CODE

            self._code_cache[""] = []  # read, even when nothing could be
            try:
                with open_archive(self.traced.path) as archive:
                    for record in archive.records_of(CODE):
                        self._code_cache.setdefault(record.name, archive.text(record).split("\n"))
            except (ArchiveError, OSError):
                pass
        return self._code_cache.get(file, [""])

    @staticmethod
    def _lines(items: list[Item], file: str | None) -> list[int]:
        """The lines of ``items`` in ``file`` (the ops of a helper in another file have lines of their own)."""
        return sorted({item.loc[1] for item in _items(items) if item.loc and item.loc[0] == file})

    def _add_dropped(self, node: If, ctx: _Ctx, kept_name: str, kept: list[Item], dropped: list[Item]) -> None:
        dropped_name = "else" if kept_name == "then" else "then"
        file, line = node.loc if node.loc else (None, None)
        kept_lines, dropped_lines = self._lines(kept, file), self._lines(dropped, file)
        why, fix, severity = _why(node, self._src(node.loc) or "", self.dynamic.mode_only(ctx.fn, node.deps))
        kept_text = _lines_text(kept_lines) if kept_lines else "which does nothing"
        dropped_text = _lines_text(dropped_lines) if dropped_lines else "which does nothing"
        message = (f"the trace kept the {kept_name} branch ({kept_text}) and dropped the {dropped_name} branch "
                   f"({dropped_text}); {why}, so the traced model always runs the {kept_name} branch")
        early = [n for n in dropped_lines if (self._src((file, n)) or "").lstrip().startswith("return")]
        if early and dropped_name == "then":
            message += f"; the early return at line {early[0]} is never taken"
        elif kept_name == "then" and (self._src((file, line + 1)) or "").lstrip().startswith("return"):
            message += f"; the early return at line {line + 1} is always taken"
        marks = {n: "dropped" for n in _fill(dropped_lines)} | {n: "kept" for n in kept_lines}
        last = max([line or 0] + kept_lines + dropped_lines)
        self.findings.append(Finding(
            "dropped_branch", ctx.fn.qualname, file, line, message, self._src(node.loc),
            {"kept": kept_name, "dropped": dropped_name, "kept_lines": kept_lines, "dropped_lines": dropped_lines,
             "condition": node.cond_text, "code_location": node.code},
            self._excerpt(line, last, file, marks) if file else [], severity=severity, fix=fix))

    def _add_per_iteration(self, node: If, ctx: _Ctx) -> None:
        file, line = node.loc if node.loc else (None, None)
        where = "iteration of the unrolled loop" if ctx.in_loop else "call"
        self.findings.append(Finding(
            "per_iteration_branch", ctx.fn.qualname, file, line,
            f"both sides of this if are in the trace: the condition was decided once per {where} while tracing "
            f"and each decision is now fixed (lines {_span(self._lines(node.then, file))} / "
            f"{_span(self._lines(node.orelse, file))}); not a dropped branch, but inputs that would decide "
            f"differently still follow the traced pattern",
            self._src(node.loc), {"condition": node.cond_text, "code_location": node.code},
            severity="mode" if self.dynamic.mode_only(ctx.fn, node.deps) else "silent",
            fix="script the function holding this if (@torch.jit.script) so each call decides again"))

    def _add_unrolled(self, node: Loop, ctx: _Ctx, k: int) -> None:
        file, line = node.loc if node.loc else (None, None)
        body_lines = self._lines(node.body, file)
        details: dict = {"count": k, "header": node.header_text, "body_lines": body_lines,
                         "code_location": node.code}
        message = f"the trace unrolled this loop: its body ({_lines_text(body_lines)}) appears {counted(k, 'time')}"
        fixed = self._trip_input(node, ctx.fn)
        if fixed:
            name, dim, key, dtype, shape = fixed
            details["example_input"] = {"name": key, "dtype": dtype, "shape": shape, "dim": dim}
            if dim < len(shape):
                same = "" if shape[dim] == k else f" (but that size is {shape[dim]})"
                message += (f"; {k} = {name}.size({dim}) of the example input {key} {dtype}{shape}{same}")
        message += "; the traced model runs exactly that many iterations whatever the input"
        if k == 0:
            message = "the loop's body is absent from the trace: it ran 0 times while tracing and never will"
        consts = sorted({c for n in body_lines for op in self.index.at.get((file, n), ()) for c in op.consts})
        if consts:
            details["baked_values"] = consts
            message += f"; values the loop computed became the constants {', '.join(consts[:8])}"
        marks = {n: "dropped" if k == 0 else "" for n in body_lines}
        self.findings.append(Finding("unrolled_loop", ctx.fn.qualname, file, line, message, self._src(node.loc),
                                     details, self._excerpt(line, max([line] + body_lines), file, marks)
                                     if file else [], fix="script the function holding this loop "
                                     "(@torch.jit.script) so it runs as many times as the input needs"))

    def _trip_input(self, node: Loop, fn: Function):
        if node.trip is None:
            return None
        name, dim = node.trip
        if name not in fn.args:
            return None
        key = f"{fn.name}[{fn.args.index(name)}]"
        shape = self.traced.traced_inputs.get(key)
        if shape is None:
            return None
        return name, dim, key, self.traced.input_dtypes.get(key, ""), shape

    def _baked(self) -> None:
        by_line: dict[Loc, list[tuple[Function, Op]]] = defaultdict(list)
        for fn, op in self.kept_ops:
            if op.loc and not op.is_call:
                by_line[op.loc].append((fn, op))
        for loc, pairs in by_line.items():
            traced = self.index.at.get(loc, [])
            baked: list[tuple[str, str]] = []
            sources: list[tuple[Function, frozenset]] = []
            for fn, op in pairs:
                for t in (t for t in traced if t.kind == op.kind):  # trailing defaults may be left out
                    for s_arg, t_arg in _frozen_args(op.argv, t.argv):
                        if self.dynamic.varies(fn, s_arg.deps) and (s_arg.text, t_arg) not in baked:
                            baked.append((s_arg.text, t_arg))
                            sources.append((fn, s_arg.deps))
            baked = baked or self._folded(loc, pairs, traced)
            if not baked:
                continue
            mode = bool(sources) and all(self.dynamic.mode_only(fn, deps) for fn, deps in sources)
            fn = pairs[0][0]
            parts = [f"{expr} became {value}" for expr, value in baked]
            words = " ".join(expr for expr, _ in baked)
            what = ("a shape" if any(w in words for w in SHAPE_WORDS) else
                    "the training flag" if "training" in words else "a Python value")
            method, at, inside = fn.qualname, loc, ""
            caller = self._user_caller(loc, traced) if sources and all(
                deps <= set(f.args) and not self.dynamic.mode_only(f, deps) for f, deps in sources) else None
            if caller:  # a library function's argument, frozen where the user's code passed it
                method, at = caller
                inside = f" inside {fn.qualname} ({_base(loc[0])}:{loc[1]}), from the arguments passed here"
            self.findings.append(Finding(
                "baked_constant", method, at[0], at[1],
                f"{what} computed at run time in the script is a constant in the trace{inside}: {'; '.join(parts)}; "
                f"inputs for which it differs get the traced value",
                self._src(at), {"values": [{"script": e, "trace": v} for e, v in baked]},
                self._excerpt(at[1], at[1], at[0], {at[1]: "dropped"}), severity="mode" if mode else "silent",
                fix=_baked_fix(what, mode)))

    def _user_caller(self, loc: Loc, traced: list[Op]) -> tuple[str, Loc] | None:
        """Where the user's own code called the library function holding ``loc``: the first frame of the traced
        ops' stacks in a user file, with the scripted function that holds that line."""
        for op in traced:
            for file, line in op.stack:
                frame = (self.index.match(file), line)
                if origin_of(frame[0])[0] == "user":
                    method = next((f.qualname for f, o in self.kept_ops if o.loc == frame), None)
                    return (method, frame) if method and self._src(frame) else None
        return None

    def _folded(self, loc: Loc, pairs: list[tuple[Function, Op]], traced: list[Op]) -> list[tuple[str, str]]:
        """Python arithmetic the script does at run time (``math.ceil(t / self.chunk)``) and the trace did
        while tracing: the script's op has no traced counterpart at its line, and the traced ops there take a
        constant the script's do not."""
        folded = [op for fn, op in pairs if op.kind in SCALAR_MATH and not self.index.matched[(*loc, op.kind)]
                  and any(self.dynamic.varies(fn, a.deps) for a in op.argv)]
        if not folded or not traced:
            return []
        script_consts = {c for _, op in pairs for c in op.consts}
        values = list(dict.fromkeys(c for t in traced for c in t.consts if c not in script_consts))
        op = folded[0]
        text = f"{op.kind.split('::', 1)[-1]}({', '.join(a.text for a in op.argv)})"
        return [(text, ", ".join(values))] if values else []

    def _missing_methods(self) -> None:
        traced = _traced_methods(self.traced)
        for fn in self.scripted.functions:
            if fn.owner != self.scripted.root_type or fn.name in traced or fn.name.startswith("__"):
                continue
            if any(fn.name in other.calls for other in self.scripted.functions if other.owner == fn.owner):
                continue  # a helper of another method: the trace inlined it
            loc = next((op.loc for op in ops_in(fn.body) if op.loc), None)
            first = self.scripted.def_at(loc) if loc else None
            line = first[0] if first else (loc[1] if loc else None)
            self.findings.append(Finding(
                "missing_method", fn.qualname, loc[0] if loc else None, line,
                f"the scripted model has the method {fn.name}() and the traced one does not: code that calls "
                f"{fn.name}() on the traced archive fails",
                self._src((loc[0], line)) if loc and line else None, {"code_location": fn.code}, severity="raises",
                fix=f"trace it too (torch.jit.trace_module(model, {{'forward': x, '{fn.name}': args}})) or script "
                    "the model"))


def _frozen_args(script: tuple[Arg, ...], trace: tuple[Arg, ...]):
    """(script argument, traced value) for each argument computed in the script and a constant in the trace;
    list literals element by element. A slice's open end is no frozen value. The trace leaves out trailing
    arguments equal to their defaults: those it froze to the default."""
    for s_arg in script[len(trace):]:
        if s_arg.const is None and s_arg.name is None and trace:
            yield s_arg, "its default"
    for s_arg, t_arg in zip(script, trace):
        if s_arg.items is not None and t_arg.items is not None and len(s_arg.items) == len(t_arg.items):
            yield from _frozen_args(s_arg.items, t_arg.items)
        elif s_arg.const is None and t_arg.const is not None and t_arg.const != OPEN_BOUND and not any(
                w in s_arg.text for w in DEVICE_WORDS):
            yield s_arg, t_arg.const


def _traced_methods(program: Program) -> set[str]:
    return {fn.name for fn in program.functions if fn.owner == program.root_type}


def _fast_path(dropped: list[Op], kept: list[Op]) -> bool:
    """The dropped side runs a private fused kernel of torch's (``aten::_native_multi_head_attention``,
    ``aten::_transformer_encoder_layer_fwd``) the kept side does not: a fast path, equal by torch's contract."""
    kept_kinds = {op.kind for op in kept}
    return any(op.kind.startswith("aten::_") and op.kind not in kept_kinds for op in dropped)


def _raises(items: list[Item]) -> bool:
    """The side raises, whatever it computed first, or only warns (an argument check): nothing of it reaches
    an output."""
    ops = _meaningful(items)
    return (any(isinstance(item, Op) and item.kind == "prim::RaiseException" for item in items)
            or bool(ops) and all(op.kind in GUARDS for op in ops))


def _meaningful(items: list[Item]) -> list[Op]:
    return [op for op in ops_in(items) if op.kind not in PLUMBING or op.kind in GUARDS]


def _why(node: If, source: str, mode_only: bool) -> tuple[str, str, str]:
    """Why the condition was frozen, how to fix it, and the harm (severity)."""
    if mode_only:
        what = ("self.training" if node.reads_training or TRAINING in node.deps else
                "the grad mode" if GRAD in node.deps else "the mode (a training flag passed in)")
        return (f"the condition depends on {what} alone, which the trace froze to the mode it was traced in",
                "trace in the mode the model will run in (model.eval() before tracing, and keep it), or script it",
                "mode")
    if node.none_check is not None:
        return ("the condition checks an Optional argument for None, and the trace fixed whether it was passed",
                "always pass this argument to the traced model (it was traced with a value), or script the model",
                "raises")
    if any(w in node.cond_text for w in SHAPE_WORDS) or any(
            w in source for w in (".size(", ".shape", "len(", ".dim(", ".ndim")):
        return ("the condition depends on a shape, which the trace evaluated once for the example input",
                "script the function holding this if (@torch.jit.script), or trace one model per input shape",
                "silent")
    return ("the condition depends on values computed while tracing, which the trace evaluated once",
            "compute both sides and choose with torch.where, or script the function holding this if", "silent")


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _span(lines: list[int]) -> str:
    if not lines:
        return "-"
    return str(lines[0]) if lines[0] == lines[-1] else f"{lines[0]}-{lines[-1]}"


def _lines_text(lines: list[int]) -> str:
    return f"line {lines[0]}" if len(lines) == 1 or lines[0] == lines[-1] else f"lines {_span(lines)}"


def _fill(lines: list[int]) -> list[int]:
    return list(range(lines[0], lines[-1] + 1)) if lines else []


def _baked_fix(what: str, mode: bool) -> str:
    """What to do about a baked constant, by what was baked."""
    if mode:
        return "trace in the mode the model will run in (model.eval() before tracing, and keep it)"
    if what == "a shape":
        return ("keep sizes as tensor values (x.size(d) straight into tensor ops, no int()/math.* or min() on "
                "them), or script this function")
    return "script this function, or trace a separate model for each value it can take"


_CODE_FIXES = ("dropped_branch", "per_iteration_branch", "unrolled_loop", "baked_constant")  # fixed by editing code


def _library_fix(package: str | None) -> str:
    """A library's code is not the user's to edit: what the user can do instead."""
    return (f"this is {package or 'a library'}'s code, not yours: script the model (torch.jit.script) instead of "
            "tracing it, or trace it only for inputs that take the same path as the example input")
