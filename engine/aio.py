"""The asyncio client: ``await task.adelay()``, ``await result.aget()``, and the asyncio pool's stores.

Many coroutines on one loop share one connection (``engine.resp.aio``): what they send while a round
trip is under way goes out together as the next pipeline (``Pipeliner``), so a hundred concurrent
``adelay()`` calls cost a few round trips, and each call still returns only once the broker has
replied for its message. ``aget`` waits on the result key's channel (one subscriber connection per
loop for every waiter, ``Listener``), subscribing before it reads, as ``RedisBackend.wait`` does.

Sentinel URLs have no asyncio client here: they fall back to the sync client in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine import resp, states
from engine.protocol.results import task_key
from engine.protocol.task import priority_key
from engine.resp.aio import AsyncClient, AsyncPubSub
from engine.serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from engine.app import App
    from engine.result import AsyncResult
    from engine.task import Task

Command = tuple[Any, ...]


def async_client(client: resp.Client) -> AsyncClient | None:
    """An asyncio client on the same server and settings as ``client`` (built by
    ``client_from_url``), or None for a sentinel-managed one."""
    pool = client.connection_pool
    return None if pool.locate is not None else AsyncClient(pool.settings)


class Pipeliner:
    """Commands from any number of coroutines, sent as one pipeline per round trip."""

    def __init__(self, client: resp.Client) -> None:
        self._sync = client
        self._async = async_client(client)
        self._pending: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, *commands: Command) -> list[Any]:
        """The replies to ``commands`` (sent in order, together); raises the first error reply."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the callers of this turn join the batch
        while self._pending:
            batch, self._pending = self._pending, []
            commands = [c for cmds, _ in batch for c in cmds]
            try:
                replies = await self._send(commands)
            except Exception as exc:  # every caller of the batch sees the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for cmds, future in batch:
                mine, start = replies[start : start + len(cmds)], start + len(cmds)
                error = next((r for r in mine if isinstance(r, Exception)), None)
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(mine)

    async def _send(self, commands: list[Command]) -> list[Any]:
        if self._async is None:
            return await asyncio.get_running_loop().run_in_executor(None, self._send_sync, commands)
        return await self._async.execute(commands)

    def _send_sync(self, commands: list[Command]) -> list[Any]:
        pipe = self._sync.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()


class Listener:
    """One subscriber connection for every ``aget`` on this loop: a waiter subscribes to its result
    key's channel, then reads the key (so no result slips between the two), then waits."""

    def __init__(self, client: AsyncClient) -> None:
        self._pubsub: AsyncPubSub = client.pubsub()
        self._waiters: dict[str, set[asyncio.Future[dict[str, Any]]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one (un)subscribe at a time: concurrent ones would each open a connection

    async def wait(
        self, key: str, read: Callable[[], Awaitable[dict[str, Any] | None]], timeout: float | None
    ) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        first = key not in self._waiters
        self._waiters.setdefault(key, set()).add(future)
        try:
            if first:
                async with self._lock:
                    await self._pubsub.subscribe(key)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read())
            meta = await read()
            if meta is not None and meta.get("status") in states.READY_STATES:
                return meta
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                return meta
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[key]
                    with contextlib.suppress(resp.RedisError, OSError):
                        async with self._lock:
                            await self._pubsub.unsubscribe(key)

    async def _read(self) -> None:
        while self._waiters:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if not message or message.get("type") != "message":
                continue
            channel = message["channel"]
            key = channel.decode() if isinstance(channel, bytes) else channel
            meta = json_loads(message["data"])
            if meta.get("status") not in states.READY_STATES:
                continue
            for future in list(self._waiters.get(key, ())):
                if not future.done():
                    future.set_result(meta)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._pubsub.aclose()


class _LoopClients:
    """This loop's pipeliners and listener, one per Redis client (broker, backend)."""

    def __init__(self) -> None:
        self.pipeliners: dict[int, Pipeliner] = {}
        self.listeners: dict[int, Listener] = {}


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()


def _clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    found = _per_loop.get(loop)
    if found is None:
        found = _per_loop[loop] = _LoopClients()
    return found


def pipeliner(client: resp.Client) -> Pipeliner:
    """This loop's shared ``Pipeliner`` for ``client`` (a sync client; its asyncio twin is made once)."""
    clients = _clients()
    found = clients.pipeliners.get(id(client))
    if found is None:
        found = clients.pipeliners[id(client)] = Pipeliner(client)
    return found


async def close_loop_clients() -> None:
    """Close this loop's connections (the asyncio pool at stop; an app at its own shutdown)."""
    clients = _per_loop.pop(asyncio.get_running_loop(), None)
    if clients is not None:
        for listener in clients.listeners.values():
            await listener.aclose()
        for pipe in clients.pipeliners.values():
            await pipe.aclose()


# -- sending ------------------------------------------------------------------------------------
async def asend_task(
    app: App,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    task: Task | None = None,
    **options: Any,
) -> AsyncResult:
    """``app.send_task`` for coroutines: the same message, published through the loop's shared,
    pipelined broker connection. Returns once the broker has the message."""
    client = getattr(app.broker, "client", None)
    if not isinstance(client, resp.Client):  # not a Redis broker (memory://): the sync path, in a thread
        send = functools.partial(app.send_task, name, args, kwargs, task=task, **options)
        return await asyncio.get_running_loop().run_in_executor(None, send)
    # App.send_task's own steps, but for the publish.
    out = app._prepare_send(name, args, kwargs, task, options)
    sent_at = time.time()
    await pipeliner(client).call(("LPUSH", priority_key(out.queue, out.priority), out.raw))
    return app._after_send(out, sent_at)


# -- results ------------------------------------------------------------------------------------
async def astore(backend: Any, task_id: str, meta: dict[str, Any]) -> None:
    """``RedisBackend.store`` through this loop's pipeline: SET (or SETEX) then PUBLISH."""
    key, data = task_key(task_id), json_dumps(meta)
    ttl = backend.ttl_for(meta) if hasattr(backend, "ttl_for") else backend.expires  # a FAILURE's own TTL
    first: Command = ("SETEX", key, ttl, data) if ttl else ("SET", key, data)
    await pipeliner(backend.client).call(first, ("PUBLISH", key, data))


async def aget(result: AsyncResult, timeout: float | None = None, propagate: bool = True) -> Any:
    """``result.get()`` for coroutines: woken by the result's publish, never by polling."""
    from engine.group_result import GroupResult
    from engine.result import EagerResult

    if isinstance(result, EagerResult):
        return result.get(timeout=timeout, propagate=propagate, disable_sync_subtasks=False)  # settled: no wait
    if isinstance(result, GroupResult):  # every member's wait at once, on the shared subscriber
        return list(await asyncio.gather(*(aget(r, timeout, propagate) for r in result.results)))
    meta = result._cache
    if meta is None:
        backend = result._backend()
        clients = _clients()
        listener = clients.listeners.get(id(getattr(backend, "client", None)))
        if listener is None:
            client = getattr(backend, "client", None)
            aclient = pipeliner(client)._async if isinstance(client, resp.Client) else None
            if aclient is None:  # sentinel, or not Redis: the sync wait, in a thread
                loop = asyncio.get_running_loop()
                meta = await loop.run_in_executor(None, backend.wait, result.id, timeout)
            else:
                listener = clients.listeners[id(backend.client)] = Listener(aclient)
        if listener is not None:
            key = task_key(result.id)
            reader = pipeliner(backend.client)

            async def read() -> dict[str, Any] | None:
                (data,) = await reader.call(("GET", key))
                return json_loads(data) if data else None

            meta = await listener.wait(key, read, timeout)
    return result._outcome(meta, timeout, propagate)
