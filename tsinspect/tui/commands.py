"""Command palette (ctrl+p): jump to any record, tensor, module, method, node, value or diff finding, and
compare with another archive."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tsinspect.archive.modules import short_type
from tsinspect.archive.text import printable

MAX_NODES = 50_000  # node candidates offered (values are found through the node defining them)


class JumpProvider(Provider):
    def _targets(self) -> list[tuple[str, object]]:
        """(text, callback) for everything one can jump to, as the app knows it now."""
        app = self.app
        out: list[tuple[str, object]] = [("diff: compare with another archive...", app.action_compare)]
        diff = app.view("diff")  # None until composed (after the first screen)
        for i, f in enumerate(diff.findings if diff is not None else []):
            where = f"{f.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{f.line}" if f.file and f.line else ""
            out.append((printable(f"diff: {f.kind} {where} {f.method or ''}"), partial(app.show_finding, i)))
        loaded = app.loaded
        if loaded is None:
            return out
        s = loaded.summary
        for r in s.records:
            if r.inside:
                out.append((f"record: {r.display_name}", partial(app.show_record, ("record", r.name))))
        for t in s.tensors + s.constants:
            out.append((f"tensor: {printable(t.name)} {t.dtype}{t.shape}", partial(app.show_record, ("tensor", t.name))))
        for m in s.modules.walk() if s.modules else []:
            out.append((f"module: {printable(m.path or '<root>')} {printable(short_type(m.type))}",
                        partial(app.show_module, m.path)))
        view = app.query_one("IRView")
        if view.state == "loaded":
            count = 0
            for module in view.extraction.ir.modules:
                prefix = printable(module.path + "." if module.path else "")
                for method in module.methods:
                    out.append((f"method: {prefix}{printable(method.name)}",
                                partial(app.show_node, (module.path, method.name, None))))
                    graph = view.shown_graph(method)
                    for node, _ in graph.walk() if graph and count < MAX_NODES else []:
                        count += 1
                        values = ", ".join("%" + v.name for v in node.outputs)
                        text = f"node: {values + ' = ' if values else ''}{node.kind}  in {prefix}{method.name} #{node.id}"
                        out.append((printable(text), partial(app.show_node, (module.path, method.name, node.id))))
        return out

    async def discover(self) -> Hits:
        for name, title in (("archive", "Archive view"), ("modules", "Modules view"), ("ir", "IR view"),
                            ("safety", "Safety view"), ("diff", "Diff view")):
            yield DiscoveryHit(f"view: {title}", partial(self.app.action_view, name))
        yield DiscoveryHit("diff: compare with another archive...", self.app.action_compare)

    async def startup(self) -> None:
        self._cache = None  # built once per opening of the palette, not per key typed

    async def search(self, query: str) -> Hits:
        import asyncio

        if getattr(self, "_cache", None) is None:
            self._cache = self._targets()
        matcher = self.matcher(query)
        for i, (text, callback) in enumerate(self._cache):
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, text=text)
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # tens of thousands of nodes: let the screen breathe between slices
