-- Hands jobs back on shutdown: their entries become claimable by any other worker at once
-- (idle past the visibility timeout), and the attempt does not count. A job this consumer no
-- longer holds under its lease token is left alone.
--
-- KEYS: high, normal, low, events, job_1..job_n. ARGV: group, consumer, idle_ms, events_maxlen,
-- channel_prefix, then per job: stream index, entry id, job id, lease token. Returns how many
-- went back.
local group, consumer, idle, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = server_ms()
local back = 0
local n = (#ARGV - 5) / 4
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[5 + 4 * j - 3])]
  local entry, id, token, job = ARGV[5 + 4 * j - 2], ARGV[5 + 4 * j - 1], ARGV[5 + 4 * j], KEYS[4 + j]
  local cur = redis.call('HMGET', job, 'status', 'lease', 'owner')
  if cur[2] == token and #redis.call('XPENDING', stream, group, entry, entry, 1, consumer) > 0 then
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'IDLE', idle, 'JUSTID')
    if cur[1] == 'running' then
      local attempts = redis.call('HINCRBY', job, 'attempts', -1)
      redis.call('HSET', job, 'status', 'queued', 'progress', 0)
      event(KEYS[4], maxlen, prefix .. id, id, 'queued', now, 0, attempts, cur[3])
    end
    back = back + 1
  end
end
return back
