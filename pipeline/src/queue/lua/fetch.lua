-- Reads up to count new entries, high priority first, feeding jobs of API keys onto a stream
-- that runs short (see `read_new`).
--
-- KEYS: high, normal, low, tenants, ring_high, ring_normal, ring_low.
-- ARGV: group, consumer, count, wait_prefix.
-- Returns a flat list: stream index (1..3), entry id, job id, ...
local read = {}
read_new({KEYS[1], KEYS[2], KEYS[3]}, {KEYS[5], KEYS[6], KEYS[7]}, KEYS[4], ARGV[4], ARGV[1], ARGV[2], tonumber(ARGV[3]), read)
local out = {}
for _, d in ipairs(read) do
  table.insert(out, d[1])
  table.insert(out, d[2])
  table.insert(out, d[3])
end
return out
