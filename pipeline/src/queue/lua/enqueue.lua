-- Creates jobs: each one's record, its place in line, the recent lists and the queued event.
-- Never overwrites an existing job. One call takes a whole batch (scripts cost more to enter
-- than the few commands each job needs). A job without an owner goes straight onto its
-- stream; a job of an API key waits in its key's list (fair scheduling, see `feed`), and up
-- to `window` jobs per priority are fed ahead so that blocked workers wake (window 0: fair
-- scheduling is off, every job goes straight onto its stream).
--
-- KEYS: events, recent, high, normal, low, tenants, ring_high, ring_normal, ring_low, then per
-- job: job, owner_recent (= recent when the job has no owner).
-- ARGV: ttl_ms, now_ms, events_maxlen, channel_prefix, wait_prefix, window, then per job: id,
-- stream index, owner, field count, then that many field/value arguments.
-- Returns per job 1 (created) or 0 (already existed).
local ttl, now, maxlen, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local wait_prefix, window = ARGV[5], tonumber(ARGV[6])
local tenants = KEYS[6]
local out = {}
local at = 7
local j = 0
local recent = {[KEYS[2]] = {}}
local parked = {}
-- New jobs per API key, added to its quota's count once per batch.
local unfinished = {}
while at <= #ARGV do
  j = j + 1
  local id, index, owner, nfields = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3])
  local job, owner_recent = KEYS[8 + 2 * j], KEYS[9 + 2 * j]
  if redis.call('EXISTS', job) == 1 then
    table.insert(out, 0)
  else
    redis.call('HSET', job, unpack(ARGV, at + 4, at + 3 + nfields))
    redis.call('PEXPIRE', job, ttl)
    if owner ~= '' then unfinished[owner] = (unfinished[owner] or 0) + 1 end
    if owner == '' or window == 0 then
      redis.call('XADD', KEYS[2 + index], '*', 'id', id)
    else
      -- Parked per key and priority below: one command per key for the whole batch.
      parked[index] = parked[index] or {}
      parked[index][owner] = parked[index][owner] or {}
      table.insert(parked[index][owner], id)
    end
    -- The recent lists get the batch's jobs in one ZADD each, below.
    table.insert(recent[KEYS[2]], now)
    table.insert(recent[KEYS[2]], id)
    if owner_recent ~= KEYS[2] then
      recent[owner_recent] = recent[owner_recent] or {}
      table.insert(recent[owner_recent], now)
      table.insert(recent[owner_recent], id)
    end
    event(KEYS[1], maxlen, prefix .. id, id, 'queued', now, 0, 0, owner)
    table.insert(out, 1)
  end
  at = at + 4 + nfields
end
-- Into the recent lists. Their expired jobs are forgotten in one batch of 16 (by the clock):
-- listing skips jobs whose records are gone, so trimming only bounds memory, and an API key's
-- own list would otherwise cost a command per key per batch.
local trim = now % 16 == 0
for list, members in pairs(recent) do
  if #members > 0 then redis.call('ZADD', list, unpack(members)) end
  if trim then redis.call('ZREMRANGEBYSCORE', list, '-inf', now - ttl) end
end
count_unfinished(tenants, unfinished)
for index, owners in pairs(parked) do
  local count = 0
  for owner, ids in pairs(owners) do
    if redis.call('RPUSH', wait_prefix .. index .. ':' .. owner, unpack(ids)) == #ids then
      redis.call('RPUSH', KEYS[6 + index], owner)
    end
    count = count + #ids
  end
  redis.call('HINCRBY', tenants, 'waiting:' .. index, count)
  local ahead = math.max(0, tonumber(redis.call('HGET', tenants, 'fed:' .. index) or '0'))
  if ahead < window then
    local fed = feed(KEYS[2 + index], KEYS[6 + index], tenants, wait_prefix, index, window - ahead)
    if fed > 0 then redis.call('HSET', tenants, 'fed:' .. index, ahead + fed) end
  end
end
return out
