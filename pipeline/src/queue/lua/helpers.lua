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
