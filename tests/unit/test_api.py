"""The public API a Celery user writes, checked without worker processes.

Eager mode, names, settings, routing, rate strings, exceptions, ``shared_task`` and signatures
are pure. Where a test must see what the client actually publishes, it reads the message back
from the session's real server (``redis_client``), never from a mock.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

import engine
from engine import App, EagerResult, Signature, shared_task, states
from engine import exceptions as exc_mod
from engine.protocol import task as protocol
from engine.protocol.results import encode_exception, meta
from engine.ratelimit import TokenBucket, parse_rate
from engine.routing import route
from engine.task import backoff_delay

UTC = dt.timezone.utc
BOTH = frozenset({"application/json", "application/x-python-serialize"})
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any connection attempt fails


def published(client: redis.Redis, key: str = "celery") -> list[protocol.TaskMessage]:
    """Messages waiting in one list key, oldest first, decoded as a worker would."""
    return [protocol.decode(raw, BOTH) for raw in reversed(client.lrange(key, 0, -1))]


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Any:
    application = App("unit", broker=redis_url, backend=redis_url)
    yield application
    application.close()


# -- names you import ---------------------------------------------------------------------------


def test_the_celery_names_are_importable_from_engine() -> None:
    for name in (
        "App",
        "AsyncResult",
        "Celery",
        "EagerResult",
        "GroupResult",
        "Signature",
        "Task",
        "chain",
        "chord",
        "group",
        "shared_task",
        "signature",
        "states",
    ):
        assert hasattr(engine, name), name
    assert engine.Celery is engine.App


@pytest.mark.parametrize(
    "name",
    [
        "Retry",
        "MaxRetriesExceededError",
        "SoftTimeLimitExceeded",
        "TimeLimitExceeded",
        "Reject",
        "NotRegistered",
        "TaskRevokedError",
        "WorkerLostError",
    ],
)
def test_celery_exceptions_are_importable_and_encode_as_celery_exceptions(name: str) -> None:
    cls = getattr(exc_mod, name)
    assert issubclass(cls, BaseException)
    encoded = encode_exception(cls("why"))
    assert encoded == {"exc_type": name, "exc_message": encoded["exc_message"], "exc_module": "celery.exceptions"}


def test_exception_constructors_take_celerys_arguments() -> None:
    cause = ValueError("boom")
    retry = exc_mod.Retry("later", exc=cause, when=5)
    assert (retry.message, retry.exc, retry.when) == ("later", cause, 5)
    reject = exc_mod.Reject("bad input", requeue=True)
    assert (reject.reason, reject.requeue) == ("bad input", True)
    assert issubclass(exc_mod.NotRegistered, KeyError)  # as in Celery: `except KeyError` still catches it


# -- task names, options, registration ----------------------------------------------------------


def test_default_task_name_is_module_dot_function() -> None:
    app = App("unit", broker=NOWHERE)

    @app.task
    def checkout(x: int) -> int:
        return x

    assert checkout.name == f"{__name__}.checkout" == "tests.unit.test_api.checkout"
    assert app.tasks[checkout.name] is checkout


def test_default_name_in_main_uses_the_app_main_name() -> None:
    app = App("shopmain", broker=NOWHERE)

    def refund() -> None: ...

    refund.__module__ = "__main__"
    assert app.task(refund).name == "shopmain.refund"


def test_explicit_name_and_not_registered() -> None:
    app = App("unit", broker=NOWHERE)

    @app.task(name="billing.charge")
    def charge() -> str:
        return "ok"

    assert charge.name == "billing.charge" and app.tasks["billing.charge"] is charge
    with pytest.raises(exc_mod.NotRegistered):
        app.tasks["billing.nope"]


def test_the_task_still_works_as_a_plain_function() -> None:
    app = App("unit", broker=NOWHERE)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(bind=True)
    def who(self: Any) -> tuple[str, bool]:
        return self.name, self.request.called_directly

    assert add(2, 3) == 5
    assert who() == (who.name, True)


OPTIONS: dict[str, Any] = {
    "max_retries": 7,
    "default_retry_delay": 12,
    "autoretry_for": (KeyError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": False,
    "rate_limit": "10/m",
    "time_limit": 30,
    "soft_time_limit": 20,
    "acks_late": True,
    "ignore_result": True,
    "queue": "high",
    "serializer": "pickle",
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_task_options_are_accepted_and_kept(option: str) -> None:
    app = App("unit", broker=NOWHERE)
    task = app.task(name=f"unit.{option}", **{option: OPTIONS[option]})(lambda: None)
    assert getattr(task, option) == OPTIONS[option]


def test_celery_task_option_defaults_and_unknown_options() -> None:
    app = App("unit", broker=NOWHERE)
    task = app.task(name="unit.defaults")(lambda: None)
    defaults = (task.max_retries, task.default_retry_delay, task.retry_backoff_max, task.retry_jitter)
    assert defaults == (3, 180, 600, True)
    with pytest.raises(TypeError, match="colour"):
        app.task(name="unit.bad", colour="red")(lambda: None)


def test_task_options_fall_back_to_app_settings() -> None:
    app = App("unit", broker=NOWHERE, task_acks_late=True, task_ignore_result=True)
    task = app.task(name="unit.plain")(lambda: None)
    own = app.task(name="unit.own", acks_late=False)(lambda: None)
    assert task.opt("acks_late", "task_acks_late") is True
    assert task.opt("ignore_result", "task_ignore_result") is True
    assert own.opt("acks_late", "task_acks_late") is False


# -- settings -----------------------------------------------------------------------------------


def test_defaults_match_celery() -> None:
    conf = App(broker=NOWHERE).conf
    assert conf.task_default_queue == "celery"
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_always_eager is False and conf.task_eager_propagates is False
    assert conf.result_expires.total_seconds() == 86400 and conf.enable_utc is True  # a timedelta, as Celery's


def test_config_from_object_reads_celery_lowercase_names_from_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"celeryconfig_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        broker_url = "redis://broker.example:6379/0"
        result_backend = "redis://results.example:6379/1"
        task_default_queue = "jobs"
        task_routes = {"shop.*": {"queue": "shop"}}
        task_always_eager = True
        task_eager_propagates = True
        accept_content = ["json"]
        task_acks_late = True
        CELERY_IGNORED = "old uppercase names are not settings"
        _private = "ignored"
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = App("unit")
    app.config_from_object(module)
    conf = app.conf
    assert conf.broker_url == "redis://broker.example:6379/0"
    assert conf.result_backend == "redis://results.example:6379/1"
    assert conf.task_default_queue == "jobs"
    assert conf.task_routes == {"shop.*": {"queue": "shop"}}
    assert conf.task_always_eager is True and conf.task_eager_propagates is True
    assert conf.task_acks_late is True
    assert "CELERY_IGNORED" not in conf and "celery_ignored" not in conf and "_private" not in conf
    assert app.broker_url() == "redis://broker.example:6379/0"
    assert app.backend_url() == "redis://results.example:6379/1"
    sys.modules.pop(module, None)


def test_config_from_object_takes_an_object_and_conf_update() -> None:
    class Config:
        task_default_queue = "from-object"
        worker_prefetch_multiplier = 1

    app = App("unit", broker=NOWHERE, config_source=Config)
    assert app.conf.task_default_queue == "from-object" and app.conf.worker_prefetch_multiplier == 1
    app.conf.update(task_default_queue="updated", TASK_IGNORE_RESULT=True)
    assert app.conf["task_default_queue"] == "updated" and app.conf.task_ignore_result is True


def test_env_vars_name_broker_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQCTL_BROKER", "redis://env-broker:6379/0")
    monkeypatch.setenv("TQCTL_BACKEND", "redis://env-backend:6379/3")
    app = App("unit")
    assert app.broker_url() == "redis://env-broker:6379/0"
    assert app.backend_url() == "redis://env-backend:6379/3"
    monkeypatch.delenv("TQCTL_BACKEND")
    assert app.backend_url() == "redis://env-broker:6379/0"  # a Redis broker doubles as the backend
    configured = App("unit", broker="redis://conf-broker:6379/0", backend="redis://conf-backend:6379/0")
    assert configured.broker_url() == "redis://conf-broker:6379/0"  # explicit settings beat the env
    assert configured.backend_url() == "redis://conf-backend:6379/0"


# -- routing ------------------------------------------------------------------------------------


def test_route_shapes_follow_celery() -> None:
    assert route({"shop.charge": {"queue": "pay"}}, "shop.charge", [], {}, {}) == {"queue": "pay"}
    assert route({"shop.charge": "pay"}, "shop.charge", [], {}, {}) == {"queue": "pay"}
    assert route({"shop.*": {"queue": "shop"}}, "shop.refund", [], {}, {}) == {"queue": "shop"}
    assert route({"shop.*": {"queue": "shop"}}, "mail.send", [], {}, {}) == {}
    assert route(None, "shop.refund", [], {}, {}) == {}
    table = [{"mail.*": "mail"}, {"shop.*": {"queue": "shop", "priority": 5}}]
    assert route(table, "shop.refund", [], {}, {}) == {"queue": "shop", "priority": 5}

    def router(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        return {"queue": "big"} if args and args[0] > 100 else None

    assert route([router], "shop.charge", [500], {}, {}) == {"queue": "big"}
    assert route([router, {"shop.*": "shop"}], "shop.charge", [5], {}, {}) == {"queue": "shop"}
    with pytest.raises(TypeError):
        route([42], "shop.charge", [], {}, {})


def test_where_messages_go_default_explicit_task_option_and_routes(app: Any, redis_client: redis.Redis) -> None:
    """Celery's precedence: apply_async(queue=) > the task's own queue option > task_routes > default."""
    app.conf.task_routes = {"unit.routed": {"queue": "routed"}, "unit.own_queue": {"queue": "routed"}}
    plain = app.task(name="unit.plain")(lambda: None)
    routed = app.task(name="unit.routed")(lambda: None)
    own = app.task(name="unit.own_queue", queue="own")(lambda: None)

    ids = {
        "celery": plain.delay().id,
        "explicit": plain.apply_async(queue="explicit").id,
        "routed": routed.delay().id,
        "own": own.delay().id,
        "explicit2": routed.apply_async(queue="explicit2").id,
    }
    for queue, task_id in ids.items():
        [message] = published(redis_client, queue)
        assert message.id == task_id
        assert message.delivery_info["routing_key"] == queue
    sent = app.send_task("unit.not_known_here", args=[1, 2])
    names = [m.name for m in published(redis_client, "celery")]
    assert names == ["unit.plain", "unit.not_known_here"] and sent.id


# -- what apply_async puts on the wire ------------------------------------------------------------


def test_apply_async_options_reach_the_message(app: Any, redis_client: redis.Redis) -> None:
    task = app.task(name="unit.add")(lambda x, y, z=0: x + y + z)
    before = dt.datetime.now(UTC)
    task.apply_async(
        (1, 2),
        {"z": 3},
        countdown=30,
        expires=120,
        task_id="fixed-id",
        headers={"x-tenant": "acme"},
        time_limit=9,
        soft_time_limit=4,
    )
    [m] = published(redis_client)
    assert (m.id, m.name, m.args, m.kwargs) == ("fixed-id", "unit.add", [1, 2], {"z": 3})
    assert before + dt.timedelta(seconds=29) < m.eta < dt.datetime.now(UTC) + dt.timedelta(seconds=31)
    assert m.eta.utcoffset() == dt.timedelta(0)
    assert before + dt.timedelta(seconds=119) < m.expires < dt.datetime.now(UTC) + dt.timedelta(seconds=121)
    assert 0 < int(m.properties["expiration"]) <= 120_000
    assert m.headers["x-tenant"] == "acme"
    assert m.timelimit == (9, 4)
    assert m.root_id == "fixed-id" and m.parent_id is None and m.retries == 0
    assert m.headers["argsrepr"] == "(1, 2)" and m.headers["kwargsrepr"] == "{'z': 3}"
    assert m.headers["lang"] == "py" and m.properties["correlation_id"] == "fixed-id"


def test_eta_datetimes_aware_and_naive(app: Any, redis_client: redis.Redis) -> None:
    task = app.task(name="unit.add")(lambda x, y: x + y)
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    task.apply_async((1, 1), eta=when)
    task.apply_async((1, 1), eta=when.replace(tzinfo=None))  # naive means UTC (enable_utc)
    task.apply_async((1, 1), eta=when.astimezone(dt.timezone(dt.timedelta(hours=2))))
    etas = [m.eta for m in published(redis_client)]
    assert etas == [when, when, when]
    assert published(redis_client)[0].headers["eta"] == "2030-01-02T03:04:05+00:00"


@pytest.mark.parametrize(
    ("priority", "key"),
    [
        (0, "celery"),
        (2, "celery"),
        (3, "celery\x06\x163"),
        (5, "celery\x06\x163"),
        (8, "celery\x06\x166"),
        (9, "celery\x06\x169"),
    ],
)
def test_priority_uses_kombus_redis_buckets(app: Any, redis_client: redis.Redis, priority: int, key: str) -> None:
    task = app.task(name="unit.add")(lambda x, y: x + y)
    task.apply_async((1, 1), priority=priority)
    [m] = published(redis_client, key)
    assert m.properties["priority"] == priority


def test_ignore_result_and_serializer_reach_the_message(app: Any, redis_client: redis.Redis) -> None:
    quiet = app.task(name="unit.quiet", ignore_result=True)(lambda: None)
    pickled = app.task(name="unit.pickled", serializer="pickle")(lambda: None)
    plain = app.task(name="unit.plain")(lambda: None)
    quiet.delay()
    pickled.delay()
    plain.apply_async(serializer="pickle", ignore_result=True)
    first, second, third = published(redis_client)
    assert first.ignore_result is True and first.content_type == "application/json"
    assert second.ignore_result is False and second.content_type == "application/x-python-serialize"
    assert third.ignore_result is True and third.content_type == "application/x-python-serialize"
    with pytest.raises(protocol.MalformedMessage) as refused:  # what a default worker does with it
        protocol.decode(second.raw, frozenset({"application/json"}))
    assert refused.value.reason == "content_disallowed"


def test_link_embeds_celerys_signature_dict(app: Any, redis_client: redis.Redis) -> None:
    add = app.task(name="unit.add")(lambda x, y: x + y)
    add.apply_async((1, 2), link=add.s(10), link_error=add.si(0, 0))
    [m] = published(redis_client)
    assert m.embed == {
        "callbacks": [
            {"task": "unit.add", "args": [10], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}
        ],
        "errbacks": [
            {"task": "unit.add", "args": [0, 0], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": True}
        ],
        "chain": None,
        "chord": None,
    }


# -- results ------------------------------------------------------------------------------------


def test_async_result_reads_celery_meta_documents(app: Any) -> None:
    add = app.task(name="unit.add")(lambda x, y: x + y)
    done, failed, pending = (str(uuid.uuid4()) for _ in range(3))
    app.backend.store(done, meta(done, states.SUCCESS, 42))
    app.backend.store(
        failed,
        meta(
            failed,
            states.FAILURE,
            encode_exception(ValueError("card declined")),
            traceback="Traceback ...\nValueError: card declined\n",
        ),
    )

    ok = add.AsyncResult(done)
    assert ok.id == done and ok.task_id == done
    assert ok.ready() and ok.successful() and not ok.failed()
    assert (ok.state, ok.status, ok.result, ok.get(timeout=1)) == ("SUCCESS", "SUCCESS", 42, 42)

    bad = app.AsyncResult(failed)
    assert bad.ready() and bad.failed() and not bad.successful() and bad.state == "FAILURE"
    assert isinstance(bad.result, ValueError) and bad.result.args == ("card declined",)
    assert bad.traceback.endswith("ValueError: card declined\n")
    with pytest.raises(ValueError, match="card declined"):
        bad.get(timeout=1)
    assert isinstance(bad.get(timeout=1, propagate=False), ValueError)

    waiting = app.AsyncResult(pending)
    assert waiting.state == "PENDING" and not waiting.ready() and waiting.result is None
    started = time.monotonic()
    with pytest.raises(exc_mod.TimeoutError):
        waiting.get(timeout=0.3)
    assert time.monotonic() - started >= 0.25  # it waited out its timeout


# -- eager mode ---------------------------------------------------------------------------------


def test_task_always_eager_runs_inline_without_any_broker() -> None:
    app = App("unit", broker=NOWHERE, backend=NOWHERE, task_always_eager=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(bind=True)
    def info(self: Any) -> dict[str, Any]:
        r = self.request
        return {
            "id": r.id,
            "is_eager": r.is_eager,
            "args": list(r.args),
            "retries": r.retries,
            "called_directly": r.called_directly,
        }

    result = add.delay(2, 3)
    assert isinstance(result, EagerResult)
    assert result.get() == 5 and result.result == 5
    assert result.ready() and result.successful() and result.state == "SUCCESS"
    got = info.apply_async(task_id="eager-1").get()
    assert got == {"id": "eager-1", "is_eager": True, "args": [], "retries": 0, "called_directly": False}
    assert app.signature("unit.nothing").name == "unit.nothing"
    assert add.s(1).delay(1).get() == 2


def test_eager_failure_is_stored_or_propagated() -> None:
    app = App("unit", broker=NOWHERE, task_always_eager=True)

    @app.task
    def boom() -> None:
        raise ValueError("card declined")

    result = boom.delay()
    assert result.failed() and result.state == "FAILURE" and result.ready()
    assert isinstance(result.result, ValueError)
    assert "ValueError: card declined" in result.traceback
    with pytest.raises(ValueError, match="card declined"):
        result.get()
    app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="card declined"):
        boom.delay()


def test_eager_retry_reruns_inline_up_to_max_retries() -> None:
    app = App("unit", broker=NOWHERE, task_always_eager=True)
    calls: list[int] = []

    @app.task(bind=True, max_retries=3)
    def flaky(self: Any, succeed_on: int) -> int:
        calls.append(self.request.retries)
        if self.request.retries < succeed_on:
            raise self.retry(exc=KeyError("again"), countdown=60)
        return self.request.retries

    assert flaky.delay(2).get() == 2 and calls == [0, 1, 2]
    calls.clear()
    result = flaky.delay(9)
    assert calls == [0, 1, 2, 3] and result.state == "FAILURE" and isinstance(result.result, KeyError)

    @app.task(bind=True, max_retries=1)
    def give_up(self: Any) -> None:
        raise self.retry(countdown=60)

    with pytest.raises(exc_mod.MaxRetriesExceededError):
        give_up.delay().get()


def test_apply_is_always_inline() -> None:
    app = App("unit", broker=NOWHERE)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.apply((4, 5)).get() == 9


# -- shared_task --------------------------------------------------------------------------------


def test_shared_task_binds_to_apps_made_before_and_after() -> None:
    earlier = App("earlier", broker=NOWHERE, task_always_eager=True)

    @shared_task(name="lib.double")
    def double(x: int) -> int:
        return 2 * x

    later = App("later", broker=NOWHERE, task_always_eager=True)
    assert "lib.double" in earlier.tasks and "lib.double" in later.tasks
    assert double(4) == 8
    assert double.delay(5).get() == 10
    assert double.name == "lib.double"

    @shared_task
    def triple(x: int) -> int:
        return 3 * x

    assert f"{__name__}.triple" in later.tasks and triple.delay(2).get() == 6


# -- rate strings and backoff -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("5/s", 5.0),
        ("100/m", 100 / 60),
        ("3600/h", 1.0),
        ("10", 10.0),
        (2, 2.0),
        (0.5, 0.5),
        (None, None),
        ("", None),
        ("0/s", None),
        ("  7/sec ", 7.0),
        ("30/min", 0.5),
    ],
)
def test_rate_limit_strings(text: Any, per_second: float | None) -> None:
    assert parse_rate(text) == pytest.approx(per_second) if per_second else parse_rate(text) is None


@pytest.mark.parametrize("bad", ["fast", "5/d", "x/s"])
def test_bad_rate_limit_strings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(bad)


def test_token_bucket_spaces_tasks_at_the_rate() -> None:
    bucket = TokenBucket(5.0)
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.2, abs=0.02)


def test_backoff_is_celerys_exponential_with_cap_and_full_jitter() -> None:
    assert [backoff_delay(n, 1, 600, False) for n in range(5)] == [1, 2, 4, 8, 16]
    assert [backoff_delay(n, 3, 20, False) for n in range(4)] == [3, 6, 12, 20]
    assert all(0 <= backoff_delay(4, 1, 600, True) <= 16 for _ in range(50))


# -- signatures ---------------------------------------------------------------------------------


def test_signatures_are_celerys_dict() -> None:
    app = App("unit", broker=NOWHERE)
    add = app.task(name="unit.add")(lambda x, y: x + y)
    sig = add.s(10)
    assert dict(sig) == {
        "task": "unit.add",
        "args": (10,),  # a tuple, as Celery's; JSON sends a list
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": False,
    }
    assert json.loads(json.dumps(sig)) == {**sig, "args": [10]}
    assert add.si(1, 2)["immutable"] is True
    full = add.signature((1,), {"y": 2}, countdown=3, queue="high")
    assert full["options"] == {"countdown": 3, "queue": "high"} and full["kwargs"] == {"y": 2}
    assert sig.set(task_id="abc")["options"] == {"task_id": "abc"}


def test_a_signature_dict_from_the_wire_is_usable() -> None:
    app = App("unit", broker=NOWHERE, task_always_eager=True)
    app.task(name="tqproto.add")(lambda x, y: x + y)
    wire = {
        "task": "tqproto.add",
        "args": [10],
        "kwargs": {},
        "options": {"task_id": "t-1", "queue": "celery"},
        "subtask_type": None,
        "immutable": False,
    }
    sig = engine.signature(wire, app=app)
    assert isinstance(sig, Signature) and sig.name == "tqproto.add" and dict(sig) == wire
    assert sig.clone((5,))["args"] == (5, 10)  # clone gives a tuple, as Celery's
    assert engine.signature(dict(wire, immutable=True), app=app).clone((5,))["args"] == (10,)
    assert sig.delay(5).get() == 15
    assert engine.signature("tqproto.add", (1, 2), app=app).delay().get() == 3


def test_chain_of_signatures_is_a_celery_chain_dict() -> None:
    app = App("unit", broker=NOWHERE)
    add = app.task(name="unit.add")(lambda x, y: x + y)
    flow = add.s(1, 2) | add.s(3)
    data = json.loads(json.dumps(flow))
    assert data["task"] == "celery.chain" and data["subtask_type"] == "chain"
    assert [step["task"] for step in data["kwargs"]["tasks"]] == ["unit.add", "unit.add"]


def test_eager_autoretry_past_max_retries_fails_with_the_original_error() -> None:
    app = App("unit", broker=NOWHERE, task_always_eager=True)
    calls: list[int] = []

    @app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=2)
    def fetch(self: Any) -> None:
        calls.append(self.request.retries)
        raise ConnectionError("service down")

    result = fetch.delay()
    assert calls == [0, 1, 2]
    assert result.state == "FAILURE" and isinstance(result.result, ConnectionError)
    with pytest.raises(ConnectionError, match="service down"):
        result.get()


def test_autoretry_backoff_countdown_is_capped_by_retry_backoff_max(monkeypatch: pytest.MonkeyPatch) -> None:
    """The countdown each automatic retry asks for (the integration test only checks lower bounds)."""
    app = App("unit", broker=NOWHERE, task_always_eager=True)

    @app.task(
        bind=True,
        autoretry_for=(ConnectionError,),
        retry_backoff=0.2,
        retry_backoff_max=0.3,
        retry_jitter=False,
        max_retries=3,
    )
    def unreachable(self: Any) -> None:
        raise ConnectionError("service down")

    countdowns: list[float | None] = []
    retry = unreachable.retry

    def spy(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs.get("countdown"))
        return retry(*args, **kwargs)

    monkeypatch.setattr(unreachable, "retry", spy)
    assert unreachable.delay().state == "FAILURE"
    assert countdowns == [0.2, 0.3, 0.3, 0.3]  # 0.2 * 2**n, capped; the last one finds retries used up


def test_eager_retry_that_fails_keeps_the_final_traceback() -> None:
    app = App("unit", broker=NOWHERE, task_always_eager=True)

    @app.task(bind=True, max_retries=1)
    def flaky(self: Any) -> None:
        raise self.retry(exc=KeyError("still missing"), countdown=60)

    result = flaky.delay()
    assert result.state == "FAILURE" and "KeyError: 'still missing'" in result.traceback


def test_a_result_that_cannot_be_stored_fails_the_task_with_encode_error(app: Any) -> None:
    """Not a crashed pool child: the client sees FAILURE and why, and the worker goes on."""
    from engine import trace
    from engine.request import Request

    @app.task(name="unit.unstorable")
    def unstorable() -> object:
        return object()

    request = Request(id=str(uuid.uuid4()), name="unit.unstorable", called_directly=False)
    outcome = trace.run(app, unstorable, request)
    assert outcome.state == states.FAILURE and "EncodeError" in outcome.exception_repr
    stored = app.AsyncResult(request.id)
    assert stored.state == states.FAILURE and "cannot store the result of unit.unstorable" in str(stored.result)
