"""Input that does not blink when the App is ``still`` (snapshot tests, screenshots)."""

from __future__ import annotations

from textual.widgets import Input


class Field(Input):
    def on_mount(self) -> None:
        if getattr(self.app, "still", False):
            self.cursor_blink = False
