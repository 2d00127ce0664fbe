-- Hands jobs back on shutdown: their entries become claimable by any other worker at once
-- (idle past the visibility timeout), and the attempt does not count.
--
-- KEYS: high, normal, low, events, job_1..job_n. ARGV: group, consumer, idle_ms, events_maxlen,
-- channel_prefix, then per job: stream index, entry id, job id. Returns how many went back.
local group, consumer, idle, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = server_ms()
local back = 0
local n = (#ARGV - 5) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[5 + 3 * j - 2])]
  local entry, id, job = ARGV[5 + 3 * j - 1], ARGV[5 + 3 * j], KEYS[4 + j]
  if #redis.call('XPENDING', stream, group, entry, entry, 1, consumer) > 0 then
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'IDLE', idle, 'JUSTID')
    if redis.call('HGET', job, 'status') == 'running' then
      local attempts = redis.call('HINCRBY', job, 'attempts', -1)
      redis.call('HSET', job, 'status', 'queued', 'progress', 0)
      event(KEYS[4], maxlen, prefix .. id, id, 'queued', now, 0, attempts, redis.call('HGET', job, 'owner'))
    end
    back = back + 1
  end
end
return back
