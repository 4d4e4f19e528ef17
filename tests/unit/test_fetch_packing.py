"""The fetch's command goes out packed by hiredis: the same bytes redis-py's packer writes."""

from __future__ import annotations

from typing import Any

import redis

from engine.broker.redis import _send


class Recorder(redis.connection.Connection):
    """A connection that keeps what it would send instead of sending it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.sent: list[bytes] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sent.append(b"".join(command))


FETCH = ("EVALSHA", "a" * 40, 4, "tqctl.inflight.w@h.1", "tqctl.stages.w@h.1", "bench", "bénch\x06\x163", 7, "p.1", "")
BLOCK = ("BLMOVE", "bench", "tqctl.stage.w@h.1|bench", "RIGHT", "LEFT", 0.5)


def test_the_fetch_and_its_blocking_move_are_packed_as_redis_py_packs_them() -> None:
    for args in (FETCH + ("w@h.1.1.0", "w@h.1.1.1"), BLOCK):
        conn = Recorder()
        _send(conn, args)
        assert conn.sent == [b"".join(conn._command_packer.pack(*args))]


def test_a_connection_with_another_encoding_keeps_redis_pys_packer() -> None:
    conn = Recorder(encoding="latin-1")
    _send(conn, FETCH)
    assert conn.sent == [b"".join(conn._command_packer.pack(*FETCH))]
    assert "bénch".encode("latin-1") in conn.sent[0]
