"""``async def`` tasks outside the asyncio pool: eager mode, and time limits reaching the coroutine."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine import App
from engine.asyncrun import resolve
from engine.exceptions import SoftTimeLimitExceeded
from engine.worker.limits import ThreadLimiter, alarm_limits


@pytest.fixture
def app() -> App:
    app = App("asyncrun", broker="memory://")
    app.conf.task_always_eager = True
    return app


def test_eager_async_task_runs_to_completion(app: App) -> None:
    @app.task(bind=True)
    async def double(self, x: int) -> tuple[int, str]:
        await asyncio.sleep(0.01)
        return x * 2, self.request.id

    result = double.delay(21)
    assert result.get()[0] == 42
    assert double.apply(args=(2,)).get()[0] == 4


def test_eager_async_failure_and_retry_behave_as_sync_tasks(app: App) -> None:
    @app.task(bind=True, max_retries=2)
    async def flaky(self) -> int:
        await asyncio.sleep(0)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return self.request.retries

    @app.task
    async def boom() -> None:
        await asyncio.sleep(0)
        raise KeyError("nope")

    assert flaky.apply().get() == 2
    with pytest.raises(KeyError):
        boom.apply().get()


def test_eager_apply_from_inside_a_running_loop(app: App) -> None:
    """A FastAPI handler calling ``.apply()``: this thread's loop is busy, the task still completes."""

    @app.task
    async def one() -> int:
        await asyncio.sleep(0.01)
        return 1

    async def handler() -> int:
        return one.apply().get()  # type: ignore[no-any-return]

    assert asyncio.run(handler()) == 1


def test_soft_limit_by_alarm_is_raised_inside_the_coroutine() -> None:
    async def waits() -> str:
        try:
            await asyncio.sleep(5)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0)  # the loop still works after the limit
            return "caught"
        return "slept"

    with alarm_limits(0.2, None):
        assert resolve(waits()) == "caught"


def test_soft_limit_in_a_pool_thread_is_raised_inside_the_coroutine() -> None:
    async def busy() -> str:
        try:
            while True:  # an async exception lands between bytecodes: keep some running
                await asyncio.sleep(0.01)
        except SoftTimeLimitExceeded:
            return "caught"

    limiter, got = ThreadLimiter(), []

    def run() -> None:
        limiter.arm(0.2, None)
        try:
            got.append(resolve(busy()))
        finally:
            limiter.disarm()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    limiter.stop()
    assert got == ["caught"]
