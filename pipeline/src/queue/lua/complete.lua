-- Records how attempts ended and acknowledges their entries, atomically: the record is written
-- before the entry is acknowledged. A record already final is left alone (first finisher wins).
-- An end under a lease token that is no longer the job's, or from a consumer that is no longer
-- its worker (another worker took the job over, or a failover lost this one's start), is
-- fenced: nothing of the job changes and the entry, now another consumer's, is not acknowledged.
--
-- KEYS: high, normal, low, events, delayed, dead, stats, stats_minute, webhooks, durations,
-- tenants, job_1..job_n.
-- ARGV: group, events_maxlen, channel_prefix, ttl_ms, consumer, then per job: stream index, entry id,
-- job id, lease token, outcome (succeeded | failed | dead | cancelled | retry), delay_ms, delayed-set
-- member, error code, webhook (1 when the job has one), field count, then that many
-- field/value arguments to set. Final outcomes also count into duration buckets
-- (dur_le_<seconds> in the stats hash) for the job duration histogram; the run times of the
-- last 1000 jobs that succeeded are kept (newest first) for exact percentiles.
-- Returns per job: 'written' | 'stale' | 'gone' | 'fenced'.
local group, maxlen, prefix, ttl, consumer = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local now = server_ms()
local out = {}
local counts = {}
local durations = {}
-- Per API key, minus the jobs that ended: counted off its quota once per batch.
local finished = {}
-- Entries to acknowledge, per stream.
local acks = {}
local function count(field, by)
  counts[field] = (counts[field] or 0) + by
end
local at = 6
local j = 0
while at <= #ARGV do
  j = j + 1
  local stream = KEYS[tonumber(ARGV[at])]
  local entry, id, token, outcome = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local delay, member, err_code, webhook = ARGV[at + 5], ARGV[at + 6], ARGV[at + 7], ARGV[at + 8]
  local nfields = tonumber(ARGV[at + 9])
  if err_code == '' then err_code = nil end
  local first, last = at + 10, at + 9 + nfields
  at = last + 1
  local job = KEYS[11 + j]
  local cur = redis.call('HMGET', job, 'status', 'attempts', 'owner', 'started_at', 'cancel', 'next_attempt_at', 'lease', 'worker')
  local status = cur[1]
  local result
  if not status then
    result = 'gone'
  elseif cur[7] ~= token or cur[8] ~= consumer then
    result = 'fenced'
  elseif terminal(status) then
    result = 'stale'
  else
    local attempts, owner = tonumber(cur[2] or '0'), cur[3]
    if outcome == 'retry' then
      local due = now + tonumber(delay)
      redis.call('HSET', job, 'status', 'queued', 'next_attempt_at', due, 'progress', 0, unpack(ARGV, first, last))
      redis.call('ZADD', KEYS[5], due, member)
      count('retried', 1)
      event(KEYS[4], maxlen, prefix .. id, id, 'queued', now, 0, attempts, owner, err_code)
    else
      local final = outcome
      if outcome == 'dead' then final = 'failed' end
      local progress = 0
      if final == 'succeeded' then progress = 100 end
      if nfields > 0 then
        redis.call('HSET', job, 'status', final, 'finished_at', now, 'progress', progress, unpack(ARGV, first, last))
      else
        redis.call('HSET', job, 'status', final, 'finished_at', now, 'progress', progress)
      end
      if outcome == 'dead' then
        local dead = redis.call('XADD', KEYS[6], '*', 'id', id, 'failed_at', now)
        redis.call('HSET', job, 'dead_entry', dead)
        count('dead', 1)
      end
      if cur[5] or cur[6] then redis.call('HDEL', job, 'cancel', 'next_attempt_at') end
      redis.call('PEXPIRE', job, ttl)
      local took = now - tonumber(cur[4] or now)
      count(final, 1)
      count(final .. '_ms', took)
      for _, bound in ipairs(DURATION_BOUNDS) do
        if took <= bound * 1000 then
          count('dur_le_' .. bound, 1)
          break
        end
      end
      count('dur_count', 1)
      count('dur_sum_ms', took)
      if final == 'succeeded' then table.insert(durations, took) end
      if webhook == '1' then redis.call('XADD', KEYS[9], '*', 'id', id, 'attempt', 1) end
      if owner and owner ~= '' then finished[owner] = (finished[owner] or 0) - 1 end
      event(KEYS[4], maxlen, prefix .. id, id, final, now, progress, attempts, owner, err_code)
    end
    result = 'written'
  end
  -- Acknowledged below, one XACK per stream for the batch.
  if result ~= 'fenced' then
    acks[stream] = acks[stream] or {}
    table.insert(acks[stream], entry)
  end
  table.insert(out, result)
end
for stream, entries in pairs(acks) do redis.call('XACK', stream, group, unpack(entries)) end
for field, by in pairs(counts) do
  local per_minute = string.find(field, '_ms', 1, true) and field ~= 'dur_sum_ms'
  if not per_minute then redis.call('HINCRBY', KEYS[7], field, by) end
  if not string.find(field, 'dur_', 1, true) then redis.call('HINCRBY', KEYS[8], field, by) end
end
redis.call('PEXPIRE', KEYS[8], 7200000)
count_unfinished(KEYS[11], finished)
if #durations > 0 then
  redis.call('LPUSH', KEYS[10], unpack(durations))
  redis.call('LTRIM', KEYS[10], 0, 999)
end
return out
