-- Creates jobs: each one's record, stream entry, place in the recent lists and queued event.
-- Never overwrites an existing job. One call takes a whole batch (scripts cost more to enter
-- than the few commands each job needs).
--
-- KEYS: events, recent, high, normal, low, then per job: job, owner_recent (= recent when the
-- job has no owner).
-- ARGV: ttl_ms, now_ms, events_maxlen, channel_prefix, then per job: id, stream index, owner,
-- field count, then that many field/value arguments.
-- Returns per job 1 (created) or 0 (already existed).
local ttl, now, maxlen, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
local at = 5
local j = 0
local trimmed = {}
while at <= #ARGV do
  j = j + 1
  local id, index, owner, nfields = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3])
  local job, owner_recent = KEYS[4 + 2 * j], KEYS[5 + 2 * j]
  if redis.call('EXISTS', job) == 1 then
    table.insert(out, 0)
  else
    redis.call('HSET', job, unpack(ARGV, at + 4, at + 3 + nfields))
    redis.call('PEXPIRE', job, ttl)
    redis.call('XADD', KEYS[2 + index], '*', 'id', id)
    redis.call('ZADD', KEYS[2], now, id)
    if owner_recent ~= KEYS[2] then redis.call('ZADD', owner_recent, now, id) end
    -- Forget expired jobs in the recent lists, once per list per batch.
    if not trimmed[owner_recent] then
      redis.call('ZREMRANGEBYSCORE', owner_recent, '-inf', now - ttl)
      trimmed[owner_recent] = true
    end
    event(KEYS[1], maxlen, prefix .. id, id, 'queued', now, 0, 0, owner)
    table.insert(out, 1)
  end
  at = at + 4 + nfields
end
if not trimmed[KEYS[2]] then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl) end
return out
