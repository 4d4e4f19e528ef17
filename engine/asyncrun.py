"""Running ``async def`` tasks: to completion on a loop in a sync pool, or on the asyncio pool's loop.

``engine.trace`` stays synchronous (one run path for every pool); when a task returns a coroutine it
calls ``resolve``. In prefork, threads, solo and eager mode that runs the coroutine on this thread's
own loop (kept between tasks, so clients a task caches stay bound to one loop). Under the asyncio
pool the whole run happens in a greenlet started by ``Bridge.run`` on the pool's loop: ``resolve``
switches back to the loop with the coroutine and resumes when it is done, so a thousand tasks in
flight cost a thousand small greenlets, not a thousand threads.

Time limits and terminate reach the coroutine through ``Interruptible``: a soft limit raises
``SoftTimeLimitExceeded`` where it is waiting; a hard one cancels it (its ``finally`` runs) and the
task ends with the limit's error.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from engine import log
from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from engine.extras import install_hint
from engine.request import RequestStack

T = TypeVar("T")
LIMITS = (SoftTimeLimitExceeded, TimeLimitExceeded)


class Terminated(BaseException):
    """The coroutine was cancelled by ``revoke(terminate=True)``: not a task failure (the worker
    records REVOKED), so it is a ``BaseException`` that ``engine.trace`` lets pass."""


class Interruptible(Coroutine[Any, Any, Any]):
    """A coroutine that can be interrupted from outside at its current ``await``.

    ``interrupt(exc)`` followed by cancelling the task that drives it turns that cancellation into
    ``exc`` inside the coroutine (a soft limit the task may catch). ``interrupt(exc, hard=True)``
    lets the cancellation through and, however the coroutine ends, raises ``exc``."""

    def __init__(self, coro: Awaitable[Any], scope: Scope | None = None) -> None:
        self._coro: Any = coro if hasattr(coro, "throw") else coro.__await__()
        self._scope = scope
        self._pending: BaseException | None = None
        self._final: BaseException | None = None
        self._hard = False

    def interrupt(self, exc: BaseException, hard: bool = False) -> None:
        self._pending, self._hard = exc, hard

    def send(self, value: Any) -> Any:
        if self._pending is not None:
            return self._deliver()
        return self._step(self._coro.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if isinstance(typ, BaseException) else (val if isinstance(val, BaseException) else typ())
        if self._pending is not None and isinstance(exc, (asyncio.CancelledError, *LIMITS)):
            _uncancel()
            return self._deliver()
        return self._step(self._coro.throw, exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self  # type: ignore[return-value]

    def __iter__(self) -> Interruptible:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def _deliver(self) -> Any:
        exc, self._pending = self._pending, None
        assert exc is not None
        if self._hard:
            self._final = exc
            exc = asyncio.CancelledError()
        return self._step(self._coro.throw, exc)

    def _step(self, call: Callable[[Any], Any], arg: Any) -> Any:
        try:
            return call(arg) if self._scope is None else self._scope.run(call, arg)
        except BaseException:
            if self._final is not None:
                raise self._final from None
            raise


class Stacks:
    """Thread-local request stacks (the task's and the app's) given their own lists while some code
    runs: a greenlet or a coroutine step sees its own request, never one pushed by a neighbour that
    shares the thread."""

    def __init__(self, stacks: list[RequestStack]) -> None:
        self.stacks = stacks
        self.mine: list[list[Any]] = [list(s.stack) for s in stacks]

    def run(self, call: Callable[..., T], *args: Any) -> T:
        saved = [s.stack for s in self.stacks]
        for stack, mine in zip(self.stacks, self.mine, strict=True):
            stack.stack = mine
        try:
            return call(*args)
        finally:
            for stack, old in zip(self.stacks, saved, strict=True):
                stack.stack = old


class Scope:
    """What the coroutine of a running task must see at each step, on whichever thread drives it:
    the task's request stacks and the context ``engine.trace`` set (the task logger's id and name)."""

    def __init__(self) -> None:
        task = log.current_task()
        self.stacks = Stacks([task._requests, task.app.current_requests] if task is not None else [])
        self.context = contextvars.copy_context()

    def run(self, call: Callable[[Any], Any], arg: Any) -> Any:
        return self.stacks.run(self.context.run, call, arg)


def _uncancel() -> None:
    """The cancellation that carried an interrupt is spent: the task is not 'being cancelled'."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; 3.10 has no cancel count to undo
    if cancelling is not None and cancelling():
        task.uncancel()  # type: ignore[union-attr]


class Bridge:
    """Runs a sync function (``trace.run``) in a greenlet on the running loop; each coroutine it
    ``resolve``s is awaited here, on the loop, as an ``Interruptible`` the pool can reach."""

    def __init__(self, stacks: list[RequestStack]) -> None:
        self.current: Interruptible | None = None
        self.task: asyncio.Task[Any] | None = None
        self._stacks = Stacks(stacks)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        bridge_greenlet = _bridge_greenlet_class()
        self.task = asyncio.current_task()
        child = bridge_greenlet(fn, bridge_greenlet.getcurrent())
        child.bridge = self
        result: Any = self._stacks.run(child.switch, *args)
        while not child.dead:
            awaitable, scope, interruptible = result
            waiting = Interruptible(awaitable, scope)
            self.current = waiting if interruptible else None
            try:
                value = await waiting
            except BaseException as exc:  # noqa: B036 - every outcome goes back into the run
                self.current = None
                result = self._stacks.run(child.throw, exc)
            else:
                self.current = None
                result = self._stacks.run(child.switch, value)
        return result  # type: ignore[no-any-return]

    def interrupt(self, exc: BaseException, hard: bool = False) -> bool:
        """Deliver ``exc`` at the coroutine's current await (see ``Interruptible``); False when the
        run is not inside its coroutine now (before it, or storing its result)."""
        if self.current is None or self.task is None or self.task.done():
            return False
        self.current.interrupt(exc, hard)
        self.task.cancel()
        return True


@functools.cache
def _bridge_greenlet_class() -> Any:
    """Made when the asyncio pool first runs: importing greenlet maps libstdc++ and costs every
    worker tree about 1 MB, which a prefork or thread pool never uses."""
    try:
        import greenlet
    except ImportError:  # pragma: no cover - greenlet comes with the asyncio and gevent extras
        raise RuntimeError(f"the asyncio pool needs greenlet: {install_hint('asyncio')}") from None

    class BridgeGreenlet(greenlet.greenlet):
        bridge: Bridge

    return BridgeGreenlet


def _current_bridge_greenlet() -> Any | None:
    """The bridge greenlet this code runs in, if any. Until something imported greenlet, none."""
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return None
    current = greenlet.getcurrent()
    return current if isinstance(current, _bridge_greenlet_class()) else None


def bridged() -> bool:
    """True inside a run on the asyncio pool's loop, where blocking on I/O stalls every task."""
    return _current_bridge_greenlet() is not None


def resolve(awaitable: Awaitable[T], interruptible: bool = True) -> T:
    """The value of a task's coroutine, from sync code (``engine.trace``). Under the asyncio pool
    the engine also awaits its own I/O this way (``interruptible=False``: limits never cut it)."""
    current = _current_bridge_greenlet()
    if current is not None:
        return current.parent.switch((awaitable, Scope(), interruptible))  # type: ignore[no-any-return]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(awaitable)  # this thread's stacks and context are the task's already
    # Eager ``apply()`` from inside a running loop (a FastAPI handler): this thread's loop is busy,
    # so the coroutine runs to completion on a loop of its own in a helper thread.
    scope = Scope()
    with ThreadPoolExecutor(1, thread_name_prefix="eager-async") as helper:
        return helper.submit(_run_here, awaitable, scope).result()


class _ThreadLoop(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_loops = _ThreadLoop()  # one loop per thread, kept between tasks (see the module docstring)


def _run_here(awaitable: Awaitable[T], scope: Scope | None = None) -> T:
    """Run to completion on this thread's loop. A time limit delivered by a signal or an async
    exception while the loop waits surfaces outside the coroutine: it is passed into it and the
    loop runs on until the coroutine has dealt with it."""
    loop = _loops.loop
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    wrapper = Interruptible(awaitable, scope)
    task = loop.create_task(_await(wrapper))
    # Off the main thread a limit arrives as an async exception, delivered only when Python code
    # runs: a tick keeps the loop from sleeping in its selector for the whole of a long wait.
    tick = None if threading.current_thread() is threading.main_thread() else _Ticker(loop)
    try:
        while True:
            try:
                return loop.run_until_complete(task)
            except LIMITS as exc:
                if task.done():
                    raise
                wrapper.interrupt(exc, hard=isinstance(exc, TimeLimitExceeded))
                task.cancel()
    finally:
        if tick is not None:
            tick.stop()


class _Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop, every: float = 0.1) -> None:
        self._loop, self._every = loop, every
        self._handle = loop.call_later(every, self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self._every, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def _await(wrapper: Interruptible) -> Any:
    return await wrapper
