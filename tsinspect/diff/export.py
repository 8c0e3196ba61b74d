"""A TorchScript archive against the exported program (pt2) of the same model, by source line.

The TorchScript side is the torch-free Program (``code/`` + debug info: the original file:line of every op,
``if`` and loop; a traced op is placed at the line of its call stack the export has, see ``_op_line``); the
exported side is the pt2 graph (each node's ``stack_trace``, its innermost frame of model
code: the user's files or torch.nn's, not torch's tracing machinery). Both name the same files, so lines align
without any model of either compiler; findings in torch's own files are library findings (``origin``), listed
after the user's and counted unless ``--all``. What it reports:

- ``specialised_branch``: an ``if`` of the TorchScript model with no ``cond`` at its line in the export:
  torch.export evaluated the condition for the example inputs and kept one side (named when its ops appear);
- ``unrolled_loop``: a loop whose body lines appear in the export without a ``while_loop``/``map``;
- ``fixed_shapes``: the export has no ``range_constraints`` (every dimension fixed) where the scripted model
  reads sizes;
- ``ops_one_side``: user source lines whose ops exist on one side only.

It proves no equivalence and no difference in results: it names what one side fixed, to be checked with
inputs that take the other path (another batch size, a sum of the other sign).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import open_archive
from tsinspect.archive.text import printable
from tsinspect.diff.model import DiffResult, Finding, origin_of
from tsinspect.diff.program import If, Loop, Op, Program, walk

EXPORT_KINDS = ("specialised_branch", "unrolled_loop", "fixed_shapes", "ops_one_side")
_LOOPS = ("higher_order::while_loop", "higher_order::map_impl", "higher_order::scan")
_IGNORED = ("prim::", "aten::size", "aten::Int", "aten::__getitem__", "aten::len", "aten::sym_size")

Line = tuple[str, int]  # (file name without folders, line)


def _key(loc) -> Line | None:
    return (loc[0].replace("\\", "/").rsplit("/", 1)[-1], loc[1]) if loc else None


# torch's machinery (tracing, decompositions, FX passes), not model code: frames there are skipped. torch.nn's
# modules and functional.py are model code here: the TorchScript side records their lines too.
_MACHINERY = ("/torch/_", "/torch/fx/", "/torch/export/", "/torch/utils/", "/torch/overrides.py")


def _frame(stack: list[str]) -> Line | None:
    """The innermost frame (``file:line``, innermost first) of model code: the user's, or torch.nn's."""
    for frame in stack:
        file, _, line = frame.rpartition(":")
        if line.isdigit() and not file.startswith(("<eval_with_key>", "torch/")) \
                and not any(m in file for m in _MACHINERY):
            return _key((file, int(line)))
    return None


def _base(kind: str) -> str:
    """``aten::add.Tensor`` -> ``aten::add`` (TorchScript names ops without the overload)."""
    return kind.split(".", 1)[0] if kind.startswith("aten::") else kind


def is_pt2(path: str) -> bool:
    with open_archive(path) as archive:
        return archive.format == "pt2"


def export_diff(ts_path: str, pt2_path: str, ts_side) -> DiffResult:
    """``ts_side``: the TorchScript archive as ``diff.run.load_side`` reads it."""
    from tsinspect.archive.pt2 import read_pt2
    from tsinspect.ir.pt2graph import pt2_ir

    with open_archive(pt2_path) as archive:
        ir = pt2_ir(archive)
        programs = read_pt2(archive).programs
    if len(ir.modules) != 1:
        raise ArchiveError("the diff compares one exported program; this archive holds "
                           f"{len(ir.modules)}", printable(pt2_path))
    graph = ir.modules[0].methods[0].graph
    ex_ops: dict[Line, Counter] = defaultdict(Counter)
    ex_loops: set[Line] = set()
    ex_conds: set[Line] = set()
    ex_nodes: dict[Line, list[str]] = defaultdict(list)  # the export's nodes at each line, for the views
    for node, _ in graph.walk():
        key = _frame(node.source.stack) if node.source else None
        if key is None:
            continue
        ex_nodes[key].append(f"#{node.id} {node.kind}")
        if node.kind == "higher_order::cond":
            ex_conds.add(key)
        elif node.kind in _LOOPS:
            ex_loops.add(key)
        elif not node.kind.startswith(_IGNORED):
            ex_ops[key][_base(node.kind)] += 1
    result = DiffResult("export", ts_path, pt2_path, kinds={ts_path: ts_side.kind_json()},
                        analysis="ast", analysis_note="torch-free: code/ and debug info against the exported graph")
    result.notes.append("aligned by source lines (yours and torch.nn's); this names what one side fixed, it proves "
                        "neither equivalence nor a difference in results")
    files = {f for f, _ in ex_ops} | {f for f, _ in ex_conds | ex_loops}
    result.findings = _findings(ts_side.program, ex_ops, ex_conds, ex_loops, files, programs[0])
    for finding in result.findings:  # the export's nodes at the finding's lines, shown beside the source
        lines = finding.details.pop("lines", None) or ({_key((finding.file, finding.line))} if finding.file else set())
        finding.details["export_nodes"] = [f"{f}:{n}  {node}" for f, n in sorted(lines)
                                           for node in ex_nodes.get((f, n), [])][:200]
    return result


def _findings(program: Program, ex_ops, ex_conds, ex_loops, files: set[str], exported) -> list[Finding]:
    out: list[Finding] = []
    ts_ops: dict[Line, Counter] = defaultdict(Counter)
    reads_sizes = False
    covered: set[Line] = set()  # lines said by another finding, or calling a submodule: no ops_one_side
    paths: dict[str, str] = {}  # file name -> the path the TorchScript side recorded (tells library code)
    methods: dict[Line, str] = {}  # line -> the TorchScript function holding it
    ex_lines = ex_ops.keys() | ex_conds | ex_loops
    for function in program.functions:
        for item in walk(function.body):
            reads_sizes |= isinstance(item, Op) and item.kind == "aten::size"  # anywhere, torch.nn's code too
            key = _op_line(item, ex_lines) if isinstance(item, Op) else _key(item.loc)
            if key is None or key[0] not in files:
                continue
            paths.setdefault(key[0], item.loc[0])
            methods.setdefault(key, function.qualname)
            if isinstance(item, Op):
                if item.is_call:  # a submodule or method: its ops are at this line in the export
                    covered.add(key)
                elif not item.kind.startswith(_IGNORED):
                    ts_ops[key][item.kind] += 1
            elif isinstance(item, If) and key not in ex_conds and not item.reads_training:
                then, orelse = _lines(item.then), _lines(item.orelse)
                covered |= then | orelse | _lines(item.cond) | {key}
                kept = ("the if side" if then & ex_ops.keys() and not orelse & ex_ops.keys() else
                        "the else side" if orelse & ex_ops.keys() and not then & ex_ops.keys() else None)
                out.append(Finding("specialised_branch", function.qualname, item.loc[0], item.loc[1],
                                   f"`if {item.cond_text}`: the export has no cond here; it decided the condition "
                                   f"for its example inputs" + (f" and kept {kept}" if kept else ""),
                                   code=program.sources.get(item.loc[0], {}).get(item.loc[1]),
                                   details={"lines": {key} | then | orelse}))
            elif isinstance(item, Loop) and key not in ex_loops:
                ratios = [sum(ex_ops[line].values()) // n for line in _lines(item.body)
                          if line in ex_ops and (n := sum(_count(item.body, line).values()))]
                if ratios:
                    covered |= _lines(item.header) | {key}
                    out.append(Finding("unrolled_loop", function.qualname, item.loc[0], item.loc[1],
                                       f"loop `{item.header_text}`: its body is in the export without a loop "
                                       f"({max(ratios)} copies): the trip count was fixed by the example inputs",
                                       code=program.sources.get(item.loc[0], {}).get(item.loc[1]),
                                       details={"lines": {key} | _lines(item.body)}))
    if reads_sizes and not exported.range_constraints:
        out.append(Finding("fixed_shapes", None, None, None,
                           "the scripted model reads tensor sizes; the export has no range_constraints, so every "
                           "input dimension is fixed to the example's (export with torch.export.Dim for dynamic "
                           "ones)"))
    for key in sorted(ts_ops.keys() | ex_ops.keys()):
        only_ts, only_ex = ts_ops[key] - ex_ops[key], ex_ops[key] - ts_ops[key]
        if ts_ops[key] and ex_ops[key] or not (only_ts or only_ex) or key in covered:
            continue  # both sides run ops here (decompositions differ in detail): not reported
        side, ops = ("TorchScript", only_ts) if only_ts else ("export", only_ex)
        out.append(Finding("ops_one_side", methods.get(key), paths.get(key[0], key[0]), key[1],
                           f"ops only in the {side} side: " + ", ".join(f"{k} x{n}" for k, n in sorted(ops.items())),
                           details={"side": side, "ops": dict(ops)}))
    out.sort(key=lambda f: (f.origin != "user", f.package or "", EXPORT_KINDS.index(f.kind), f.file or "",
                            f.line or 0))
    return out


def _op_line(op: Op, ex_lines) -> Line | None:
    """The line an op of the TorchScript side is compared at. A trace records an op at its innermost frame,
    inside torch (``F.dropout``'s body in functional.py); the export records it where model code called the
    torch function it did not enter (``nn.Dropout.forward``'s line): the op's call stack is followed out of
    torch's files to the first line the export has. A line of the user's own code is never passed over."""
    for frame in op.stack:
        key = _key(frame)
        if key in ex_lines:
            return key
        if origin_of(frame[0])[0] == "user":
            break
    return _key(op.loc)


def _lines(items) -> set[Line]:
    return {key for item in walk(items) if isinstance(item, Op) and (key := _key(item.loc))}


def _count(items, line: Line) -> Counter:
    return Counter(item.kind for item in walk(items)
                   if isinstance(item, Op) and _key(item.loc) == line and not item.kind.startswith(_IGNORED))
