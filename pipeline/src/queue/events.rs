//! Job events as the scripts publish them (one pub/sub channel per job): one pattern
//! subscription per process, re-established whenever the connection drops.

use std::time::Duration;

use futures::StreamExt;

use crate::shutdown::Shutdown;

use super::Keys;

/// Calls `on_event(job_id, payload)` for every job event of the queue with `keys` until
/// `on_event` returns `false` or the shutdown starts. Payloads are JSON: `id`, `status`,
/// `progress`, `attempts`, `ts`, and `error` and `owner` when there is one. Lost connections
/// are re-established after a second; events published meanwhile are missed (readers that
/// must not miss an end poll as well).
pub async fn follow_job_events(
    redis_url: &str,
    keys: &Keys,
    mut on_event: impl FnMut(&str, String) -> bool,
    shutdown: Shutdown,
) {
    let prefix = keys.job_channel_prefix();
    let pattern = format!("{prefix}*");
    // Pub/sub goes to one node: on a cluster, published messages reach every node.
    let url = match redis_url.strip_prefix("redis+cluster://") {
        Some(nodes) => format!("redis://{}", nodes.split(',').next().unwrap_or("")),
        None => redis_url.to_owned(),
    };
    while !shutdown.is_triggered() {
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
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
                    let channel = message.get_channel_name();
                    if let (Some(job_id), Ok(payload)) = (
                        channel.strip_prefix(prefix.as_str()),
                        message.get_payload::<String>(),
                    ) {
                        if !on_event(job_id, payload) {
                            return;
                        }
                    }
                }
                tracing::warn!("job events subscription ended; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to job events; retrying"),
            Err(_) => tracing::warn!("subscribing to job events timed out; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.triggered() => return,
        }
    }
}
