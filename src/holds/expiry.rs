//! The sweeper: escalates pending holds whose `escalate_at` has come, and
//! ends those whose window has passed, as `expired`, unsent. It wakes for the
//! soonest of either (at most a second apart) and reads only the two time
//! indexes up to now, so its cost follows what is due, not the size of the
//! queue.
//!
//! There is no option to send on timeout, and this module must never grow one.

use std::time::Duration;

use tokio::sync::watch;

use super::Store;

/// The longest the sweeper sleeps, so a clock change is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = store.escalate_due().await {
            tracing::error!(error = %e, "escalation sweep failed");
        }
        if let Err(e) = store.expire_due().await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        let next = match (store.next_expiry(), store.next_escalation()) {
            (Ok(a), Ok(b)) => Ok(a.into_iter().chain(b).min()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let wait = match next {
            Ok(Some(at)) => {
                let ms = (at.as_millisecond() - store.now().as_millisecond()).max(5);
                Duration::from_millis(u64::try_from(ms).unwrap_or(5)).min(MAX_SLEEP)
            }
            _ => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}
