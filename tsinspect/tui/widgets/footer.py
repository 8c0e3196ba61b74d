"""Textual's Footer, composed again only when the keys it shows change.

Textual's own recomposes on every change of the screen's bindings: each focus move, each
``refresh_bindings``. That is a dozen widgets removed, made, styled and laid out again (15-70 ms at 205k IR
nodes, several times per key: the search field's focus and back, a link followed) while the keys shown
(the IR view's, the app's) are mostly the same before and after.
"""

from __future__ import annotations

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._composed_for: tuple | None = None

    def _shown(self) -> tuple:
        """What compose would show: the displayed bindings, their state and tooltips, and the footer's options."""
        if not self._bindings_ready:
            return ()
        shown = tuple((binding.key, binding.action, binding.description, binding.key_display, binding.tooltip,
                       binding.group, enabled, tooltip)
                      for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)
        palette = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        return (shown, palette and palette[1:], self.compact, self.show_command_palette)

    def compose(self):
        self._composed_for = self._shown()
        yield from super().compose()

    def bindings_changed(self, screen) -> None:
        self._bindings_ready = True
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        if self.is_attached and self._shown() != self._composed_for:
            await self.recompose()
