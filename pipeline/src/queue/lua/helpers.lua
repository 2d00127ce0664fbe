-- Shared helpers, prepended to every script that publishes events or reads the server clock.
-- Event payloads are built by hand: ids, statuses and codes are plain ASCII, and this runs
-- for every transition of every job.
local function event(events_key, maxlen, channel, id, status, ts, progress, attempts, owner, err)
  local payload = '{"id":"' .. id .. '","status":"' .. status .. '","progress":' .. (progress or 0) ..
    ',"attempts":' .. (attempts or 0) .. ',"ts":' .. ts
  if err then payload = payload .. ',"error":"' .. err .. '"' end
  -- The owner id (a digest, never a key) lets gateways filter the firehose per API key.
  if owner and owner ~= '' then payload = payload .. ',"owner":"' .. owner .. '"' end
  redis.call('PUBLISH', channel, payload .. '}')
  -- The capped global stream keeps what dashboards chart: arrivals, retries and endings
  -- (who is running is in the worker registry).
  if status ~= 'running' then
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', status, 'ts', ts, 'owner', owner or '')
  end
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Upper bounds (seconds) of the job duration histogram's buckets.
local DURATION_BOUNDS = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
local function terminal(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end
-- The XINFO GROUPS fields of consumer group `group` on `stream`, or nil (no stream, no group).
local function group_info(stream, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if not ok then return nil end
  for _, g in ipairs(groups) do
    local info = {}
    for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
    if info['name'] == group then return info end
  end
  return nil
end
-- Fair scheduling. A job of an API key waits in its key's list `<wait_prefix><i>:<owner>` (i:
-- the priority's stream, 1..3); ring i lists the keys with jobs waiting at that priority.
-- Feeding moves up to n jobs onto stream i: the keys at the head of the ring take their turn,
-- each an equal share of what is still wanted (popped in one command), then go to the back
-- (those with jobs left), so one key's backlog never holds back another key's jobs. The ring
-- is rotated a round at a time (LRANGE, LTRIM, RPUSH), not a key at a time. `tenants` counts
-- what waits per priority (`waiting:<i>`). Returns how many jobs it fed.
local function feed(stream, ring, tenants, wait_prefix, i, n)
  local fed = 0
  while fed < n do
    local keys = redis.call('LLEN', ring)
    if keys == 0 then break end
    local share = math.ceil((n - fed) / keys)
    local turn = math.min(keys, math.ceil((n - fed) / share))
    local owners = redis.call('LRANGE', ring, 0, turn - 1)
    redis.call('LTRIM', ring, turn, -1)
    local again = {}
    for _, owner in ipairs(owners) do
      local want = math.min(share, n - fed)
      local list = wait_prefix .. i .. ':' .. owner
      local ids = redis.call('LPOP', list, want)
      local got = 0
      if ids then
        got = #ids
        for _, id in ipairs(ids) do redis.call('XADD', stream, '*', 'id', id) end
        fed = fed + got
      end
      if got == want and redis.call('LLEN', list) > 0 then table.insert(again, owner) end
    end
    if #again > 0 then redis.call('RPUSH', ring, unpack(again)) end
  end
  if fed > 0 then redis.call('HINCRBY', tenants, 'waiting:' .. i, -fed) end
  return fed
end
-- Adds `by[owner]` to each API key's count of unfinished jobs (its quota's count); a count
-- that reaches zero is removed. A batch of many keys costs three commands at most (HMGET,
-- HSET, HDEL), not one HINCRBY per key.
local function count_unfinished(tenants, by)
  local fields, deltas = {}, {}
  for owner, n in pairs(by) do
    table.insert(fields, 'unfinished:' .. owner)
    table.insert(deltas, n)
  end
  if #fields == 0 then return end
  if #fields == 1 then
    if redis.call('HINCRBY', tenants, fields[1], deltas[1]) <= 0 then
      redis.call('HDEL', tenants, fields[1])
    end
    return
  end
  local counts = redis.call('HMGET', tenants, unpack(fields))
  local set, gone = {}, {}
  for k, field in ipairs(fields) do
    local count = tonumber(counts[k] or '0') + deltas[k]
    if count > 0 then
      table.insert(set, field)
      table.insert(set, string.format('%d', count))
    else
      table.insert(gone, field)
    end
  end
  if #set > 0 then redis.call('HSET', tenants, unpack(set)) end
  if #gone > 0 then redis.call('HDEL', tenants, unpack(gone)) end
end
-- `n` (default 1) jobs of `owner` less not yet finished (the per-key quota's count).
local function finished_for(tenants, owner, n)
  if owner and owner ~= '' then count_unfinished(tenants, {[owner] = -(n or 1)}) end
end
-- Reads up to `want` new entries for `consumer`, high priority first (streams and rings: the
-- three priorities' keys). When a stream has fewer than wanted, jobs of API keys are fed onto
-- it first (see `feed`) and read too. `fed:<i>` in tenants counts entries fed ahead and not yet
-- read (enqueue keeps it near its window); a read that comes up short proves the stream empty
-- and resets it. Appends {stream index, entry id, job id} to `out`; returns how many it read.
local function read_new(streams, rings, tenants, wait_prefix, group, consumer, want, out)
  local wanted = want
  local function read(i, count)
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', streams[i], '>')
    local got = 0
    if reply then
      for _, entry in ipairs(reply[1][2]) do
        local fields, job = entry[2], ''
        for f = 1, #fields, 2 do
          if fields[f] == 'id' then job = fields[f + 1] end
        end
        table.insert(out, {i, entry[1], job})
        got = got + 1
      end
    end
    return got
  end
  for i = 1, 3 do
    if want <= 0 then break end
    local got = read(i, want)
    if got < want then
      redis.call('HSET', tenants, 'fed:' .. i, 0)
      want = want - got
      local fed = feed(streams[i], rings[i], tenants, wait_prefix, i, want)
      if fed > 0 then want = want - read(i, fed) end
    else
      redis.call('HINCRBY', tenants, 'fed:' .. i, -got)
      want = 0
    end
  end
  return wanted - want
end
-- Starts one delivered job (entry `entry` of `stream`, job `id`, record at key `job`): either
-- marks it running and returns {'run', field, value, ...} (its whole record), or acknowledges
-- it and returns {'drop', reason} — when it is gone, already finished or cancelled (a late
-- duplicate delivery is never re-run), or when it already used up its attempts by killing
-- workers (then it is failed and dead-lettered, and `c.failed` counts it). Every start is a
-- hand-over: it takes the job's next lease token (`lease`, never reused), which the scripts
-- that change a running job (renew, progress, complete, hand_back) check, so an earlier
-- holder is fenced off. `c`: group, consumer, maxlen, prefix (channel), max_attempts, ttl,
-- now, events, dead, tenants (keys), failed (a count). Also returns the job's owner (API key id).
local function start_job(c, stream, entry, id, job)
  local cur = redis.call('HMGET', job, 'status', 'attempts', 'started_at', 'owner', 'next_attempt_at', 'lease')
  local status, attempts, owner = cur[1], tonumber(cur[2] or '0'), cur[4]
  local drop = nil
  if not status then
    drop = 'gone'
  elseif terminal(status) then
    drop = status
  elseif status == 'running' and attempts >= c.max_attempts then
    -- Every attempt so far died with its worker: stop feeding it to workers.
    local err = '{"code":"internal","message":"the job stopped its worker ' .. attempts .. ' times (crash or kill); giving up"}'
    local dead = redis.call('XADD', c.dead, '*', 'id', id, 'failed_at', c.now)
    redis.call('HSET', job, 'status', 'failed', 'finished_at', c.now, 'error', err, 'dead_entry', dead)
    redis.call('PEXPIRE', job, c.ttl)
    c.failed = c.failed + 1
    finished_for(c.tenants, owner)
    event(c.events, c.maxlen, c.prefix .. id, id, 'failed', c.now, 0, attempts, owner, 'internal')
    drop = 'exhausted'
  end
  if drop then
    redis.call('XACK', stream, c.group, entry)
    return {'drop', drop}, owner
  end
  attempts = attempts + 1
  -- The next lease token, written with the rest (this script is atomic).
  local lease = tonumber(cur[6] or '0') + 1
  if cur[3] then
    redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', c.consumer, 'progress', 0, 'lease', lease)
  else
    redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', c.consumer, 'progress', 0, 'lease', lease, 'started_at', c.now)
  end
  if cur[5] then redis.call('HDEL', job, 'next_attempt_at') end
  event(c.events, c.maxlen, c.prefix .. id, id, 'running', c.now, 0, attempts, owner)
  local record = redis.call('HGETALL', job)
  table.insert(record, 1, 'run')
  return record, owner
end
-- Counts the jobs `start_job` failed into the stats hash.
local function count_exhausted(stats, c)
  if c.failed > 0 then
    redis.call('HINCRBY', stats, 'failed', c.failed)
    redis.call('HINCRBY', stats, 'dead', c.failed)
  end
end
