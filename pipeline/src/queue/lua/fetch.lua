-- Reads up to count new entries, high priority first.
--
-- KEYS: high, normal, low. ARGV: group, consumer, count.
-- Returns a flat list: stream index (1..3), entry id, job id, ...
local out = {}
local want = tonumber(ARGV[3])
for i = 1, 3 do
  if want <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[i], '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, job = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'id' then job = fields[f + 1] end
      end
      table.insert(out, i)
      table.insert(out, entry[1])
      table.insert(out, job)
      want = want - 1
    end
  end
end
return out
