-- Puts a dead-lettered job back on its stream with a fresh set of attempts.
--
-- KEYS: job, dead, high, normal, low, events, tenants. ARGV: events_maxlen, channel, ttl_ms.
-- Returns 'replayed' | 'missing' | 'not_dead'.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
local dead = redis.call('HGET', KEYS[1], 'dead_entry')
if status ~= 'failed' or not dead then return 'not_dead' end
local now = server_ms()
local id = redis.call('HGET', KEYS[1], 'id')
local priority = redis.call('HGET', KEYS[1], 'priority')
local index = 2
if priority == 'high' then index = 1 elseif priority == 'low' then index = 3 end
redis.call('XDEL', KEYS[2], dead)
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'progress', 0)
redis.call('HDEL', KEYS[1], 'error', 'finished_at', 'started_at', 'dead_entry', 'next_attempt_at', 'cancel', 'outputs', 'worker')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('XADD', KEYS[2 + index], '*', 'id', id)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' then count_unfinished(KEYS[7], {[owner] = 1}) end
event(KEYS[6], ARGV[1], ARGV[2], id, 'queued', now, 0, 0, owner)
return 'replayed'
