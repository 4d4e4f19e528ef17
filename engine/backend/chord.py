"""The chord join on Redis, in Celery 5.7's key layout so mixed fleets share chords.

Each finished header task adds itself to ``.j`` (deduped by ``.d``, so a redelivered header
counts once); the one that completes the set claims ``.c`` and publishes the body, then marks
``.c`` done so a late redelivery can never start the body again (celery-wire.md §6.1).
When a header member failed, ``.j`` stays until it expires, as in Celery: its error callbacks
and users read the header's outcomes from it after the failure.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from engine import resp
from engine.protocol.results import group_key

# KEYS: .j .d .s .t .c ; ARGV: member, score, dedupe member, ttl seconds, claim token, ordered (1/0)
JOIN = """
local done = redis.call('GET', KEYS[5]) == 'done'
local ordered = ARGV[6] ~= '0'
-- Finished: a late copy of a header must not start the body again. It may instead be the first
-- member of a frozen chord applied again, sent before the client cleared .c and wrote the new
-- size (Celery's client does that just before the last member): so it is recorded, and the new
-- run counts it, but it never completes a chord itself.
if redis.call('SADD', KEYS[2], ARGV[3]) == 1 then
  if ordered then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) else redis.call('RPUSH', KEYS[1], ARGV[1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if done then return {0} end
-- Record first, then look at the size: Celery's client writes .s only just before it sends the
-- last header, so earlier headers may finish before it exists; the last one to finish sees it.
local size = redis.call('GET', KEYS[3])
if not size then return {0} end
local total = tonumber(size) + tonumber(redis.call('GET', KEYS[4]) or '0')
local count = ordered and redis.call('ZCARD', KEYS[1]) or redis.call('LLEN', KEYS[1])
if count < total then return {0} end
if not redis.call('SET', KEYS[5], ARGV[5], 'NX', 'PX', 10000) then return {0} end
if ordered then return {1, redis.call('ZRANGE', KEYS[1], 0, -1)} end
return {1, redis.call('LRANGE', KEYS[1], 0, -1)}
"""

# KEYS: .j .d .s .t .c ; ARGV: claim token, "1" to keep .j and .d (a failed header)
FINISH = """
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3], KEYS[4])
else
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end
redis.call('SET', KEYS[5], 'done', 'EX', 300)
return 1
"""


def _keys(group_id: str) -> list[str]:
    base = group_key(group_id)
    return [f"{base}.j", f"{base}.d", f"{base}.s", f"{base}.t", f"{base}.c"]


class ChordJoin:
    def __init__(self, client: resp.Client, expires: int = 86400, ordered: bool = True) -> None:
        self.client = client
        self.expires = expires
        self.ordered = ordered  # Celery's ``result_chord_ordered``: a sorted set, else a list
        self._join = client.register_script(JOIN)
        self._finish = client.register_script(FINISH)

    def set_size(self, group_id: str, size: int) -> None:
        """Written by the client when it applies the chord (before any header can finish).

        As Celery's ``set_chord_size``, it first clears ``.c``: a frozen chord applied again
        reuses its group id, and each apply is a new run whose body must start again."""
        base = group_key(group_id)
        with self.client.pipeline() as pipe:
            pipe.delete(f"{base}.c")
            pipe.setex(f"{base}.s", self.expires, size)
            pipe.execute()

    def add_to_chord(self, group_id: str) -> None:
        """One more header member than the chord was sent with (``Task.add_to_chord``)."""
        key = f"{group_key(group_id)}.t"
        with self.client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self.expires)
            pipe.execute()

    def part_done(
        self, group_id: str, task_id: str, index: int, state: str, result: Any
    ) -> tuple[str, list[tuple[str, str, Any]]] | None:
        """Record one header outcome; returns (claim token, ordered parts) to the completer."""
        member = json.dumps([1, task_id, state, result])
        token = uuid.uuid4().hex
        args: list[Any] = [member, index, f"{task_id}:{index}", self.expires, token, 1 if self.ordered else 0]
        got = self._join(keys=_keys(group_id), args=args)
        if not got or int(got[0]) != 1:
            return None
        parts = [json.loads(m) for m in got[1]]
        return token, [(p[1], p[2], p[3]) for p in parts]

    def finish(self, group_id: str, token: str, *, keep_parts: bool = False) -> bool:
        """Release the chord after its body went out; ``keep_parts`` leaves ``.j`` readable
        (Celery keeps it when a header failed, only dropping the size)."""
        return bool(self._finish(keys=_keys(group_id), args=[token, "1" if keep_parts else "0"]))
