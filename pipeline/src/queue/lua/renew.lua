-- Renews leases: resets the idle time of entries this consumer still owns (never steals one
-- another consumer took over), and reports cancel requests.
--
-- KEYS: high, normal, low, job_1..job_n. ARGV: group, consumer, then per job: stream index,
-- entry id. Returns per job: 0 lost, 1 held, 2 held and cancel requested.
local group, consumer = ARGV[1], ARGV[2]
local out = {}
local n = (#ARGV - 2) / 2
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[2 + 2 * j - 1])]
  local entry = ARGV[2 + 2 * j]
  local pending = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
  if #pending == 0 then
    table.insert(out, 0)
  else
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
    if redis.call('HEXISTS', KEYS[3 + j], 'cancel') == 1 then
      table.insert(out, 2)
    else
      table.insert(out, 1)
    end
  end
end
return out
