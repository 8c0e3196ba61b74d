"""The compact JSON text of the summary's many rows (records, tensors), written from templates.

``json.dumps`` of a dict per row spends most of its time building the dicts and encoding the same keys
10,000 times over. Here each row is one f-string holding the keys, with the values encoded as
``json.dumps(..., ensure_ascii=False)`` encodes them: strings by json's own ``encode_basestring``, exact
ints and lists of exact ints by ``repr`` (what json writes for them), None/True/False as null/true/false.
A row holding anything else (an int subclass, a float, quantization parameters, aliases, a non-string
where a string belongs) is encoded by ``json.dumps`` of the row's dict, so the text is the same either
way; ``tests/test_json_rows.py`` compares the two.
"""

from __future__ import annotations

from json import dumps
from json.encoder import encode_basestring as _text  # json.dumps(ensure_ascii=False)'s own string encoder
from math import prod  # TensorInfo.nbytes of ints, in C
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tsinspect.archive.modules import ModuleInfo
    from tsinspect.archive.reader import Record
    from tsinspect.archive.tensors import TensorInfo


class Encoded(str):
    """JSON text, spliced as it is by :func:`document`."""


def encode(value) -> str:
    """``json.dumps`` with the options of ``text.json_dumps`` (no indent), without its final escaping."""
    return dumps(value, ensure_ascii=False, check_circular=False)


def document(doc: dict) -> str:
    """``encode(doc)``, with the values that are :class:`Encoded` written as they are."""
    return "".join(pieces(doc))


def pieces(doc: dict) -> list[str]:
    """``document(doc)`` in pieces, its Encoded values among them as they are: they are megabytes long, and
    each copy of them costs (a writer writes the pieces one by one)."""
    out = ["{"]
    for key, value in doc.items():
        out += (_text(key), ": ", value if type(value) is Encoded else encode(value), ", ")
    if len(out) == 1:
        return ["{}"]
    out[-1] = "}"
    return out


_JUST_INT = {int}
_FLAGS = {None: "null", True: "true", False: "false"}  # the values a flag is checked to be (by identity)


def record_rows(records: list[Record]) -> Encoded:
    """``encode`` of the summary's "records" list."""
    rows = []
    compressions: dict = {}  # entry.method -> its encoded name (a few methods among thousands of entries)
    for r in records:
        entry = r.entry
        name, size, stored, kind, method = r.name, entry.size, entry.compressed_size, r.kind, entry.method
        if not (type(name) is str and name.isascii() and name.isprintable()):  # printable() gives it back
            name = r.display_name
        compression = compressions.get(method) if type(method) is int else None
        if compression is None:
            compression = entry.method_name
            compression = _text(compression) if isinstance(compression, str) else None
            if type(method) is int and compression is not None:
                compressions[method] = compression
        if type(size) is int and type(stored) is int and isinstance(name, str) and isinstance(kind, str) \
                and compression is not None:
            rows.append(f'{{"name": {_text(name)}, "kind": {_text(kind)}, "size": {size}, '
                        f'"compressed_size": {stored}, "compression": {compression}}}')
        else:
            rows.append(encode({"name": r.display_name, "kind": kind, "size": r.size,
                                "compressed_size": r.compressed_size, "compression": entry.method_name}))
    return Encoded("[" + ", ".join(rows) + "]")


def tensor_rows(tensors: list[TensorInfo], kinds: dict[str, str]) -> Encoded:
    """``encode`` of the summary's "tensors" list: each ``t.to_json(kind=kinds.get(t.name, "attribute"))``."""
    rows = []
    dims: dict = {}  # see _tensor_row
    for t in tensors:
        kind = kinds.get(t.name, "attribute")
        row = _tensor_row(t, kind, dims)
        rows.append(row if row is not None else encode(t.to_json(kind=kind)))
    return Encoded("[" + ", ".join(rows) + "]")


def _tensor_row(t: TensorInfo, kind: str, dims: dict) -> str | None:
    """The row from its template, or None when a value is not of a type the template writes as json does.

    ``dims`` holds the text and element count of each pair of shape and stride lists met (by identity: tensors
    read by ``archive.torchstate`` share them; the lists are alive, and not changed, while the rows are written).
    """
    shape, stride, offset, numel, grad, size = t.shape, t.stride, t.offset, t.storage_numel, t.requires_grad, t.itemsize
    known = dims.get((id(shape), id(stride)))
    if known is None:
        if type(shape) is not list or type(stride) is not list or not set(map(type, shape + stride)) <= _JUST_INT:
            return None
        known = dims[id(shape), id(stride)] = (f'"shape": {shape!r}, "stride": {stride!r}, "offset": ', prod(shape),
                                               shape, stride)
    if (t.qparams is not None or t.aliases or type(offset) is not int or type(numel) is not int
            or type(size) is not int or not (grad is None or grad is True or grad is False)):
        return None
    record, quantization, problem = t.record, t.quantization, t.problem
    try:  # json's encode_basestring raises TypeError on anything but a str
        return (f'{{"name": {_text(t.name)}, "dtype": {_text(t.dtype)}, {known[0]}{offset}, '
                f'"nbytes": {known[1] * size}, "storage": {{"key": '
                f'{_text(t.storage_key)}, "record": {"null" if record is None else _text(record)}, '
                f'"numel": {numel}, "nbytes": {numel * size}}}, "device": {_text(t.device)}, '
                f'"requires_grad": {_FLAGS[grad]}, '
                f'"quantization": {"null" if quantization is None else _text(quantization)}, '
                f'"quantization_params": null, "aliases": [], '
                f'"problem": {"null" if problem is None else _text(problem)}, "kind": {_text(kind)}}}')
    except TypeError:
        return None


def module_tree(top: ModuleInfo) -> Encoded:
    """``encode(top.to_json())``: each module's keys from a template, its children written in place, without
    recursion (a tree 100 modules deep). A module holding a value of a type the template does not write as
    json does (a non-string where a string belongs, a non-bool flag) is written by ``encode`` of its subtree."""
    out: list[str] = []
    types: dict = {}  # type -> its "type" and "short_type" text, id of a methods list -> (it, its text): shared
    work: list = [top]
    while work:
        module = work.pop()
        if type(module) is str:  # what closes a module, or separates two children
            out.append(module)
            continue
        head = _module_head(module, types)
        if head is None:
            out.append(encode(module.to_json()))
            continue
        out.append(head)
        children = module.children
        if not children:
            out.append("]}")
            continue
        work.append("]}")
        for i in range(len(children) - 1, 0, -1):
            work.append(children[i])
            work.append(", ")
        work.append(children[0])
    return Encoded("".join(out))


def _module_head(m: ModuleInfo, types: dict) -> str | None:
    """A module's JSON up to its children's opening bracket, or None (see ``module_tree``)."""
    training, custom, attributes, kind = m.training, m.custom_state, m.attributes, m.type
    parameters, buffers, tensors, methods = m.parameters, m.buffers, m.tensors, m.methods
    if not (training is None or training is True or training is False) or not (custom is True or custom is False) \
            or type(attributes) is not dict or type(m.children) is not list or type(kind) is not str \
            or type(parameters) is not list or type(buffers) is not list or type(tensors) is not list \
            or type(methods) is not list:
        return None
    try:  # json's encode_basestring raises TypeError on anything but a str
        typed = types.get(kind)
        if typed is None:
            from tsinspect.archive.modules import short_type

            typed = types[kind] = f'"type": {_text(kind)}, "short_type": {_text(short_type(kind))}'
        parameters = ", ".join(map(_text, parameters)) if parameters else ""
        buffers = ", ".join(map(_text, buffers)) if buffers else ""
        tensors = ", ".join(map(_text, tensors)) if tensors else ""
        if methods:  # one list for the modules of a class (modules.declared_names): its text written once
            known = types.get(id(methods))
            if known is None:  # (the list kept with its text: its id stays its own)
                known = types[id(methods)] = methods, ", ".join(map(_text, methods))
            methods = known[1]
        else:
            methods = ""
        attrs = ", ".join(f"{_text(key)}: {_text(value)}" for key, value in attributes.items()) if attributes else ""
        return (f'{{"path": {_text(m.path)}, {typed}, "parameters": [{parameters}], "buffers": [{buffers}], '
                f'"tensors": [{tensors}], "attributes": {{{attrs}}}, "methods": [{methods}], '
                f'"training": {_FLAGS[training]}, "custom_state": {_FLAGS[custom]}, "children": [')
    except TypeError:
        return None
