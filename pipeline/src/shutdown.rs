//! One shutdown signal per process, handed to every task: SIGTERM or SIGINT (or a test, or the
//! gateway stopping its embedded workers) flips one `watch` channel, and every loop that holds a
//! [`Shutdown`] sees it at its next wait. Tasks end by themselves; none is simply aborted.

use tokio::sync::watch;

/// A task's view of the shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// What starts the shutdown. Dropping it starts it too, so nothing outlives its owner.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.trigger();
    }
}

impl Shutdown {
    /// A signal and the trigger that starts it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    /// A signal started by SIGTERM or SIGINT. Must be called inside a tokio runtime.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            trigger.trigger();
        });
        shutdown
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once the shutdown has started (at once if it has).
    pub async fn triggered(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the trigger is gone, which starts the shutdown as well.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger_and_a_dropped_trigger_counts() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        shutdown.triggered().await;
        assert!(other.is_triggered());

        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        shutdown.triggered().await;
        assert!(shutdown.is_triggered());
    }
}
