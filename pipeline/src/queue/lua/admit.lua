-- Admits one more job of an API key, or says how long to wait: the key's unfinished jobs
-- against its quota, then a token bucket of `rate` jobs a second (burst `burst`) shared by
-- every gateway. A refused request takes no token.
--
-- KEYS: tenants, bucket. ARGV: owner, max_unfinished (0: none), rate (jobs/s, 0: off), burst.
-- Returns {0, 0} admitted | {1, retry_ms} over the quota | {2, retry_ms} over the rate.
local max_unfinished, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if max_unfinished > 0 then
  local unfinished = tonumber(redis.call('HGET', KEYS[1], 'unfinished:' .. ARGV[1]) or '0')
  if unfinished >= max_unfinished then return {1, 1000} end
end
if rate > 0 then
  local now = server_ms()
  local state = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(state[1] or burst)
  local at = tonumber(state[2] or now)
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  if tokens < 1 then return {2, math.ceil((1 - tokens) * 1000 / rate)} end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
end
return {0, 0}
