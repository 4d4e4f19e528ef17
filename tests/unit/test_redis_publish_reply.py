"""``RedisBroker.publish`` reads a plain ``:N`` reply straight off the socket and leaves anything
else to redis-py's parser: an error stays redis-py's exception, a reply longer than one read is
parsed whole, and the connection stays in step for the next publish."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator

import hiredis
import pytest
import redis

from engine import resp
from engine.broker.redis import RedisBroker


def test_an_error_reply_raises_redis_pys_error_and_the_next_publish_still_lands(
    redis_url: str, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(redis_url)
    try:
        broker.publish("reply.q", b"first")  # connects: the next ones take the socket path
        redis_client.set("reply.str", "not a list")
        with pytest.raises(resp.ResponseError, match="WRONGTYPE"):
            broker.publish("reply.str", b"x")
        broker.publish("reply.q", b"second")
        assert redis_client.lrange("reply.q", 0, -1) == [b"second", b"first"]
    finally:
        broker.close()


class Scripted:
    """A server on a real socket: +OK to the connection's handshake, then each LPUSH gets the
    next scripted reply (bytes as written, possibly more than one read's worth)."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            parser = hiredis.Reader()
            while self.replies:
                data = conn.recv(65536)
                if not data:
                    return
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    name = command[0].upper()
                    conn.sendall(self.replies.pop(0) if name == b"LPUSH" else b"+OK\r\n")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def scripted() -> Iterator[Callable[[list[bytes]], Scripted]]:
    made: list[Scripted] = []

    def make(replies: list[bytes]) -> Scripted:
        server = Scripted(replies)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_a_reply_longer_than_one_read_is_parsed_whole_and_the_next_stays_in_step(
    scripted: Callable[[list[bytes]], Scripted],
) -> None:
    long = b"ERR " + b"x" * 600
    server = scripted([b":1\r\n", b"-" + long + b"\r\n", b":2\r\n"])
    broker = RedisBroker(f"redis://127.0.0.1:{server.port}/0?protocol=2")
    try:
        broker.publish("q", b"a")  # through redis-py: it connects
        with pytest.raises(resp.ResponseError) as caught:
            broker.publish("q", b"b")
        assert str(caught.value) == "x" * 600  # redis-py drops the ERR code, as for any error
        broker.publish("q", b"c")  # read ":2", not the rest of the error
    finally:
        broker.close()


class Withholding:
    """A server on a real socket that answers the first LPUSH of its first connection and never
    the second; a later LPUSH on that connection first gets a stale error (what the second one
    would have read), one on a new connection gets ``:2``. +OK to everything else."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.answering: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.connections += 1
            answer = threading.Thread(target=self._answer, args=(conn, self.connections == 1), daemon=True)
            self.answering.append(answer)
            answer.start()

    def _answer(self, conn: socket.socket, first: bool) -> None:
        parser, pushes = hiredis.Reader(), 0
        with conn:
            while data := conn.recv(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    if command[0].upper() != b"LPUSH":
                        conn.sendall(b"+OK\r\n")
                        continue
                    pushes += 1
                    if not first:
                        conn.sendall(b":2\r\n")
                    elif pushes == 1:
                        conn.sendall(b":1\r\n")
                    elif pushes > 2:  # the second gets nothing: the client waits until cut off
                        conn.sendall(b"-ERR stale reply\r\n:2\r\n")

    def close(self) -> None:
        """After the client closed its connections: the listener's accept is woken and ended."""
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in [self.thread, *self.answering]:
            thread.join(timeout=5)


class CutOff(Exception):
    """What a soft time limit or a gevent timeout raises in the middle of a call."""


def test_a_publish_cut_off_before_its_reply_drops_the_connection() -> None:
    """Before: the connection stayed, so the next publish read the reply owed to the one cut
    off (here a stale error) instead of its own."""
    server = Withholding()
    broker = RedisBroker(f"redis://127.0.0.1:{server.port}/0?protocol=2")

    def cut_off(signum: int, frame: object) -> None:
        raise CutOff

    broker.publish("q", b"opens")  # through redis-py: it connects
    before = signal.signal(signal.SIGALRM, cut_off)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(CutOff):
            broker.publish("q", b"cut")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    try:
        broker.publish("q", b"next")  # its own reply, on a new connection
        assert server.connections == 2
    finally:
        broker.close()
        server.close()
