-- Cancels a job: a queued one becomes cancelled at once (and is dropped if delivered later);
-- a running one is flagged and stops at its next checkpoint.
--
-- KEYS: job, events, tenants. ARGV: events_maxlen, channel, ttl_ms, cancel channel (workers hear the
-- running job's cancel there at once; their lease renewals catch it too).
-- Returns 'missing' | 'cancelled' | 'cancelling' | 'final:<status>' when it had already ended.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if terminal(status) then return 'final:' .. status end
local now = server_ms()
local id = redis.call('HGET', KEYS[1], 'id')
local owner = redis.call('HGET', KEYS[1], 'owner')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now)
  redis.call('HDEL', KEYS[1], 'next_attempt_at')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  -- Still in its key's waiting list, if it has one: dropped when its turn comes.
  finished_for(KEYS[3], owner)
  event(KEYS[2], ARGV[1], ARGV[2], id, 'cancelled', now, 0, redis.call('HGET', KEYS[1], 'attempts'), owner)
  return 'cancelled'
end
redis.call('HSET', KEYS[1], 'cancel', now)
redis.call('PUBLISH', ARGV[4], id)
return 'cancelling'
