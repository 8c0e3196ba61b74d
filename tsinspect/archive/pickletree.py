"""Views of a walked pickle: node labels and children (for trees), indented text, and JSON.

All traversals are iterative and bounded: depth, items per container, lines, string lengths and the JSON's
values are capped; shared values (containers, and in JSON long strings, the memo's cheapest amplifier) are
shown once with an anchor (``&3``, JSON ``"$id"``) and referenced after (``*3``, ``{"$ref": 3}``), so cycles
terminate and output grows with the pickle, not with what its references expand to. A ``summarize`` hook
lets a caller show known shapes (tensors) as one compact leaf; a shared tensor is summarized once too.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from tsinspect.archive.pickles import Build, Call, Global, Node, Opaque, PDict, PersistentRef, PList, PSet, PTuple
from tsinspect.archive.text import printable
from tsinspect.collector import paused

# summarize(value) -> (one-line text, JSON value) for values it recognises, else None.
Summarizer = Callable[[Any], "tuple[str, Any] | None"]

MAX_DEPTH = 200
MAX_ITEMS = 1000
MAX_STR = 200
MAX_JSON_STR = 4096  # chars of one string in JSON; longer ones become {"$str": head, "length": n}
MAX_JSON_VALUES = 1_000_000  # values in one JSON tree, then {"$truncated": ...}


def scalar_text(value: Any, max_chars: int = MAX_STR) -> str:
    """Printable, shortened repr of a plain value."""
    if isinstance(value, str):
        text = printable(repr(value if len(value) <= max_chars else value[:max_chars]))
        return text if len(value) <= max_chars else f"{text}... ({len(value)} chars)"
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:max_chars // 2]))
        return text if len(value) <= max_chars // 2 else f"{text}... ({len(value)} bytes)"
    return printable(repr(value))


def is_container(value: Any) -> bool:
    return isinstance(value, Node) and not isinstance(value, Opaque)


def children(value: Any) -> list[tuple[str, Any]]:
    """(edge label, child) pairs of a node, in pickle order."""
    if isinstance(value, (PList, PTuple, PSet)):
        return [(f"[{i}]", item) for i, item in enumerate(value.items)]
    if isinstance(value, PDict):
        return [(key_text(k), v) for k, v in value.items]
    if isinstance(value, Call):
        if _is_object(value):
            state = value.state
            if isinstance(state, PDict) and len(value.states) == 1:
                return [(f".{key_text(k)}", v) for k, v in state.items]
            return [(f"state[{i}]" if len(value.states) > 1 else "state", s) for i, s in enumerate(value.states)]
        out = [(f"arg[{i}]", a) for i, a in enumerate(value.arg_list)]
        if value.kwargs is not None:
            out.append(("kwargs", value.kwargs))
        out += [(f"state[{i}]" if len(value.states) > 1 else "state", s) for i, s in enumerate(value.states)]
        if not isinstance(value.func, Global):
            out.insert(0, ("callable", value.func))
        return out
    if isinstance(value, Build):
        return [("object", value.obj), ("state", value.state)]
    if isinstance(value, PersistentRef):
        return [("id", value.pid)]
    return []


def child_values(value: Any) -> list:
    """The children of :func:`children` in the same order, without their edge labels (cheaper to get)."""
    if isinstance(value, (PList, PTuple, PSet)):
        return value.items
    if isinstance(value, PDict):
        return [v for _, v in value.items]
    if isinstance(value, Call):
        if _is_object(value):
            state = value.state
            if isinstance(state, PDict) and len(value.states) == 1:
                return [v for _, v in state.items]
            return value.states
        out = [] if isinstance(value.func, Global) else [value.func]
        out += value.arg_list
        if value.kwargs is not None:
            out.append(value.kwargs)
        return out + value.states
    if isinstance(value, Build):
        return [value.obj, value.state]
    if isinstance(value, PersistentRef):
        return [value.pid]
    return []


def key_text(key: Any) -> str:
    return printable(key) if isinstance(key, str) else inline(key) or type(key).__name__


def _is_object(call: Call) -> bool:
    """NEWOBJ with no arguments: an instance whose content is its BUILD state (TorchScript modules)."""
    return call.kind == "new" and isinstance(call.args, PTuple) and not call.args.items


def label(value: Any) -> str:
    """One-line head of a node (without its children)."""
    if isinstance(value, Global):
        return printable(value.qualname)
    if isinstance(value, Opaque):
        return f"<{value.what}>"
    if isinstance(value, PList):
        return f"list ({len(value.items)})"
    if isinstance(value, PTuple):
        return f"tuple ({len(value.items)})"
    if isinstance(value, PSet):
        return f"{'frozenset' if value.frozen else 'set'} ({len(value.items)})"
    if isinstance(value, PDict):
        return f"dict ({len(value.items)})"
    if isinstance(value, Call):
        name = printable(value.func_name)
        return f"{name} object" if _is_object(value) else f"{name}(...)"
    if isinstance(value, Build):
        return "BUILD"
    if isinstance(value, PersistentRef):
        return f"persistent {inline(value.pid) or ''}".rstrip()
    return scalar_text(value)


MAX_INLINE_DEPTH = 8


def inline(value: Any, budget: int = 100, _depth: int = 0) -> str | None:
    """The whole value on one line if it is small and flat enough, else None."""
    if _depth > MAX_INLINE_DEPTH:  # persistent ids inside persistent ids: not flat, and would recurse
        return None
    if not is_container(value):
        text = label(value)
        return text if len(text) <= budget else None
    if isinstance(value, (PList, PTuple, PSet)):
        parts = []
        for item in value.items:
            if is_container(item) and not isinstance(item, PersistentRef):
                return None
            text = inline(item, budget, _depth + 1)
            if text is None:
                return None
            parts.append(text)
            if sum(map(len, parts)) + 2 * len(parts) > budget:
                return None
        body = ", ".join(parts)
        if isinstance(value, PList):
            return f"[{body}]"
        if isinstance(value, PSet):
            return f"{{{body}}}"
        return f"({body},)" if len(parts) == 1 else f"({body})"
    if isinstance(value, PersistentRef):
        pid = inline(value.pid, budget, _depth + 1)
        return None if pid is None else f"persistent{pid}"
    if isinstance(value, Call) and not value.states and value.kwargs is None and isinstance(value.func, Global):
        args = inline(PTuple(value.arg_list), budget, _depth + 1)
        return None if args is None else f"{printable(value.func_name)}{args}"
    if isinstance(value, PDict) and not value.items:
        return "{}"
    return None


def shared_nodes(root: Any, limit: int = 5_000_000, long_strings: int | None = None) -> set[int]:
    """ids of container nodes reachable more than once (memo references and cycles), and with
    ``long_strings``, of strings longer than that reachable more than once."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    visits = 0
    while stack and visits < limit:
        value = stack.pop()
        visits += 1
        if long_strings is not None and isinstance(value, str) and len(value) > long_strings:
            (shared if id(value) in seen else seen).add(id(value))
            continue
        if not is_container(value):
            continue
        if id(value) in seen:
            shared.add(id(value))
            continue
        seen.add(id(value))
        stack.extend(child_values(value))
    return shared


def render_lines(root: Any, summarize: Summarizer | None = None, max_depth: int = 64,
                 max_items: int = MAX_ITEMS, max_lines: int = 200_000) -> Iterator[str]:
    """Indented text lines of the tree, two spaces a level."""
    shared = shared_nodes(root)
    anchors: dict[int, int] = {}
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    lines = 0
    while stack:
        edge, value, depth = stack.pop()
        lines += 1
        if lines > max_lines:
            yield f"... output stopped after {max_lines} lines"
            return
        pad = "  " * depth
        prefix = f"{pad}{edge}: " if edge else pad
        if isinstance(value, _Elided):
            yield f"{pad}... {value.count} more"
            continue
        if id(value) in anchors:
            yield f"{prefix}*{anchors[id(value)]} (shown above)"
            continue
        anchor = ""
        if id(value) in shared:
            anchors[id(value)] = len(anchors) + 1
            anchor = f" &{anchors[id(value)]}"
        summary = summarize(value) if summarize else None
        if summary is not None:
            yield prefix + summary[0] + anchor
            continue
        flat = inline(value) if anchor == "" else None
        if flat is not None:
            yield prefix + flat
            continue
        yield prefix + label(value) + anchor
        if depth >= max_depth:
            if children(value):
                yield f"{pad}  ... nested deeper than {max_depth} levels"
            continue
        kids = children(value)
        shown = kids[:max_items]
        if len(kids) > max_items:
            stack.append(("", _Elided(len(kids) - max_items), depth + 1))
        stack.extend((e, c, depth + 1) for e, c in reversed(shown))


class _Elided:
    def __init__(self, count: int):
        self.count = count


def to_json(root: Any, summarize: Summarizer | None = None, max_depth: int = MAX_DEPTH,
            max_values: int = MAX_JSON_VALUES) -> Any:
    """A JSON-ready structure; the encoding is documented in docs/cli.md ("Pickle JSON").

    Children are pushed in reverse, so the stack visits them in document order and an ``"$id"`` precedes
    its ``"$ref"`` s.
    """
    with paused():  # a JSON container per node: collections would rescan the growing tree (2.9x the time)
        return _to_json(root, summarize, max_depth, max_values)


def _to_json(root: Any, summarize: Summarizer | None, max_depth: int, max_values: int) -> Any:
    shared = shared_nodes(root, long_strings=MAX_JSON_STR)
    ids: dict[int, int] = {}
    holder: list = [None]
    work: list[tuple[Any, Any, Any, int]] = [(root, holder, 0, 0)]
    values = 0
    while work:
        value, parent, key, depth = work.pop()
        values += 1
        if values > max_values:
            stop = {"$truncated": f"output stopped after {max_values} values"}
            parent[key] = stop
            for _, rest_parent, rest_key, _ in work:
                rest_parent[rest_key] = stop
            break
        if id(value) in ids:
            parent[key] = {"$ref": ids[id(value)]}
            continue
        summary = summarize(value) if summarize else None
        if summary is not None:
            out = summary[1]
        elif not is_container(value):
            out = _json_scalar(value)
        elif depth >= max_depth:
            parent[key] = {"$truncated": f"nested deeper than {max_depth} levels"}
            continue
        else:
            out, slots = _json_shell(value)
            work.extend((child, container, slot_key, depth + 1) for container, slot_key, child in reversed(slots))
        if id(value) in shared:
            ids[id(value)] = len(ids) + 1
            out = {"$id": ids[id(value)], "value": out}
        parent[key] = out
    return holder[0]


def _json_scalar(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_JSON_STR:
        return {"$str": value[:MAX_JSON_STR], "length": len(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value[:64]).hex(), "length": len(value)}
    if isinstance(value, Global):
        return {"$global": value.qualname}
    if isinstance(value, Opaque):
        return {"$opaque": value.what}
    return value


def _json_shell(value: Any) -> tuple[Any, list[tuple[Any, Any, Any]]]:
    """An empty JSON container for ``value`` and the (container, key, child) slots still to fill."""
    if isinstance(value, PList):
        out: Any = [None] * len(value.items)
        return out, [(out, i, item) for i, item in enumerate(value.items)]
    if isinstance(value, (PTuple, PSet)):
        items = [None] * len(value.items)
        tag = "$tuple" if isinstance(value, PTuple) else ("$frozenset" if value.frozen else "$set")
        return {tag: items}, [(items, i, item) for i, item in enumerate(value.items)]
    if isinstance(value, PDict):
        keys = [k for k, _ in value.items]
        if all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys):
            out = dict.fromkeys(keys)
            return out, [(out, k, v) for k, v in value.items]
        pairs = [[None, None] for _ in value.items]
        slots = []
        for pair, (k, v) in zip(pairs, value.items):
            slots += [(pair, 0, k), (pair, 1, v)]
        return {"$dict": pairs}, slots
    if isinstance(value, Call):
        out = {"$object": value.func_name} if _is_object(value) else {"$call": value.func_name}
        slots = []
        if not isinstance(value.func, Global):
            slots.append((out, "callable", value.func))
        if not _is_object(value):
            args = [None] * len(value.arg_list)
            out["args"] = args
            slots += [(args, i, a) for i, a in enumerate(value.arg_list)]
        if value.kwargs is not None:
            slots.append((out, "kwargs", value.kwargs))
        if len(value.states) == 1:
            slots.append((out, "state", value.states[0]))
        elif value.states:
            states = [None] * len(value.states)
            out["states"] = states
            slots += [(states, i, s) for i, s in enumerate(value.states)]
        return out, slots
    if isinstance(value, Build):
        out = {}
        return out, [(out, "$build", value.obj), (out, "state", value.state)]
    if isinstance(value, PersistentRef):
        out = {}
        return out, [(out, "$persistent", value.pid)]
    raise TypeError(type(value))
