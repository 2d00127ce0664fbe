-- Trims acknowledged entries from the job streams. An entry is removed only when it was
-- delivered (older than the group's last-delivered id) and acknowledged (older than the oldest
-- pending entry), so no unacknowledged or undelivered entry can ever be dropped.
--
-- KEYS: high, normal, low. ARGV: group. Returns how many entries went.
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local removed = 0
for i = 1, 3 do
  local info = group_info(KEYS[i], ARGV[1])
  if info then
    local ms, seq = parse(info['last-delivered-id'])
    local threshold = ms .. '-' .. (seq + 1)
    local pending = redis.call('XPENDING', KEYS[i], ARGV[1])
    if pending[1] > 0 and less(pending[2], threshold) then threshold = pending[2] end
    removed = removed + redis.call('XTRIM', KEYS[i], 'MINID', threshold)
  end
end
return removed
