-- Starts delivered jobs: each one is either marked running (and its record returned) or
-- acknowledged and dropped — when it is gone, already finished or cancelled (a late duplicate
-- delivery is never re-run), or when it already used up its attempts by killing workers.
--
-- KEYS: high, normal, low, events, dead, stats, tenants, job_1..job_n.
-- ARGV: group, consumer, events_maxlen, channel_prefix, max_attempts, ttl_ms, then per job:
-- stream index, entry id, job id.
-- Returns per job: {'run', field, value, ...} | {'drop', reason}. Every start is a hand-over:
-- it takes the job's next lease token (`lease`, never reused), which the scripts that change a
-- running job (renew, progress, complete, hand_back) check, so an earlier holder is fenced off.
local group, consumer, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_attempts, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = server_ms()
local out = {}
local failed = 0
local n = (#ARGV - 6) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[6 + 3 * j - 2])]
  local entry, id, job = ARGV[6 + 3 * j - 1], ARGV[6 + 3 * j], KEYS[7 + j]
  local cur = redis.call('HMGET', job, 'status', 'attempts', 'started_at', 'owner', 'next_attempt_at', 'lease')
  local status, attempts, owner = cur[1], tonumber(cur[2] or '0'), cur[4]
  local drop = nil
  if not status then
    drop = 'gone'
  elseif terminal(status) then
    drop = status
  elseif status == 'running' and attempts >= max_attempts then
    -- Every attempt so far died with its worker: stop feeding it to workers.
    local err = '{"code":"internal","message":"the job stopped its worker ' .. attempts .. ' times (crash or kill); giving up"}'
    local dead = redis.call('XADD', KEYS[5], '*', 'id', id, 'failed_at', now)
    redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', err, 'dead_entry', dead)
    redis.call('PEXPIRE', job, ttl)
    failed = failed + 1
    finished_for(KEYS[7], owner)
    event(KEYS[4], maxlen, prefix .. id, id, 'failed', now, 0, attempts, owner, 'internal')
    drop = 'exhausted'
  end
  if drop then
    redis.call('XACK', stream, group, entry)
    table.insert(out, {'drop', drop})
  else
    attempts = attempts + 1
    -- The next lease token, written with the rest (this script is atomic).
    local lease = tonumber(cur[6] or '0') + 1
    if cur[3] then
      redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', consumer, 'progress', 0, 'lease', lease)
    else
      redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', consumer, 'progress', 0, 'lease', lease, 'started_at', now)
    end
    if cur[5] then redis.call('HDEL', job, 'next_attempt_at') end
    event(KEYS[4], maxlen, prefix .. id, id, 'running', now, 0, attempts, owner)
    local record = redis.call('HGETALL', job)
    table.insert(record, 1, 'run')
    table.insert(out, record)
  end
end
if failed > 0 then
  redis.call('HINCRBY', KEYS[6], 'failed', failed)
  redis.call('HINCRBY', KEYS[6], 'dead', failed)
end
return out
