"""Lua scripts that make each ownership change on Redis one atomic step.

In-flight entries are ``HASH tqctl.inflight.<owner>``: tag → ``<queue key>\\x1f<envelope>``.
Keeping the queue key with the bytes means a reaper can hand a message back to exactly the
list (and priority bucket) it came from without decoding it.
"""

# Staging: an idle worker blocks with ``BLMOVE <queue> tqctl.stage.<owner>\x1f<queue>``, so a
# message the server pops is never only in a reply on the wire: it sits in that list until the
# next FETCH records it in the in-flight hash. The owner's staging lists are named in the set
# ``tqctl.stages.<owner>`` (armed by FETCH before each block), which the reaper and ``requeue_all``
# also empty. The list's name carries its source queue key, so a message goes back exactly there.
# Moves every staged message back to the front of its source list (used by reap, requeue, retire).
_UNSTAGE = """
local function unstage(stages)
  local moved = 0
  for _, s in ipairs(redis.call('SMEMBERS', stages)) do
    local src = string.sub(s, string.find(s, '\\31', 1, true) + 1)
    local m = redis.call('LPOP', s)
    while m do
      redis.call('RPUSH', src, m)
      moved = moved + 1
      m = redis.call('LPOP', s)
    end
    redis.call('DEL', s)
  end
  redis.call('DEL', stages)
  return moved
end
"""

# KEYS[1] = the owner's in-flight hash; KEYS[2] = its staging set; KEYS[3..] = queue keys in
# serving order. ARGV[1] = how many to take; ARGV[2] = tag prefix unique to this fetch; ARGV[3] =
# staging list to arm if nothing came ('' = none); ARGV[4..] = tags to ack first (settled messages
# leave the hash in the same round trip that takes new ones). Staged messages come first: they
# left their queue earliest.
FETCH = """
for i = 4, #ARGV, 1000 do redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
local want = tonumber(ARGV[1])
local out = {}
local n = 0
local function take(src, m)
  n = n + 1
  local tag = ARGV[2] .. '.' .. n
  redis.call('HSET', KEYS[1], tag, src .. '\\31' .. m)
  out[#out + 1] = tag
  out[#out + 1] = src
  out[#out + 1] = m
end
for _, s in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local src = string.sub(s, string.find(s, '\\31', 1, true) + 1)
  while n < want do
    local m = redis.call('RPOP', s)
    if not m then break end
    take(src, m)
  end
end
for i = 3, #KEYS do
  if n >= want then break end
  local got = redis.call('RPOP', KEYS[i], want - n)
  if got then
    for _, m in ipairs(got) do take(KEYS[i], m) end
  end
end
if n == 0 and ARGV[3] ~= '' then redis.call('SADD', KEYS[2], ARGV[3]) end
return out
"""

# KEYS[1] = in-flight hash, KEYS[2] = the owner's recent claims list, KEYS[3] = owners zset;
# ARGV[1] = '1' to take the record (early ack) or '0' to check it is still ours (late ack);
# ARGV[2] = tag; ARGV[3] = owner; ARGV[4] = ms or ''; ARGV[5..] = pending acks. The fence before
# a job starts: 0 means the message was taken back (the owner looked dead) and runs elsewhere.
# Given ARGV[4], a late ack's 1 also needs the owner's heartbeat younger than that many ms on the
# server's clock (half the owner timeout): the reaper then cannot take the message back before
# the task has run and its ack landed. An older heartbeat (a frozen parent, a worker cut off)
# answers 2: still recorded, but ask again; starting it now could run it here and, once reaped,
# elsewhere too. A taken tag is remembered in a short per-owner list, so a retry after a lost
# reply still answers 1.
CLAIM = """
for i = 5, #ARGV, 1000 do redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
local claims = KEYS[2]
if ARGV[1] == '0' then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
  local beat = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[3]))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if ARGV[4] == '' or (beat and now - beat < tonumber(ARGV[4])) then return 1 end
  return 2
end
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('LPUSH', claims, ARGV[2])
  redis.call('LTRIM', claims, 0, 255)
  return 1
end
if redis.call('LPOS', claims, ARGV[2]) then return 1 end
return 0
"""

# Owner liveness on the server's clock. When no ownership script (heartbeat or reap, from any
# worker) ran for longer than ``slack`` ms, the server itself was stalled (SIGSTOP, a restart
# from its AOF, a paused VM) or every worker was: nobody could beat, so that time is not counted
# against anyone; each owner is moved forward by the gap beyond ``slack``. A dead owner still
# ages at least ``slack`` per gap, so it is always reaped in the end.
_CLOCK = """
local function clock(owners, tick, slack)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = tonumber(redis.call('GET', tick))
  if last and now - last > slack then
    local shift = now - last - slack
    for _, o in ipairs(redis.call('ZRANGE', owners, 0, -1)) do redis.call('ZINCRBY', owners, shift, o) end
  end
  redis.call('SET', tick, now)
  return now
end
"""

# KEYS[1] = owners zset, KEYS[2] = clock key; ARGV[1] = owner, ARGV[2] = slack ms.
# Returns 1 if the owner was missing (first beat, or it was reaped: what it held runs elsewhere).
BEAT = (
    _CLOCK
    + """
local now = clock(KEYS[1], KEYS[2], tonumber(ARGV[2]))
return redis.call('ZADD', KEYS[1], now, ARGV[1])
"""
)

# A message put back for another delivery says so, as kombu's restore does: ``"redelivered":
# true`` goes into ``properties.delivery_info`` by a byte edit (no JSON re-encode, so nothing else
# changes). Keep in step with ``engine.broker.redis.mark_redelivered``. Staged messages (never
# handed to a task) and ETA promotions are not redeliveries and stay as they are.
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
REQUEUE = (
    _REDELIVERED
    + """
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
)

# KEYS[1] = in-flight hash, KEYS[2] = staging set, KEYS[3] = owners zset, KEYS[4] = claims list;
# ARGV[1] = owner ('' to stay registered). Every entry and staged message back to the front of its list.
REQUEUE_ALL = (
    _REDELIVERED
    + _UNSTAGE
    + """
local vals = redis.call('HVALS', KEYS[1])
local moved = 0
for _, v in ipairs(vals) do
  local sep = string.find(v, '\\31', 1, true)
  if sep then
    redis.call('RPUSH', string.sub(v, 1, sep - 1), redelivered(string.sub(v, sep + 1)))
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[4])
moved = moved + unstage(KEYS[2])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end
return moved
"""
)

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

# KEYS[1] = owners zset, KEYS[2] = clock key; ARGV[1] = timeout ms, ARGV[2] = in-flight key prefix,
# ARGV[3] = staging set prefix, ARGV[4] = slack ms, ARGV[5] = claims list prefix. Owners silent for
# ``timeout`` by the server's clock (stalls not counted) lose their messages, staged ones too.
REAP = (
    _REDELIVERED
    + _CLOCK
    + _UNSTAGE
    + """
local now = clock(KEYS[1], KEYS[2], tonumber(ARGV[4]))
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 20)
local moved = 0
for _, owner in ipairs(dead) do
  local h = ARGV[2] .. owner
  local vals = redis.call('HVALS', h)
  for _, v in ipairs(vals) do
    local sep = string.find(v, '\\31', 1, true)
    if sep then
      redis.call('RPUSH', string.sub(v, 1, sep - 1), redelivered(string.sub(v, sep + 1)))
      moved = moved + 1
    end
  end
  redis.call('DEL', h, ARGV[5] .. owner)
  moved = moved + unstage(ARGV[3] .. owner)
  redis.call('ZREM', KEYS[1], owner)
end
return moved
"""
)

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
