//! What instances on one database tell each other: hold events, over
//! `LISTEN`/`NOTIFY` on a connection of their own, and that they are alive,
//! by renewing a lease row. This module only carries news; it never changes
//! a hold.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{CHANNEL, LEASE, RENEW_EVERY};
use crate::holds::State;
use crate::holds::store::{HoldEvent, StoreError, event_name};

/// A hold event as one instance tells the others.
#[derive(Debug, Serialize)]
pub(super) struct Note<'a> {
    #[serde(rename = "i")]
    pub(super) instance: &'a str,
    #[serde(rename = "e")]
    pub(super) event: &'a str,
    pub(super) id: &'a str,
    #[serde(rename = "s")]
    pub(super) state: State,
    #[serde(rename = "r")]
    pub(super) rule: &'a str,
    #[serde(rename = "a")]
    pub(super) actor: &'a str,
}

#[derive(Debug, Deserialize)]
struct Heard {
    i: String,
    e: String,
    id: String,
    s: State,
    r: String,
    a: String,
}

pub(super) fn encode(note: &Note<'_>) -> String {
    serde_json::to_string(note).unwrap_or_default()
}

/// Another instance's event, as this one's subscribers see it; `None` for
/// this instance's own (already told) and anything unreadable.
fn heard(payload: &str, me: &str) -> Option<HoldEvent> {
    let h: Heard = serde_json::from_str(payload).ok()?;
    if h.i == me {
        return None;
    }
    Some(HoldEvent {
        event: event_name(&h.e)?,
        id: h.id,
        state: h.s,
        rule: h.r,
        actor: h.a,
    })
}

/// Renews this instance's lease, by the database's clock.
pub(super) async fn renew(pool: &Pool, instance: &str) -> Result<(), StoreError> {
    let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    pool.get()
        .await?
        .execute(
            "INSERT INTO instances (id, alive_until)
             VALUES ($1, now() + $2 * interval '1 millisecond')
             ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until",
            &[&instance, &(lease as f64)],
        )
        .await?;
    Ok(())
}

/// Renews the lease for as long as the store is open, and forgets leases
/// that lapsed long ago.
pub(super) async fn keep_lease(pool: Pool, instance: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Err(e) = renew(&pool, &instance).await {
            tracing::warn!(error = %e, "renewing this instance's lease on the shared store failed; retrying");
            continue;
        }
        if let Ok(client) = pool.get().await {
            let _ = client
                .execute(
                    "DELETE FROM instances i WHERE alive_until < now() - interval '1 day'
                     AND NOT EXISTS (SELECT 1 FROM holds h
                                     WHERE h.state = 'approved' AND h.claimed_by = i.id)",
                    &[],
                )
                .await;
        }
    }
}

/// Follows the other instances' events for as long as the store is open,
/// reconnecting after a failure. Events missed while disconnected are not
/// replayed: whoever waits on one also re-reads the store from time to time.
pub(super) async fn follow(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    instance: String,
    events: broadcast::Sender<HoldEvent>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut ready = Some(ready);
    loop {
        match listen_once(&config, tls.clone(), &instance, &events, &mut ready).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "following the other instances' events failed; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    instance: &str,
    events: &broadcast::Sender<HoldEvent>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = tokio::spawn(async move {
        let mut messages = std::pin::pin!(messages);
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    tracing::debug!("following the other instances' events");
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    while let Some(payload) = rx.recv().await {
        if let Some(event) = heard(&payload, instance) {
            let _ = events.send(event);
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_from_others_become_events_and_ones_own_do_not() {
        let note = Note {
            instance: "a",
            event: "approved",
            id: "h1",
            state: State::Approved,
            rule: "mail",
            actor: "alice",
        };
        let text = encode(&note);
        assert!(heard(&text, "a").is_none());
        let e = heard(&text, "b").unwrap();
        assert_eq!(
            (e.event, e.id.as_str(), e.state),
            ("approved", "h1", State::Approved)
        );
        assert!(heard(&text.replace("approved", "launched"), "b").is_none());
        assert!(heard("not json", "b").is_none());
    }
}
