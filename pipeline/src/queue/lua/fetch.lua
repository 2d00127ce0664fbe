-- Reads up to count new entries, high priority first. When a stream has fewer than wanted,
-- jobs of API keys are fed onto it first, one per key in turn (see `feed`), and read too.
-- `fed:<i>` in tenants counts entries fed ahead and not yet read (enqueue keeps it near its
-- window); a read that comes up short proves the stream empty and resets it.
--
-- KEYS: high, normal, low, tenants, ring_high, ring_normal, ring_low.
-- ARGV: group, consumer, count, wait_prefix.
-- Returns a flat list: stream index (1..3), entry id, job id, ...
local tenants, wait_prefix = KEYS[4], ARGV[4]
local out = {}
local want = tonumber(ARGV[3])
local function read(i, count)
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count, 'STREAMS', KEYS[i], '>')
  local got = 0
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, job = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'id' then job = fields[f + 1] end
      end
      table.insert(out, i)
      table.insert(out, entry[1])
      table.insert(out, job)
      got = got + 1
    end
  end
  return got
end
for i = 1, 3 do
  if want <= 0 then break end
  local got = read(i, want)
  if got < want then
    redis.call('HSET', tenants, 'fed:' .. i, 0)
    want = want - got
    local fed = feed(KEYS[i], KEYS[4 + i], tenants, wait_prefix, i, want)
    if fed > 0 then want = want - read(i, fed) end
  else
    redis.call('HINCRBY', tenants, 'fed:' .. i, -got)
    want = 0
  end
end
return out
