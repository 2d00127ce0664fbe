-- Depth of the queue: per priority, jobs not yet delivered (the stream group's lag, -1 when
-- Redis cannot tell, plus the jobs of API keys waiting for their turn) and entries delivered
-- but not acknowledged; then the delayed and dead counts.
--
-- KEYS: high, normal, low, delayed, dead, tenants. ARGV: group.
local out = {}
for i = 1, 3 do
  local lag, pending = 0, 0
  local info = group_info(KEYS[i], ARGV[1])
  if info then
    pending = info['pending']
    lag = info['lag']
    if type(lag) ~= 'number' then
      -- Unknown lag: count the entries after the last delivered one.
      lag = #redis.call('XRANGE', KEYS[i], '(' .. info['last-delivered-id'], '+', 'COUNT', 100000)
    end
  end
  lag = lag + math.max(0, tonumber(redis.call('HGET', KEYS[6], 'waiting:' .. i) or '0'))
  table.insert(out, lag)
  table.insert(out, pending)
end
table.insert(out, redis.call('ZCARD', KEYS[4]))
table.insert(out, redis.call('XLEN', KEYS[5]))
return out
