//! What the scripts publish: job events (one pub/sub channel per job) and cancel requests (one
//! channel per queue). One subscription of each kind per process, re-established whenever the
//! connection drops.

use std::time::Duration;

use futures::StreamExt;

use crate::shutdown::Shutdown;

use super::{Queue, RedisTls};

/// Calls `on_event(job_id, payload)` for every job event of `queue` (at `redis_url`) until
/// `on_event` returns `false` or the shutdown starts. Payloads are JSON: `id`, `status`,
/// `progress`, `attempts`, `ts`, and `error` and `owner` when there is one. Lost connections
/// are re-established after a second; events published meanwhile are missed (readers that
/// must not miss an end poll as well).
pub async fn follow_job_events(
    queue: &Queue,
    redis_url: &str,
    mut on_event: impl FnMut(&str, String) -> bool,
    shutdown: Shutdown,
) {
    let prefix = queue.keys().job_channel_prefix();
    let channels = Channels::Pattern(format!("{prefix}*"));
    follow(
        redis_url,
        &queue.config().tls,
        &channels,
        shutdown,
        |channel, payload| match channel.strip_prefix(prefix.as_str()) {
            Some(job_id) => on_event(job_id, payload),
            None => true,
        },
    )
    .await;
}

/// Calls `on_cancel(job_id)` for every cancel of a running job of `queue`, until
/// the shutdown starts: workers stop the job at once instead of at their next lease renewal
/// (which still catches a cancel published while the subscription was down).
pub async fn follow_cancels(
    queue: &Queue,
    redis_url: &str,
    mut on_cancel: impl FnMut(&str),
    shutdown: Shutdown,
) {
    let channels = Channels::Exact(queue.keys().cancel_channel());
    let tls = &queue.config().tls;
    follow(redis_url, tls, &channels, shutdown, |_, job_id| {
        on_cancel(&job_id);
        true
    })
    .await;
}

enum Channels {
    Pattern(String),
    Exact(String),
}

/// Subscribes to `channels` and calls `on_message(channel, payload)` until it returns `false`
/// or the shutdown starts, reconnecting a second after a drop.
async fn follow(
    redis_url: &str,
    tls: &RedisTls,
    channels: &Channels,
    shutdown: Shutdown,
    mut on_message: impl FnMut(&str, String) -> bool,
) {
    let mut attempt = 0;
    while !shutdown.is_triggered() {
        attempt += 1;
        let connected = async {
            // Sentinel: the primary now; cluster: the next seed node (see `subscriber_url`).
            let url = super::conn::subscriber_url(redis_url, tls, attempt).await?;
            let client = super::conn::client(&url, tls)?;
            let mut pubsub = client.get_async_pubsub().await?;
            match channels {
                Channels::Pattern(pattern) => pubsub.psubscribe(pattern).await?,
                Channels::Exact(channel) => pubsub.subscribe(channel).await?,
            }
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(Ok(mut pubsub)) => {
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        () = shutdown.triggered() => return,
                    };
                    let Some(message) = message else { break };
                    if let Ok(payload) = message.get_payload::<String>() {
                        if !on_message(message.get_channel_name(), payload) {
                            return;
                        }
                    }
                }
                tracing::warn!("pub/sub subscription ended; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe; retrying"),
            Err(_) => tracing::warn!("subscribing timed out; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.triggered() => return,
        }
    }
}
