//! The Lua scripts that make each queue transition atomic. Every key a script touches is passed
//! in KEYS and carries the queue's hash tag, so they run on Redis Cluster too.
//!
//! Conventions: streams are KEYS 1..3 as high, normal, low wherever a script needs them, and
//! stream entries carry one field, `id` (the job id); everything else is in the job hash.

use std::sync::LazyLock;

use redis::Script;

/// Shared Lua helpers, prepended to scripts that publish events.
const HELPERS: &str = r#"
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
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\n{body}"))
}

/// Creates jobs: each one's record, stream entry, place in the recent lists and `queued` event.
/// Never overwrites an existing job. One call takes a whole batch (scripts cost more to enter
/// than the few commands each job needs).
///
/// KEYS: events, recent, high, normal, low, then per job: job, owner_recent (= recent when the
/// job has no owner).
/// ARGV: ttl_ms, now_ms, events_maxlen, channel_prefix, then per job: id, stream index, owner,
/// field count, then that many field/value arguments.
/// Returns per job 1 (created) or 0 (already existed).
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl, now, maxlen, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
local at = 5
local j = 0
local trimmed = {}
while at <= #ARGV do
  j = j + 1
  local id, index, owner, nfields = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3])
  local job, owner_recent = KEYS[4 + 2 * j], KEYS[5 + 2 * j]
  if redis.call('EXISTS', job) == 1 then
    table.insert(out, 0)
  else
    redis.call('HSET', job, unpack(ARGV, at + 4, at + 3 + nfields))
    redis.call('PEXPIRE', job, ttl)
    redis.call('XADD', KEYS[2 + index], '*', 'id', id)
    redis.call('ZADD', KEYS[2], now, id)
    if owner_recent ~= KEYS[2] then redis.call('ZADD', owner_recent, now, id) end
    -- Forget expired jobs in the recent lists, once per list per batch.
    if not trimmed[owner_recent] then
      redis.call('ZREMRANGEBYSCORE', owner_recent, '-inf', now - ttl)
      trimmed[owner_recent] = true
    end
    event(KEYS[1], maxlen, prefix .. id, id, 'queued', now, 0, 0, owner)
    table.insert(out, 1)
  end
  at = at + 4 + nfields
end
if not trimmed[KEYS[2]] then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl) end
return out
"#,
    )
});

/// Reads up to `count` new entries, high priority first.
///
/// KEYS: high, normal, low. ARGV: group, consumer, count.
/// Returns a flat list: stream index (1..3), entry id, job id, ...
pub static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
local want = tonumber(ARGV[3])
for i = 1, 3 do
  if want <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[i], '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, job = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'id' then job = fields[f + 1] end
      end
      table.insert(out, i)
      table.insert(out, entry[1])
      table.insert(out, job)
      want = want - 1
    end
  end
end
return out
"#,
    )
});

/// Starts delivered jobs: each one is either marked running (and its record returned) or
/// acknowledged and dropped — when it is gone, already finished or cancelled (a late duplicate
/// delivery is never re-run), or when it already used up its attempts by killing workers.
///
/// KEYS: high, normal, low, events, dead, stats, job_1..job_n.
/// ARGV: group, consumer, events_maxlen, channel_prefix, max_attempts, ttl_ms, then per job:
/// stream index, entry id, job id.
/// Returns per job: {'run', field, value, ...} | {'drop', reason}.
pub static START: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_attempts, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = server_ms()
local out = {}
local failed = 0
local n = (#ARGV - 6) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[6 + 3 * j - 2])]
  local entry, id, job = ARGV[6 + 3 * j - 1], ARGV[6 + 3 * j], KEYS[6 + j]
  local cur = redis.call('HMGET', job, 'status', 'attempts', 'started_at', 'owner', 'next_attempt_at')
  local status, attempts, owner = cur[1], tonumber(cur[2] or '0'), cur[4]
  local drop = nil
  if not status then
    drop = 'gone'
  elseif terminal(status) then
    drop = status
  elseif status == 'running' and attempts >= max_attempts then
    -- Every attempt so far died with its worker: stop feeding it to workers.
    local err = '{"code":"internal","message":"the job stopped its worker ' .. attempts .. ' times (crash or kill); giving up"}'
    local dead = redis.call('XADD', KEYS[5], '*', 'id', id, 'failed_at', now)
    redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', err, 'dead_entry', dead)
    redis.call('PEXPIRE', job, ttl)
    failed = failed + 1
    event(KEYS[4], maxlen, prefix .. id, id, 'failed', now, 0, attempts, owner, 'internal')
    drop = 'exhausted'
  end
  if drop then
    redis.call('XACK', stream, group, entry)
    table.insert(out, {'drop', drop})
  else
    attempts = attempts + 1
    if cur[3] then
      redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', consumer, 'progress', 0)
    else
      redis.call('HSET', job, 'status', 'running', 'attempts', attempts, 'worker', consumer, 'progress', 0, 'started_at', now)
    end
    if cur[5] then redis.call('HDEL', job, 'next_attempt_at') end
    event(KEYS[4], maxlen, prefix .. id, id, 'running', now, 0, attempts, owner)
    local record = redis.call('HGETALL', job)
    table.insert(record, 1, 'run')
    table.insert(out, record)
  end
end
if failed > 0 then
  redis.call('HINCRBY', KEYS[6], 'failed', failed)
  redis.call('HINCRBY', KEYS[6], 'dead', failed)
end
return out
"#,
    )
});

/// Renews leases: resets the idle time of entries this consumer still owns (never steals one
/// another consumer took over), and reports cancel requests.
///
/// KEYS: high, normal, low, job_1..job_n. ARGV: group, consumer, then per job: stream index,
/// entry id. Returns per job: 0 lost, 1 held, 2 held and cancel requested.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local group, consumer = ARGV[1], ARGV[2]
local out = {}
local n = (#ARGV - 2) / 2
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[2 + 2 * j - 1])]
  local entry = ARGV[2 + 2 * j]
  local pending = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
  if #pending == 0 then
    table.insert(out, 0)
  else
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
    if redis.call('HEXISTS', KEYS[3 + j], 'cancel') == 1 then
      table.insert(out, 2)
    else
      table.insert(out, 1)
    end
  end
end
return out
"#,
    )
});

/// Records how attempts ended and acknowledges their entries, atomically: the record is written
/// before the entry is acknowledged. A record already final is left alone (first finisher wins).
///
/// KEYS: high, normal, low, events, delayed, dead, stats, stats_minute, webhooks, durations,
/// job_1..job_n.
/// ARGV: group, events_maxlen, channel_prefix, ttl_ms, then per job: stream index, entry id,
/// job id, outcome (succeeded | failed | dead | cancelled | retry), delay_ms, delayed-set
/// member, error code, webhook (1 when the job has one), field count, then that many
/// field/value arguments to set. Final outcomes also count into duration buckets
/// (`dur_le_<seconds>` in the stats hash) for the job duration histogram; the run times of the
/// last 1000 jobs that succeeded are kept (newest first) for exact percentiles.
/// Returns per job: 'written' | 'stale' | 'gone'.
pub static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, maxlen, prefix, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = server_ms()
local out = {}
local counts = {}
local durations = {}
local function count(field, by)
  counts[field] = (counts[field] or 0) + by
end
local at = 5
local j = 0
while at <= #ARGV do
  j = j + 1
  local stream = KEYS[tonumber(ARGV[at])]
  local entry, id, outcome = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local delay, member, err_code, webhook = ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  local nfields = tonumber(ARGV[at + 8])
  if err_code == '' then err_code = nil end
  local first, last = at + 9, at + 8 + nfields
  at = last + 1
  local job = KEYS[10 + j]
  local cur = redis.call('HMGET', job, 'status', 'attempts', 'owner', 'started_at', 'cancel', 'next_attempt_at')
  local status = cur[1]
  local result
  if not status then
    result = 'gone'
  elseif terminal(status) then
    result = 'stale'
  else
    local attempts, owner = tonumber(cur[2] or '0'), cur[3]
    if outcome == 'retry' then
      local due = now + tonumber(delay)
      redis.call('HSET', job, 'status', 'queued', 'next_attempt_at', due, 'progress', 0, unpack(ARGV, first, last))
      redis.call('ZADD', KEYS[5], due, member)
      count('retried', 1)
      event(KEYS[4], maxlen, prefix .. id, id, 'queued', now, 0, attempts, owner, err_code)
    else
      local final = outcome
      if outcome == 'dead' then final = 'failed' end
      local progress = 0
      if final == 'succeeded' then progress = 100 end
      if nfields > 0 then
        redis.call('HSET', job, 'status', final, 'finished_at', now, 'progress', progress, unpack(ARGV, first, last))
      else
        redis.call('HSET', job, 'status', final, 'finished_at', now, 'progress', progress)
      end
      if outcome == 'dead' then
        local dead = redis.call('XADD', KEYS[6], '*', 'id', id, 'failed_at', now)
        redis.call('HSET', job, 'dead_entry', dead)
        count('dead', 1)
      end
      if cur[5] or cur[6] then redis.call('HDEL', job, 'cancel', 'next_attempt_at') end
      redis.call('PEXPIRE', job, ttl)
      local took = now - tonumber(cur[4] or now)
      count(final, 1)
      count(final .. '_ms', took)
      for _, bound in ipairs(DURATION_BOUNDS) do
        if took <= bound * 1000 then
          count('dur_le_' .. bound, 1)
          break
        end
      end
      count('dur_count', 1)
      count('dur_sum_ms', took)
      if final == 'succeeded' then table.insert(durations, took) end
      if webhook == '1' then redis.call('XADD', KEYS[9], '*', 'id', id, 'attempt', 1) end
      event(KEYS[4], maxlen, prefix .. id, id, final, now, progress, attempts, owner, err_code)
    end
    result = 'written'
  end
  redis.call('XACK', stream, group, entry)
  table.insert(out, result)
end
for field, by in pairs(counts) do
  local per_minute = string.find(field, '_ms', 1, true) and field ~= 'dur_sum_ms'
  if not per_minute then redis.call('HINCRBY', KEYS[7], field, by) end
  if not string.find(field, 'dur_', 1, true) then redis.call('HINCRBY', KEYS[8], field, by) end
end
redis.call('PEXPIRE', KEYS[8], 7200000)
if #durations > 0 then
  redis.call('LPUSH', KEYS[10], unpack(durations))
  redis.call('LTRIM', KEYS[10], 0, 999)
end
return out
"#,
    )
});

/// Trims acknowledged entries from the job streams. An entry is removed only when it was
/// delivered (older than the group's last-delivered id) and acknowledged (older than the oldest
/// pending entry), so no unacknowledged or undelivered entry can ever be dropped.
///
/// KEYS: high, normal, low. ARGV: group. Returns how many entries went.
pub static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local removed = 0
for i = 1, 3 do
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[i])
  if ok then
    for _, g in ipairs(groups) do
      local info = {}
      for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
      if info['name'] == ARGV[1] then
        local ms, seq = parse(info['last-delivered-id'])
        local threshold = ms .. '-' .. (seq + 1)
        local pending = redis.call('XPENDING', KEYS[i], ARGV[1])
        if pending[1] > 0 and less(pending[2], threshold) then threshold = pending[2] end
        removed = removed + redis.call('XTRIM', KEYS[i], 'MINID', threshold)
      end
    end
  end
end
return removed
"#,
    )
});

/// Depth of the queue: per stream, entries not yet delivered (the group's lag, -1 when Redis
/// cannot tell) and entries delivered but not acknowledged; then the delayed and dead counts.
///
/// KEYS: high, normal, low, delayed, dead. ARGV: group.
pub static DEPTH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for i = 1, 3 do
  local lag, pending = 0, 0
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[i])
  if ok then
    for _, g in ipairs(groups) do
      local info = {}
      for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
      if info['name'] == ARGV[1] then
        pending = info['pending']
        lag = info['lag']
        if type(lag) ~= 'number' then
          -- Unknown lag: count the entries after the last delivered one.
          lag = #redis.call('XRANGE', KEYS[i], '(' .. info['last-delivered-id'], '+', 'COUNT', 100000)
        end
      end
    end
  end
  table.insert(out, lag)
  table.insert(out, pending)
end
table.insert(out, redis.call('ZCARD', KEYS[4]))
table.insert(out, redis.call('XLEN', KEYS[5]))
return out
"#,
    )
});

/// Moves retries whose time has come from the delayed set back onto their streams.
///
/// KEYS: delayed, high, normal, low. ARGV: batch size.
/// Members are `<priority index>:<job id>`. Returns how many moved.
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = server_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local index = tonumber(string.sub(member, 1, sep - 1))
  redis.call('XADD', KEYS[1 + index], '*', 'id', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"#,
    )
});

/// Cancels a job: a queued one becomes `cancelled` at once (and is dropped if delivered later);
/// a running one is flagged and stops at its next checkpoint.
///
/// KEYS: job, events. ARGV: events_maxlen, channel, ttl_ms.
/// Returns 'missing' | 'cancelled' | 'cancelling' | 'final:<status>' when it had already ended.
pub static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
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
  event(KEYS[2], ARGV[1], ARGV[2], id, 'cancelled', now, 0, redis.call('HGET', KEYS[1], 'attempts'), owner)
  return 'cancelled'
end
redis.call('HSET', KEYS[1], 'cancel', now)
return 'cancelling'
"#,
    )
});

/// Puts a dead-lettered job back on its stream with a fresh set of attempts.
///
/// KEYS: job, dead, high, normal, low, events. ARGV: events_maxlen, channel, ttl_ms.
/// Returns 'replayed' | 'missing' | 'not_dead'.
pub static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
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
event(KEYS[6], ARGV[1], ARGV[2], id, 'queued', now, 0, 0, redis.call('HGET', KEYS[1], 'owner'))
return 'replayed'
"#,
    )
});

/// Hands jobs back on shutdown: their entries become claimable by any other worker at once
/// (idle past the visibility timeout), and the attempt does not count.
///
/// KEYS: high, normal, low, events, job_1..job_n. ARGV: group, consumer, idle_ms, events_maxlen,
/// channel_prefix, then per job: stream index, entry id, job id. Returns how many went back.
pub static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer, idle, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = server_ms()
local back = 0
local n = (#ARGV - 5) / 3
for j = 1, n do
  local stream = KEYS[tonumber(ARGV[5 + 3 * j - 2])]
  local entry, id, job = ARGV[5 + 3 * j - 1], ARGV[5 + 3 * j], KEYS[4 + j]
  if #redis.call('XPENDING', stream, group, entry, entry, 1, consumer) > 0 then
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'IDLE', idle, 'JUSTID')
    if redis.call('HGET', job, 'status') == 'running' then
      local attempts = redis.call('HINCRBY', job, 'attempts', -1)
      redis.call('HSET', job, 'status', 'queued', 'progress', 0)
      event(KEYS[4], maxlen, prefix .. id, id, 'queued', now, 0, attempts, redis.call('HGET', job, 'owner'))
    end
    back = back + 1
  end
end
return back
"#,
    )
});

/// Every script, to load them up front (pipelined calls use EVALSHA).
pub fn all() -> [&'static Script; 10] {
    [
        &ENQUEUE, &FETCH, &START, &RENEW, &COMPLETE, &TRIM, &DEPTH, &PROMOTE, &CANCEL, &REPLAY,
    ]
}
