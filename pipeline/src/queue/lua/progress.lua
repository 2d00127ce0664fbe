-- Records a running job's progress and tells its subscribers, under the lease token of the
-- worker that holds it: a worker that lost its lease cannot move the job's progress.
--
-- KEYS: job. ARGV: lease token, consumer, percent, channel, event payload.
-- Returns 1 when recorded, 0 when the lease is no longer the caller's.
local cur = redis.call('HMGET', KEYS[1], 'lease', 'worker', 'status')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or cur[3] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
