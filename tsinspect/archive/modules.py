"""The module tree of a TorchScript archive, read from ``data.pkl`` with help from the code index.

A scripted module pickles as ``NEWOBJ __torch__.<Class>()`` plus a BUILD state dict of its attributes;
which tensors are parameters and which buffers only the class body in ``code/`` says.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from tsinspect.archive.code import CodeIndex
from tsinspect.archive.pickles import Call, Global, PDict, PList, PTuple
from tsinspect.archive.pickletree import inline, label
from tsinspect.archive.tensors import is_tensor
from tsinspect.archive.text import printable

_MANGLE = re.compile(r"___torch_mangle_\d+\.")


def unmangle(text: str) -> str:
    """``text`` without the ``___torch_mangle_N.`` segments TorchScript gives a second class of one name."""
    return _MANGLE.sub("", text)


def short_type(qualname: str) -> str:
    """``__torch__.torch.nn.modules.linear.___torch_mangle_0.Linear`` -> ``torch.nn.modules.linear.Linear``."""
    name = unmangle(qualname)
    return name[len("__torch__."):] if name.startswith("__torch__.") else name


@dataclass(slots=True)
class ModuleInfo:
    path: str  # "" for the root, "encoder.layers.0" below it
    type: str  # qualified class name as stored (mangling kept)
    parameters: list[str] = field(default_factory=list)  # tensor paths
    buffers: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)  # tensor attributes the class does not declare
    attributes: dict[str, str] = field(default_factory=dict)  # name -> short value text
    methods: list[str] = field(default_factory=list)
    children: list["ModuleInfo"] = field(default_factory=list)
    custom_state: bool = False  # pickled through __getstate__, not an attribute dict
    training: bool | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else "<root>"

    def add_tensor(self, key: str, path: str, parameters: set, buffers: set) -> None:
        """A tensor attribute: a parameter or buffer when its class declares ``key`` as one, else a tensor."""
        (self.parameters if key in parameters else self.buffers if key in buffers else self.tensors).append(path)

    def walk(self):
        """This module and all below it, depth first, without recursion."""
        stack = [self]
        while stack:
            module = stack.pop()
            yield module
            stack.extend(reversed(module.children))

    def to_json(self) -> dict:
        """Nested JSON; built iteratively so deep trees cannot exhaust the stack."""
        out: dict = {}
        work = [(self, out)]
        shorts: dict[str, str] = {}  # type -> short_type(type): thousands of modules share a few types
        while work:
            module, target = work.pop()
            short = shorts.get(module.type)
            if short is None:
                short = shorts[module.type] = short_type(module.type)
            target.update({"path": module.path, "type": module.type, "short_type": short,
                           "parameters": module.parameters, "buffers": module.buffers,
                           "tensors": module.tensors, "attributes": module.attributes, "methods": module.methods,
                           "training": module.training, "custom_state": module.custom_state, "children": []})
            for child in module.children:
                child_out: dict = {}
                target["children"].append(child_out)
                work.append((child, child_out))
        return out


def is_module_object(value: Any) -> bool:
    return (isinstance(value, Call) and value.kind == "new" and isinstance(value.func, Global)
            and value.func.module.startswith("__torch__") and not is_custom_class(value)
            and isinstance(value.args, PTuple) and not value.args.items)


def is_custom_class(value: Any) -> bool:
    """A TorchBind object (``__torch__.torch.classes.<ns>.<Class>``, e.g. quantized packed weights): a C++
    object torch rebuilds from its ``__getstate__`` value, not a module."""
    return (isinstance(value, Call) and isinstance(value.func, Global)
            and value.func.module.startswith("__torch__.torch.classes."))


def _setstate_training_index(cls) -> list[int] | None:
    """The indices ``state[i][j]...`` that a class's ``__setstate__`` assigns ``self.training`` from."""
    method = cls.method("__setstate__") if cls is not None else None
    if method is None or len(method.node.args.args) < 2:
        return None
    state_arg = method.node.args.args[1].arg
    for node in ast.walk(method.node):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr == "training"):
            indices, value = [], node.value
            while isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Constant) \
                    and isinstance(value.slice.value, int):
                indices.append(value.slice.value)
                value = value.value
            if isinstance(value, ast.Name) and value.id == state_arg and indices:
                return indices[::-1]
    return None


def _training_from_state(state: Any, indices: list[int] | None) -> bool | None:
    for i in indices or [None]:
        if i is None or not isinstance(state, (PTuple, PList)) or not 0 <= i < len(state.items):
            return None
        state = state.items[i]
    return state if isinstance(state, bool) else None


# Real module trees are a few levels deep with short names; a hostile data.pkl can nest 20,000 modules
# under one memoized 1000-character key, which would give quadratic paths and JSON too deep to encode.
MAX_DEPTH = 100  # deeper submodules are shown as attributes
MAX_NAME = 1000  # characters of a module or tensor path


def module_tree(root: Any, code: CodeIndex, max_modules: int = 100_000) -> ModuleInfo | None:
    """The tree under the pickled root object, or None when the root is not a TorchScript object."""
    if not is_module_object(root):
        return None
    top = ModuleInfo("", root.func.qualname)
    work: list[tuple[Any, ModuleInfo, int]] = [(root, top, 0)]
    seen = {id(root)}
    count = 0
    declared: dict[str, tuple[set, set]] = {}  # class -> its parameter and buffer names (thousands in some)
    while work and count < max_modules:
        obj, info, depth = work.pop()
        count += 1
        parameters, buffers = declared_names(info, code, declared)
        state = obj.state
        if not isinstance(state, PDict):
            info.custom_state = obj.states != []
            if obj.states:
                info.attributes["<state>"] = inline(state, 120) or label(state)
                info.training = _training_from_state(state, _setstate_training_index(code.classes.get(info.type)))
            continue
        head = info.path + "." if info.path else ""
        for key, value in state.items:
            if not isinstance(key, str):
                continue
            name = key if len(key) <= MAX_NAME and key.isascii() and key.isprintable() else printable(key[:MAX_NAME])
            path = head + name
            if len(path) > MAX_NAME:
                path = path[:MAX_NAME]
            if name == "training" and isinstance(value, bool):
                info.training = value
            elif type(value) is Call and value.kind == "reduce" and is_tensor(value):  # the usual attribute
                info.add_tensor(key, path, parameters, buffers)
            elif is_module_object(value) and id(value) not in seen and depth < MAX_DEPTH:
                seen.add(id(value))
                child = ModuleInfo(path, value.func.qualname)
                info.children.append(child)
                work.append((value, child, depth + 1))
            elif is_tensor(value):
                info.add_tensor(key, path, parameters, buffers)
            elif is_custom_class(value):
                state = value.state if value.states else None
                info.attributes[name] = (f"{short_type(value.func.qualname)} object, state "
                                         f"{inline(state, 100) or label(state)}")
            elif name != "_is_full_backward_hook":
                info.attributes[name] = inline(value, 120) or label(value)
    return top


def declared_names(info: ModuleInfo, code: CodeIndex, declared: dict) -> tuple:
    """The parameter and buffer names ``info``'s class declares (cached in ``declared`` by type); sets
    ``info.methods`` (one list for the modules of a class: nothing changes it)."""
    found = declared.get(info.type)
    if found is None:
        cls = code.classes.get(info.type)
        if cls is None:
            return (), ()
        found = declared[info.type] = (set(cls.parameters), set(cls.buffers)), [m.name for m in cls.methods]
    info.methods = found[1]
    return found[0]


def parameter_kinds(tree: ModuleInfo | None) -> dict[str, str]:
    """Tensor path -> "parameter" / "buffer" / "attribute" for every tensor the module tree holds."""
    kinds: dict[str, str] = {}
    stack = [tree] if tree else []
    while stack:  # tree.walk(), in line
        module = stack.pop()
        if module.parameters:  # most modules hold one or two kinds
            kinds.update(dict.fromkeys(module.parameters, "parameter"))
        if module.buffers:
            kinds.update(dict.fromkeys(module.buffers, "buffer"))
        if module.tensors:
            kinds.update(dict.fromkeys(module.tensors, "attribute"))
        if module.children:
            stack.extend(reversed(module.children))
    return kinds
