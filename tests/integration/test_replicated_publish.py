"""``tqctl_publish_wait_replicas``: each publish is LPUSH + WAIT, on a real primary with a real
replica (no sentinels needed: the setting works on a plain ``redis://`` URL too).

The publish reads the two ``:N`` replies itself, as RedisBroker.publish reads its one; every
other reply (an error, a count short of the replicas asked for) must come out as before. A group's
members gather into one ``publish_many`` with one WAIT, as on RedisBroker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from engine import App, group, resp
from engine.broker.replicated import NotReplicated, ReplicatedBroker
from tests.integration.servers import Server, free_port, valkey_binary, wait_until

pytestmark = pytest.mark.integration
QUEUE = "replicated.q"


@dataclass
class Pair:
    primary: Server
    replica: Server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary.port}/0"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("replicated")
    binary = valkey_binary()
    primary = Server(tmp / "primary", free_port(), [], binary).start()
    replica = Server(tmp / "replica", free_port(), [f"replicaof 127.0.0.1 {primary.port}"], binary)
    try:
        replica.start()
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 30, "the replica")
        yield Pair(primary, replica)
    finally:
        replica.kill()
        primary.kill()


@pytest.fixture
def pair(servers: Pair) -> Pair:
    """The module's servers, emptied (on the replica too) before each test."""
    servers.primary.client().flushall()
    servers.primary.client().wait(1, 5000)
    return servers


@pytest.fixture
def app(pair: Pair) -> Iterator[App]:
    app = App(
        "replicated",
        broker=pair.url,
        task_default_queue=QUEUE,
        task_send_sent_event=False,
        tqctl_publish_wait_replicas=1,
        tqctl_publish_wait_timeout=2.0,
    )
    app.task(name="replicated.noop", ignore_result=True)(lambda *a: None)
    yield app
    app.close()


@pytest.fixture
def replicated(pair: Pair) -> Iterator[Callable[..., ReplicatedBroker]]:
    """``replicated(replicas=1, timeout=2.0)`` → a ReplicatedBroker on the pair, closed at the end."""
    made: list[ReplicatedBroker] = []

    def make(replicas: int = 1, timeout: float = 2.0) -> ReplicatedBroker:
        made.append(ReplicatedBroker(pair.url, replicas=replicas, timeout=timeout))
        return made[-1]

    yield make
    for broker in made:
        broker.close()


def _waits(server: Server) -> int:
    return int(server.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_each_publish_returns_with_the_message_on_the_replica(app: App, pair: Pair) -> None:
    assert isinstance(app.broker, ReplicatedBroker)
    replica = pair.replica.client()
    for n in range(1, 21):
        app.send_task("replicated.noop", (n,))
        assert replica.llen(QUEUE) == n  # already there when the send returned


def test_a_publish_reads_plain_replies_without_redis_pys_reader(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.send_task("replicated.noop")  # the thread's connection is open from here
    conn = app.broker._conns.get()  # type: ignore[attr-defined]
    read = conn.read_response
    calls: list[int] = []

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return read(*args, **kwargs)

    monkeypatch.setattr(conn, "read_response", counted)
    for _ in range(5):
        app.send_task("replicated.noop")
    assert calls == []


def test_fewer_replicas_than_asked_is_still_not_replicated(
    pair: Pair, replicated: Callable[..., ReplicatedBroker]
) -> None:
    broker = replicated(replicas=2, timeout=0.1)
    with pytest.raises(NotReplicated, match="1 of 2 replica"):
        broker.publish(QUEUE, b"first")  # the connection opened through redis-py's path
    with pytest.raises(NotReplicated, match="1 of 2 replica"):
        broker.publish(QUEUE, b"second")  # the direct read
    assert pair.primary.client().lrange(QUEUE, 0, -1) == [b"second", b"first"]


def test_an_error_reply_is_redis_pys_error_and_the_next_publish_stays_in_step(
    pair: Pair, replicated: Callable[..., ReplicatedBroker]
) -> None:
    broker = replicated()
    primary = pair.primary.client()
    broker.publish(QUEUE, b"opened")
    primary.set("not-a-list", "x")
    with pytest.raises(resp.ResponseError, match="WRONGTYPE"):
        broker.publish("not-a-list", b"m")
    broker.publish(QUEUE, b"after")
    assert primary.lrange(QUEUE, 0, -1) == [b"after", b"opened"]


def test_a_killed_connection_is_retried_once(pair: Pair, replicated: Callable[..., ReplicatedBroker]) -> None:
    broker = replicated()
    primary = pair.primary.client()
    broker.publish(QUEUE, b"opened")
    mine = {c["id"] for c in primary.client_list()} - {str(primary.client_id())}
    for client_id in mine:
        primary.client_kill_filter(_id=client_id)
    broker.publish(QUEUE, b"retried")
    assert primary.lrange(QUEUE, 0, -1) == [b"retried", b"opened"]


def test_a_group_waits_for_the_replicas_once(app: App, pair: Pair) -> None:
    """Before: each member's publish skipped the broker's gathering, so a group of 20 made 20
    LPUSH + WAIT round trips (and one more WAIT for the empty batch at the end)."""
    app.send_task("replicated.noop")
    pair.primary.client().config_resetstat()
    result = group(app.signature("replicated.noop", (n,)) for n in range(20)).apply_async()
    assert len(result.results) == 20
    assert _waits(pair.primary) == 1
    assert pair.replica.client().llen(QUEUE) == 21


def test_a_batch_left_by_an_exception_sends_nothing(app: App, pair: Pair) -> None:
    broker = app.broker
    with pytest.raises(RuntimeError):
        with broker.batched():  # type: ignore[attr-defined]
            app.send_task("replicated.noop")
            raise RuntimeError("the group's building failed")
    assert pair.primary.client().llen(QUEUE) == 0
