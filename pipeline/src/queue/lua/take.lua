-- A worker's whole take in one call: starts the deliveries it already holds (from a blocking
-- read, or taken over from a dead worker), then reads up to count new entries (`read_new`) and
-- starts them too (`start_job`). Saves the separate fetch and start round trips (and script
-- calls) that every woken worker and every batch would otherwise cost.
--
-- The new entries' job keys cannot be declared (they are read here); they carry the queue's
-- hash tag like every key, so the script stays on one Cluster slot (as `feed`'s lists do).
--
-- KEYS: high, normal, low, tenants, ring_high, ring_normal, ring_low, events, dead, stats,
-- then job_1..job_n of the held deliveries.
-- ARGV: group, consumer, count, wait_prefix, events_maxlen, channel_prefix, max_attempts,
-- ttl_ms, job key prefix, held_read (1: the held deliveries were read just now, not taken
-- over), then per held delivery: stream index, entry id, job id.
-- Returns {drained, job...}: drained is 1 when the read came up short of count (count > 0 and
-- every stream and key list was empty), then per job (held ones first) {stream index, entry
-- id, job id, 'run', field, value, ...} or {stream index, entry id, job id, 'drop', reason}.
local c = {
  group = ARGV[1], consumer = ARGV[2], maxlen = ARGV[5], prefix = ARGV[6],
  max_attempts = tonumber(ARGV[7]), ttl = tonumber(ARGV[8]), now = server_ms(),
  events = KEYS[8], dead = KEYS[9], tenants = KEYS[4], failed = 0,
}
local streams = {KEYS[1], KEYS[2], KEYS[3]}
local want, job_prefix = tonumber(ARGV[3]), ARGV[9]
local out = {0}
local function take(i, entry, id, job)
  local reply, owner = start_job(c, streams[i], entry, id, job)
  table.insert(reply, 1, id)
  table.insert(reply, 1, entry)
  table.insert(reply, 1, i)
  table.insert(out, reply)
  return owner
end
-- Jobs of API keys that a blocking read took off a stream were fed ahead: counted off
-- `fed:<i>` as `read_new` does, so enqueue goes on feeding (and other blocked workers wake)
-- even when this take has no room to read.
local fed_read = {}
local n = (#ARGV - 10) / 3
for j = 1, n do
  local i = tonumber(ARGV[10 + 3 * j - 2])
  local owner = take(i, ARGV[10 + 3 * j - 1], ARGV[10 + 3 * j], KEYS[10 + j])
  if ARGV[10] == '1' and owner and owner ~= '' then fed_read[i] = (fed_read[i] or 0) + 1 end
end
for i, read in pairs(fed_read) do redis.call('HINCRBY', c.tenants, 'fed:' .. i, -read) end
if want > 0 then
  local read = {}
  if read_new(streams, {KEYS[5], KEYS[6], KEYS[7]}, KEYS[4], ARGV[4], c.group, c.consumer, want, read) < want then
    out[1] = 1
  end
  for _, d in ipairs(read) do take(d[1], d[2], d[3], job_prefix .. d[3]) end
end
count_exhausted(KEYS[10], c)
return out
