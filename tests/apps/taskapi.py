"""Tasks and signal receivers for tests/integration/test_task_api.py, run by real workers.

Every receiver and hook appends one line to the file named by ``LEDGER`` (``<what> <details>``),
from whichever process it runs in, so a test reads what happened where. The settings below
include one Celery setting the engine ignores and one misspelt name, for the start-up warnings.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from engine import App, Task
from engine.signals import (
    after_setup_logger,
    after_setup_task_logger,
    after_task_publish,
    before_task_publish,
    celeryd_init,
    heartbeat_sent,
    import_modules,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_rejected,
    task_retry,
    task_revoked,
    task_success,
    task_unknown,
    worker_before_create_process,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from engine.utils.log import get_task_logger

app = App("taskapi")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5
app.conf.broker_connection_retry_on_startup = True  # a Celery setting with no effect here
app.conf.task_acks_lates = True  # a typo of task_acks_late
logger = get_task_logger(__name__)


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} pid={os.getpid()}\n")


# -- receivers: one per signal the worker fires ----------------------------------------------------


@celeryd_init.connect
def on_celeryd_init(sender: Any = None, instance: Any = None, conf: Any = None, **kw: Any) -> None:
    ledger(f"celeryd_init sender={sender} conf={conf is app.conf}")


@import_modules.connect
def on_import_modules(sender: Any = None, **kw: Any) -> None:
    ledger(f"import_modules app={sender is app}")


@after_setup_logger.connect
def on_after_setup_logger(logger: Any = None, **kw: Any) -> None:
    ledger(f"after_setup_logger root={logger.name == 'root'}")


@after_setup_task_logger.connect
def on_after_setup_task_logger(logger: Any = None, **kw: Any) -> None:
    ledger(f"after_setup_task_logger name={logger.name}")


@worker_init.connect
def on_worker_init(sender: Any = None, **kw: Any) -> None:
    ledger(f"worker_init hostname={sender.hostname}")


@worker_before_create_process.connect
def on_worker_before_create_process(sender: Any = None, **kw: Any) -> None:
    ledger("worker_before_create_process")


@worker_process_init.connect
def on_worker_process_init(sender: Any = None, **kw: Any) -> None:
    ledger("worker_process_init")


@worker_process_shutdown.connect
def on_worker_process_shutdown(sender: Any = None, pid: int = 0, exitcode: int = 0, **kw: Any) -> None:
    ledger(f"worker_process_shutdown exitcode={exitcode}")


@heartbeat_sent.connect
def on_heartbeat_sent(sender: Any = None, **kw: Any) -> None:
    ledger("heartbeat_sent")


@worker_ready.connect
def on_worker_ready(sender: Any = None, **kw: Any) -> None:
    ledger("worker_ready")


@worker_shutdown.connect
def on_worker_shutdown(sender: Any = None, **kw: Any) -> None:
    ledger("worker_shutdown")


@worker_shutting_down.connect
def on_worker_shutting_down(sender: Any = None, sig: str = "", how: str = "", **kw: Any) -> None:
    ledger(f"worker_shutting_down {sig} {how}")


@task_received.connect
def on_task_received(sender: Any = None, request: Any = None, **kw: Any) -> None:
    ledger(f"task_received {request.name} {request.id}")


@task_prerun.connect
def on_task_prerun(sender: Any = None, task_id: str = "", task: Any = None, args: Any = None, **kw: Any) -> None:
    ledger(f"task_prerun {task.name} {task_id} args={list(args)}")


@task_postrun.connect
def on_task_postrun(sender: Any = None, task_id: str = "", retval: Any = None, state: str = "", **kw: Any) -> None:
    ledger(f"task_postrun {sender.name} {task_id} state={state}")


@task_success.connect
def on_task_success(sender: Any = None, result: Any = None, **kw: Any) -> None:
    ledger(f"task_success {sender.name} {sender.request.id} result={result!r}")


@task_failure.connect
def on_task_failure(sender: Any = None, task_id: str = "", exception: Any = None, einfo: Any = None, **kw: Any) -> None:
    ledger(f"task_failure {sender.name} {task_id} {type(exception).__name__} einfo={'Traceback' in str(einfo)}")


@task_retry.connect
def on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **kw: Any) -> None:
    ledger(f"task_retry {sender.name} {request.id} retries={request.retries}")


@task_revoked.connect
def on_task_revoked(sender: Any = None, request: Any = None, expired: bool = False, **kw: Any) -> None:
    ledger(f"task_revoked {sender.name} {request.id} expired={expired}")


@task_unknown.connect
def on_task_unknown(sender: Any = None, name: str = "", id: str = "", **kw: Any) -> None:  # noqa: A002
    ledger(f"task_unknown {name} {id}")


@task_rejected.connect
def on_task_rejected(sender: Any = None, message: Any = None, exc: Any = None, **kw: Any) -> None:
    ledger(f"task_rejected {type(exc).__name__}")


@task_prerun.connect
def broken_receiver(**kw: Any) -> None:
    raise RuntimeError("a broken receiver must never stop a task")


@before_task_publish.connect
def inject_trace_header(headers: Any = None, **kw: Any) -> None:
    """What tracing libraries do: put a header on every message, read back by the task."""
    if os.environ.get("INJECT_TRACE"):
        headers["x-trace"] = "trace-1"


@after_task_publish.connect
def on_after_publish(sender: Any = None, headers: Any = None, **kw: Any) -> None:
    if os.environ.get("INJECT_TRACE"):
        ledger(f"after_task_publish {sender} {headers['id']}")


# -- tasks --------------------------------------------------------------------------------------


class Hooked(Task):
    """A custom base class: every hook writes the arguments Celery passes it."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        ledger(f"before_start {self.name} {task_id} args={list(args)}")

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        ledger(f"on_success {self.name} {task_id} retval={retval!r}")

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger(f"on_failure {self.name} {task_id} {exc!r} einfo={type(einfo.exception).__name__}")

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger(f"on_retry {self.name} {task_id} {exc!r}")

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger(f"after_return {self.name} {task_id} {status}")


@app.task(base=Hooked)
def add(x: int, y: int) -> int:
    logger.info("adding %s and %s", x, y)
    return x + y


@app.task(base=Hooked, throws=(KeyError,))
def lookup(key: str) -> str:
    raise KeyError(key)


@app.task(base=Hooked)
def explode() -> None:
    raise ValueError("unexpected")


@app.task(base=Hooked, bind=True, max_retries=1, default_retry_delay=0.1)
def flaky(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("once"))
    return self.request.retries


@app.task(bind=True)
def context(self: Any) -> dict[str, Any]:
    r = self.request
    return {
        "id": r.id,
        "task": r.task,
        "args": list(r.args),
        "kwargs": dict(r.kwargs),
        "retries": r.retries,
        "is_eager": r.is_eager,
        "called_directly": r.called_directly,
        "hostname": r.hostname,
        "delivery_info": dict(r.delivery_info or {}),
        "reply_to": r.reply_to,
        "correlation_id": r.correlation_id,
        "root_id": r.root_id,
        "parent_id": r.parent_id,
        "origin": r.origin,
        "group": r.group,
        "group_index": r.group_index,
        "eta": r.eta,
        "expires": r.expires,
        "timelimit": list(r.timelimit),
        "time_limit": r.time_limit,
        "soft_time_limit": r.soft_time_limit,
        "stamps": r.stamps,
        "stamped_headers": r.stamped_headers,
        "headers": r.headers,
        "ignore_result": r.ignore_result,
        "properties": dict(r.properties or {}),
        "callbacks": r.callbacks,
        "errbacks": r.errbacks,
        "chain": r.chain,
        "chord": r.chord,
        "x_trace": r.get("x-trace"),
    }


class Multiply(app.Task):
    """A class-based task (Celery 5 style): registered by ``app.register_task``, not by defining it."""

    name = "taskapi.multiply"
    acks_late = True

    def run(self, x: int, y: int) -> int:
        ledger(f"multiply run acks_late={self.acks_late} request={self.request.id}")
        return x * y


multiply = app.register_task(Multiply())


class Order(BaseModel):
    item: str
    quantity: int


class Receipt(BaseModel):
    item: str
    total: int


@app.task(pydantic=True)
def place(order: Order) -> Receipt:
    return Receipt(item=order.item.upper(), total=order.quantity * 10)


@app.task(expires=60)
def short_lived() -> str:
    return "ran"


@app.task(typing=False)
def loose(*args: Any) -> int:
    return len(args)


@app.task(send_events=False)
def silent() -> str:
    return "quiet"
