"""Lua scripts run atomically by Redis for every track-cache write.

Each write script takes ``KEYS = [track hash, index]`` and
``ARGV = [track_key, ttl_ms, client_id, ...]``; it creates the hash if needed, applies its
change, then stamps ``updated_at`` with the server clock (``TIME``, so clients with skewed
clocks agree), refreshes the hash TTL, re-scores the track in the index, trims index
entries older than the TTL and refreshes the index TTL. Every script is idempotent for a
given argument list, so a write retried after a lost reply, or replayed from the local
buffer, has no further effect. :class:`edge_client.state.local.LocalView` mirrors them in
Python for the time Redis is unreachable.
"""

from __future__ import annotations

_COMMON = """
local function init(h)
  redis.call('HSETNX', h, 'status', 'pending')
  redis.call('HSETNX', h, 'reads', '0')
  redis.call('HSETNX', h, 'votes', '[]')
end
local function touch(h, idx, member, ttl_ms, client)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local ttl = tonumber(ttl_ms)
  redis.call('HSET', h, 'updated_at', string.format('%.6f', now), 'updated_by', client)
  redis.call('PEXPIRE', h, ttl)
  redis.call('ZADD', idx, string.format('%.6f', now), member)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. string.format('%.6f', now - ttl / 1000))
  redis.call('PEXPIRE', idx, ttl)
end
local function seen(h, fs, ls, box, vc)
  if fs ~= '' then
    local cur = tonumber(redis.call('HGET', h, 'first_seen') or '')
    if cur == nil or tonumber(fs) < cur then redis.call('HSET', h, 'first_seen', fs) end
  end
  local newest = true
  if ls ~= '' then
    local cur = tonumber(redis.call('HGET', h, 'last_seen') or '')
    newest = cur == nil or tonumber(ls) >= cur
    if newest then redis.call('HSET', h, 'last_seen', ls) end
  end
  if newest and box ~= '' then redis.call('HSET', h, 'box', box) end
  if newest and vc ~= '' then redis.call('HSET', h, 'vehicle_class', vc) end
end
"""

# ARGV: track_key, ttl_ms, client, first_seen, last_seen, box, vehicle_class
UPSERT_SEEN = (
    _COMMON
    + """
init(KEYS[1])
seen(KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
touch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

# ARGV: track_key, ttl_ms, client, vote_json, vote_id, max_votes -> reads after the call
# (-1: this vote id is already stored). Votes beyond max_votes count in `reads` only.
ADD_VOTE = (
    _COMMON
    + """
init(KEYS[1])
local votes = redis.call('HGET', KEYS[1], 'votes')
if string.find(votes, '"id":"' .. ARGV[5] .. '"', 1, true) then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'reads', 1)
if n <= tonumber(ARGV[6]) then
  if votes == '[]' or votes == '{}' or votes == '' then
    votes = '[' .. ARGV[4] .. ']'
  else
    votes = string.sub(votes, 1, -2) .. ',' .. ARGV[4] .. ']'
  end
  redis.call('HSET', KEYS[1], 'votes', votes)
end
touch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return n
"""
)

# ARGV: track_key, ttl_ms, client, event_id, first_seen, last_seen, box, vehicle_class,
# then field/value pairs (plate, raw_text, confidence, region, format).
# -> {won (1/0), event_id now stored, plate now stored}. Won also when the stored
# event_id is ours (a retried or replayed call).
MARK_REPORTED = (
    _COMMON
    + """
init(KEYS[1])
if redis.call('HGET', KEYS[1], 'status') == 'read' then
  local ev = redis.call('HGET', KEYS[1], 'event_id') or ''
  if ev ~= ARGV[4] then
    return {0, ev, redis.call('HGET', KEYS[1], 'plate') or ''}
  end
end
redis.call('HSET', KEYS[1], 'status', 'read', 'event_id', ARGV[4])
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
seen(KEYS[1], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
touch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return {1, ARGV[4], redis.call('HGET', KEYS[1], 'plate') or ''}
"""
)

# ARGV: track_key, ttl_ms, client, status -> 1 applied, 0 refused (the track is read)
SET_STATUS = (
    _COMMON
    + """
init(KEYS[1])
if redis.call('HGET', KEYS[1], 'status') == 'read' and ARGV[4] ~= 'read' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4])
touch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

# KEYS: plate claim key; ARGV: event_id, window_ms
# -> {won (1/0), event_id holding the claim, its remaining ms}
CLAIM_REPORT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return {1, ARGV[1], tonumber(ARGV[2])}
end
local cur = redis.call('GET', KEYS[1]) or ''
local pttl = redis.call('PTTL', KEYS[1])
if cur == ARGV[1] then return {1, cur, pttl} end
return {0, cur, pttl}
"""
