"""Lua scripts that make each ownership change on Redis one atomic step.

In-flight entries are ``HASH tqctl.inflight.<owner>``: tag → ``<queue key>\\x1f<envelope>``.
Keeping the queue key with the bytes means a reaper can hand a message back to exactly the
list (and priority bucket) it came from without decoding it.
"""

# KEYS[1] = the owner's in-flight hash; KEYS[2..] = queue keys in serving order.
# ARGV[1] = how many to take; ARGV[2] = tag prefix unique to this fetch; ARGV[3..] = tags to
# ack first (settled messages leave the hash in the same round trip that takes new ones).
FETCH = """
for i = 3, #ARGV, 1000 do redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
local want = tonumber(ARGV[1])
local out = {}
local n = 0
for i = 2, #KEYS do
  if n >= want then break end
  local got = redis.call('RPOP', KEYS[i], want - n)
  if got then
    for _, m in ipairs(got) do
      n = n + 1
      local tag = ARGV[2] .. '.' .. n
      redis.call('HSET', KEYS[1], tag, KEYS[i] .. '\\31' .. m)
      out[#out + 1] = tag
      out[#out + 1] = KEYS[i]
      out[#out + 1] = m
    end
  end
end
return out
"""

# A message put back for another delivery says so, as kombu's restore does: ``"redelivered":
# true`` goes into ``properties.delivery_info`` by a byte edit (no JSON re-encode, so nothing else
# changes). Keep in step with ``engine.broker.redis.mark_redelivered``.
_REDELIVERED = """
local function redelivered(m)
  if string.find(m, '"redelivered": true', 1, true) then return m end
  local s, e = string.find(m, '"delivery_info": {', 1, true)
  if not s then s, e = string.find(m, '"delivery_info":{', 1, true) end
  if not s then return m end
  local rest = string.sub(m, e + 1)
  local sep = ', '
  if string.sub(rest, 1, 1) == '}' then sep = '' end
  return string.sub(m, 1, e) .. '"redelivered": true' .. sep .. rest
end
"""

# KEYS[1] = in-flight hash; ARGV = tags. Puts each back at the front of its own list.
REQUEUE = _REDELIVERED + """
local n = 0
for _, tag in ipairs(ARGV) do
  local v = redis.call('HGET', KEYS[1], tag)
  if v then
    local sep = string.find(v, '\\31', 1, true)
    redis.call('RPUSH', string.sub(v, 1, sep - 1), redelivered(string.sub(v, sep + 1)))
    redis.call('HDEL', KEYS[1], tag)
    n = n + 1
  end
end
return n
"""

# KEYS[1] = in-flight hash. Every entry back to the front of its list, then drop the hash.
REQUEUE_ALL = _REDELIVERED + """
local vals = redis.call('HVALS', KEYS[1])
for _, v in ipairs(vals) do
  local sep = string.find(v, '\\31', 1, true)
  redis.call('RPUSH', string.sub(v, 1, sep - 1), redelivered(string.sub(v, sep + 1)))
end
redis.call('DEL', KEYS[1])
return #vals
"""

# KEYS[1] = in-flight hash, KEYS[2] = delayed zset; ARGV[1] = tag, ARGV[2] = eta (unix s).
DEFER = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], v)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] = delayed zset; ARGV[1] = now, ARGV[2] = limit. Due messages go to the front of
# their list; returns {moved, next due score or false}.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, v in ipairs(due) do
  if redis.call('ZREM', KEYS[1], v) == 1 then
    local sep = string.find(v, '\\31', 1, true)
    redis.call('RPUSH', string.sub(v, 1, sep - 1), string.sub(v, sep + 1))
    moved = moved + 1
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {moved, nxt[2]} end
return {moved, false}
"""

# KEYS[1] = owners zset; ARGV[1] = cutoff (unix ms), ARGV[2] = in-flight key prefix.
# Owners silent since the cutoff lose their messages back to the queues.
REAP = _REDELIVERED + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 20)
local moved = 0
for _, owner in ipairs(dead) do
  local h = ARGV[2] .. owner
  local vals = redis.call('HVALS', h)
  for _, v in ipairs(vals) do
    local sep = string.find(v, '\\31', 1, true)
    redis.call('RPUSH', string.sub(v, 1, sep - 1), redelivered(string.sub(v, sep + 1)))
    moved = moved + 1
  end
  redis.call('DEL', h)
  redis.call('ZREM', KEYS[1], owner)
end
return moved
"""

# KEYS[1] = in-flight hash (may be a dummy), KEYS[2] = dead raw hash, KEYS[3] = dead meta hash,
# KEYS[4] = dead index zset; ARGV = tag ('' if none), id, raw, meta json, time.
DEAD = """
if ARGV[1] ~= '' then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
return 1
"""

# KEYS[1..3] = dead raw, meta, index; KEYS[4] = target list; ARGV[1] = id.
DEAD_REQUEUE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
redis.call('LPUSH', KEYS[4], raw)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS[1] = delayed zset, KEYS[2] = target list; ARGV[1] = member, ARGV[2] = the message to queue.
# "Run now" from the console: queued only if it was still parked, so a promotion in between (or a
# second console) cannot queue it twice, and nothing is removed without being queued.
RUN_NOW = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
