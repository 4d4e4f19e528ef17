"""User Guide, Routing Tasks: every shape of ``task_routes`` the guide shows picks the same queue here
as in Celery 5.7 (regex keys, ordered lists of pairs, globs, router functions that read the task,
routers named by a dotted path, pre-4.0 ``route_for_task`` classes), and a send lands there.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import celery
import pytest
import redis

from engine import App
from engine.routing import route

SEEN_TASKS: list[Any] = []


def by_task_attribute(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    SEEN_TASKS.append(task)
    return {"queue": task.lane} if task is not None and hasattr(task, "lane") else None


class OldRouter:
    def route_for_task(self, task: str, args: Any = None, kwargs: Any = None) -> Any:
        return "legacy" if task == "billing.legacy" else None


@pytest.fixture
def routers_module() -> Iterator[str]:
    module = types.ModuleType("ug_routers")
    module.by_task_attribute = by_task_attribute  # type: ignore[attr-defined]
    module.OldRouter = OldRouter  # type: ignore[attr-defined]
    sys.modules["ug_routers"] = module
    yield "ug_routers"
    del sys.modules["ug_routers"]


ROUTES: Any = (
    "ug_routers.by_task_attribute",
    "ug_routers.OldRouter",
    [
        ("feed.tasks.exact", {"queue": "exact"}),
        (re.compile(r"(image|video)\.tasks\..*"), {"queue": "media"}),
        ("feed.tasks.*", {"queue": "feeds"}),
        ("web.*", "web"),
    ],
    {"shop.*": {"queue": "shop"}, "shop.special": "special"},
)
NAMES = [
    "feed.tasks.exact",
    "feed.tasks.import",
    "video.tasks.encode",
    "image.tasks.resize",
    "web.render",
    "shop.order",
    "shop.special",
    "billing.legacy",
    "unrouted",
]


def test_each_shape_picks_celerys_queue(routers_module: str) -> None:
    theirs = celery.Celery(set_as_current=False)
    theirs.conf.task_routes = ROUTES
    expected = {name: theirs.amqp.router.route({}, name)["queue"].name for name in NAMES}
    got = {name: route(ROUTES, name, (), {}, {}).get("queue", "celery") for name in NAMES}
    assert got == expected
    assert expected["video.tasks.encode"] == "media" and expected["shop.special"] == "special"


def test_a_router_function_is_given_the_task(routers_module: str, redis_url: str, redis_client: redis.Redis) -> None:
    app = App("ug_routing", broker=redis_url, backend=redis_url)
    app.conf.task_routes = ("ug_routers.by_task_attribute",)

    @app.task(name="ug.lane_task")
    def lane_task() -> None:
        """Routed by its own attribute."""

    lane_task.lane = "lane-q"  # type: ignore[attr-defined]
    redis_client.delete("lane-q")
    lane_task.delay()
    assert SEEN_TASKS[-1] is lane_task
    assert redis_client.llen("lane-q") == 1
    app.close()


def test_a_name_that_is_no_router_says_so() -> None:
    with pytest.raises(TypeError, match="names no router"):
        route(("norouter",), "x", (), {}, {})
