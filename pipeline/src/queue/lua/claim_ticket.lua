-- Spends an upload ticket, atomically: only for its owner, and only once (of several requests
-- racing with the same upload id, exactly one gets it).
--
-- KEYS: upload ticket. ARGV: owner ('-' when the API is open).
-- Returns 1 when this call spent it, 0 when it is gone or another owner's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
