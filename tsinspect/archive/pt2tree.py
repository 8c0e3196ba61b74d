"""An exported program regrouped for browsing: the module tree rebuilt from the nodes' ``nn_module_stack``,
and which input dimensions are symbolic. Torch-free, from a ``Pt2Program`` (tsinspect.archive.pt2).

Node ids are positions in ``walk_nodes`` pre-order (a node, then its subgraphs' nodes, first subgraph
first), the ids tsinspect.ir.pt2graph gives the same nodes, so a view can jump from a module to its nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tsinspect.archive.pt2 import (DTYPES, EMPTY_STACK, GraphTooLarge, Pt2Program, Pt2Tensor, arg_name, as_dict,
                                   as_list, as_text, source_of, target_kind, tensor_meta, union_member, walk_nodes)
from tsinspect.archive.text import printable


@dataclass
class Pt2Node:
    id: int
    kind: str  # "aten::linear.default"
    name: str  # the node's (or its first output's) name
    depth: int  # 0 in the top graph, 1 inside a cond branch, ...
    file: str | None
    line: int | None
    stack: str  # the raw nn_module_stack paths, outermost first: "sub > sub.lin"


@dataclass
class Pt2Module:
    path: str  # "" for the root, "sub.lin"
    type: str  # "torch.nn.modules.linear.Linear"
    children: list["Pt2Module"] = field(default_factory=list)
    nodes: list[Pt2Node] = field(default_factory=list)  # nodes whose innermost module this is
    tensors: list[Pt2Tensor] = field(default_factory=list)  # its own parameters and buffers (FQN prefix)
    calls: int = 0  # nn_module_stack entries naming it (one per node): 0 when only known from its tensors
    cut: int = 0  # on the root: module paths cut to the caps below (a hostile nn_module_stack)

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else "(root)"

    def walk(self):
        todo = [self]
        while todo:
            module = todo.pop()
            yield module
            todo.extend(reversed(module.children))

    def total_nodes(self) -> int:
        return sum(len(m.nodes) for m in self.walk())


def stack_entries(text) -> list[tuple[str, str]]:
    """(path, type) of each ``key,path,type`` entry of a node's ``nn_module_stack``, outermost first. A path
    may hold commas (``L['self'].layers[0]`` in older torch): the key is before the first, the type after
    the last. torch's placeholder for nodes its passes added (``EMPTY_STACK``) is no module."""
    if not isinstance(text, str) or not text:
        return []
    out = []
    for entry in text.split(";"):
        parts = entry.split(",")
        if len(parts) >= 3 and parts[1] != EMPTY_STACK:
            out.append((printable(",".join(parts[1:-1])), printable(parts[-1])))
    return out


def _node_name(node: dict) -> str:
    """Its ``name`` (schema 8.x), else its first output's."""
    name = as_text(node.get("name"))
    outputs = as_list(node.get("outputs"))
    if name or not outputs:
        return name or "?"
    tag, body = union_member(outputs[0])
    if tag in ("as_tensors", "as_sym_ints", "as_optional_tensors") and as_list(body):
        return arg_name(as_list(body)[0])
    return arg_name(outputs[0])


def program_nodes(program: Pt2Program) -> list[Pt2Node]:
    """Every node, nested ones included, with its source line and module stack; GraphTooLarge past the caps."""
    return [node for node, _ in _walk(program)]


def _walk(program: Pt2Program):
    """(Pt2Node, its stack's (plain path, type) entries) per node. Nodes share a handful of distinct stack
    traces and module stacks: each distinct text is parsed once."""
    sources: dict = {}
    stacks: dict = {}
    for index, (node, depth) in enumerate(walk_nodes(program.graph)):
        metadata = as_dict(node.get("metadata"))
        trace, stack_text = metadata.get("stack_trace"), metadata.get("nn_module_stack")
        key = trace if isinstance(trace, str) else None
        if key not in sources:
            sources[key] = source_of({"stack_trace": trace})[:2]
        file, line = sources[key]
        key = stack_text if isinstance(stack_text, str) else None
        if key not in stacks:
            entries = [(_plain_path(path), type_) for path, type_ in stack_entries(stack_text)]
            stacks[key] = (entries, " > ".join(path for path, _ in entries if path))
        entries, shown = stacks[key]
        yield Pt2Node(index, target_kind(as_text(node.get("target"))), _node_name(node), depth, file, line,
                      shown), entries


MAX_MODULE_DEPTH = 64  # path components kept (torch.nn models nest a dozen deep)
MAX_PATH = 4096  # characters of a module path kept
MAX_MODULES = 100_000  # past this, nodes and tensors go to the deepest module that exists


def module_tree(program: Pt2Program) -> Pt2Module:
    """The modules the nodes ran in (their ``nn_module_stack``) plus those the weights name, as a tree; each
    node goes to its innermost module, each parameter/buffer to the module of its FQN."""
    root = Pt2Module("", "")
    by_path = {"": root}

    def get(path: str) -> Pt2Module:
        """The module at ``path``, made with its missing ancestors; bounded (a hostile stack may name a path of
        millions of levels: kept whole, its prefixes alone would take memory quadratic in its length)."""
        parts = path.split(".")
        if len(parts) > MAX_MODULE_DEPTH or len(path) > MAX_PATH:
            root.cut += 1
            path = ".".join(parts[:MAX_MODULE_DEPTH])[:MAX_PATH]
        missing = []
        while path not in by_path:
            missing.append(path)
            path = path.rsplit(".", 1)[0] if "." in path else ""
        module = by_path[path]
        for path in reversed(missing):
            if len(by_path) >= MAX_MODULES:
                root.cut += 1
                break
            child = by_path[path] = Pt2Module(path, "")
            module.children.append(child)
            module = child
        return module

    try:
        walked = list(_walk(program))
    except GraphTooLarge:
        walked = []
    for node, entries in walked:
        module = root
        for path, type_ in entries:
            module = get(path)
            module.type = module.type or type_
            module.calls += 1
        module.nodes.append(node)
    for tensor in program_tensors(program):
        owner = tensor.name.rsplit(".", 1)[0] if "." in tensor.name else ""
        get(owner).tensors.append(tensor)
    return root


def program_tensors(program: Pt2Program) -> list[Pt2Tensor]:
    """Every parameter, buffer and constant by FQN: the payloads the configs describe, and for the signature's
    targets without one (the early layouts keep them all in one pickled torch.save) a tensor made from the
    graph's tensor_values, its record that pickle."""
    named = [t for t in program.weights + program.constants if not t.name.startswith("(")]
    blobs = {t.kind: t.record for t in program.weights + program.constants if t.name.startswith("(")}
    have = {t.name for t in named}
    metas = as_dict(program.graph.get("tensor_values"))
    for entry in program.inputs:
        if entry.kind.split(" ")[0] not in ("parameter", "buffer", "constant") or not entry.target \
                or entry.target in have or entry.name not in metas:
            continue
        dtype, shape, stride, offset, grad, device = tensor_meta(metas[entry.name])
        itemsize = next((size for name, size in DTYPES.values() if name == dtype), 0)
        nbytes = itemsize
        for n in shape:
            nbytes = nbytes * n if isinstance(n, int) else 0
        record = blobs.get("constants" if entry.kind == "constant" else "weights")
        named.append(Pt2Tensor(entry.target, entry.kind.split(" ")[0], dtype, shape, stride, offset, grad, device,
                               record, nbytes, pickled=record is not None))
        have.add(entry.target)
    return named


_INDEX = re.compile(r"\[(\d+)\]")


def _plain_path(path: str) -> str:
    """``L['self'].layers[0].attn`` (older torch) -> ``layers.0.attn``; ``layers.0.attn`` as it is."""
    if path.startswith("L['self']"):
        path = path[len("L['self']"):].lstrip(".")
    return _INDEX.sub(r".\1", path).replace("..", ".").strip(".")


@dataclass
class SymbolicDim:
    input: str  # the user input's graph name
    dim: int
    size: str  # "s77", "2*s0"


def symbolic_dims(program: Pt2Program) -> list[SymbolicDim]:
    """The user inputs' dimensions that are symbols or expressions (the dynamic ones), in input order."""
    metas = as_dict(program.graph.get("tensor_values"))
    out = []
    for entry in program.inputs:
        if entry.kind != "user_input" or entry.name not in metas:
            continue
        _, shape, *_ = tensor_meta(metas[entry.name])
        out += [SymbolicDim(entry.name, i, str(s)) for i, s in enumerate(shape) if not isinstance(s, int)]
    return out


def symbol_uses(dims: list[SymbolicDim], symbol: str) -> list[SymbolicDim]:
    """The dims whose size mentions ``symbol`` as a whole word (``s7`` is not in ``s77``)."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(symbol)}(?![A-Za-z0-9_])")
    return [d for d in dims if word.search(d.size)]
