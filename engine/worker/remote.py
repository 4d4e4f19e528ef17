"""The worker's side of remote control: Celery's pidbox commands, plus ``drain``.

Requests arrive on the ``celery.pidbox`` fanout; each handler returns Celery's reply shape.
An allow-list (``worker_control_allow``) lets an operator keep ``revoke`` while refusing
``shutdown``: refused commands answer with an error and are logged with their sender.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal as signals
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine import resp
from engine.broker.fanout import RedisFanout
from engine.config import masked_setting
from engine.control import store_revoked
from engine.protocol import control as protocol
from engine.protocol import task as task_protocol
from engine.protocol.task import TaskMessage
from engine.serialization import json_dumps
from engine.worker import control as custom
from engine.worker import stats
from engine.worker.job import request_info
from engine.worker.revoked import mark_revoked

if TYPE_CHECKING:
    from engine.worker.worker import Worker

log = logging.getLogger("engine.worker")
NO_REPLY = object()
# Celery's second names for inspect commands (``celery inspect dump_tasks`` is ``registered``).
ALIASES = {
    "dump_tasks": "registered",
    "dump_active": "active",
    "dump_reserved": "reserved",
    "dump_schedule": "scheduled",
    "dump_revoked": "revoked",
    "dump_conf": "conf",
}
TASK_INFO_ITEMS = ("exchange", "routing_key", "rate_limit")  # Celery's default taskinfoitems
ETA_TIMER_PRIORITY = 6  # the priority Celery's worker gives every ETA task's timer entry
RELOAD_EVERY = 5.0  # seconds between looks for new custom commands when an unknown name arrives


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _jsonable(value: Any) -> Any:
    """What JSON cannot carry as its repr (a ``timedelta`` as its text), as Celery's ``inspect
    conf`` does: a ``crontab`` or a ``timedelta`` in ``beat_schedule`` made the whole reply fail
    ("reply is not JSON")."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dt.timedelta):
        return str(value)  # '1 day, 0:00:00', as Celery's jsonify writes it
    try:
        json_dumps(value)  # kombu's tagged types (datetime, Decimal, UUID, bytes) go as they are
    except (TypeError, ValueError):
        return repr(value)
    return value


# Commands that read ``active``/``reserved``: with work-sharing children those are read back from
# the slot table and the broker first, a round trip that ``ping`` and the rest need not pay.
READS_BOOKS = frozenset(
    {"active", "reserved", "dump_active", "dump_reserved", "query_task", "stats", "revoke", "terminate"}
    | {"revoke_by_stamped_headers", "drain"}
)
# Commands whose new state work-sharing children need too (each sorts and runs what it takes).
CHILD_STATE = frozenset(
    {
        "revoke_by_stamped_headers",
        "rate_limit",
        "time_limit",
        "add_consumer",
        "cancel_consumer",
        "enable_events",
        "disable_events",
        "drain",
    }
)


class _Listener(threading.Thread):
    """The listener thread; ``start()`` subscribes before returning, then the thread serves."""

    def __init__(self, remote: RemoteControl) -> None:
        super().__init__(target=remote.run, name="remote-control", daemon=True)
        self.remote = remote

    def start(self) -> None:
        self.remote.subscribe()
        super().start()


def _decoded(raw: bytes, accepted: frozenset[str]) -> TaskMessage | None:
    """A held message, decoded again (it was accepted when fetched; one that fails now is skipped)."""
    try:
        return task_protocol.decode_again(raw, accepted)
    except task_protocol.MalformedMessage:
        return None


def scheduled_item(eta: float, message: TaskMessage, hostname: str) -> dict[str, Any]:
    """One entry of Celery's ``scheduled`` reply: the ETA as the message gave it, the priority of
    the worker's timer entry (Celery's is always 6, not the message's), and the request info."""
    when = message.eta or dt.datetime.fromtimestamp(eta, dt.timezone.utc)
    return {"eta": when.isoformat(), "priority": ETA_TIMER_PRIORITY, "request": request_info(message, hostname)}


def _signum(name: Any) -> int:
    if isinstance(name, int):
        return name
    text = str(name or "SIGTERM").upper()
    return int(getattr(signals, text if text.startswith("SIG") else f"SIG{text}"))


class RemoteControl:
    def __init__(self, worker: Worker, fanout: RedisFanout) -> None:
        self.worker = worker
        self.fanout = fanout
        allow = worker.app.conf.worker_control_allow
        self.allow = set(allow) if allow is not None else None
        self.clock = 0
        # Celery's pool limit: the size the pool started with; pool_grow/shrink leave it alone.
        self.max_concurrency = worker.autoscale[1] if worker.autoscale else worker.concurrency
        self.prefetch_multiplier = worker.prefetch_multiplier
        self._pubsub: resp.PubSub | None = None
        self.thread = _Listener(self)
        self.handlers: dict[str, Callable[..., Any]] = {
            name: getattr(self, f"do_{name}")
            for name in (
                "ping",
                "active",
                "reserved",
                "scheduled",
                "revoked",
                "registered",
                "stats",
                "active_queues",
                "conf",
                "query_task",
                "revoke",
                "revoke_by_stamped_headers",
                "terminate",
                "rate_limit",
                "time_limit",
                "add_consumer",
                "cancel_consumer",
                "enable_events",
                "disable_events",
                "heartbeat",
                "pool_grow",
                "pool_shrink",
                "autoscale",
                "pool_restart",
                "shutdown",
                "clock",
                "report",
                "hello",
                "drain",
            )
        }
        for alias, name in ALIASES.items():
            self.handlers[alias] = self.handlers[name]
        self.custom: dict[str, custom.CommandSpec] = {}
        self._custom_loaded = 0.0  # ``Worker.start`` collects them (a pool's children never serve commands)

    def load_custom(self) -> None:
        """Collect the app's ``@control_command``/``@inspect_command`` functions; builtins keep their names."""
        self._custom_loaded = time.monotonic()
        found = custom.collect(self.worker.app)
        for name in sorted(set(found) & set(self.handlers)):
            log.warning("custom remote command %r ignored: a builtin command has that name", name)
        self.custom = {name: spec for name, spec in found.items() if name not in self.handlers}

    # -- the loop -----------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Subscribe now, so a worker that says "ready" already hears commands (pub/sub keeps nothing)."""
        try:
            self._pubsub = self.fanout.subscribe([self.fanout.channel(protocol.EXCHANGE)])
        except (resp.RedisError, OSError) as exc:
            log.debug("remote control subscribe: %s (the listener retries)", exc)

    def run(self) -> None:
        w = self.worker
        pubsub, self._pubsub = self._pubsub, None
        while not w.stopping.is_set():
            try:
                if pubsub is None:
                    pubsub = self.fanout.subscribe([self.fanout.channel(protocol.EXCHANGE)])
                message = pubsub.get_message(timeout=0.5)
                if message and message.get("type") in ("message", "pmessage"):
                    self.handle(message["data"])
            except (resp.RedisError, OSError) as exc:
                log.debug("remote control listener: %s", exc)
                pubsub = None
                w.stopping.wait(1.0)
        if pubsub is not None:
            pubsub.close()

    def handle(self, raw: bytes) -> None:
        signer = self.worker.app.signer
        if signer is not None and (why := signer.verify(raw)) is not None:
            log.warning("ignored a remote-control message: bad_signature: %s", why)
            return
        request = protocol.decode_request(raw)
        if request is None or not request.addressed_to(self.worker.hostname):
            return
        self.clock += 1
        result = self.dispatch(request.method, request.arguments)
        if result is NO_REPLY or not (request.ticket and request.reply_to):
            return
        oid = request.reply_to.get("routing_key")
        if oid:
            try:
                reply = protocol.encode_reply(self.worker.hostname, result, request.ticket, oid, self.clock)
            except (TypeError, ValueError) as exc:  # a custom command returned a set, an object...: say so
                log.warning("reply to %r is not JSON: %s", request.method, exc)
                reply = protocol.encode_reply(
                    self.worker.hostname, {"error": f"reply is not JSON: {exc}"}, request.ticket, oid, self.clock
                )
            self.fanout.reply(oid, reply, request.reply_to.get("exchange") or protocol.REPLY_EXCHANGE)

    def dispatch(self, method: str, arguments: dict[str, Any]) -> Any:
        handler = self.handlers.get(method) or self._custom_handler(method)
        if handler is None:
            return {"error": f"KeyError({method!r})"}
        if self.allow is not None and method not in self.allow:
            log.warning("refused remote command %r (not in worker_control_allow)", method)
            return {"error": f"command {method!r} is not allowed on {self.worker.hostname}"}
        try:
            if method in READS_BOOKS or method not in self.handlers:  # (a custom command may read them)
                self.worker.refresh_books()  # work-sharing children: what they hold, read now
            answer = handler(**arguments)
            if method in CHILD_STATE:
                self.worker.sync_children()  # work-sharing children sort what they take: they need it
            return answer
        except Exception as exc:  # a bad argument (or a custom command's bug) must not kill the listener
            if method not in self.handlers:
                log.exception("custom remote command %r failed", method)
            return {"error": repr(exc)}

    def _custom_handler(self, method: str) -> Callable[..., Any] | None:
        spec = self.custom.get(method)
        if spec is None and time.monotonic() - self._custom_loaded > RELOAD_EVERY:
            self.load_custom()  # a module imported since start (by a task) may have added one
            spec = self.custom.get(method)
        if spec is None:
            return None
        w = self.worker
        state = custom.CommandState(app=w.app, hostname=w.hostname, consumer=w.consumer, worker=w, control=self)
        return lambda **arguments: spec.fun(state, **arguments)

    # -- inspection ---------------------------------------------------------------------------
    def do_ping(self, **_: Any) -> dict[str, str]:
        return {"ok": "pong"}

    def do_active(self, safe: Any = None, **_: Any) -> list[dict[str, Any]]:
        w = self.worker
        return [job.info(w.hostname) for job in list(w.active.values())]

    def do_reserved(self, **_: Any) -> list[dict[str, Any]]:
        w = self.worker
        return [job.info(w.hostname) for job in list(w.reserved.values())]

    def do_scheduled(self, **_: Any) -> list[dict[str, Any]]:
        """ETA tasks this worker holds, as Celery's worker lists only its own. On Redis it holds
        none: an ETA task waits in the broker's delayed set until due, for whichever worker takes
        it then, so no worker may claim it (N workers claiming one task made tools count it N
        times); ``tqctl inspect scheduled`` and the console read that set from the broker. On
        RabbitMQ a task due within a few seconds (``engine.broker.amqp.HOLD``) is held here
        unacked until due, as Celery holds it, and is listed (a later one waits in RabbitMQ's
        delay levels, which nobody can list)."""
        w = self.worker
        return [
            scheduled_item(eta, message, w.hostname)
            for eta, delivery in w.broker.held_etas()
            if (message := _decoded(delivery.raw, w.consumer.accepted)) is not None
        ]

    def do_revoked(self, **_: Any) -> list[str]:
        return sorted(self.worker.revoked)

    def do_registered(self, taskinfoitems: Any = None, builtins: bool = False, **_: Any) -> list[str]:
        """Celery's reply: task names, builtins (``celery.*``) only when asked, each followed by the
        requested attributes that are set (``add [rate_limit=10/s]``)."""
        tasks = self.worker.app.tasks
        items = list(taskinfoitems or TASK_INFO_ITEMS)
        names = sorted(n for n in tasks if builtins or not n.startswith("celery."))
        out = []
        for name in names:
            fields = [f"{item}={value}" for item in items if (value := getattr(tasks[name], item, None)) is not None]
            out.append(f"{name} [{' '.join(fields)}]" if fields else name)
        return out

    def do_stats(self, **_: Any) -> dict[str, Any]:
        return stats.worker_stats(self.worker, self.clock, self.max_concurrency)

    def do_active_queues(self, **_: Any) -> list[dict[str, Any]]:
        return [stats.queue_as_dict(q) for q in self.worker.queues]

    def do_conf(self, with_defaults: bool = False, **_: Any) -> dict[str, Any]:
        conf = self.worker.app.conf
        if not with_defaults:
            return _jsonable(conf.changes())
        return _jsonable({key: masked_setting(key, conf[key]) for key in conf if not callable(conf[key])})

    def do_query_task(self, ids: Any = None, **_: Any) -> dict[str, Any]:
        w = self.worker
        found: dict[str, Any] = {}
        for task_id in _ids(ids):
            if task_id in w.active:
                found[task_id] = ["active", w.active[task_id].info(w.hostname)]
            elif task_id in w.reserved:
                found[task_id] = ["reserved", w.reserved[task_id].info(w.hostname)]
        return found

    def do_clock(self, **_: Any) -> dict[str, int]:
        return {"clock": self.clock}

    def do_report(self, **_: Any) -> dict[str, str]:
        return {"ok": stats.bugreport(self.worker)}

    def do_hello(self, from_node: str | None = None, revoked: Any = None, **_: Any) -> dict[str, Any]:
        incoming = revoked.keys() if isinstance(revoked, dict) else (revoked or [])
        self.worker.revoked.update(str(i) for i in incoming)
        return {"revoked": sorted(self.worker.revoked), "clock": self.clock}

    # -- control ------------------------------------------------------------------------------
    def do_revoke(self, task_id: Any = None, terminate: bool = False, signal: Any = None, **_: Any) -> dict[str, str]:
        ids = _ids(task_id)
        store_revoked(self.fanout, ids)
        self.worker.revoked.update(ids)
        mark_revoked(self.worker.app.backend, ids, self.worker.active)
        if not terminate:
            return {"ok": f"tasks {', '.join(ids)} flagged as revoked"}
        killed = [i for i in ids if self.worker.terminate(i, _signum(signal))]
        return {"ok": f"terminate: {', '.join(killed)}" if killed else "terminate: tasks unknown"}

    def do_revoke_by_stamped_headers(
        self, headers: Any = None, terminate: bool = False, signal: Any = None, **_: Any
    ) -> dict[str, str]:
        """Revoke every task stamped with one of these values; with ``terminate``, kill the running ones.

        ``headers`` is ``{header: value or [values]}``, or Celery's older ``["header=value", ...]``."""
        if isinstance(headers, list):
            headers = dict(str(h).split("=", 1) for h in headers if "=" in str(h))
        if not isinstance(headers, dict):
            return {"error": f"headers must be a dict of stamped header to values, not {headers!r}"}
        self.worker.revoked.stamps.add(headers)
        if not terminate:
            return {"ok": f"headers {headers} flagged as revoked, but not terminated"}
        signum, terminated = _signum(signal), dict[str, set[Any]]()
        for task_id, job in list(self.worker.active.items()):
            hits = self.worker.revoked.stamps.match(job.message.headers, headers)
            if hits and self.worker.terminate(task_id, signum):
                for header, values in hits.items():
                    terminated.setdefault(header, set()).update(values)
        if not terminated:
            return {"ok": f"headers {headers} were not terminated"}
        return {"ok": f"headers {terminated} revoked"}

    def do_terminate(self, task_id: Any = None, signal: Any = None, **_: Any) -> dict[str, str]:
        return self.do_revoke(task_id=task_id, terminate=True, signal=signal)

    def do_rate_limit(self, task_name: str = "", rate_limit: Any = None, **_: Any) -> dict[str, str]:
        task = self.worker.app.tasks.get(task_name)
        if task is None:
            return {"error": f"unknown task {task_name!r}"}
        task.rate_limit = rate_limit or None
        self.worker.consumer.set_rate_limit(task_name, rate_limit or None)
        return {"ok": "new rate limit set successfully"}

    def do_time_limit(self, task_name: str = "", hard: Any = None, soft: Any = None, **_: Any) -> dict[str, str]:
        task = self.worker.app.tasks.get(task_name)
        if task is None:
            return {"error": f"unknown task {task_name!r}"}
        task.time_limit, task.soft_time_limit = hard, soft
        return {"ok": "time limits set successfully"}

    def do_add_consumer(self, queue: str = "", **_: Any) -> dict[str, str]:
        if queue and queue not in self.worker.queues:
            self.worker.broker.declare([queue])
            self.worker.queues = [*self.worker.queues, queue]
        return {"ok": f"add consumer {queue}"}

    def do_cancel_consumer(self, queue: str = "", **_: Any) -> dict[str, str]:
        self.worker.queues = [q for q in self.worker.queues if q != queue]
        return {"ok": f"no longer consuming from {queue}"}

    def do_enable_events(self, **_: Any) -> dict[str, str]:
        return self._set_events(True)

    def do_disable_events(self, **_: Any) -> dict[str, str]:
        return self._set_events(False)

    def _set_events(self, on: bool) -> dict[str, str]:
        """Celery's replies: "task events enabled", "task events already disabled", ..."""
        events = self.worker.events
        was = bool(events and events.enabled)
        if events:
            events.enabled = on
        word = "enabled" if on else "disabled"
        return {"ok": f"task events already {word}" if was == on else f"task events {word}"}

    def do_heartbeat(self, **_: Any) -> None:
        self.worker.send_heartbeat(on_demand=True)
        return None

    def do_pool_grow(self, n: int = 1, **_: Any) -> dict[str, str]:
        if self.worker.autoscale:
            return {"error": "pool size is managed by autoscale; use autoscale"}
        before = self.worker.pool.size()
        self._prefetch_follows(self.worker.pool.grow(int(n)) - before)
        return {"ok": "pool will grow"}

    def do_pool_shrink(self, n: int = 1, **_: Any) -> dict[str, str]:
        if self.worker.autoscale:
            return {"error": "pool size is managed by autoscale; use autoscale"}
        before = self.worker.pool.size()
        after = self.worker.pool.shrink(int(n))
        if int(n) > 0 and after == before:
            # Ours never retires its last process (Celery's can shrink to none and then runs nothing):
            # say so, rather than "pool will shrink" for a pool that stays as it is.
            return {"error": f"the pool is at its smallest ({before} process); nothing to shrink"}
        self._prefetch_follows(after - before)
        return {"ok": "pool will shrink"}

    def _prefetch_follows(self, change: int) -> None:
        """The prefetch window follows the pool, ``multiplier`` messages a process, as Celery's does:
        without it, a grown pool's new processes would wait for messages the worker never fetches."""
        w = self.worker
        w.prefetch = max(1, w.prefetch + change * self.prefetch_multiplier)
        w.capacity.resize(w.prefetch)
        w.wake()

    def do_autoscale(self, max: int | None = None, min: int | None = None, **_: Any) -> dict[str, str]:  # noqa: A002
        if max is None:
            return {"error": "ValueError('autoscale needs max')"}
        before = self.worker.autoscale
        self.worker.autoscale = (int(max), int(min or 0))
        if before:  # the window is sized for MAX (as at start): it follows a new MAX, as Celery's
            self._prefetch_follows(int(max) - before[0])
        return {"ok": f"autoscale now max={int(max)} min={int(min or 0)}"}

    def do_pool_restart(self, **_: Any) -> dict[str, str]:
        return {"error": "ValueError('Pool restarts not enabled')"}

    def do_shutdown(self, **_: Any) -> object:
        log.warning("Got shutdown from remote")
        self.worker.request_stop()
        return NO_REPLY

    def do_drain(self, timeout: float = 60.0, **_: Any) -> dict[str, str]:
        """Stop consuming, wait for active and reserved work to finish, then shut down."""
        threading.Thread(target=self.worker.drain, args=(float(timeout),), daemon=True).start()
        return {"ok": f"draining: stopped consuming; shutting down when idle (timeout {timeout}s)"}
