-- Moves retries whose time has come from the delayed set back onto their streams.
--
-- KEYS: delayed, high, normal, low. ARGV: batch size.
-- Members are <priority index>:<job id>. Returns how many moved.
local now = server_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local index = tonumber(string.sub(member, 1, sep - 1))
  redis.call('XADD', KEYS[1 + index], '*', 'id', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
