"""An exported program's graph (``models/<name>.json``) as tsinspect IR, without torch: the JSON is data.

Nodes keep their target as the kind (``aten::linear.default``), tensor arguments as inputs, other arguments
as attributes, the user's line from ``stack_trace`` and the module path from ``nn_module_stack``.
Higher-order ops (``higher_order::cond``, ``map_impl``, ``while_loop``) hold each graph argument as a block,
as ``prim::If`` holds its branches, so every front end shows them nested.
"""

from __future__ import annotations

from tsinspect.archive.pt2 import (MAX_DEPTH, MAX_NODES, GraphTooLarge, Pt2Program, arg_name, as_dict, as_list,
                                   as_text, union_member, module_path, source_of, subgraphs, sym_text, target_kind,
                                   type_text)
from tsinspect.archive.text import printable
from tsinspect.ir.model import IR, Block, Graph, Method, Module, Node, Source, Value

_SYM_TYPES = {"as_sym_int": "SymInt", "as_sym_bool": "SymBool", "as_sym_float": "SymFloat"}
_NAMED_TAGS = ("as_tensor", "as_sym_int", "as_sym_bool", "as_sym_float", "as_custom_obj", "as_optional_tensor")


def program_ir(program: Pt2Program) -> IR:
    """One module (the program), one method (``forward``) holding the graph; ``load`` is ``pt2``."""
    graph = program_graph(program)
    args = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    method = Method("forward", f"forward({args})", graph)
    return IR("pt2", [Module("", f"ExportedProgram {program.name}", [method])],
              torch_version=program.torch_version,
              notes=[f"read from {program.record} without torch (schema {program.schema_text})"])


def program_graph(program: Pt2Program) -> Graph:
    top = program.graph
    metas = [as_dict(top.get("tensor_values"))]
    kinds = {e.name: e.kind for e in program.inputs}
    inputs = [_value(arg_name(a), metas, kinds.get(arg_name(a))) for a in as_list(top.get("inputs"))]
    graph = Graph(inputs, _names(as_list(top.get("outputs"))))
    counter = 0
    # (remaining serialized nodes, destination list, depth, tensor_values in scope)
    todo: list[tuple[list, list, int, list]] = [(list(reversed(as_list(top.get("nodes")))), graph.nodes, 0, metas)]
    while todo:
        items, dest, depth, scope = todo[-1]
        if not items:
            todo.pop()
            continue
        item = items.pop()
        if not isinstance(item, dict):
            continue
        counter += 1
        if counter > MAX_NODES:
            raise GraphTooLarge(f"more than {MAX_NODES} nodes")
        node = _node(item, counter - 1, scope)
        dest.append(node)
        pending = []
        for name, sub in subgraphs(item):
            if depth + 1 > MAX_DEPTH:
                raise GraphTooLarge(f"subgraphs nested deeper than {MAX_DEPTH}")
            inner = scope + [as_dict(sub.get("tensor_values"))]
            block = Block([_value(arg_name(a), inner) for a in as_list(sub.get("inputs"))],
                          _names(as_list(sub.get("outputs"))))
            node.attributes.setdefault("graphs", []).append(name)
            node.blocks.append(block)
            pending.append((list(reversed(as_list(sub.get("nodes")))), block.nodes, depth + 1, inner))
        todo.extend(reversed(pending))  # the first subgraph's nodes next: ids in walk_nodes pre-order
    return graph


def _value(name: str, scopes: list[dict], kind: str | None = None) -> Value:
    for metas in reversed(scopes):
        if name in metas:
            text = type_text(metas[name])
            return Value(name, f"{text} {kind}" if kind and kind != "user_input" else text)
    return Value(name, kind or "")


def _names(args: list) -> list[str]:
    out = []
    for arg in args:
        tag, body = union_member(arg)
        if tag in ("as_tensors", "as_sym_ints", "as_optional_tensors"):
            out += [arg_name(b) for b in as_list(body)]
        else:
            out.append(arg_name(arg))
    return out


def _node(item: dict, node_id: int, scopes: list[dict]) -> Node:
    metadata = as_dict(item.get("metadata"))
    inputs: list[str] = []
    attributes: dict = {}
    for position, named in enumerate(as_list(item.get("inputs"))):
        named = as_dict(named)
        key = as_text(named.get("name")) or f"arg{position}"
        tag, body = union_member(named.get("arg"))
        if tag in _NAMED_TAGS:
            if tag == "as_optional_tensor" and union_member(body)[0] == "as_none":
                attributes[key] = None
            elif isinstance(body, dict) and isinstance(body.get("name"), str):
                inputs.append(printable(body["name"]))
            else:
                attributes[key] = sym_text(body) if tag == "as_sym_int" else _plain(body)
        elif tag in ("as_tensors", "as_optional_tensors", "as_sym_ints"):
            items = as_list(body)
            names = [arg_name(b) for b in items]
            named = [isinstance(as_dict(b).get("name"), str) or union_member(b)[0] in ("as_name", "as_tensor")
                     for b in items]  # TensorArgument {"name"}, SymIntArgument/OptionalTensor unions
            if all(named) and all(n not in ("None", "?") for n in names):
                inputs += names
            else:  # constants among them (a view's [s0, 4, 8]): one attribute, values named with %
                attributes[key] = [None if n == "None" else f"%{n}" if ok else _plain(union_member(b)[1])
                                   for n, ok, b in zip(names, named, items)]
        elif tag == "as_graph":
            continue  # a block of the node
        else:
            attributes[key] = _plain(body)
    outputs = []
    for out in as_list(item.get("outputs")):
        for name in _names([out]):
            if name != "None":
                value = _value(name, scopes)
                value.type = value.type or _SYM_TYPES.get(union_member(out)[0], "")  # a SymInt has no tensor meta
                outputs.append(value)
    file, line, stack = source_of(metadata)
    source = Source(file=file, line=line, stack=stack) if file or stack else None
    return Node(node_id, target_kind(as_text(item.get("target"))), inputs, outputs, attributes, [], source,
                module_path(metadata))


def _plain(value):
    """A JSON argument value shown as an attribute (strings escaped, size-capped)."""
    if isinstance(value, str):
        return printable(value)[:200]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, list) and len(value) <= 64 and all(isinstance(v, (int, float, bool)) for v in value):
        return value
    return printable(str(value))[:200]


def pt2_ir(archive) -> IR:
    """Every exported program of a pt2 archive as one module each (``path`` = the program's name)."""
    from tsinspect.archive.problems import ArchiveError
    from tsinspect.archive.pt2 import read_pt2

    contents = read_pt2(archive)
    if not contents.programs:
        raise ArchiveError("no exported program (models/<name>.json) could be read", printable(archive.path))
    modules, notes = [], []
    for program in contents.programs:
        try:
            one = program_ir(program)
        except GraphTooLarge as exc:
            raise ArchiveError(str(exc), printable(program.record)) from None
        module = one.modules[0]
        module.path = program.name
        modules.append(module)
        notes += one.notes
    if contents.native:
        notes.append(f"{len(contents.native)} AOTInductor shared libraries (native code) are not shown, never loaded")
    return IR("pt2", modules, torch_version=contents.programs[0].torch_version, notes=notes)
