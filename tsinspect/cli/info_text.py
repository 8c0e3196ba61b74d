"""Text rendering of ``info``: the ArchiveSummary, short on big models (repeated modules, tensors and
methods grouped; ``--all`` shows every one)."""

from __future__ import annotations

import re
from collections import Counter

from tsinspect.archive.modules import short_type
from tsinspect.archive.text import counted, human_bytes, printable
from tsinspect.cli.style import Style


def info_lines(s, style: Style, show_all: bool = False, tensor_limit: int = 20):
    """Text rendering of an ArchiveSummary."""

    def head(title: str) -> str:
        return style(f"{title:<14}", "bold")

    yield (f"{style(printable(s.path), 'bold', 'cyan')}  {human_bytes(s.file_size)}, "
           f"{style(s.format, 'green')}" + (f", top folder {printable(s.prefix)}" if s.prefix else ""))
    if s.note:
        yield f"{head('note')}{s.note}"
    if s.versions:
        yield head("versions") + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.versions.items())
    kinds: dict[str, int] = {}
    for r in s.records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    if s.records:
        yield head("records") + f"{len(s.records)}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
    if s.made_by is not None:
        yield head("made by") + s.made_by.describe()
    if s.modules is not None:
        yield head("modules") + counted(sum(1 for _ in s.modules.walk()), "module")
        yield from _limited(module_lines(s.modules, style, show_all), None if show_all else MODULE_LINES, style)
    if s.tensors:
        yield (head("tensors") + f"{len(s.tensors)}, {human_bytes(s.weight_bytes)} of storage: "
               + ", ".join(f"{n} {d}" for d, n in s.dtype_counts().items()))
        groups = [(t.name, [t]) for t in s.tensors] if show_all else tensor_groups(s.tensors)
        shown = groups if show_all else groups[:tensor_limit]
        width = min(48, max(len(name) for name, _ in shown))
        for name, group in shown:
            t = group[0]
            kind = s.tensor_kinds.get(t.name, "")
            note = style(f"  ! {t.problem}", "red") if t.problem else ""
            times = f" x{len(group)}" if len(group) > 1 else ""
            yield (f"  {printable(name):<{width}}  {t.dtype:<9} {_shape(t.shape):<16} "
                   f"{human_bytes(t.nbytes):>10}{times}  {style(kind, 'dim')}{note}")
        if len(groups) > len(shown):
            rest = sum(len(g) for _, g in groups[len(shown):])
            yield style(f"  ... {counted(rest, 'more tensor')} (--all)", "dim")
    if s.constants:
        yield head("constants") + ", ".join(f"{t.name} {t.dtype}{_shape(t.shape)}" for t in s.constants[:20]) + (
            " ..." if len(s.constants) > 20 else "")
    if s.pt2 is not None:
        yield from pt2_lines(s.pt2, style, head, show_all)
    if s.traced_inputs:
        yield head("traced with") + ", ".join(f"{t.name}: {t.dtype}{_shape(t.shape)}" for t in s.traced_inputs)
    if s.methods:
        yield head("methods") + counted(len(s.methods), "method")
        groups: dict[tuple, list] = {}
        for m in s.methods:  # one line per method of a class, however many mangled copies of the class
            groups.setdefault((m.owner if show_all else short_type(m.owner or ""), m.name), []).append(m)
        lines = (f"  {printable(short_type(m.owner) + '.' if m.owner else '')}{style(printable(m.name), 'green')}"
                 f"  {style(f'{printable(m.file)}:{m.line}', 'dim')}"
                 + style(f" (and {counted(len(copies) - 1, 'copy', 'copies')} of the class)" if len(copies) > 1
                         else "", "dim")
                 for copies in groups.values() for m in copies[:1])
        yield from _limited(lines, None if show_all else METHOD_LINES, style)
    if s.extra_files:
        yield head("extra files") + ", ".join(f"{r.display_name[6:]} ({human_bytes(r.size)})" for r in s.extra_files)
    yield head("problems") + (style(f"{len(s.problems)} (see below)", "yellow") if s.problems else "none")


MODULE_LINES, METHOD_LINES = 60, 30  # without --all; each module's repeated children are grouped too


def _limited(lines, limit: int | None, style: Style):
    for n, line in enumerate(lines):
        if limit is not None and n == limit:
            rest = 1 + sum(1 for _ in lines)
            yield style(f"  ... {counted(rest, 'more line')} (--all)", "dim")
            return
        yield line


def module_lines(root, style: Style, show_all: bool = False):
    """The module tree, one line per module; without ``show_all``, a run of sibling modules with the same
    structure (``layers.0`` ... ``layers.23``) is one line and only the first of them is expanded."""
    signatures = _signatures(root)
    stack = [(root, 0, None)]
    while stack:
        module, depth, names = stack.pop()
        count = len(module.parameters) + len(module.buffers)
        label = style(printable(module.name if names is None else _names(names)), "cyan")
        times = f" x{len(names)}" if names else ""
        tensors = f"  {counted(count, 'tensor')}{' each' if names else ''}" if count else ""
        methods = f"  [{', '.join(module.methods)}]" if module.methods else ""
        yield f"  {'  ' * depth}{label}  {printable(short_type(module.type))}{times}{tensors}{style(methods, 'dim')}"
        groups: list[list] = []
        for child in module.children:
            if not show_all and groups and signatures[id(groups[-1][0])] == signatures[id(child)]:
                groups[-1].append(child)
            else:
                groups.append([child])
        for group in reversed(groups):
            stack.append((group[0], depth + 1, [m.name for m in group] if len(group) > 1 else None))


_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")  # a numeric path component: layers.3.linear1.weight


def tensor_groups(tensors) -> list[tuple[str, list]]:
    """Tensors that differ only in the numbers of their paths and share dtype, shape and problem, as
    ``(encoder.layers.0-23.linear1.weight, [24 tensors])``, in the order of the first of each group."""
    groups: dict[tuple, list] = {}
    for t in tensors:
        key = (_INDEX.sub("*", t.name), t.dtype, tuple(t.shape), t.problem)
        groups.setdefault(key, []).append(t)
    out = []
    for (pattern, *_), group in groups.items():
        if len(group) == 1:
            out.append((group[0].name, group))
            continue
        numbers = [[int(n) for n in _INDEX.findall(t.name)] for t in group]
        if len(numbers[0]) == 1:  # one varying index: show its range
            first, last = numbers[0][0], numbers[-1][0]
            label = _INDEX.sub(f"{first}-{last}" if [n[0] for n in numbers] == list(range(first, last + 1))
                               else "*", pattern.replace("*", "0", 1), count=1)
        else:
            label = pattern
        out.append((label, group))
    return out


def _signatures(root) -> dict[int, tuple]:
    """id(module) -> a hashable summary of its structure (type, tensors, methods, children's), bottom up."""

    order = list(root.walk())
    ids: dict[tuple, int] = {}  # structure -> small int, so signatures stay small however deep the tree
    out: dict[int, tuple] = {}
    for module in reversed(order):  # children before parents
        key = (short_type(module.type), len(module.parameters) + len(module.buffers), tuple(module.methods),
               tuple(ids[out[id(c)]] for c in module.children))
        ids.setdefault(key, len(ids))
        out[id(module)] = key
    return out


def _names(names: list[str]) -> str:
    if all(n.isdigit() for n in names):
        numbers = [int(n) for n in names]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ... {names[-1]}"


def pt2_lines(contents, style: Style, head, show_all: bool = False):
    """The exported programs of a pt2 archive: versions, signature, dynamic dimensions, payloads. Inputs
    bound to weights are counted (they are the tensors above) unless ``show_all``."""
    for p in contents.programs:
        yield (head("program") + style(printable(p.name), "green") + f"  schema {p.schema_text}, torch "
               f"{printable(p.torch_version or '?')}, {p.node_count} nodes" + (f", {', '.join(p.verifiers)}"
                                                                                if p.verifiers else ""))
        bound_kinds = ("parameter", "buffer", "buffer (not persistent)", "constant")
        held = Counter(e.kind for e in p.inputs if e.kind in bound_kinds)
        if held and not show_all:
            text = ", ".join(f"{n} {k}" if n == 1 else f"{n} {k.replace('buffer', 'buffers', 1)}" if "buffer" in k
                             else f"{n} {k}s" for k, n in held.items())
            yield "  in   " + style(text + " (--all lists them)", "dim")
        for e in p.inputs:
            if e.kind in bound_kinds and not show_all:
                continue
            bound = f" {printable(e.target)}" if e.target else ""
            yield f"  in   {printable(e.name)}: {e.type or '?'}  {style(e.kind + bound, 'dim')}"
        for e in p.outputs:
            bound = f" {printable(e.target)}" if e.target else ""
            yield f"  out  {printable(e.name)}: {e.type or '?'}  {style(e.kind + bound, 'dim')}"
        if p.range_constraints:
            yield head("  dynamic") + ", ".join(f"{printable(k)} in [{lo}, {'inf' if hi is None else hi}]"
                                                 for k, (lo, hi) in p.range_constraints.items())
        else:
            yield head("  dynamic") + "none: every shape is fixed"
        pickled = [t for t in p.weights + p.constants if t.pickled]
        if pickled:
            yield head("  pickled") + ", ".join(f"{printable(t.name)} ({t.record})" for t in pickled[:10])
        if p.sample_inputs:
            yield head("  sample in") + p.sample_inputs
        if p.unknown_fields:
            yield head("  not read") + style(", ".join(p.unknown_fields[:10]), "yellow")
    if contents.aoti:
        yield (head("aotinductor") + f"{len(contents.aoti)} records, " +
               style(f"{len(contents.native)} shared libraries (native code, never loaded)", "red"))


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
