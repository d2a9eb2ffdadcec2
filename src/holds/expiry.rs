//! The sweeper: ends pending holds whose window has passed, as `expired`,
//! unsent. It wakes for the soonest expiry (at most a second apart) and reads
//! only the expiry index up to now, so its cost follows what expires, not the
//! size of the queue.
//!
//! There is no option to send on timeout, and this module must never grow one.

use std::time::Duration;

use tokio::sync::watch;

use super::Store;

/// The longest the sweeper sleeps, so a clock change is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = store.expire_due().await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        let wait = match store.next_expiry() {
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
