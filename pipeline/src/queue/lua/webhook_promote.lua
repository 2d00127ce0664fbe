-- Moves webhook retries whose time has come from the delayed set back onto the webhook stream.
--
-- KEYS: webhooks_delayed, webhooks. ARGV: batch size.
-- Members are `<attempt>:<job id>`. Returns how many moved.
local now = server_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  redis.call('XADD', KEYS[2], '*', 'id', string.sub(member, sep + 1), 'attempt', string.sub(member, 1, sep - 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
