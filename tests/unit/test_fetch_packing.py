"""Commands go out packed by hiredis: the RESP bytes the protocol defines, for every argument type
the engine sends (str in UTF-8, bytes as they are, int and float in decimal)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import resp
from engine.broker.redis import _send
from engine.resp.connection import Connection, Settings, pack


class Recorder(Connection):
    """A connection that keeps what it would send instead of sending it."""

    def __init__(self) -> None:
        super().__init__(Settings())
        self.sent: list[bytes] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sent.append(command if isinstance(command, bytes) else b"".join(command))


FETCH = ("EVALSHA", "a" * 40, 4, "tqctl.inflight.w@h.1", "tqctl.stages.w@h.1", "bench", "bénch\x06\x163", 7, "p.1", "")
BLOCK = ("BLMOVE", "bench", "tqctl.stage.w@h.1|bench", "RIGHT", "LEFT", 0.5)


def by_hand(args: tuple[Any, ...]) -> bytes:
    parts = [a if isinstance(a, bytes) else (repr(a) if isinstance(a, float) else str(a)).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def test_the_fetch_and_its_blocking_move_go_out_in_one_write_as_resp() -> None:
    conn = Recorder()
    _send(conn, FETCH + ("w@h.1.1.0",), BLOCK)
    assert conn.sent == [by_hand(FETCH + ("w@h.1.1.0",)) + by_hand(BLOCK)]
    assert "bénch".encode() in conn.sent[0]


def test_a_value_the_protocol_cannot_carry_is_refused_before_anything_is_sent() -> None:
    assert pack(("SET", b"k", b"\x00\xff")) == by_hand(("SET", b"k", b"\x00\xff"))
    with pytest.raises(resp.DataError):
        pack(("SET", "k", None))
