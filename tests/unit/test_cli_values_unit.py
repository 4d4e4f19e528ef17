"""The value checks behind the CLI's usage errors (tqctl/commands/values.py): what they refuse, and
that every URL form the engine accepts still passes."""

from __future__ import annotations

import pytest

from tqctl.commands.values import id_problem, name_problem, url_problem


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://:pw@h:6380/15",
        "redis://h",
        "redis://h/",
        "rediss://h:6380/0?ssl_cert_reqs=none",
        "redis://[::1]:6379/1",
        "redis+socket:///tmp/r.sock",
        "redis+socket:///tmp/r.sock?virtual_host=2",
        "unix:///tmp/r.sock?db=3",
        "valkey://h:6379/0",
        "amqp://guest@h//",
        "sentinel://h:26379;sentinel://h2:26379",
        "sentinel://:pw@h1:26379/1;sentinel://:pw@h2:26379/1",
        "sentinel://h1:26379; sentinel://h2:26379",
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "url,part",
    [
        ("redis://h:99999/0", "port"),
        ("redis://h:abc/0", "port"),
        ("redis://h/abc", "database"),
        ("redis://h/0?db=x", None),
        ("redis+socket:///tmp/r.sock?virtual_host=abc", "database"),
        ("localhost:6379", "not a URL"),
        ("redis+socket://", "socket"),
        ("sentinel://h1:26379;sentinel://h2:99999", "port"),
        ("sentinel://h1:26379;sentinel://h2:26379/x", "database"),
    ],
)
def test_bad_urls_are_named_without_echoing_the_url(url: str, part: str | None) -> None:
    problem = url_problem(url)
    if part is None:
        assert problem is None  # the path's db wins, as in redis-py
        return
    assert problem is not None and part in problem and url not in problem


@pytest.mark.parametrize("value", ["", " ", "not a uuid!!", "a" * 256, "tab\there", "x;rm"])
def test_bad_task_ids(value: str) -> None:
    assert id_problem(value)


@pytest.mark.parametrize("value", ["d9b1f0a2-4a3c-4c1e-9a55-0c4f1d2e3b4a", "order-17", "retry:17@shop", "a" * 255])
def test_good_task_ids(value: str) -> None:
    assert id_problem(value) is None


@pytest.mark.parametrize(
    "value,bad",
    [("celery", False), ("high.priority", False), ("", True), (" ", True), ("two words", True), ("x" * 256, True)],
)
def test_names(value: str, bad: bool) -> None:
    assert bool(name_problem(value, "queue name")) is bad
