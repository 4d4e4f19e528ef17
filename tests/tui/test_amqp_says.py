"""What the console says on RabbitMQ about what RabbitMQ cannot show: no peeking at a queue, no
count of the countdown tasks waiting in its delay levels, and an empty queue nobody consumes is
not a problem (a real RabbitMQ node, results and history on the session's Redis); and when that
Redis is away, the console says so rather than blame RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tui.conftest import cell, drive, live_app, press, shown_rows, wait_for, wait_screen
from tqctl.tui.screens.dialogs import HelpScreen
from tqctl.tui.screens.overview import OverviewScreen
from tqctl.tui.screens.queues import QueuesScreen
from tqctl.tui.screens.scheduled import ScheduledScreen
from tqctl.tui.widgets.header import Banner, ClusterHeader

pytestmark = pytest.mark.integration


@pytest.fixture
def client(amqp_url: str, redis_url: str) -> Iterator[Any]:
    """A client app on the private node, results on the session's Redis."""
    from engine import App

    app = App("client", broker=amqp_url, backend=redis_url)
    try:
        yield app
    finally:
        app.close()


def status_text(screen: Any) -> str:
    return str(screen.query_one("#status").render())


def test_an_empty_queue_nobody_consumes_is_not_a_problem(
    amqp_url: str, redis_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        overview = await wait_screen(pilot, OverviewScreen)
        table = overview.query_one("#queues")
        # No worker: "celery" is empty and nobody consumes it. Nothing waits, so nothing is wrong.
        await wait_for(pilot, lambda: "celery" in table.row_keys, "the celery queue", 30, lambda: shown_rows(table))
        assert cell(table, "celery", "warn") == "· no consumer"
        assert "need attention" not in status_text(overview)
        await press(pilot, "3")
        queues = await wait_screen(pilot, QueuesScreen)
        await wait_for(pilot, lambda: "celery" in queues.table.row_keys, "the celery row", 30)
        assert cell(queues.table, "celery", "warn") == "· no consumer"

    drive(app, scenario)


def test_the_queues_screen_does_not_offer_a_peek_rabbitmq_cannot_give(
    amqp_url: str, redis_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        await press(pilot, "3")
        queues = await wait_screen(pilot, QueuesScreen)
        await wait_for(pilot, lambda: "celery" in queues.table.row_keys, "the celery row", 30)
        line = status_text(queues)
        assert "no peeking on RabbitMQ" in line and "enter peeks" not in line, line
        await press(pilot, "question_mark")
        help_screen = await wait_screen(pilot, HelpScreen)
        assert "peek (not on RabbitMQ)" in help_screen.body

    drive(app, scenario)


def test_the_scheduled_screen_says_rabbitmqs_delay_levels_cannot_be_counted(
    amqp_url: str, redis_url: str, client: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    # Waits in RabbitMQ's delay levels for ten minutes, addressed to a queue the next test's
    # fixture deletes (it is then dropped, never delivered to another test's worker).
    client.send_task("shop.add", [1, 2], countdown=600, queue="later")
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        await press(pilot, "6")
        scheduled = await wait_screen(pilot, ScheduledScreen)
        line = await wait_for(
            pilot, lambda: "reading" not in (t := status_text(scheduled)) and t, "the first poll's count", 30
        )
        # It said "ETA tasks 0 (0 in the broker)" with the task waiting there.
        assert "RabbitMQ's delay levels cannot be counted" in line, line
        assert "in the broker" not in line and "x run now" not in line

    drive(app, scenario)


def test_a_queue_with_messages_and_no_consumer_is_still_a_warning(
    amqp_url: str, redis_url: str, client: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    client.send_task("shop.add", [1, 2])  # to "celery", which nobody consumes
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        overview = await wait_screen(pilot, OverviewScreen)
        table = overview.query_one("#queues")
        await wait_for(
            pilot, lambda: cell(table, "celery", "depth") == "1", "one waiting", 30, lambda: shown_rows(table)
        )
        assert cell(table, "celery", "warn") == "⚠ no consumer"
        assert "1 need attention" in status_text(overview)

    drive(app, scenario)


def test_a_result_backend_away_is_named_not_the_broker(
    amqp_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ up, its Redis result backend away: the banner named RabbitMQ ("cannot reach broker
    at 127.0.0.1:5672 (amqp://…): Error 111 connecting to <Redis>"), the wrong server to check."""
    from tests.integration.servers import free_port

    port = free_port()  # nothing listens there
    monkeypatch.setenv("TQCTL_BACKEND", f"redis://127.0.0.1:{port}/0")
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: not app.model.connected, "the failed poll", 30)
        await pilot.pause()
        banner = str(app.screen.query_one(Banner).render())
        assert banner.startswith("⚠ result backend unreachable"), banner
        assert f"cannot reach the Redis result backend at 127.0.0.1:{port}" in banner, banner
        assert "cannot reach broker" not in banner
        header = str(app.screen.query_one(ClusterHeader).render())
        assert "✗ backend down" in header, header

    drive(app, scenario)


def test_with_the_result_backend_away_rabbitmqs_queues_stay_live(
    amqp_url: str, client: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history, failures and beat state live on AMQP's Redis result backend: with that server
    away every poll failed whole, so queues and workers stopped updating although RabbitMQ was
    fine. Now the poll goes on without them and the banner says what is missing."""
    from tests.integration.servers import free_port

    monkeypatch.setenv("TQCTL_BACKEND", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        overview = await wait_screen(pilot, OverviewScreen)
        table = overview.query_one("#queues")
        await wait_for(pilot, lambda: "celery" in table.row_keys, "the celery row", 30)
        before = int(cell(table, "celery", "depth"))
        for _ in range(2):
            client.send_task("shop.add", [1, 2])  # to "celery", which nobody consumes
        await wait_for(
            pilot, lambda: cell(table, "celery", "depth") == str(before + 2), "two more", 30, lambda: shown_rows(table)
        )
        banner = str(app.screen.query_one(Banner).render())
        assert banner.startswith("⚠ result backend unreachable"), banner  # (the event feed adds that
        # the history is not replayed yet: test_amqp_backend_returns.py)

    drive(app, scenario)


def test_rabbitmq_away_is_said_once_with_its_cause(
    redis_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's own line ("cannot reach broker at HOST (URL): cause") was wrapped in the same
    words again, and the 3-line banner cut the cause off."""
    from tests.integration.servers import free_port

    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    port = free_port()  # no RabbitMQ there
    app = live_app(f"amqp://guest:guest@127.0.0.1:{port}//", state_dir)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: not app.model.connected, "the failed poll", 60)
        await pilot.pause()
        banner = str(app.screen.query_one(Banner).render())
        assert banner.startswith("⚠ broker unreachable"), banner
        assert banner.count("cannot reach broker") == 1, banner
        assert f"127.0.0.1:{port}" in banner

    drive(app, scenario)
