"""Our client as Celery 5.7's, where Celery's own integration suite (test_tasks.py, modes b and c)
found it different: nested ``apply()``, message properties, ``broker_pool_acquire_timeout``.

The same behaviour against a real server and worker: tests/integration/test_client_celery57.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from engine import App
from engine.protocol import task as protocol


def test_a_task_applied_inside_an_applied_task_is_its_child() -> None:
    app = App("nested", broker="memory://")

    @app.task(bind=True)
    def grandchild(self: Any) -> dict[str, Any]:
        return {"id": self.request.id, "parent_id": self.request.parent_id, "root_id": self.request.root_id}

    @app.task(bind=True)
    def child(self: Any) -> dict[str, Any]:
        below = grandchild.apply().get()
        return {
            "id": self.request.id,
            "parent_id": self.request.parent_id,
            "root_id": self.request.root_id,
            "below": below,
        }

    @app.task(bind=True)
    def parent(self: Any) -> dict[str, Any]:
        return {"id": self.request.id, "parent_id": self.request.parent_id, "below": child.apply().get()}

    top = parent.apply().get()
    middle = top["below"]
    bottom = middle["below"]
    assert top["parent_id"] is None
    assert (middle["parent_id"], middle["root_id"]) == (top["id"], top["id"])
    assert (bottom["parent_id"], bottom["root_id"]) == (middle["id"], top["id"])
    # and outside any task, apply() starts a tree of its own
    alone = grandchild.apply().get()
    assert alone["parent_id"] is None and alone["root_id"] == alone["id"]


def _properties(raw: bytes) -> dict[str, Any]:
    return dict(json.loads(raw)["properties"])


def test_apply_async_app_id_and_other_amqp_properties_reach_the_message() -> None:
    """Celery hands ``apply_async(app_id=...)`` to kombu as a message property; its worker (and
    ours) show it in ``self.request.properties``."""
    app = App("props", broker="memory://")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    out = app._prepare_send(add.name, (1, 2), {}, add, {"app_id": "1234", "user_id": "guest"})
    properties = _properties(out.raw)
    assert properties["app_id"] == "1234" and properties["user_id"] == "guest"
    assert properties["correlation_id"] == out.task_id  # the transport's own are untouched
    body = json.loads(base64.b64decode(json.loads(out.raw)["body"]))
    assert body[0] == [1, 2]
    # transport fields are never taken from a caller
    _, raw = protocol.build("t", properties={"delivery_tag": "mine", "app_id": "x", "unknown": 1})
    properties = _properties(raw)
    assert properties["delivery_tag"] != "mine" and "unknown" not in properties and properties["app_id"] == "x"


def test_broker_pool_acquire_timeout_is_a_setting_and_sets_the_pool_wait() -> None:
    app = App("pool", broker="redis://127.0.0.1:1/0")
    assert app.conf.broker_pool_acquire_timeout is None  # Celery's default
    from engine.redisconn import POOL_WAIT, client_from_url

    assert client_from_url(app.broker_url()).connection_pool.timeout == POOL_WAIT  # type: ignore[attr-defined]
    app.conf.broker_pool_acquire_timeout = 3
    assert client_from_url(app.broker_url()).connection_pool.timeout == 3.0  # type: ignore[attr-defined]
    assert not [line for line in app.conf.startup_warnings() if "broker_pool_acquire_timeout" in line]
