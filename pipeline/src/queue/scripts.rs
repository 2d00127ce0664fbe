//! The Lua scripts that make each queue transition atomic. They live in `lua/*.lua` (read and
//! lint them as Lua), each with its KEYS and ARGV described at the top. Every key a script
//! touches is passed in KEYS and carries the queue's hash tag, so they run on Redis Cluster too.
//!
//! Conventions: streams are KEYS 1..3 as high, normal, low wherever a script needs them, and
//! stream entries carry one field, `id` (the job id); everything else is in the job hash.

use std::sync::LazyLock;

use redis::Script;

/// Shared Lua helpers (events, the server clock, consumer group info, fair feeding, reading and
/// starting jobs), prepended to the scripts that use them.
const HELPERS: &str = include_str!("lua/helpers.lua");

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\n{body}"))
}

/// Creates jobs: record, stream entry, recent lists, `queued` event. See `lua/enqueue.lua`.
pub static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/enqueue.lua")));

/// Reads up to `count` new entries, high priority first. See `lua/fetch.lua`.
pub static FETCH: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/fetch.lua")));

/// Starts delivered jobs (marks them running) or drops late duplicates and exhausted jobs. See `lua/start.lua`.
pub static START: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/start.lua")));

/// Starts held deliveries, then reads and starts new entries, in one call. See `lua/take.lua`.
pub static TAKE: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/take.lua")));

/// Renews leases this consumer still owns and reports cancel requests. See `lua/renew.lua`.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));

/// Records a running job's progress under its lease token. See `lua/progress.lua`.
pub static PROGRESS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/progress.lua")));

/// Records how attempts ended and acknowledges their entries. See `lua/complete.lua`.
pub static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/complete.lua")));

/// Trims delivered and acknowledged entries from the job streams. See `lua/trim.lua`.
pub static TRIM: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/trim.lua")));

/// Queue depth: lag and pending per stream, delayed and dead counts. See `lua/depth.lua`.
pub static DEPTH: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/depth.lua")));

/// Moves due retries from the delayed set back onto their streams. See `lua/promote.lua`.
pub static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/promote.lua")));

/// Cancels a queued job at once, or flags a running one. See `lua/cancel.lua`.
pub static CANCEL: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/cancel.lua")));

/// Puts a dead-lettered job back on its stream with fresh attempts. See `lua/replay.lua`.
pub static REPLAY: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/replay.lua")));

/// Hands jobs back on shutdown, without counting the attempt. See `lua/hand_back.lua`.
pub static HAND_BACK: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/hand_back.lua")));

/// Moves due webhook retries back onto the webhook stream. See `lua/webhook_promote.lua`.
pub static WEBHOOK_PROMOTE: LazyLock<Script> =
    LazyLock::new(|| with_helpers(include_str!("lua/webhook_promote.lua")));

/// Admits a job of an API key against its quota and rate. See `lua/admit.lua`.
pub static ADMIT: LazyLock<Script> = LazyLock::new(|| with_helpers(include_str!("lua/admit.lua")));

/// Spends an upload ticket for its owner, once. See `lua/claim_ticket.lua`.
pub static CLAIM_TICKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_ticket.lua")));

/// Every script, to load them up front (pipelined calls use EVALSHA).
pub fn all() -> [&'static Script; 15] {
    [
        &ENQUEUE,
        &FETCH,
        &START,
        &TAKE,
        &RENEW,
        &PROGRESS,
        &COMPLETE,
        &TRIM,
        &DEPTH,
        &PROMOTE,
        &CANCEL,
        &REPLAY,
        &HAND_BACK,
        &WEBHOOK_PROMOTE,
        &ADMIT,
    ]
}
