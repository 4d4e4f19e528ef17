"""Finding the primary through Redis Sentinel: asked at every (re)connect, so a failover is a lost
connection that the client's retries carry across to the new primary."""

from __future__ import annotations

from collections.abc import Sequence

from engine.resp.connection import Connection, Settings
from engine.resp.errors import ConnectionError, MasterNotFoundError, ReadOnlyError, RedisError


class PrimaryLocator:
    """``locate()`` → the primary's address, from the first sentinel that names a healthy one
    (not down by its own or the quorum's judgement, seen by ``min_other_sentinels`` others). The
    sentinel that answered is asked first next time."""

    def __init__(
        self, sentinels: Sequence[tuple[str, int]], master: str, settings: Settings, min_other_sentinels: int = 0
    ) -> None:
        self.sentinels = list(sentinels)
        self.master = master
        self.settings = settings  # for the sentinels themselves (timeouts, their password)
        self.min_other_sentinels = min_other_sentinels

    def __call__(self) -> tuple[str, int]:
        causes: list[str] = []
        for index, (host, port) in enumerate(list(self.sentinels)):
            conn = Connection(self.settings.with_address(host, port))
            try:
                conn.send_command("SENTINEL", "MASTERS", check_health=False)
                found = self._healthy(conn.read_response())
            except (RedisError, OSError) as exc:
                causes.append(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                conn.disconnect()
            if found is not None:
                if index:
                    self.sentinels.insert(0, self.sentinels.pop(index))
                return found
            causes.append(f"{host}:{port} knows no healthy primary named {self.master!r}")
        raise MasterNotFoundError(f"No master found for {self.master!r} (sentinels: {'; '.join(causes)})")

    def _healthy(self, masters: list[list[bytes]]) -> tuple[str, int] | None:
        for flat in masters:
            it = iter(flat)
            state = {k.decode(): v.decode() for k, v in zip(it, it, strict=False)}
            if state.get("name") != self.master:
                continue
            flags = set(state.get("flags", "").split(","))
            if "master" not in flags or flags & {"s_down", "o_down", "disconnected"}:
                return None
            if int(state.get("num-other-sentinels", 0)) < self.min_other_sentinels:
                return None
            return state["ip"], int(state["port"])
        return None


class FollowingConnection(Connection):
    """A connection to whatever the sentinels name as primary. A write refused as ``READONLY``
    means it reached the old primary, now a replica: the connection is dropped and the error is a
    lost connection, which the client retries on the new primary."""

    def read_response(self, timeout: float | None = None) -> object:
        try:
            return super().read_response(timeout)
        except ReadOnlyError:
            self.disconnect()
            raise ConnectionError("the primary became a replica (a failover): reconnecting") from None
