"""The outage banner: shown while something is unreachable, and nothing of it left once back.

Before, a hidden banner kept its last line: anything reading it (a test, the next outage's first
frame) saw "history not replayed yet" after the history had been replayed.
"""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from tqctl.tui.widgets.header import Banner


class _One(App[None]):
    def compose(self) -> ComposeResult:
        yield Banner()


def test_the_banner_says_what_is_down_and_keeps_no_line_once_back() -> None:
    async def run() -> tuple[bool, str, bool, str]:
        app = _One()
        async with app.run_test() as pilot:
            banner = app.query_one(Banner)
            banner.show_state(False, "history not replayed yet", None, 3.0, "result backend")
            await pilot.pause()
            down = (banner.has_class("-shown"), str(banner.render()))
            banner.show_state(True, None, None, None)
            await pilot.pause()
            return (*down, banner.has_class("-shown"), str(banner.render()))

    shown, text, shown_after, text_after = asyncio.run(run())
    assert shown and "result backend unreachable" in text and "history not replayed yet" in text, text
    assert not shown_after and text_after == "", text_after
