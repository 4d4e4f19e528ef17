"""Celery's ``beat.Service``: run a ``Scheduler``'s ``tick()`` loop, and (with
``beat_enable_remote_control``) answer ``ping`` on the remote-control bus as ``celerybeat@<host>``.

A liveness probe pings beat; a beat whose loop has stopped ticking for longer than
``beat_remote_control_max_tick_age`` (default: twice the loop interval, at least 60 s) stops
answering, so a wedged beat is restarted and a healthy one is not.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from engine import resp
from engine.beat_scheduler import DEFAULT_MAX_INTERVAL, Scheduler
from engine.broker.fanout import RedisFanout
from engine.protocol import control as protocol
from engine.redisconn import REDIS_SCHEMES
from engine.utils.nodenames import default_nodename, host_format

log = logging.getLogger("engine.beat")
NODENAME_DEFAULT = "celerybeat"
MIN_TICK_AGE = 60.0
# Celery's names for its in-memory scheduler classes: ours is the same API (engine.beat_scheduler).
_BUILTIN_SCHEDULERS = {"celery.beat:Scheduler", "celery.beat.Scheduler", "celery.beat:PersistentScheduler"}


def beat_nodename(hostname: str | None = None) -> str:
    """The node name beat answers on: a bare host gets ``celerybeat@``; ``%h``/``%n``/``%d`` expand."""
    return host_format(default_nodename(hostname, NODENAME_DEFAULT))


def scheduler_class(spec: Any) -> type[Scheduler]:
    """A class, or ``"module:Class"``; Celery's own scheduler names mean ours."""
    if spec is None or (isinstance(spec, str) and spec in _BUILTIN_SCHEDULERS):
        return Scheduler
    if isinstance(spec, str):
        module, _, name = spec.replace(":", ".").rpartition(".")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    return spec  # type: ignore[no-any-return]


class BeatPidbox:
    """The remote-control listener of one beat: ``ping`` only, and silence once the loop is stale."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.app = service.app
        self.hostname = beat_nodename(service.hostname)
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def max_tick_age(self) -> float:
        configured = self.app.conf.get("beat_remote_control_max_tick_age")
        if configured is not None:
            return float(configured)
        interval = self.service.effective_max_interval or self.service.max_interval or DEFAULT_MAX_INTERVAL
        return max(interval * 2, MIN_TICK_AGE)

    def tick_age(self) -> float | None:
        last = self.service._last_tick
        return None if last is None else time.monotonic() - last

    def is_stale(self) -> bool:
        limit, age = self.max_tick_age, self.tick_age()
        return bool(limit) and age is not None and age > limit

    def start(self) -> None:
        url = self.app.broker_url()
        if url.split("://", 1)[0].lower() not in REDIS_SCHEMES:
            log.warning("beat remote control needs a Redis broker's fan-out; %s has none here", url.split("://")[0])
            return
        fanout = RedisFanout(url)
        # Subscribed before start() returns: a ping sent right after is heard (pub/sub keeps nothing).
        pubsub = fanout.subscribe([fanout.channel(protocol.EXCHANGE)])
        self.thread = threading.Thread(target=self._loop, args=(fanout, pubsub), name="BeatPidbox", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _loop(self, fanout: RedisFanout, pubsub: Any) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") in ("message", "pmessage"):
                        self.handle(fanout, message["data"])
                except (resp.RedisError, OSError) as exc:
                    log.debug("beat remote control: %s (retrying)", exc)
                    self._stop.wait(1.0)
                    pubsub = fanout.subscribe([fanout.channel(protocol.EXCHANGE)])
        finally:
            pubsub.close()
            fanout.close()

    def handle(self, fanout: RedisFanout, raw: bytes) -> None:
        signer = self.app.signer
        if signer is not None and signer.verify(raw) is not None:
            return
        request = protocol.decode_request(raw)
        if request is None or request.method != "ping" or not request.addressed_to(self.hostname):
            return
        if self.is_stale():
            log.warning(
                "beat: not answering ping, the scheduler has not ticked for %.1fs (limit %ss)",
                self.tick_age() or 0.0,
                self.max_tick_age,
            )
            return
        oid = (request.reply_to or {}).get("routing_key")
        if request.ticket and oid:
            fanout.reply(oid, protocol.encode_reply(self.hostname, {"ok": "pong"}, request.ticket, oid))


class Service:
    """Runs the scheduler until ``stop()``; ``start()`` blocks (run it in a thread to embed it)."""

    def __init__(
        self,
        app: Any,
        max_interval: float | None = None,
        schedule_filename: str | None = None,
        scheduler_cls: Any = None,
        remote_control: bool | None = None,
        hostname: str | None = None,
    ) -> None:
        self.app = app
        self.max_interval = max_interval or app.conf.get("beat_max_loop_interval")
        self.scheduler_cls = scheduler_class(scheduler_cls)
        self.remote_control = bool(
            app.conf.get("beat_enable_remote_control", False) if remote_control is None else remote_control
        )
        self.hostname = hostname
        self.effective_max_interval: float | None = None
        self._pidbox: BeatPidbox | None = None
        self._last_tick: float | None = None
        self._scheduler: Scheduler | None = None
        self._is_shutdown = threading.Event()
        self._is_stopped = threading.Event()

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = self.scheduler_cls(app=self.app, max_interval=self.max_interval)
        return self._scheduler

    def start(self) -> None:
        scheduler = self.scheduler
        self.effective_max_interval = scheduler.max_interval
        if self.remote_control:
            self._pidbox = BeatPidbox(self)
            self._pidbox.start()
        self._last_tick = time.monotonic()  # a beat that wedges before its first tick goes stale too
        try:
            while not self._is_shutdown.is_set():
                interval = self.scheduler.tick()
                self._last_tick = time.monotonic()
                if interval and interval > 0:
                    self._is_shutdown.wait(interval)
        finally:
            self._is_stopped.set()
            if self._pidbox is not None:
                self._pidbox.stop()

    def stop(self, wait: bool = False) -> None:
        self._is_shutdown.set()
        if wait:
            self._is_stopped.wait()
