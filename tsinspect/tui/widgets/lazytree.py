"""A Tree whose nodes get their children only when first expanded.

Children are added in chunks with a yield to the event loop between them, and a node with more than
``PAGE`` children gets range folders instead (``1001-2000``), so a 50k-node graph never builds 50k
tree lines at once; with ``Mapped`` children not even their items are made before a folder is opened.
``reveal`` expands the way down to an item by keys, for jumps. Line widths come from the labels' lengths
(Textual renders every label of the tree again to measure it, at each change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from itertools import islice

from rich.text import Text
from textual import on
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tsinspect.tui.widgets.quietsize import QuietVirtualSize


class Item:
    """What a tree node stands for. Subclasses say how it looks and what is below it."""

    key: Hashable = None

    def label(self) -> Text:
        return Text("")

    def expandable(self) -> bool:
        return False

    def children(self) -> Sequence["Item"]:
        return ()


class Mapped(Sequence):
    """Items made on access, ``make(x)`` for each ``x`` of ``source``; ``key_of(x)`` is the key the item would
    have, found without making it (a 200k-node graph's items cost nothing until a range of them is shown)."""

    def __init__(self, source: Sequence, make: Callable[[object], Item], key_of: Callable[[object], Hashable]):
        self.source, self.make, self.key_of = source, make, key_of

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.make(x) for x in self.source[index]]
        return self.make(self.source[index])

    def holds(self, key: Hashable, start: int = 0, stop: int | None = None) -> bool:
        return any(self.key_of(x) == key for x in islice(self.source, start, stop))


class Range(Item):
    """A folder standing for a slice of a long list of children."""

    def __init__(self, items: Sequence[Item], start: int, stop: int):
        self.items, self.start, self.stop = items, start, stop

    def label(self) -> Text:
        return Text(f"{self.start + 1}-{self.stop}", style="dim italic", end="")

    def expandable(self) -> bool:
        return True

    def children(self) -> Sequence[Item]:
        return self.items[self.start:self.stop]

    def holds(self, key: Hashable) -> bool:
        if isinstance(self.items, Mapped):
            return self.items.holds(key, self.start, self.stop)
        return any(item.key == key for item in self.children())


class LazyTree(QuietVirtualSize, Tree[Item]):
    PAGE = 1000
    CHUNK = 100  # tree lines added per turn of the event loop (a label of an IR node: 30-70 µs to make)

    def __init__(self, label: str = "", **kwargs):
        super().__init__(Text(label), **kwargs)
        self._filled: dict[int, asyncio.Event] = {}
        self._adding = False  # populate adds a chunk: one invalidation after it, not one per line

    def notify_style_update(self) -> None:
        """Lines drawn again, without Textual's layout pass of the whole screen: a style change (the focus
        coming or going) changes no line's size."""
        super(Tree, self).notify_style_update()
        self._clear_line_cache()
        self._updates += 1
        self.refresh()

    def _invalidate(self) -> None:
        """Textual's, without its layout pass of the whole screen when the tree's size does not follow its
        lines (its new size reaches the scrollbars through QuietVirtualSize when the lines are built)."""
        if self._adding:
            return
        if self.styles.auto_dimensions:
            super()._invalidate()
            return
        self._clear_line_cache()
        self._updates += 1
        self.root._reset()
        self.refresh()

    def get_label_width(self, node: TreeNode[Item]) -> int:
        """The label's cells plus the expand icon's (Textual's own renders and styles the label to measure it)."""
        return node._label.cell_len + (len(self.ICON_NODE) if node._allow_expand else 0)

    def show(self, root: Item, label: Text | None = None) -> None:
        """Replace the content with the children of ``root`` (the root node itself may be hidden)."""
        self.workers.cancel_group(self, "tree-fill")  # still filling the old nodes
        self._filled.clear()
        old = list(self._tree_nodes.values())
        self.reset(label or root.label(), root)
        # Textual's reset keeps the old nodes in its id map and each child refers to its parent: cycles that
        # only a full collection frees, never once frozen (tui.app freezes what survives one)
        self._tree_nodes = {self.root.id: self.root}
        for node in old:
            node._parent, node._children = None, []
        self.run_worker(partial(self.populate, self.root), group="tree-fill")
        self.root.expand()

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        if event.node.id not in self._filled:
            self.run_worker(partial(self.populate, event.node), group="tree-fill")

    async def populate(self, node: TreeNode[Item]) -> None:
        """Add the node's children once, in chunks; waits if another call is already adding them."""
        done = self._filled.get(node.id)
        if done is not None:
            await done.wait()
            return
        done = self._filled[node.id] = asyncio.Event()
        try:
            items = node.data.children() if node.data is not None else []
            if not isinstance(items, (list, Mapped)):
                items = list(items)
            if len(items) > self.PAGE:
                size = max(self.PAGE, -(-len(items) // self.PAGE))
                items = [Range(items, i, min(i + size, len(items))) for i in range(0, len(items), size)]
            elif isinstance(items, Mapped):
                items = items[:]
            for start in range(0, len(items), self.CHUNK):
                self._adding = True
                try:
                    for item in items[start:start + self.CHUNK]:
                        node.add(item.label(), data=item, allow_expand=item.expandable())
                finally:
                    self._adding = False
                self._added(node, start)
                if start + self.CHUNK < len(items):
                    await asyncio.sleep(0)
        finally:
            done.set()  # also when cancelled (show replaced the tree): a reveal waiting on it goes on

    def _added(self, node: TreeNode[Item], start: int) -> None:
        """After ``node``'s children from ``start`` on were added: the lines on screen are drawn again only when
        they change. Lines added below the window change none (a 1,000-line folder drew the window ten times,
        30-60 lines each); the scrollbar follows the new size."""
        if start and not self.styles.auto_dimensions:
            self._tree_lines_cached = None
            self._tree_lines  # rebuilt: the lines' numbers, and the virtual size for the scrollbar
            previous = node._children[start - 1]
            if not node._expanded or previous._line >= self.scroll_offset.y + self.size.height:
                return
        self._invalidate()

    async def reveal(self, keys: Sequence[Hashable], expand: bool = False) -> TreeNode[Item] | None:
        """Expand the path of items with these keys (from the root down) and move the cursor to the last
        (expanding that one too with ``expand``)."""
        node = self.root
        for key in keys:
            await self.populate(node)
            node.expand()
            child = next((c for c in node.children if c.data is not None and c.data.key == key), None)
            if child is None:  # look inside range folders
                folder = next((c for c in node.children if isinstance(c.data, Range) and c.data.holds(key)), None)
                if folder is None:
                    return None
                await self.populate(folder)
                folder.expand()
                child = next((c for c in folder.children if c.data is not None and c.data.key == key), None)
                if child is None:
                    return None
            node = child
        if expand:
            await self.populate(node)
            node.expand()
        self.call_after_refresh(self.move_cursor, node)
        return node
