-- Starts delivered jobs: each one is either marked running (and its record returned) or
-- acknowledged and dropped (see `start_job`).
--
-- KEYS: high, normal, low, events, dead, stats, tenants, job_1..job_n.
-- ARGV: group, consumer, events_maxlen, channel_prefix, max_attempts, ttl_ms, then per job:
-- stream index, entry id, job id.
-- Returns per job: {'run', field, value, ...} | {'drop', reason}.
local c = {
  group = ARGV[1], consumer = ARGV[2], maxlen = ARGV[3], prefix = ARGV[4],
  max_attempts = tonumber(ARGV[5]), ttl = tonumber(ARGV[6]), now = server_ms(),
  events = KEYS[4], dead = KEYS[5], tenants = KEYS[7], failed = 0,
}
local out = {}
local n = (#ARGV - 6) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[6 + 3 * j - 2])]
  local reply = start_job(c, stream, ARGV[6 + 3 * j - 1], ARGV[6 + 3 * j], KEYS[7 + j])
  table.insert(out, reply)
end
count_exhausted(KEYS[6], c)
return out
