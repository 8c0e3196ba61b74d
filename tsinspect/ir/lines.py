"""A method's IR as lines of styled pieces: the one rendering of nodes that the CLI, the TUI and the reports style.

Each line is ``(depth, pieces, source)``: pieces are ``(text, role)`` with role ``value``, ``type``,
``kind``, ``attr``, ``block``, ``ret`` or ``""``; ``source`` is the node's ``tsinspect.ir.model.Source`` or None.
Blocks nest under their ``prim::If``/``prim::Loop``. Iterative, so deep nesting costs no recursion.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from tsinspect.ir.model import Graph, Node, Source

Piece = tuple[str, str]
Line = tuple[int, list[Piece], Source | None]


def attr_text(value: Any, limit: int = 200) -> str:
    """An attribute value, at most ``limit`` characters (the JSON report has it whole)."""
    if isinstance(value, dict) and "tensor" in value:
        t = value["tensor"]
        dims = ", ".join(str(d) for d in t.get("shape", []))
        text = f"<{t.get('dtype')}[{dims}]" + (f" {t['value']}>" if "value" in t else ">")
    else:
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _values(names: list[str]) -> list[Piece]:
    out: list[Piece] = []
    for i, name in enumerate(names):
        out += [(", ", "")] if i else []
        out.append(("%" + name, "value"))
    return out


def _params(values) -> list[Piece]:
    out: list[Piece] = []
    for i, v in enumerate(values):
        out += [(", ", "")] if i else []
        out += [("%" + v.name, "value"), (" : " + v.type, "type")]
    return out


def node_pieces(node: Node) -> list[Piece]:
    """``%h.1 : Tensor = aten::linear[attrs](%x.1, %w)``."""
    pieces = _params(node.outputs)
    if node.outputs:
        pieces.append((" = ", ""))
    pieces.append((node.kind, "kind"))
    if node.attributes:
        pieces.append(("[" + ", ".join(f"{k}={attr_text(v)}" for k, v in node.attributes.items()) + "]", "attr"))
    return pieces + [("(", "")] + _values(node.inputs) + [(")", "")]


def graph_lines(graph: Graph) -> Iterator[Line]:
    yield 0, [("graph(", "")] + _params(graph.inputs) + [("):", "")], None
    # stack of (remaining items, depth); an item is a Node or a ("block", index, block) / ("ret", names) marker
    stack: list[tuple[list, int]] = [(list(reversed(graph.nodes)), 1)]
    while stack:
        items, depth = stack[-1]
        if not items:
            stack.pop()
            continue
        item = items.pop()
        if isinstance(item, Node):
            yield depth, node_pieces(item), item.source
            if item.blocks:
                stack.append(([("block", i, b) for i, b in reversed(list(enumerate(item.blocks)))], depth + 1))
        elif item[0] == "block":
            _, index, block = item
            yield depth, [(f"block{index}(", "block")] + _params(block.inputs) + [("):", "block")], None
            stack.append(([("ret", block.outputs), *reversed(block.nodes)], depth + 1))
        else:
            yield depth, [("-> (", "ret")] + _values(item[1]) + [(")", "ret")], None
    yield 1, [("return (", "")] + _values(graph.outputs) + [(")", "")], None


def text_of(pieces: list[Piece]) -> str:
    return "".join(text for text, _ in pieces)


def where(source: Source | None) -> str:
    """``code/__torch__/m.py:12 <- m.py:23``: the node's line in code/ and in the original source."""
    if source is None:
        return ""
    parts = []
    if source.code_file:
        parts.append(f"{source.code_file}:{source.code_line}")
    if source.file:
        parts.append(f"{source.file.rsplit('/', 1)[-1]}:{source.line}")
    return " <- ".join(parts)
