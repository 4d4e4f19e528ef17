"""Clients' ``task-sent`` events, so the console and ``tqctl tail`` see a task the moment it is sent.

Celery's clients publish one event per send (and only when ``task_send_sent_event`` is on). We keep
them on by default, so they must cost the sender next to nothing: a send appends a tuple to a
buffer; a daemon thread turns the buffer into one ``task.multi`` publish about every 50 ms.
Receivers (ours and Celery's) take such batches as they take a worker's.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _text  # C: a str as a JSON string
from typing import Any

from engine import forks
from engine.broker.inspect import open_fanout
from engine.events.dispatcher import EventDispatcher, _value
from engine.protocol import events

log = logging.getLogger("engine.events")
INTERVAL = 0.05
NO_ARGS, NO_KWARGS = _text(repr(())), _text(repr({}))
MAX_BUFFER = 10_000  # a client whose events cannot go out drops the oldest rather than grow


Parts = tuple[str | None, str, str, str | None, str | None]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parts(opts: dict[str, Any], name: str, queue: str) -> Parts:
    """What every event of sends with these options, task and queue shares: the root id's JSON
    (None: each event's own id), the text around the args and before the timestamp, and the
    args' and kwargs' text when the send gave ``argsrepr``/``kwargsrepr`` (else None)."""
    root = opts.get("root_id")
    shown = opts.get("headers") or {}  # apply_async(argsrepr=...): what may be shown instead of the args
    return (
        _text(root) if root else None,
        f', "parent_id": {_value(opts.get("parent_id"))}, "name": {_text(name)}, "args": ',
        f', "retries": {_value(opts.get("retries", 0))}, "eta": {_value(_iso(opts.get("eta")))}, '
        f'"expires": {_value(_iso(opts.get("expires")))}, "queue": {_text(queue)}, '
        f'"exchange": {_text(opts.get("exchange") or "")}, '
        f'"routing_key": {_text(opts.get("routing_key") or queue)}, "timestamp": ',
        _text(shown["argsrepr"]) if "argsrepr" in shown else None,
        _text(shown["kwargsrepr"]) if "kwargsrepr" in shown else None,
    )


def _lines(batch: list[tuple[Any, ...]], dispatcher: EventDispatcher) -> list[str]:
    """The batch's task-sent events as JSON text: ``EventDispatcher.task``'s fields in its order,
    but what sends with the same options share (one options dict: a send plan's) is written once
    per batch, and the rest with f-strings: a few microseconds an event were the flusher's cost."""
    head = (
        f'{{"hostname": {_text(dispatcher.hostname)}, "utcoffset": {_value(events.utcoffset())}, '
        f'"pid": {os.getpid()}, "clock": '
    )
    shared: dict[tuple[int, str, str], Parts] = {}  # the batch holds each opts
    lines = []
    clock = dispatcher.clock
    last: tuple[Any, str, str] | None = None  # a run of sends of one plan: no key made per event
    parts: Parts = (None, "", "", None, None)
    for sent_at, task_id, name, args, kwargs, queue, opts in batch:
        if last is None or opts is not last[0] or name != last[1] or queue != last[2]:
            last, parts = (opts, name, queue), shared.get((id(opts), name, queue)) or _parts(opts, name, queue)
            shared[(id(opts), name, queue)] = parts
        root_id, middle, tail, shown_args, shown_kwargs = parts
        uuid = _text(task_id)
        args_text = shown_args or (_text(repr(tuple(args))) if args else NO_ARGS)
        kwargs_text = shown_kwargs or (_text(repr(kwargs)) if kwargs else NO_KWARGS)
        lines.append(
            f'{head}{clock()}, "uuid": {uuid}, "root_id": {root_id or uuid}{middle}'
            f'{args_text}, "kwargs": {kwargs_text}'
            f'{tail}{sent_at:.6f}, "type": "task-sent"}}'
        )
    return lines


class SentEvents:
    def __init__(self, url: str, interval: float = INTERVAL) -> None:
        self.url = url
        self.interval = interval
        # Appended to and taken from without a lock (deque's append and popleft are atomic); the
        # maxlen drops the oldest when events cannot go out, rather than grow.
        self._pending: deque[tuple[Any, ...]] = deque(maxlen=MAX_BUFFER)
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # the flusher's and close()'s: one taker at a time
        self._stopped = False
        self._pid = 0
        self._dispatcher: EventDispatcher | None = None
        atexit.register(self.close)

    def record(
        self,
        task_id: str,
        name: str,
        args: Any,
        kwargs: Any,
        queue: str,
        options: dict[str, Any],
        sent_at: float | None = None,
    ) -> None:
        """Queue one task-sent; cheap on purpose (the repr and the publish happen in the flusher).
        The event's timestamp is the send's (``sent_at``, taken before the publish, else now): a
        worker may start the task before the batch goes out, and a task never starts before it is sent."""
        if forks.pid != self._pid:  # a module attribute, not a system call per send
            self._restart()
        self._pending.append((sent_at or time.time(), task_id, name, args, kwargs, queue, options))
        if not self._wake.is_set():  # set() takes a Condition; the flusher only needs one wake-up
            self._wake.set()

    def record_many(
        self,
        name: str,
        sent: Iterable[tuple[str, Any, Any]],
        queue: str,
        options: dict[str, Any],
        sent_at: float | None = None,
    ) -> None:
        """``record`` for a bulk send: ``(task_id, args, kwargs)`` each, one lock for all."""
        when = sent_at or time.time()
        if forks.pid != self._pid:
            self._restart()
        self._pending.extend((when, task_id, name, args, kwargs, queue, options) for task_id, args, kwargs in sent)
        if not self._wake.is_set():
            self._wake.set()

    def _restart(self) -> None:
        with self._start_lock:
            if forks.pid != self._pid:
                self._start()

    def _start(self) -> None:
        """(Re)start in this process: after a fork the parent's thread and socket are not ours."""
        self._pending, self._dispatcher = deque(maxlen=MAX_BUFFER), None
        self._wake = threading.Event()
        self._pid = forks.pid
        threading.Thread(target=self._run, name="task-sent-events", daemon=True).start()

    def _run(self) -> None:
        wake = self._wake
        while not self._stopped:
            wake.wait()
            if not self._stopped:
                # Gather a batch: sleep, not wait(), or the very next send ends the wait and every
                # delay() pays a thread switch and a PUBLISH of its own. Cleared only now, so a
                # send during the sleep sets nothing; one after the flush's take wakes the next round.
                time.sleep(self.interval)
            wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            self._send(self._pending)

    def _send(self, pending: deque[tuple[Any, ...]]) -> None:
        batch = [pending.popleft() for _ in range(len(pending))]  # what is there now; later ones wait
        if not batch or forks.pid != self._pid:
            return
        try:
            dispatcher = self._dispatcher or self._connect()
            key, raw = events.encode_batch(_lines(batch, dispatcher), dispatcher.hostname)
            dispatcher.fanout.publish(events.EXCHANGE, key, raw)
        except Exception as exc:  # events are best effort: the task itself was sent
            log.debug("task-sent events dropped: %s", exc)

    def _connect(self) -> EventDispatcher:
        hostname = f"gen{os.getpid()}@{socket.gethostname()}"
        # Redis pub/sub, or RabbitMQ's celeryev exchange (where Celery's clients send theirs).
        self._dispatcher = EventDispatcher(open_fanout(self.url), hostname, batch=1 << 30)
        return self._dispatcher

    def close(self) -> None:
        """Send what is left and stop (at exit, or when the app closes)."""
        atexit.unregister(self.close)
        self._stopped = True
        self._wake.set()
        self.flush()
        if self._dispatcher is not None:
            self._dispatcher.fanout.close()
            self._dispatcher = None
