//! `GET /api/events`: hold events as server-sent events, for the page and for
//! scripts that follow the queue. Each event is one JSON object naming the
//! event, the hold, its state, rule and actor; never request content.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::ReviewState;
use super::auth::Caller;

pub async fn stream(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.store.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    return Some((Ok(Event::default().event(e.event).data(data)), rx));
                }
                // A slow reader skips what it missed rather than stall others.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let mut stop = state.shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Sse::new(events.take_until(stopped))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
