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
- exported methods the trace lacks: ``missing_method``; what else differs in ops: ``divergent_ops``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tsinspect.diff.model import Finding, TracedLine
from tsinspect.diff.program import Function, If, Item, Loc, Loop, Op, Program, ops_in

# ops that move values around rather than compute: never evidence, never a divergence on their own
PLUMBING = {"prim::NumToTensor", "aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit",
            "aten::__is__", "aten::__isnot__", "prim::unchecked_cast", "aten::__getitem__", "aten::append",
            "aten::list", "aten::__not__", "aten::len", "aten::size", "aten::dim", "prim::Uninitialized",
            "aten::format", "aten::warn", "prim::TupleConstruct", "prim::ListConstruct", "prim::Constant",
            "aten::str", "aten::__contains__", "aten::keys", "aten::values", "aten::items", "prim::device",
            "prim::dtype", "aten::numel", "aten::item", "prim::tolist", "aten::eq", "aten::ne", "aten::lt",
            "aten::gt", "aten::le", "aten::ge", "aten::remainder", "aten::floordiv", "prim::min", "prim::max",
            "aten::is_floating_point", "prim::is_cuda", "prim::isinstance", "aten::_set_item", "aten::dict",
            "prim::TupleUnpack", "prim::ListUnpack", "prim::TupleIndex", "aten::__and__", "aten::__or__"}
GUARDS = {"prim::RaiseException", "aten::format", "aten::warn", "prim::Uninitialized"}
MAX_TRACED_LINES = 60  # traced code lines given per finding
SHAPE_WORDS = ("torch.size(", "len(", "torch.dim(", "torch.numel(", "ops.prim.shape")


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
        match = FileMatcher(files)
        self.matched: Counter = Counter()  # (file, line, kind) -> traced ops placed there
        self.frames: Counter = Counter()  # (file, line) -> traced ops below that frame
        self.under: dict[Loc, Counter] = defaultdict(Counter)  # frame -> Counter of placed keys below it
        self.at: dict[Loc, list[Op]] = defaultdict(list)  # placed loc -> traced ops
        self.kinds: Counter = Counter()
        self.unplaced: Counter = Counter()
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
                self.kinds[op.kind] += 1
                for loc in set(stack):
                    self.frames[loc] += 1
                    if place:
                        self.under[loc][(*place, op.kind)] += 1
                if place:
                    self.matched[(*place, op.kind)] += 1
                    self.at[place].append(op)
                else:
                    self.unplaced[op.kind] += 1

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


@dataclass
class Aligner:
    traced: Program
    scripted: Program
    findings: list[Finding] = field(default_factory=list)
    kept_ops: list[tuple[Function, Op]] = field(default_factory=list)
    explained: set[Loc] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.index = TraceIndex(self.traced, self.scripted)
        self._code_cache: dict[str, list[str]] = {}

    def run(self) -> list[Finding]:
        for fn in self.scripted.functions:
            if not self._reached(fn):
                continue
            self._block(fn.body, _Ctx(fn, self._runs(fn)))
        self._baked()
        self._missing_methods()
        self._divergent()
        for finding in self.findings:
            finding.traced, finding.traced_total = self._traced_side(finding)
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

    def _if(self, node: If, ctx: _Ctx) -> None:
        then_ops, else_ops = _meaningful(node.then), _meaningful(node.orelse)
        then_lines = {op.loc for op in then_ops if op.loc}
        else_lines = {op.loc for op in else_ops if op.loc}
        cond = {node.loc} if node.loc else set()
        then_ran = any(self.index.ran(op, else_lines | cond) for op in then_ops)
        else_ran = any(self.index.ran(op, then_lines | cond) for op in else_ops)
        if node.loc:
            self.explained.add(node.loc)
        if then_ran and else_ran:
            self._add_per_iteration(node, ctx)
            self._block(node.then, ctx)
            self._block(node.orelse, ctx)
            return
        if not then_ran and not else_ran:
            if bool(then_ops) == bool(else_ops):
                return  # both empty (nothing to lose) or both absent (this code never ran)
            then_ran = not then_ops
        kept, dropped = (node.then, node.orelse) if then_ran else (node.orelse, node.then)
        dropped_ops = _meaningful(dropped)
        if node.loc is None or all(op.kind in GUARDS for op in dropped_ops) or self._config_flag(node, ctx.fn):
            # no line to name; an argument check that only raises or formats a message; or a library
            # function's flag argument, which each call site passes as a constant
            self._block(kept, ctx)
            return
        self._add_dropped(node, ctx, "then" if then_ran else "else", kept, dropped)
        self._block(kept, ctx)

    @staticmethod
    def _config_flag(node: If, fn: Function) -> bool:
        return (node.cond_text in fn.args and node.loc is not None
                and "/torch/" in node.loc[0].replace("\\", "/"))

    def _loop(self, node: Loop, ctx: _Ctx) -> None:
        runs = self._body_runs(node.body)
        if runs is None:
            self._block(node.body, ctx)
            return
        k = runs / ctx.runs if ctx.runs else runs
        k = int(round(k))
        if node.loc:
            self.explained.add(node.loc)
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

    def _lines(self, items: list[Item]) -> list[int]:
        return sorted({item.loc[1] for item in _items(items) if item.loc})

    def _add_dropped(self, node: If, ctx: _Ctx, kept_name: str, kept: list[Item], dropped: list[Item]) -> None:
        dropped_name = "else" if kept_name == "then" else "then"
        kept_lines, dropped_lines = self._lines(kept), self._lines(dropped)
        file, line = node.loc if node.loc else (None, None)
        why = _why(node, self._src(node.loc) or "")
        kept_text = _lines_text(kept_lines) if kept_lines else "which does nothing"
        dropped_text = _lines_text(dropped_lines) if dropped_lines else "which does nothing"
        message = (f"the trace kept the {kept_name} branch ({kept_text}) and dropped the {dropped_name} branch "
                   f"({dropped_text}); {why}, so the traced model always runs the {kept_name} branch")
        early = [n for n in dropped_lines if (self._src((file, n)) or "").lstrip().startswith("return")]
        if early and dropped_name == "then":
            message += f"; the early return at line {early[0]} is never taken"
        marks = {n: "dropped" for n in _fill(dropped_lines)} | {n: "kept" for n in kept_lines}
        last = max([line or 0] + kept_lines + dropped_lines)
        self.findings.append(Finding(
            "dropped_branch", ctx.fn.qualname, file, line, message, self._src(node.loc),
            {"kept": kept_name, "dropped": dropped_name, "kept_lines": kept_lines, "dropped_lines": dropped_lines,
             "condition": node.cond_text, "code_location": node.code},
            self._excerpt(line, last, file, marks) if file else []))

    def _add_per_iteration(self, node: If, ctx: _Ctx) -> None:
        file, line = node.loc if node.loc else (None, None)
        where = "iteration of the unrolled loop" if ctx.in_loop else "call"
        self.findings.append(Finding(
            "per_iteration_branch", ctx.fn.qualname, file, line,
            f"both sides of this if are in the trace: the condition was decided once per {where} while tracing "
            f"and each decision is now fixed (lines {_span(self._lines(node.then))} / "
            f"{_span(self._lines(node.orelse))}); not a dropped branch, but inputs that would decide "
            f"differently still follow the traced pattern",
            self._src(node.loc), {"condition": node.cond_text, "code_location": node.code}))

    def _add_unrolled(self, node: Loop, ctx: _Ctx, k: int) -> None:
        file, line = node.loc if node.loc else (None, None)
        body_lines = self._lines(node.body)
        details: dict = {"count": k, "header": node.header_text, "body_lines": body_lines,
                         "code_location": node.code}
        message = f"the trace unrolled this loop: its body ({_lines_text(body_lines)}) appears {k} time(s)"
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
                                     if file else []))

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
            baked = []
            for fn, op in pairs:
                for t in (t for t in traced if t.kind == op.kind and len(t.args) == len(op.args)):
                    for i, (s_arg, t_arg) in enumerate(zip(op.args, t.args)):
                        if s_arg != "const" and t_arg == "const":
                            value = t.consts[t.args[:i].count("const")] if t.consts else "?"
                            if (s_arg, value) not in baked:
                                baked.append((s_arg, value))
            if not baked:
                continue
            fn = pairs[0][0]
            self.explained.add(loc)
            parts = [f"{expr} became {value}" for expr, value in baked]
            words = " ".join(expr for expr, _ in baked)
            what = ("a shape" if any(w in words for w in SHAPE_WORDS) else
                    "the training flag" if "training" in words else "a Python value")
            self.findings.append(Finding(
                "baked_constant", fn.qualname, loc[0], loc[1],
                f"{what} computed at run time in the script is a constant in the trace: {'; '.join(parts)}; "
                f"inputs for which it differs get the traced value",
                self._src(loc), {"values": [{"script": e, "trace": v} for e, v in baked]},
                self._excerpt(loc[1], loc[1], loc[0], {loc[1]: "dropped"})))

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
                f"{fn.name}() on the traced archive fails (trace a model that exports it with @torch.jit.export)",
                self._src((loc[0], line)) if loc and line else None, {"code_location": fn.code}))

    def _divergent(self) -> None:
        script_only: dict[str, list[tuple[Function, Op]]] = defaultdict(list)
        for fn, op in self.kept_ops:
            if op.is_call or op.loc is None or op.kind in PLUMBING or op.kind in GUARDS or op.loc in self.explained:
                continue
            if not self.index.ran(op):
                script_only[op.kind].append((fn, op))
        scripted_kinds = {op.kind for fn in self.scripted.functions for op in ops_in(fn.body)}
        trace_only = sorted(k for k in self.index.kinds if k not in scripted_kinds and k not in PLUMBING)
        if not script_only and not trace_only:
            return
        parts = []
        if script_only:
            parts.append("only in the script: " + ", ".join(
                f"{kind} (line {', '.join(str(op.loc[1]) for _, op in uses[:3])})"
                for kind, uses in sorted(script_only.items())))
        if trace_only:
            parts.append("only in the trace: " + ", ".join(f"{k} x{self.index.kinds[k]}" for k in trace_only))
        first = next(iter(script_only.values()), [(None, None)])[0]
        fn, op = first
        root = next((f for f in self.scripted.functions if f.owner == self.scripted.root_type), None)
        self.findings.append(Finding(
            "divergent_ops", (fn or root).qualname if (fn or root) else None, op.loc[0] if op else None,
            op.loc[1] if op else None, "; ".join(parts), self._src(op.loc) if op else None,
            {"script_only": sorted(script_only), "trace_only": trace_only}))


def _traced_methods(program: Program) -> set[str]:
    return {fn.name for fn in program.functions if fn.owner == program.root_type}


def _meaningful(items: list[Item]) -> list[Op]:
    return [op for op in ops_in(items) if op.kind not in PLUMBING or op.kind in GUARDS]


def _why(node: If, source: str) -> str:
    cond = node.cond_text
    if node.reads_training:
        return "the condition reads self.training, which the trace froze to the mode it was traced in"
    if "__isnot__" in cond or "__is__" in cond:
        return "the condition checks an Optional argument for None, and the trace fixed whether it was passed"
    if any(w in cond for w in SHAPE_WORDS) or any(w in source for w in (".size(", ".shape", "len(", ".dim(")):
        return "the condition depends on a shape, which the trace evaluated once for the example input"
    return "the condition depends on values computed while tracing, which the trace evaluated once"


def _span(lines: list[int]) -> str:
    if not lines:
        return "-"
    return str(lines[0]) if lines[0] == lines[-1] else f"{lines[0]}-{lines[-1]}"


def _lines_text(lines: list[int]) -> str:
    return f"line {lines[0]}" if len(lines) == 1 or lines[0] == lines[-1] else f"lines {_span(lines)}"


def _fill(lines: list[int]) -> list[int]:
    return list(range(lines[0], lines[-1] + 1)) if lines else []
