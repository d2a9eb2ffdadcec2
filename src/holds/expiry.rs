//! The sweeper: escalates pending holds whose `escalate_at` has come, and
//! ends those whose window has passed, as `expired`, unsent. It wakes for the
//! soonest of either (at most a second apart) and reads only the two time
//! indexes up to now, so its cost follows what is due, not the size of the
//! queue. On a shared store it also makes the claims of instances that
//! stopped `interrupted`, and sends approved holds their decider left
//! unclaimed (each claimed once, by whoever claims first).
//!
//! There is no option to send on timeout, and this module must never grow one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Store;
use super::release::Releaser;

/// The longest the sweeper sleeps, so a clock change is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(store: Store, releaser: Arc<Releaser>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = store.escalate_due().await {
            tracing::error!(error = %e, "escalation sweep failed");
        }
        if let Err(e) = store.expire_due().await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        match store.recover_claims(false).await {
            Ok(to_send) => {
                for id in to_send {
                    releaser.spawn(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "claim sweep failed"),
        }
        let next = match (store.next_expiry().await, store.next_escalation().await) {
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
