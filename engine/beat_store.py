"""Beat's state in the broker: the leader lease and one hash per entry, behind Lua scripts.

Keys (all prefixed ``tqctl.beat.``):

* ``tqctl.beat.lease``: a string holding the leader's token (``host:pid:random``), set with
  ``SET NX PX``; only the holder renews it (compare-and-``PEXPIRE`` in Lua) or deletes it.
* ``tqctl.beat.entry.<name>``: a hash per entry. ``cursor``: every slot at or before this
  instant is settled (fired or skipped); ``last_run``: the last slot actually fired;
  ``total_run_count``; ``enabled`` (``"0"`` when disabled, absent or ``"1"`` otherwise).
  Instants are integer microseconds since the Unix epoch, UTC.

``fire`` is the idempotency point: one atomic script checks that the caller still holds the
lease, that the slot is after the cursor and that the entry is enabled, and moves the cursor
to the slot. Only a caller that gets ``FIRED`` publishes, so a slot is claimed once however
many beats run, even while two of them briefly believe they lead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from engine import resp

PREFIX = "tqctl.beat."
LEASE_KEY = PREFIX + "lease"
ENTRY_PREFIX = PREFIX + "entry."

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# fire() results
FIRED, ALREADY, NOT_LEADER, DISABLED = 1, 0, -1, 2

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, entry hash. ARGV: token, slot (us). Numbers are compared with tonumber (exact
# below 2^53 us, i.e. until the year 2255) and stored as the caller's strings, never re-printed.
_FIRE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local cursor = tonumber(redis.call('HGET', KEYS[2], 'cursor') or '0')
if cursor >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'cursor', ARGV[2])
if redis.call('HGET', KEYS[2], 'enabled') == '0' then return 2 end
redis.call('HSET', KEYS[2], 'last_run', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'total_run_count', 1)
return 1
"""

# KEYS: entry hash. ARGV: flag ('0'/'1'), now (us). Re-enabling a disabled entry moves the cursor up to now, so the
# slots that fell due while the entry was disabled are skipped, never queued up for later.
_SET_ENABLED = """
local was = redis.call('HGET', KEYS[1], 'enabled')
redis.call('HSET', KEYS[1], 'enabled', ARGV[1])
if ARGV[1] == '1' and was == '0' then
  local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor') or '0')
  if cursor < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'cursor', ARGV[2]) end
end
if was == ARGV[1] or (was == false and ARGV[1] == '1') then return 0 end
return 1
"""


def to_us(instant: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float)."""
    return (instant - EPOCH) // _US


def from_us(value: int | str | bytes | None) -> datetime | None:
    if value is None:
        return None
    return EPOCH + timedelta(microseconds=int(value))


def entry_key(name: str) -> str:
    return ENTRY_PREFIX + name


class BeatStore:
    """Lease and per-entry state on one Redis client (thread-safe: each call borrows a pooled connection)."""

    def __init__(self, client: resp.Client) -> None:
        self.client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fire = client.register_script(_FIRE)
        self._set_enabled = client.register_script(_SET_ENABLED)

    # -- lease ------------------------------------------------------------------------------
    def acquire(self, token: str, lease_ms: int) -> bool:
        """Take the lease if nobody holds it (``SET NX PX``); keep it if we already do."""
        if self.client.set(LEASE_KEY, token, nx=True, px=lease_ms):
            return True
        return self.renew(token, lease_ms)

    def renew(self, token: str, lease_ms: int) -> bool:
        return bool(self._renew(keys=[LEASE_KEY], args=[token, lease_ms]))

    def release(self, token: str) -> bool:
        return bool(self._release(keys=[LEASE_KEY], args=[token]))

    def holder(self) -> dict[str, Any] | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(LEASE_KEY)
        pipe.pttl(LEASE_KEY)
        token, ttl = pipe.execute()
        if token is None:
            return None
        return {"token": token.decode(), "ttl_ms": max(int(ttl), 0)}

    # -- entries ----------------------------------------------------------------------------
    def init_entries(self, names: list[str], now: datetime) -> None:
        """A new entry starts at ``now``: it fires at its next slot, no back-fill (HSETNX)."""
        if not names:
            return
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hsetnx(entry_key(name), "cursor", to_us(now))
        pipe.execute()

    def prune(self, keep: list[str]) -> list[str]:
        """Delete the state of entries no longer configured (a re-added entry starts afresh)."""
        wanted = {entry_key(name).encode() for name in keep}
        stale = [key for key in self.client.scan_iter(match=ENTRY_PREFIX + "*", count=500) if key not in wanted]
        if stale:
            self.client.delete(*stale)
        return sorted(key.decode()[len(ENTRY_PREFIX) :] for key in stale)

    def states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Per entry: cursor/last_run (datetime or None), enabled, total_run_count."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(entry_key(name))
        out: dict[str, dict[str, Any]] = {}
        for name, raw in zip(names, pipe.execute(), strict=True):
            data = {k.decode(): v.decode() for k, v in raw.items()}
            out[name] = {
                "cursor": from_us(data.get("cursor")),
                "last_run": from_us(data.get("last_run")),
                "enabled": data.get("enabled", "1") != "0",
                "total_run_count": int(data.get("total_run_count", 0)),
            }
        return out

    def fire(self, token: str, name: str, slot: datetime) -> int:
        """Claim ``slot`` for ``name``: FIRED, ALREADY (settled before), NOT_LEADER or DISABLED."""
        return int(self._fire(keys=[LEASE_KEY, entry_key(name)], args=[token, to_us(slot)]))

    def set_enabled(self, name: str, enabled: bool, now: datetime) -> bool:
        """Set the flag; True when it changed. Re-enabling moves the cursor up to ``now``."""
        flag = "1" if enabled else "0"
        return bool(self._set_enabled(keys=[entry_key(name)], args=[flag, to_us(now)]))
