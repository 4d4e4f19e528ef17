"""The send path: from a call (``delay``, ``apply_async``, ``send_task``, ``send_many``) to a
message on the broker, and what follows the publish (hooks, the ``task-sent`` event, the result
handle).

An ``App`` owns one ``Sender``; the sender owns what makes a repeated send cheap (the app's
message templates and send plans), so a send's cost and its caching live in one place.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from engine import forks, publish, trail
from engine.config import env_backend_url
from engine.protocol import task as protocol
from engine.protocol.template import FIXED, Template, Templates
from engine.redisconn import guarded
from engine.result import AsyncResult
from engine.routing import route

if TYPE_CHECKING:
    from engine.app import App
    from engine.task import Task

UTC = dt.timezone.utc
_ORIGINS: dict[int, str] = {}


def _origin() -> str:
    """Celery's ``origin`` header (``gen<pid>@<host>``), looked up once per process, not per send."""
    pid = forks.pid
    origin = _ORIGINS.get(pid)
    if origin is None:
        origin = _ORIGINS[pid] = f"gen{pid}@{socket.gethostname()}"
    return origin


class Outgoing(NamedTuple):
    """One encoded task message, ready to publish, and what its after-send steps need."""

    task_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int | None
    raw: bytes
    message_options: dict[str, Any]
    hooks: list[publish.Publishing]


class SendPlan(NamedTuple):
    """A send's queue, priority and message options, and its message template (``App._plan``).
    ``message_options`` is shared by every send of the plan: read, never changed."""

    queue: str
    priority: int | None
    message_options: dict[str, Any]
    template: Template


# Call options a plan may hold: none is per message or per call (no id, ETA, expiry, link, header).
PLANNED_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "routing_key",
        "exchange",
        "serializer",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "shadow",
        "retries",
        "reply_to",
    }
)
PLANS = 256


class Sender:
    """An app's sends: its plans and templates, and the steps every send path shares."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.templates = Templates()  # each task's message serialized once per set of options
        self.plans: dict[tuple[Any, ...], SendPlan] = {}
        # What every plan was worked out under: the settings' version, the backend object (None
        # until opened) and whether results go over rpc:// (then each send asks the backend for
        # its reply queue). When one changes, the plans are dropped (``_plans_valid``).
        self._version = -1
        self._backend: Any = None
        self._rpc = False

    def send(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: dict[str, Any] | None,
        task: Task | None,
        options: dict[str, Any],
    ) -> AsyncResult:
        """``App.send_task``: encode and publish one task message; the handle reads its result."""
        add_to_parent = options.pop("add_to_parent", True)
        out = self.prepare(name, args, kwargs, task, options)
        self.watch_result(out)
        broker = self.app.broker
        sent_at = time.time()  # task-sent's time: before the publish, so never after the task starts
        guarded(broker.url, lambda: broker.publish(out.queue, out.raw, out.priority))
        result = self.after_send(out, sent_at)
        if add_to_parent:
            trail.add(self.app, result)
        return result

    def prepare(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: dict[str, Any] | None,
        task: Task | None,
        options: dict[str, Any],
    ) -> Outgoing:
        """Everything ``send`` does before the publish; ``engine.aio.asend_task`` shares it so
        the sync and asyncio paths build the same message."""
        if not self.app.finalized:  # a client's first send, as Celery's first read of its config
            self.app.finalize()
        task = task if task is not None else self.app.tasks.get(name)
        args, kwargs = list(args or ()), dict(kwargs or {})
        options = {k: v for k, v in options.items() if v is not None}
        stack = self.app.current_requests.stack
        plan = None if stack else self._plan(name, task, options)
        if plan is not None:
            queue, priority, message_options, template = plan
            task_id, raw = template.fill(args, kwargs)
        else:
            if stack and self.app.conf.get("task_inherit_parent_priority"):
                parent_priority = (stack[-1].delivery_info or {}).get("priority")
                if parent_priority is not None:
                    options.setdefault("priority", parent_priority)
            queue, priority, routed = self._destination(name, task, args, kwargs, options)
            message_options = self._message_options(task, options, routed)
            task_id, raw = self.templates.build(name, args, kwargs, queue, priority, message_options)
        hooks: list[publish.Publishing] = []
        if publish.hooks_connected() or self.app.signer is not None:
            (raw,), hooks = self._outgoing(
                name, [raw], message_options["exchange"], message_options["routing_key"] or queue
            )
        return Outgoing(task_id, name, args, kwargs, queue, priority, raw, message_options, hooks)

    def _plan(self, name: str, task: Task | None, options: dict[str, Any]) -> SendPlan | None:
        """Where a send outside a task goes and its message options, worked out once per task and
        set of options: a plain ``delay()`` then costs a lookup and a template fill. The key holds
        the task's own values, read now, so a task attribute changed later makes a new plan; the
        settings, the backend and the process are checked once per call (``_plans_valid``). None
        (work it out per call) for what varies per call: task routes (a router sees the
        arguments), per-message options (an id, an ETA, links, headers)."""
        conf = self.app.conf
        if not options.keys() <= PLANNED_OPTIONS or conf.get("task_routes"):
            return None
        if conf._version != self._version or self.app._backend is not self._backend:
            self._reset_plans()
        own = (
            (
                task,
                task.queue,
                task.own("priority"),
                task.time_limit,
                task.soft_time_limit,
                task.own("ignore_result"),
                task.own("serializer"),
            )
            if task is not None
            else None
        )
        key = (name, own, *options.items(), _origin())
        if self._rpc:
            key += (self._reply_to(),)
        try:
            plan = self.plans.get(key)
        except TypeError:  # an unhashable value (a kombu Queue, a list): no plan
            return None
        if plan is None:
            queue, priority, routed = self._destination(name, task, [], {}, options)
            message_options = self._message_options(task, options, routed)
            fixed = {k: message_options[k] for k in FIXED if k in message_options}
            template = Template(name, queue=queue, priority=priority, **fixed)
            if len(self.plans) >= PLANS:
                self.plans.clear()
            plan = self.plans[key] = SendPlan(queue, priority, message_options, template)
        return plan

    def watch_result(self, out: Outgoing) -> None:
        """As Celery's client (``backend.on_task_call``): listen for the result before the message
        goes, unless it is not stored or this is a task sending from a worker (nobody waits there)."""
        if out.message_options["ignore_result"] or self.app.current_requests.stack:
            return
        on_task_call = getattr(self.app.backend, "on_task_call", None)
        if on_task_call is not None:
            on_task_call(None, out.task_id)

    def after_send(self, out: Outgoing, sent_at: float) -> AsyncResult:
        """What follows a publish (hooks' ``after``, the task-sent event), for both send paths."""
        for hook in out.hooks:
            hook.after()
        sent = self.app.sent_events
        if sent is not None:
            sent.record(out.task_id, out.name, out.args, out.kwargs, out.queue, out.message_options, sent_at)
        result = AsyncResult(out.task_id, self.app, task_name=out.name)
        result.ignored = bool(out.message_options["ignore_result"])
        return result

    def send_many(
        self,
        name: str,
        calls: Sequence[tuple[Sequence[Any], dict[str, Any] | None]],
        task: Task | None,
        options: dict[str, Any],
    ) -> list[AsyncResult]:
        """``App.send_many``, bulk ``send``: one message per ``(args, kwargs)`` with the same options, all
        published in one round trip (``protocol.build_many`` + ``broker.publish_many``).

        Routing is decided once, from the first call's arguments.
        """
        if not calls:
            return []
        task = task if task is not None else self.app.tasks.get(name)
        options = {k: v for k, v in options.items() if v is not None}
        args0, kwargs0 = list(calls[0][0] or ()), dict(calls[0][1] or {})
        queue, priority, routed = self._destination(name, task, args0, kwargs0, options)
        message_options = self._message_options(task, options, routed)
        message_options.pop("task_id", None)
        built = protocol.build_many(name, calls, queue=queue, priority=priority, **message_options)
        raws, hooks = self._outgoing(
            name, [raw for _, raw in built], message_options["exchange"], message_options["routing_key"] or queue
        )
        built = [(task_id, raw) for (task_id, _), raw in zip(built, raws, strict=True)]
        sent_at = time.time()
        guarded(self.app.broker.url, lambda: self.app.broker.publish_many([(queue, raw, priority) for _, raw in built]))
        for hook in hooks:
            hook.after()
        sent = self.app.sent_events
        if sent is not None:
            sent.record_many(
                name,
                (
                    (task_id, args or (), kwargs or {})
                    for (task_id, _), (args, kwargs) in zip(built, calls, strict=True)
                ),
                queue,
                message_options,
                sent_at,
            )
        return [AsyncResult(task_id, self.app, task_name=name) for task_id, _ in built]

    def _outgoing(
        self, name: str, raws: list[bytes], exchange: str, routing_key: str
    ) -> tuple[list[bytes], list[publish.Publishing]]:
        """The messages as they leave: the publish signals' receivers first, then signing, so
        what a receiver adds to the headers is signed too. Costs nothing when neither is on."""
        hooks: list[publish.Publishing] = []
        if publish.hooks_connected():
            hooks = [publish.Publishing(name, raw, exchange, routing_key) for raw in raws]
            raws = [hook.before() for hook in hooks]
        signer = self.app.signer
        if signer is not None:
            raws = [signer.sign(raw) for raw in raws]
        return raws, hooks

    def _destination(
        self, name: str, task: Task | None, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> tuple[str, int | None, dict[str, Any]]:
        """(queue, priority, the matching route) by Celery's precedence: the call's options, then
        the task's own, then ``task_routes``, then the defaults."""
        conf = self.app.conf
        routes = conf.task_routes
        routed = route(routes, name, args, kwargs, options, task=task) if routes else {}
        get = options.get
        queue: Any = get("queue") or (task.queue if task is not None else None) or routed.get("queue")
        queue = queue or conf.task_default_queue
        priority = get("priority")
        if priority is None and task is not None:
            priority = task.own("priority")
        if priority is None:
            priority = routed.get("priority")
        if priority is None:
            priority = conf.task_default_priority
        return str(getattr(queue, "name", queue)), priority, routed

    def _message_options(self, task: Task | None, options: dict[str, Any], routed: dict[str, Any]) -> dict[str, Any]:
        stack = self.app.current_requests.stack
        current = stack[-1] if stack else None
        get = options.get
        parent_id = get("parent_id") or (current.id if current else None)
        root_id = get("root_id") or (current.root_id if current else None)
        if task is not None:
            hard, soft = get("time_limit", task.time_limit), get("soft_time_limit", task.soft_time_limit)
            ignore = get("ignore_result")
            if ignore is None:
                own = task.own("ignore_result")
                ignore = bool(self.app.conf.task_ignore_result if own is None else own)
            serializer = get("serializer") or task.own("serializer")
        else:
            hard, soft = get("time_limit"), get("soft_time_limit")
            ignore = get("ignore_result")
            if ignore is None:
                ignore = bool(self.app.conf.task_ignore_result)
            serializer = get("serializer")
        headers = dict(get("headers") or {})
        for shown in ("argsrepr", "kwargsrepr"):  # the Tasks guide's way to keep secrets out of logs
            if get(shown) is not None:
                headers[shown] = str(get(shown))
        stamped = get("stamped_headers")
        if stamped:  # Celery 5.7's wire shape: the names, and their values under ``stamps``
            stamped = [stamped] if isinstance(stamped, str) else list(stamped)
            headers["stamped_headers"] = stamped
            headers["stamps"] = {key: get(key) for key in stamped}
        return {
            "task_id": get("task_id"),
            "routing_key": get("routing_key") or routed.get("routing_key"),
            "exchange": get("exchange") or routed.get("exchange") or "",
            "eta": self._eta(options) if "countdown" in options or "eta" in options else None,
            "expires": self._expires(get("expires")),
            "retries": int(get("retries") or 0),
            "root_id": root_id,
            "parent_id": parent_id,
            "group": get("group_id"),
            "group_index": get("group_index"),
            "timelimit": (hard, soft),
            "ignore_result": ignore,
            "headers": headers or None,
            "embed": _embed(options),
            "serializer": serializer or self.app.conf.task_serializer,
            "shadow": get("shadow"),
            "origin": _origin(),
            "reply_to": get("reply_to") or self._reply_to(),
            "properties": {k: options[k] for k in protocol.MESSAGE_PROPERTIES if k in options} or None,
        }

    def _reset_plans(self) -> None:
        """Drop the plans: the settings changed, or the backend was opened, closed or replaced.
        Whether replies go over rpc:// is decided here, from the settings and ``TQCTL_BACKEND``
        (read now, not on every send); a new plan reads both again (``_message_options``), so
        a send never misses an rpc:// backend chosen since."""
        app = self.app
        self.plans.clear()
        self._version, self._backend = app.conf._version, app._backend
        if app._backend_ready:
            self._rpc = callable(getattr(app._backend, "reply_to", None))
        else:
            url = app.conf.get("result_backend") or env_backend_url()
            self._rpc = bool(url) and str(url)[:6].lower() == "rpc://"

    def _reply_to(self) -> str:
        """``rpc://`` results: the client's reply queue (consumed before the task naming it is
        sent); other backends leave it empty, as before."""
        if not self.app._backend_ready:
            url = self.app.conf.get("result_backend") or env_backend_url()
            if not url or str(url)[:6].lower() != "rpc://":
                return ""
        reply_to = getattr(self.app.backend, "reply_to", None)
        return str(reply_to()) if callable(reply_to) else ""

    def _eta(self, options: dict[str, Any]) -> dt.datetime | None:
        if options.get("countdown") is not None:
            return dt.datetime.now(UTC) + dt.timedelta(seconds=float(options["countdown"]))
        eta = options.get("eta")
        if eta is None:
            return None
        if isinstance(eta, str):
            eta = protocol.parse_time(eta)
            if eta is None:  # an empty string: no ETA
                return None
        return eta if eta.tzinfo else eta.replace(tzinfo=UTC if self.app.conf.enable_utc else None)

    def _expires(self, expires: Any) -> dt.datetime | None:
        if expires is None:
            return None
        if isinstance(expires, (int, float)):
            return dt.datetime.now(UTC) + dt.timedelta(seconds=float(expires))
        if isinstance(expires, str):
            return protocol.parse_time(expires)
        return expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def _embed(options: dict[str, Any]) -> dict[str, Any] | None:
    link, errs = options.get("link"), options.get("link_error")
    chain, chord = options.get("chain"), options.get("chord")
    if not (link or errs or chain or chord):
        return None
    return {
        "callbacks": _sig_list(link),
        "errbacks": _sig_list(errs),
        "chain": [dict(s) for s in chain] if chain else None,
        "chord": dict(chord) if chord else None,
    }


def _sig_list(value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]
