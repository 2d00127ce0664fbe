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
-- `n` (default 1) jobs of `owner` less not yet finished (the per-key quota's count).
local function finished_for(tenants, owner, n)
  if owner and owner ~= '' then
    if redis.call('HINCRBY', tenants, 'unfinished:' .. owner, -(n or 1)) <= 0 then
      redis.call('HDEL', tenants, 'unfinished:' .. owner)
    end
  end
end
