"""Celery's task API without worker processes: options, class-based tasks, hooks, self.request,
signals, task logging, stamping, pydantic and the settings check.

Where a test must see what the client publishes it reads the message back from the session's real
server; everything else runs eagerly or calls ``engine.trace.run`` directly, as a pool child does.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import logging
from typing import Any

import celery
import pydantic
import pytest
import redis

from engine import App, Task, shared_task, signals, trace
from engine.canvas import Signature
from engine.celery_settings import CELERY_SETTINGS, HONOURED
from engine.config import Settings
from engine.log import TaskFormatter, get_task_logger
from engine.protocol import task as protocol
from engine.request import Request
from engine.stamping import StampingVisitor
from engine.utils.log import get_task_logger as celery_path_logger
from engine.workflows import chain, group

UTC = dt.timezone.utc
NOWHERE = "redis://127.0.0.1:1/0"
CELERY_OPTIONS: dict[str, Any] = {
    "serializer": "json",
    "max_retries": 7,
    "default_retry_delay": 5,
    "rate_limit": "10/s",
    "time_limit": 30,
    "soft_time_limit": 20,
    "ignore_result": True,
    "store_errors_even_if_ignored": True,
    "track_started": True,
    "acks_late": True,
    "acks_on_failure_or_timeout": False,
    "reject_on_worker_lost": True,
    "expires": 60,
    "priority": 5,
    "queue": "high",
    "routing_key": "high",
    "autoretry_for": (KeyError,),
    "dont_autoretry_for": (ValueError,),
    "retry_kwargs": {"countdown": 1},
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "throws": (KeyError,),
    "typing": False,
    "pydantic": False,
    "pydantic_strict": True,
    "pydantic_context": {"a": 1},
    "pydantic_dump_kwargs": {"by_alias": True},
    "trail": False,
    "send_events": False,
    "resultrepr_maxsize": 100,
    "store_eager_result": True,
}


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Any:
    application = App("unit", broker=redis_url, backend=redis_url)
    yield application
    application.close()


@pytest.fixture
def eager() -> Any:
    application = App("eager", broker=NOWHERE, task_always_eager=True)
    yield application
    application.close()


def published(client: redis.Redis, key: str = "celery") -> list[protocol.TaskMessage]:
    both = frozenset({"application/json", "application/x-python-serialize"})
    return [protocol.decode(raw, both) for raw in reversed(client.lrange(key, 0, -1))]


# -- options --------------------------------------------------------------------------------------


def test_every_celery_task_option_is_accepted_by_app_task_and_shared_task() -> None:
    app = App("unit", broker=NOWHERE)
    task = app.task(name="unit.all", bind=True, base=app.Task, **CELERY_OPTIONS)(lambda self: None)
    for key, value in CELERY_OPTIONS.items():
        assert getattr(task, key) == value, key
    shared = shared_task(name="unit.shared_all", **CELERY_OPTIONS)(lambda: None)
    assert shared.expires == 60 and shared.typing is False and app.tasks["unit.shared_all"].queue == "high"


def test_a_misspelt_option_is_named_with_the_closest_one_but_a_base_classs_own_option_passes() -> None:
    app = App("unit", broker=NOWHERE)
    with pytest.raises(TypeError, match="'max_retry'.*did you mean 'max_retries'"):
        app.task(name="unit.typo", max_retry=3)(lambda: None)

    class Audited(app.Task):
        audit_level: str = "low"

    task = app.task(name="unit.audited", base=Audited, audit_level="high")(lambda: None)
    assert task.audit_level == "high" and isinstance(task, Audited)


def test_typing_checks_arguments_when_sending_as_celery_does(eager: App) -> None:
    @eager.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match=r"^add\(\) takes 2 positional arguments but 3 were given$"):
        add.delay(1, 2, 3)  # Python's own message, as Celery's check gives
    with pytest.raises(TypeError):
        add.apply_async((1,), {"z": 2})

    @eager.task(bind=True)
    def bound(self: Any, x: int) -> int:
        return x

    assert bound.delay(4).get() == 4  # ``self`` is not an argument the caller passes
    loose = eager.task(name="unit.loose", typing=False)(lambda x: x)
    assert loose.delay(1, 2).state == "FAILURE"  # sent (run here), failed where it ran
    lax = App("lax", broker=NOWHERE, task_always_eager=True, strict_typing=False)
    assert lax.task(name="unit.lax")(lambda x: x).delay(1, 2).state == "FAILURE"


def test_task_expires_default_and_exec_options_reach_the_message(app: App, redis_client: redis.Redis) -> None:
    task = app.task(name="unit.expiring", expires=60, routing_key="rk", priority=None)(lambda: None)
    before = dt.datetime.now(UTC)
    task.delay()
    task.apply_async(expires=600)
    first, second = published(redis_client)
    assert before + dt.timedelta(seconds=59) < first.expires < before + dt.timedelta(seconds=62)
    assert second.expires > before + dt.timedelta(seconds=599)
    assert first.delivery_info["routing_key"] == "rk"


def test_soft_time_limit_above_the_hard_one_is_refused_at_send(eager: App) -> None:
    task = eager.task(name="unit.limits", time_limit=5, soft_time_limit=10)(lambda: None)
    with pytest.raises(ValueError, match="soft_time_limit"):
        task.delay()


def test_store_eager_result_stores_in_the_backend(app: App) -> None:
    app.conf.task_always_eager = True
    kept = app.task(name="unit.kept", store_eager_result=True)(lambda: 7)
    plain = app.task(name="unit.plain")(lambda: 8)
    assert app.AsyncResult(kept.delay().id).get(timeout=5) == 7
    assert app.backend.get_meta(plain.delay().id) is None


# -- class-based tasks and hooks --------------------------------------------------------------------


class Recorder(Task):
    calls: list[tuple[Any, ...]]

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self.calls.append(("before_start", task_id, tuple(args), dict(kwargs)))

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.calls.append(("on_success", retval, task_id, tuple(args)))

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        traced = "Traceback" in str(einfo)
        self.calls.append(("on_failure", type(exc).__name__, task_id, einfo.exception is exc, traced))

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("on_retry", repr(exc), task_id))

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("after_return", status, task_id, einfo is not None))


def test_class_based_task_with_run_registered_by_register_task(eager: App) -> None:
    class Multiply(eager.Task):
        def run(self, x: int, y: int) -> int:
            return x * y * self.factor

        factor = 2

    task = eager.register_task(Multiply())
    assert task.name == f"{__name__}.Multiply" and eager.tasks[task.name] is task
    assert task.delay(3, 4).get() == 24 and task(1, 1) == 2
    assert isinstance(task, Task) and task.app is eager
    with pytest.raises(NotImplementedError):
        eager.register_task(type("Empty", (eager.Task,), {"name": "unit.empty"})).run()


def test_hooks_get_celerys_arguments_in_celerys_order(eager: App) -> None:
    Recorder.calls = []

    @eager.task(base=Recorder, name="unit.hooked")
    def hooked(x: int, fail: bool = False) -> int:
        if fail:
            raise KeyError("no")
        return x + 1

    ok = hooked.delay(1)
    bad = hooked.delay(2, fail=True)
    assert Recorder.calls == [
        ("before_start", ok.id, (1,), {}),
        ("on_success", 2, ok.id, (1,)),
        ("after_return", "SUCCESS", ok.id, False),
        ("before_start", bad.id, (2,), {"fail": True}),
        ("on_failure", "KeyError", bad.id, True, True),
        ("after_return", "FAILURE", bad.id, False),  # None, as Celery passes
    ]


def test_on_retry_and_no_after_return_for_the_retried_run(eager: App) -> None:
    Recorder.calls = []

    @eager.task(base=Recorder, bind=True, name="unit.again", max_retries=1)
    def again(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("x"), countdown=0)
        return 5

    assert again.delay().get() == 5
    names = [c[0] for c in Recorder.calls]
    assert names == ["before_start", "before_start", "on_success", "after_return", "on_retry"]


def test_a_base_class_call_wraps_the_run_in_the_worker() -> None:
    app = App("unit", broker=NOWHERE)
    seen: list[str] = []

    class Session(app.Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            seen.append("open")
            try:
                return super().__call__(*args, **kwargs)
            finally:
                seen.append("close")

    task = app.task(name="unit.session", base=Session)(lambda: "done")
    outcome = trace.run(app, task, Request(id="t1", name=task.name, called_directly=False), store=False)
    assert (outcome.state, outcome.value, seen) == ("SUCCESS", "done", ["open", "close"])


def test_a_hook_that_raises_ends_the_task_failure_with_task_internal_error() -> None:
    app = App("unit", broker=NOWHERE)
    got: list[Any] = []

    class Broken(app.Task):
        def on_success(self, *args: Any) -> None:
            raise RuntimeError("hook bug")

    task = app.task(name="unit.broken", base=Broken)(lambda: 1)
    receiver = signals.task_internal_error.connect(lambda sender, exception, **kw: got.append((sender, exception)))
    try:
        outcome = trace.run(app, task, Request(id="t2", name=task.name, called_directly=False), store=False)
    finally:
        signals.task_internal_error.disconnect(receiver)
    assert outcome.state == "FAILURE" and "hook bug" in outcome.exception_repr
    assert got and got[0][0] is task and str(got[0][1]) == "hook bug"


def test_throws_logs_without_traceback_other_errors_with_it(caplog: pytest.LogCaptureFixture) -> None:
    app = App("unit", broker=NOWHERE)

    def fail(kind: str) -> None:
        raise (KeyError if kind == "key" else ValueError)(kind)

    task = app.task(name="unit.throws", throws=(KeyError,))(fail)
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        trace.run(app, task, Request(id="k", name=task.name, args=["key"], called_directly=False), store=False)
        trace.run(app, task, Request(id="v", name=task.name, args=["value"], called_directly=False), store=False)
    expected, unexpected = [r for r in caplog.records if r.name == "celery.app.trace"]
    assert expected.levelno == logging.INFO and "raised expected: KeyError('key')" in expected.getMessage()
    assert "Traceback" not in expected.getMessage()
    assert unexpected.levelno == logging.ERROR and "Traceback" in unexpected.getMessage()


# -- self.request ------------------------------------------------------------------------------------


def test_request_reads_like_celerys_context() -> None:
    headers = {
        "lang": "py",
        "task": "t",
        "id": "i",
        "shadow": None,
        "retries": 2,
        "timelimit": [10, 5],
        "root_id": "r",
        "parent_id": "p",
        "x-tenant": "acme",
        "replaced_task_nesting": 1,
        "stamped_headers": ["batch"],
        "stamps": {"batch": "b1"},
        "argsrepr": "(1,)",
    }
    request = Request(
        id="i",
        name="t",
        args=[1],
        message_headers=headers,
        timelimit=(10, 5),
        properties={"correlation_id": "i", "reply_to": "reply-q"},
        called_directly=False,
    )
    assert request.headers == {"x-tenant": "acme"}  # custom headers only, as Celery
    assert request.get("x-tenant") == "acme" and request.task == "t"
    assert (request.correlation_id, request.reply_to, request.replaced_task_nesting) == ("i", "reply-q", 1)
    assert (request.time_limit, request.soft_time_limit) == (10, 5)
    assert (request.stamps, request.stamped_headers) == ({"batch": "b1"}, ["batch"])
    options = request.as_execution_options()
    assert options["batch"] == "b1" and options["stamped_headers"] == ["batch"] and options["reply_to"] == "reply-q"
    assert Request().headers is None and Request().called_directly is True
    with pytest.raises(AttributeError):
        _ = request.no_such_field


# -- signals ----------------------------------------------------------------------------------------


def test_signal_connect_forms_sender_filter_dispatch_uid_and_weak_refs() -> None:
    sig = signals.Signal("unit_signal")
    got: list[tuple[str, Any]] = []

    @sig.connect
    def any_sender(sender: Any, **kw: Any) -> str:
        got.append(("any", sender))
        return "a"

    @sig.connect(sender="only-me")
    def one_sender(sender: Any, **kw: Any) -> None:
        got.append(("one", sender))

    def uid(sender: Any, **kw: Any) -> None:
        got.append(("uid", sender))

    sig.connect(uid, dispatch_uid="x")
    sig.connect(uid, dispatch_uid="x")  # the same uid twice: one receiver

    def temporary(sender: Any, **kw: Any) -> None:
        got.append(("temp", sender))

    sig.connect(temporary)
    del temporary
    gc.collect()  # weak=True (the default): a receiver nobody else holds goes away
    responses = sig.send(sender="only-me", extra=1)
    assert got == [("any", "only-me"), ("one", "only-me"), ("uid", "only-me")]
    assert responses[0][1] == "a"
    got.clear()
    sig.send(sender="someone-else")
    assert got == [("any", "someone-else"), ("uid", "someone-else")]
    assert sig.disconnect(dispatch_uid="x") and not sig.disconnect(dispatch_uid="x")


def test_a_raising_receiver_is_logged_and_returned_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    sig = signals.Signal("unit_raising")
    after: list[int] = []

    def broken(**kw: Any) -> None:
        raise RuntimeError("receiver bug")

    sig.connect(broken, weak=False)
    sig.connect(lambda **kw: after.append(1), weak=False)
    with caplog.at_level(logging.ERROR, logger="engine.signals"):
        responses = sig.send(sender=None)
    assert isinstance(responses[0][1], RuntimeError) and after == [1]
    assert "receiver bug" in caplog.text and "Traceback" in caplog.text


def test_task_signals_fire_in_eager_runs_with_celerys_arguments(eager: App) -> None:
    got: list[tuple[str, Any]] = []
    add = eager.task(name="unit.sig_add")(lambda x, y: x + y)

    def prerun(sender: Any, task_id: str, task: Any, args: Any, kwargs: Any, **kw: Any) -> None:
        got.append(("prerun", (sender is add, task is add, list(args))))

    def success(sender: Any, result: Any, **kw: Any) -> None:
        got.append(("success", result))

    def postrun(sender: Any, retval: Any, state: str, **kw: Any) -> None:
        got.append(("postrun", (retval, state)))

    for sig, fun in ((signals.task_prerun, prerun), (signals.task_success, success), (signals.task_postrun, postrun)):
        sig.connect(fun, sender=add)
    try:
        add.delay(2, 3)
        eager.task(name="unit.other")(lambda: 0).delay()  # another sender: not seen
    finally:
        for sig, fun in (
            (signals.task_prerun, prerun),
            (signals.task_success, success),
            (signals.task_postrun, postrun),
        ):
            sig.disconnect(fun, sender=add)
    assert got == [("prerun", (True, True, [2, 3])), ("success", 5), ("postrun", (5, "SUCCESS"))]


def test_before_task_publish_can_add_headers_to_the_message(app: App, redis_client: redis.Redis) -> None:
    seen: list[Any] = []

    def inject(sender: Any, headers: dict[str, Any], body: Any, routing_key: str, **kw: Any) -> None:
        headers["traceparent"] = "00-abc"
        seen.append((sender, body[0], routing_key))

    signals.before_task_publish.connect(inject)
    try:
        app.send_task("unit.traced", args=[1])
        app.send_task("unit.pickled", args=[2], serializer="pickle")  # re-encoded with its own serializer
    finally:
        signals.before_task_publish.disconnect(inject)
    first, second = published(redis_client)
    assert first.headers["traceparent"] == "00-abc" and seen[0] == ("unit.traced", [1], "celery")
    assert second.args == [2] and second.content_type == "application/x-python-serialize"


# -- logging --------------------------------------------------------------------------------------


def test_get_task_logger_is_celerys(eager: App) -> None:
    logger = get_task_logger("unit.tasks.module")
    assert logger.parent is logging.getLogger("celery.task") and celery_path_logger is get_task_logger
    with pytest.raises(RuntimeError):
        get_task_logger("celery.task")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(TaskFormatter("%(task_name)s[%(task_id)s]: %(message)s"))
    task_root = logging.getLogger("celery.task")
    task_root.addHandler(handler)
    task_root.setLevel(logging.INFO)
    try:
        task = eager.task(name="unit.logs")(lambda: logger.info("hello"))
        result = task.delay()
        logger.info("outside")
    finally:
        task_root.removeHandler(handler)
    assert lines == [f"unit.logs[{result.id}]: hello", "???[???]: outside"]


# -- stamping -----------------------------------------------------------------------------------------


class Labels(StampingVisitor):
    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"label": sig.name.rsplit(".", 1)[-1]}

    def on_callback(self, callback: Any, **headers: Any) -> dict[str, Any]:
        return {"on_link": True}


def test_stamp_a_canvas_with_a_visitor_and_headers() -> None:
    app = App("unit", broker=NOWHERE)
    a, b, c = (app.task(name=f"unit.{n}")(lambda *x: None) for n in "abc")
    first = a.s()
    first.link(c.s())
    flow = chain(first, group(b.s(), b.s()))
    flow.stamp(Labels(), batch="b1")
    steps = flow.tasks
    assert steps[0].options["label"] == "a" and steps[0].options["batch"] == "b1"
    assert sorted(steps[0].options["stamped_headers"]) == ["batch", "label"]
    members = steps[1].tasks
    assert [m.options["label"] for m in members] == ["b", "b"]
    link = steps[0].options["link"][0]
    assert link["options"]["on_link"] is True and link["options"]["batch"] == "b1"
    again = Signature(dict(steps[0])).stamp(batch="b2", append_stamps=True)  # chain() took a copy of first
    assert again.options["batch"] == ["b2", "b1"]  # append_stamps keeps both, in Celery's order


def test_stamps_travel_as_celery_sends_them(app: App, redis_client: redis.Redis) -> None:
    task = app.task(name="unit.stamped")(lambda: None)
    sig = task.s()
    sig.stamp(Labels(), batch="b1")
    sig.apply_async()
    [message] = published(redis_client)
    assert sorted(message.headers["stamped_headers"]) == ["batch", "label"]
    assert message.headers["stamps"] == {"batch": "b1", "label": "stamped"}
    assert "batch" not in message.headers  # only under stamps, as Celery 5.7


def test_eager_request_sees_stamps(eager: App) -> None:
    @eager.task(bind=True, name="unit.see_stamps")
    def see(self: Any) -> Any:
        return self.request.stamps

    sig = see.s()
    sig.stamp(batch="b9")
    assert sig.delay().get() == {"batch": ["b9"]}  # eagerly, Celery hands each stamp over as a list


@pytest.mark.parametrize(
    "options",
    [
        {"stamped_headers": ["foo"], "foo": "a"},
        {"stamped_headers": ["foo", "bar"], "foo": ["a", "b"]},
        {"stamped_headers": "foo", "foo": None},
        {"stamped_headers": ["foo"]},
        {"stamped_headers": ["foo"], "foo": ("a",)},
    ],
)
def test_eager_stamps_are_what_celerys_apply_gives(eager: App, options: dict[str, Any]) -> None:
    """``Task.apply`` with stamping options: a lone value becomes a one-item list, a stamp not
    given an empty one, None and lists stay, as Celery 5.7's request shows them."""

    @eager.task(bind=True, name="unit.our_stamps")
    def our_see(self: Any) -> Any:
        return self.request.stamps, self.request.stamped_headers

    assert our_see.apply(**options).get() == _celery_stamps().apply(**options).get()


@functools.cache
def _celery_stamps() -> Any:
    """Celery's task reading its request's stamps: made once (Celery warns when a name is
    registered again, and a parametrised test would do so per case)."""
    theirs = celery.Celery("stamps", set_as_current=False)

    @theirs.task(bind=True, name="unit.celery_stamps")
    def celery_see(self: Any) -> Any:
        return self.request.stamps, self.request.stamped_headers

    return celery_see


# -- pydantic -----------------------------------------------------------------------------------------


class Item(pydantic.BaseModel):
    name: str
    qty: int


def test_pydantic_validates_arguments_and_dumps_results(eager: App, app: App, redis_client: redis.Redis) -> None:
    @eager.task(pydantic=True, name="unit.order")
    def order(item: Item, note: str | None = None) -> Item:
        assert isinstance(item, Item)
        return Item(name=item.name.upper(), qty=item.qty * 2)

    assert order.delay({"name": "tea", "qty": 2}).get() == {"name": "TEA", "qty": 4}
    assert order.delay(Item(name="x", qty=1)).get() == {"name": "X", "qty": 2}
    assert order.delay({"name": "tea"}).state == "FAILURE"  # pydantic's ValidationError, where it runs
    strict = eager.task(pydantic=True, pydantic_strict=True, name="unit.strict")(lambda item: item)
    assert strict.__class__.pydantic_strict is True

    @app.task(pydantic=True, name="unit.sent")
    def sent(item: Item) -> None:
        return None

    sent.delay(Item(name="tea", qty=3))
    [message] = published(redis_client)
    assert message.args == [{"name": "tea", "qty": 3}]  # the caller's model goes as plain data


# -- settings -------------------------------------------------------------------------------------------


def test_settings_check_names_ignored_celery_settings_and_typos() -> None:
    conf = Settings(
        task_acks_late=True,
        worker_max_tasks_per_child=10,  # honoured: prefork children are recycled
        worker_pool_restarts=True,
        worker_lost_wait=10,
        task_acks_lates=True,
        tqctl_owner_timeout=3,
        worker_control_allow=["ping"],
    )
    lines = conf.startup_warnings()
    assert lines == [
        "setting 'task_acks_lates' is not a Celery setting (misspelt?); did you mean 'task_acks_late'?",
        "setting 'worker_lost_wait' is a Celery setting this engine ignores (no effect)",
        "setting 'worker_pool_restarts' is a Celery setting this engine ignores (no effect)",
    ]
    assert Settings().startup_warnings() == []
    assert Settings(result_serializer="json", task_protocol=2).startup_warnings() == []  # what we do anyway
    assert len(Settings(result_serializer="pickle").startup_warnings()) == 1
    assert HONOURED <= CELERY_SETTINGS
    assert len(CELERY_SETTINGS) == 207  # celery/app/defaults.py in 5.7.0


def test_settings_from_a_module_skip_its_imports(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unitconf_taskapi.py").write_text("import os\nbroker_url = 'redis://x'\nbrokr_url = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = Settings()
    conf.from_object("unitconf_taskapi")
    assert conf.startup_warnings() == [
        "setting 'brokr_url' is not a Celery setting (misspelt?); did you mean 'broker_url'?"
    ]


def test_beat_init_and_beat_embedded_init_fire_with_the_scheduler_as_sender(app: App) -> None:
    from engine.beat import Beat

    got: list[tuple[str, Any]] = []

    def on_init(sender: Any, **kw: Any) -> None:
        got.append(("init", sender))

    def on_embedded(sender: Any, **kw: Any) -> None:
        got.append(("embedded", sender))

    signals.beat_init.connect(on_init)
    signals.beat_embedded_init.connect(on_embedded)
    try:
        beat = Beat(app)
        thread, stop = beat.start_thread()
        stop.set()
        thread.join(10)
    finally:
        signals.beat_init.disconnect(on_init)
        signals.beat_embedded_init.disconnect(on_embedded)
    assert got == [("init", beat), ("embedded", beat)]


def test_result_extended_stores_celerys_request_fields(app: App) -> None:
    app.conf.result_extended = True
    task = app.task(name="unit.extended")(lambda x: x)
    request = Request(
        id="ext-1",
        name=task.name,
        args=[3],
        retries=1,
        hostname="w1@h",
        called_directly=False,
        delivery_info={"routing_key": "high"},
    )
    trace.run(app, task, request)
    stored = app.backend.get_meta("ext-1")
    assert (stored["name"], stored["args"], stored["kwargs"], stored["worker"], stored["retries"], stored["queue"]) == (
        "unit.extended",
        [3],
        {},
        "w1@h",
        1,
        "high",
    )


def test_task_annotations_set_task_attributes_by_name_and_star() -> None:
    class Slow:
        def annotate(self, task: Any) -> dict[str, Any] | None:
            return {"time_limit": 99} if task.name == "unit.slow" else None

    app = App(
        "unit",
        broker=NOWHERE,
        task_annotations=[{"*": {"rate_limit": "5/s"}, "unit.fast": {"rate_limit": "50/s"}}, Slow()],
    )
    fast = app.task(name="unit.fast")(lambda: None)
    slow = app.task(name="unit.slow")(lambda: None)
    assert (fast.rate_limit, slow.rate_limit, slow.time_limit, fast.time_limit) == ("50/s", "5/s", 99, None)
    late = App("late", broker=NOWHERE)
    task = late.task(name="unit.late")(lambda: None)
    late.conf.task_annotations = {"unit.late": {"acks_late": True}}
    late.import_default_modules()  # what the worker does at start
    assert task.acks_late is True


def test_task_inherit_parent_priority(app: App, redis_client: redis.Redis) -> None:
    app.conf.task_inherit_parent_priority = True
    child = app.task(name="unit.child")(lambda: None)

    @app.task(name="unit.parent")
    def parent() -> None:
        child.delay()

    request = Request(id="p1", name="unit.parent", called_directly=False, delivery_info={"priority": 6})
    trace.run(app, parent, request, store=False)
    [message] = published(redis_client, "celery\x06\x166")
    assert message.name == "unit.child" and message.properties["priority"] == 6


def test_current_app_and_current_task_proxies(eager: App) -> None:
    from engine import current_app, current_task

    @eager.task(name="unit.who")
    def who() -> Any:
        return current_task.name, current_task.request.id

    result = who.delay()
    assert result.get() == ("unit.who", result.id)
    assert not current_task  # no task running here
    assert isinstance(current_app._get_current_object(), App)


def test_config_from_object_with_a_namespace_and_celery_3_names(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unit_django_settings.py").write_text(
        "DEBUG = True\nCELERY_BROKER_URL = 'redis://b'\nCELERY_TASK_ACKS_LATE = True\n"
        "class settings:\n    CELERY_TASK_ALWAYS_EAGER = True\n"
    )
    (tmp_path / "unit_old_config.py").write_text(
        "BROKER_URL = 'redis://old'\nCELERY_ACKS_LATE = True\nCELERYD_CONCURRENCY = 3\nSomething = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = App("unit", broker=None)
    app.config_from_object("unit_django_settings", namespace="CELERY")
    assert (app.conf.broker_url, app.conf.task_acks_late) == ("redis://b", True)
    assert "debug" not in app.conf
    app.config_from_object("unit_django_settings:settings", namespace="CELERY")
    assert app.conf.task_always_eager is True
    old = App("old", broker=None)
    old.config_from_object("unit_old_config")
    assert (old.conf.broker_url, old.conf.task_acks_late, old.conf.worker_concurrency) == ("redis://old", True, 3)
    assert old.conf.startup_warnings() == []
    old.config_from_object("no_such_module_here", silent=True)
    with pytest.raises(ImportError):
        old.config_from_object("no_such_module_here")


def test_worker_logging_setup_follows_celerys_signals() -> None:
    from engine.log import setup_worker_logging

    app = App("unit", broker=NOWHERE, worker_task_log_format="%(task_name)s|%(message)s")
    root, task_root = logging.getLogger(), logging.getLogger("celery.task")
    saved = (list(root.handlers), root.level, list(task_root.handlers), task_root.level, task_root.propagate)
    got: list[tuple[str, Any]] = []

    def take_over(loglevel: int, **kw: Any) -> None:
        got.append(("setup_logging", loglevel))

    def after(logger: logging.Logger, format: str, **kw: Any) -> None:  # noqa: A002 - Celery's argument name
        got.append(("after", (logger.name, format)))

    try:
        signals.setup_logging.connect(take_over)
        setup_worker_logging(app, "warning")
        assert got == [("setup_logging", logging.WARNING)] and root.handlers == saved[0]  # nothing touched
        signals.setup_logging.disconnect(take_over)
        signals.after_setup_task_logger.connect(after)
        setup_worker_logging(app, "info")
        assert got[-1] == ("after", ("celery.task", "%(task_name)s|%(message)s"))
        assert isinstance(task_root.handlers[0].formatter, TaskFormatter) and task_root.propagate is False
    finally:
        signals.setup_logging.disconnect(take_over)
        signals.after_setup_task_logger.disconnect(after)
        root.handlers, task_root.handlers = saved[0], saved[2]
        root.setLevel(saved[1])
        task_root.setLevel(saved[3])
        task_root.propagate = saved[4]


class AutoRetryClassTask(Task):
    """Celery's own integration suite declares this against the plain ``Task`` (no app yet)."""

    name = "auto_retry_class_task"
    autoretry_for = (ValueError,)
    retry_kwargs = {"max_retries": 1}

    def run(self) -> int:
        if self.request.retries:
            return self.request.retries
        raise ValueError()


def test_a_plain_task_subclass_registered_later_autoretries(eager: App) -> None:
    task = AutoRetryClassTask()
    with pytest.raises(Exception, match="not registered"):
        _ = task.app
    eager.register_task(task)
    assert task.delay().get() == 1 and eager.tasks["auto_retry_class_task"] is task
