-- Renews leases: resets the idle time of entries this consumer still owns under the lease token
-- it was given (never steals one another consumer or a later start took over), and reports
-- cancel requests.
--
-- KEYS: high, normal, low, job_1..job_n. ARGV: group, consumer, then per job: stream index,
-- entry id, lease token. Returns per job: 0 lost, 1 held, 2 held and cancel requested.
local group, consumer = ARGV[1], ARGV[2]
local out = {}
local n = (#ARGV - 2) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[2 + 3 * j - 2])]
  local entry, token = ARGV[2 + 3 * j - 1], ARGV[2 + 3 * j]
  local job = KEYS[3 + j]
  local cur = redis.call('HMGET', job, 'lease', 'cancel')
  if cur[1] ~= token or #redis.call('XPENDING', stream, group, entry, entry, 1, consumer) == 0 then
    table.insert(out, 0)
  else
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
    if cur[2] then
      table.insert(out, 2)
    else
      table.insert(out, 1)
    end
  end
end
return out
