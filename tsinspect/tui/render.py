"""Text for the panes, built from the lower layers' result objects.

Everything that comes from an archive is passed through ``printable`` and placed in ``Content``/``Text``
as plain text, never interpolated into markup (a name like ``[red]x`` must show as written).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.text import Text
from textual.content import Content

from tsinspect.archive import records as rk
from tsinspect.archive.modules import ModuleInfo, short_type
from tsinspect.archive.pickletree import children, inline, label
from tsinspect.archive.tensors import TensorInfo, decode_values, tensor_from
from tsinspect.archive.text import counted, human_bytes, printable

PREVIEW_VALUES = 256  # tensor values shown on request
TEXT_CAP = 256 * 1024  # extra files shown as text
HEX_CAP = 4096  # bytes shown as hex

HEAD = "bold $text-accent"
DIM = "$text-muted"
WARN = "$text-warning"
BAD = "$text-error"
GOOD = "$text-success"


def plain(text: str, style: str = "") -> Text:
    """A tree or table label from archive text (escaped, never markup)."""
    return Text(printable(text), style=style, no_wrap=True, end="")


def middle_cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle so both ends stay readable
    (``__torch__/torch/nn/…/___torch_mangle_12.py``)."""
    if len(text) <= width:
        return text
    width = max(width, 5)
    tail = (width - 1) * 3 // 5
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


def shape(dims: list[int]) -> str:
    return "[" + ", ".join(map(str, dims)) + "]"


def lines(*rows: Content | str) -> Content:
    return Content("\n").join(rows)


def field(name: str, value: str | Content, width: int = 14) -> Content:
    body = value if isinstance(value, Content) else Content(printable(value))
    return Content.assemble((f"{name:<{width}}", HEAD), body)


# ----- overview


def overview(loaded) -> Content:
    """The archive at a glance: what the first screen shows."""
    s = loaded.summary
    rows: list[Content | str] = [
        Content.assemble((printable(s.path), "bold"), f"  {human_bytes(s.file_size)}, ", (s.format, GOOD)),
    ]
    if s.note:
        rows.append(field("note", s.note))
    if s.prefix:
        rows.append(field("top folder", s.prefix.rstrip("/")))
    if s.versions:
        rows.append(field("versions", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.versions.items())))
    kinds: dict[str, int] = {}
    for r in s.records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    rows.append(field("records", f"{len(s.records)}: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                                                   for k, n in kinds.items())))
    if s.modules is not None:
        count = sum(1 for _ in s.modules.walk())
        rows.append(field("modules", f"{count}, root {short_type(s.modules.type)}  (m)"))
    if s.tensors:
        dtypes = ", ".join(f"{n} {d}" for d, n in s.dtype_counts().items())
        rows.append(field("tensors", f"{len(s.tensors)}, {human_bytes(s.weight_bytes)} of storage: {dtypes}"))
    if s.constants:
        rows.append(field("constants", f"{len(s.constants)} tensors in constants.pkl"))
    rows += [field(label, text) for label, text in (s.pt2.facts() if s.pt2 else [])]
    if s.traced_inputs:
        rows.append(field("traced with", ", ".join(f"{t.name}: {t.dtype}{shape(t.shape)}" for t in s.traced_inputs)))
    if s.methods:
        names = ", ".join(f"{short_type(m.owner).rsplit('.', 1)[-1]}.{m.name}" if m.owner else m.name
                          for m in s.methods[:8])
        more = f" and {len(s.methods) - 8} more" if len(s.methods) > 8 else ""
        rows.append(field("methods", f"{len(s.methods)}: {names}{more}  (g)"))
    if s.extra_files:
        rows.append(field("extra files", ", ".join(f"{r.display_name[6:]} ({human_bytes(r.size)})"
                                                   for r in s.extra_files[:10])))
    rows.append(field("problems", Content.styled(f"{len(s.problems)}  (s)", WARN) if s.problems
                      else Content.styled("none", GOOD)))
    rows.append(field("safety", safety_line(loaded)))
    rows += ["", Content.styled("Select a record on the left; F1 lists every key.", DIM)]
    return lines(*rows)


def safety_line(loaded) -> Content:
    """The scan's verdict in a few words: it comes after the first screen (tsinspect.tui.state)."""
    scan = loaded.scan
    if scan is None:
        return (Content.styled(printable(loaded.scan_error), BAD) if loaded.scan_error else
                Content.styled("scanning code/ for load-time code... (the IR waits for the verdict)", DIM))
    unsafe = scan.unsafe
    return (Content.styled(f"{counted(len(unsafe), 'unsafe finding')} in code/  (s)", BAD) if unsafe
            else Content.styled(f"nothing unsafe in code/ ({len(scan.findings)} notes)", GOOD))


# ----- records


def record_label(name: str, size: int, width: int = 1000) -> Text:
    """``name  12.0 KiB`` in at most ``width`` cells, the name cut in the middle when needed; in a narrow
    tree (under 30 cells) the name alone: the record's pane says its size."""
    size_text = human_bytes(size) if width >= 30 else ""
    text = plain(middle_cut(name, width - (2 + len(size_text) if size_text else 0)))
    if size_text:
        text.append(f"  {size_text}", style="dim")
    return text


def tensor_label(t: TensorInfo) -> Text:
    text = plain(t.name)
    text.append(f"  {t.dtype}{shape(t.shape)}", style="dim")
    if t.problem:
        text.append("  !", style="bold red")
    return text


def tensor_cells(t: TensorInfo, kind: str) -> tuple[Text, ...]:
    """A row of the tensor table: what tells tensors apart first (the size with its unit), the rest after."""
    return (plain(middle_cut(t.name, 48)), Text(t.dtype), Text(shape(t.shape)),
            Text(human_bytes(t.nbytes), justify="right"), Text(kind), plain(t.device), plain(t.record or "?"),
            plain(t.problem or "", "red"))


def tensor_preview(loaded, t: TensorInfo) -> Content:
    """The first values of a tensor in storage order, reading only the bytes they need."""
    head = field("tensor", Content.assemble((printable(t.name), "bold"), f"  {t.describe()}"))
    extra = [field("stride", shape(t.stride)), field("offset", str(t.offset)),
             field("storage", f"{printable(t.record or '?')}, {t.storage_numel} elements")]
    if t.quantization:
        extra.append(field("quantization", t.quantization))
    if t.aliases:
        extra.append(field("also named", ", ".join(t.aliases[:10])))
    if t.problem:
        return lines(head, *extra, Content.styled(f"not read: {t.problem}", BAD))
    record = loaded.archive.by_name.get(t.record or "")
    if record is None:
        return lines(head, *extra, Content.styled("the storage record is absent", BAD))
    count = min(t.numel, PREVIEW_VALUES)
    contiguous = _contiguous(t)
    with loaded.read_lock:
        data = loaded.archive.members.read_range(record.entry, t.offset * t.itemsize, count * t.itemsize)
    byteorder = str(loaded.summary.versions.get("byteorder", "little"))
    values = decode_values(data, t.dtype, byteorder)
    if values is None:
        return lines(head, *extra, Content.styled(f"{t.dtype} values are not decoded; raw bytes:", DIM),
                     *hexdump(data[:256]))
    note = f"first {len(values)} of {t.numel} values" + ("" if contiguous else ", in storage order (strided view)")
    body = "  ".join(_number(v) for v in values)
    return lines(head, *extra, Content.styled(note, DIM), Content(body))


def _contiguous(t: TensorInfo) -> bool:
    expected = 1
    for size, stride in reversed(list(zip(t.shape, t.stride))):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _number(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def hexdump(data: bytes, width: int = 16) -> list[str]:
    out = []
    for pos in range(0, len(data), width):
        chunk = data[pos:pos + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{pos:08x}  {' '.join(f'{b:02x}' for b in chunk):<{width * 3}} {text}")
    return out


def raw_record(name: str, data: bytes, size: int) -> Content:
    """An extra file or metadata record: as text when it is text, else as hex."""
    text = None
    if b"\0" not in data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if text is not None:
        body = Content(printable(text, keep_lines=True))
        if name.endswith(".json") or name.endswith(".py"):
            from textual.highlight import highlight  # pygments: 16 ms to import, not needed by the first screen

            body = highlight(printable(text, keep_lines=True), path=name)
        cut = [Content.styled(f"... first {len(data)} of {size} bytes", DIM)] if size > len(data) else []
        return lines(body, *cut)
    shown = data[:HEX_CAP]
    cut = f", first {len(shown)} shown" if size > len(shown) else ""
    return lines(Content.styled(f"binary, {size} bytes{cut}", DIM), *hexdump(shown))


# ----- code


class CodeRows(NamedTuple):
    """A code record prepared for the code pane: one styled row per line, and the widest row's cells."""

    rows: list[Content]
    width: int


def code_content(code, mark: int | None = None) -> CodeRows:
    """Highlighted code with each line's number and original file:line in a gutter (from a worker: it steps
    aside while the event loop is busy, tui.priority)."""
    source = printable(code.text, keep_lines=True)
    from textual.highlight import highlight

    from tsinspect.tui.priority import paced

    body = highlight(source, language="python").split("\n", allow_blank=True)
    labels = [f"{_basename(o.file)}:{o.line}" if o and o.file else "" for o in code.origins]
    width = min(32, max(map(len, labels), default=0))
    rows = []
    for number, line in paced(enumerate(body, 1), every=100):
        where = labels[number - 1] if number - 1 < len(labels) else ""
        gutter = Content.assemble((f"{number:>5} ", DIM), (f"{printable(where)[:width]:<{width}}", "$text-primary"),
                                  (" │ ", DIM))
        row = gutter + line
        if number == mark:
            row = row.stylize("on $accent 25%")
        rows.append(row)
    return CodeRows(rows, max((row.cell_length for row in rows), default=0))


def origin_text(origin) -> Content:
    """One line naming where a generated line came from (traced code: the innermost frames)."""
    if origin is None:
        return Content.styled("no original source recorded for this line", DIM)
    parts: list[Content | str | tuple[str, str]] = [("original ", DIM), (printable(origin.where), "bold")]
    if origin.text:
        parts += ["  ", printable(origin.text.strip())[:200]]
    for file, line, function in origin.stack[1:4]:
        parts += [("  ← ", DIM), f"{_basename(file)}:{line} {printable(function)}"]
    return Content.assemble(*parts)


def _basename(path: str | None) -> str:
    return printable((path or "?").replace("\\", "/").rsplit("/", 1)[-1])


# ----- pickles


def pickle_label(edge: str, value: Any, storage_dir: str) -> tuple[Text, bool]:
    """(label, expandable) of a pickle tree node; tensors and small values are one leaf."""
    text = Text(no_wrap=True, end="")
    if edge:
        text.append(printable(edge), style="bold")
        text.append(": ")
    tensor = tensor_from(value)
    if tensor is not None:
        record = f"{storage_dir}/{tensor.storage_key}" if storage_dir else tensor.storage_key
        text.append(f"{tensor.describe()} ", style="green")
        text.append(f"storage {printable(record)}", style="dim")
        return text, False
    kids = children(value)
    flat = inline(value) if len(kids) <= 8 else None
    if flat is not None:
        text.append(flat)
        return text, False
    text.append(label(value))
    return text, bool(kids)


def pickle_storage_dir(name: str) -> str:
    return rk.STORAGE_DIRS.get(name, "")


# ----- modules


def module_label(module: ModuleInfo) -> Text:
    text = plain(module.name, "bold")
    text.append("  " + printable(short_type(module.type)), style="dim")
    count = len(module.parameters) + len(module.buffers)
    if count:
        text.append(f"  {count} tensors", style="green")
    return text


def module_detail(module: ModuleInfo, loaded) -> Content:
    tensors = loaded.tensors_by_name
    cls = loaded.summary.code.classes.get(module.type)
    rows: list[Content | str] = [
        field("module", Content.styled(printable(module.path or "<root>"), "bold")),
        field("type", printable(short_type(module.type))),
        field("class", printable(module.type) + (f"  ({printable(cls.file)}:{cls.line}, c)" if cls else "")),
    ]
    if module.training is not None:
        rows.append(field("training", str(module.training)))
    for title, names in (("parameters", module.parameters), ("buffers", module.buffers),
                         ("tensor attrs", module.tensors)):
        if names:
            rows.append(Content.styled(f"{title} ({len(names)})", HEAD))
            for name in names:
                t = tensors.get(name)
                what = f"{t.dtype}{shape(t.shape)}  {human_bytes(t.nbytes)}" if t else "?"
                rows.append(Content.assemble("  ", (printable(name.rsplit('.', 1)[-1]), "bold"), f"  {what}"))
    if module.attributes:
        rows.append(Content.styled(f"attributes ({len(module.attributes)})", HEAD))
        for name, value in module.attributes.items():
            rows.append(Content.assemble("  ", (printable(name), "bold"), " = ", printable(value)))
    if module.methods:
        rows.append(Content.styled(f"methods ({len(module.methods)})", HEAD))
        for name in module.methods:
            where = cls.method(name) if cls else None
            rows.append(Content.assemble("  ", (printable(name), GOOD),
                                         (f"  {printable(where.file)}:{where.line}" if where else "", DIM)))
    if module.custom_state:
        rows.append(Content.styled("pickled through __getstate__: its state is shown as <state>", DIM))
    if module.children:
        rows.append(field("submodules", ", ".join(printable(c.name) for c in module.children[:20])))
    return lines(*rows)
