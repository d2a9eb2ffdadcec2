//! Reviewed requests: stored as a hold (durably, before the agent hears
//! anything), answered with the held answer, or — with `Prefer: wait=N` —
//! kept open until a decision. Identical retries meet their existing hold.
//!
//! This module never sends a request upstream: releasing is the review
//! side's act, and the agent only ever reads its outcome from the store.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};

use super::forward::{AIRLOCK_AGENT, AIRLOCK_TRIGGER, strip_hop_by_hop};
use super::{Target, respond};
use crate::error::ProxyError;
use crate::holds::store::Created;
use crate::holds::{Hold, NewHold, State, Store, StoreError, UNMATCHED_LABEL, UNMATCHED_RULE};
use crate::rules::Rule;
use crate::upstream::Body;
use crate::window::{Window, WorkingClock};

impl Holding {
    /// What the answers about holds need from here.
    fn answers(&self) -> respond::Answers<'_> {
        respond::Answers {
            held_status: self.held_status,
            public_url: self.public_url.get().map_or("", String::as_str),
        }
    }
}

/// The longest `Retry-After` an agent over its pending cap is given: a
/// reviewer may free a place long before its oldest hold expires.
const MAX_RETRY_AFTER: u64 = 60;

/// What holding needs besides the request.
#[derive(Debug)]
pub struct Holding {
    pub store: Store,
    pub business_hours: WorkingClock,
    pub default_window: Window,
    pub held_status: StatusCode,
    /// `[defaults] max_pending_per_agent`.
    pub max_pending_per_agent: u64,
    /// Base of the links handed to agents; set once the review server has
    /// bound its address.
    pub public_url: std::sync::OnceLock<String>,
    /// Becomes true at shutdown: waiting agents get the held answer then
    /// (their holds stay pending).
    pub stop: tokio::sync::watch::Receiver<bool>,
}

static IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");
static PREFER: http::HeaderName = http::HeaderName::from_static("prefer");

/// How often an agent waiting with `Prefer: wait` has its hold read again,
/// besides hearing of it.
const RECHECK: Duration = Duration::from_secs(2);

pub async fn hold(
    holding: &Holding,
    mut parts: Parts,
    body: Bytes,
    decoded: Option<&[u8]>,
    rule: Option<&Rule>,
    target: &Target,
    peer: SocketAddr,
) -> Result<Response<Body>, ProxyError> {
    let store = &holding.store;
    let agent = target.agent.name.clone();
    let agent_label = header_text(&parts, &AIRLOCK_AGENT)
        .or_else(|| target.agent.label.clone())
        .filter(|label| *label != agent);
    let label = rule
        .map_or(UNMATCHED_LABEL, |r| r.label.as_str())
        .to_owned();
    let trigger = header_text(&parts, &AIRLOCK_TRIGGER).unwrap_or_else(|| label.clone());
    let url = format!(
        "{}://{}{}",
        target.scheme,
        target.authority,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    // The body read once, for the summary and for what an MCP call needs.
    let parsed = decoded.map(crate::canonical::json::parse);
    let summary = {
        let view = target.view(&parts);
        match rule.and_then(|r| r.summary.as_ref()) {
            Some(s) => {
                let json = parsed.as_ref().and_then(|p| p.value.as_ref());
                let read = rule.zip(json).map(|(r, doc)| r.summary_value(doc));
                s.render(&view, read)
            }
            None => format!("{} {}{}", view.method, view.host, view.path),
        }
    };
    // An MCP tool call is answered in MCP's form, and judged as a retry
    // without its JSON-RPC id.
    let doc = parsed
        .as_ref()
        .and_then(crate::canonical::json::Parsed::unambiguous);
    let call = doc.and_then(|d| crate::canonical::mcp::call(&parts.headers, d));
    let identity = call
        .as_ref()
        .and(doc)
        .and_then(crate::canonical::mcp::identity);
    let max_wait = rule
        .and_then(|r| r.max_wait)
        .unwrap_or(crate::rules::DEFAULT_MAX_WAIT);
    let asked = prefer_wait(&parts).map(|w| w.min(max_wait));
    let wait = match (rule.and_then(|r| r.wait), asked) {
        (Some(ruled), Some(asked)) => Some(ruled.max(asked)),
        (ruled, asked) => ruled.or(asked),
    };
    let idempotency_key = header_text(&parts, &IDEMPOTENCY_KEY);
    strip_hop_by_hop(&mut parts.headers, false);
    parts.headers.remove(&AIRLOCK_TRIGGER);
    parts.headers.remove(&AIRLOCK_AGENT);
    parts.headers.remove(&PREFER);
    let now = store.now();
    let max_wait = rule
        .and_then(|r| r.max_wait)
        .unwrap_or(crate::rules::DEFAULT_MAX_WAIT);
    let new = NewHold {
        rule: rule.map_or(UNMATCHED_RULE, |r| r.name.as_str()).to_owned(),
        label,
        summary,
        reviewers: rule.map_or_else(Vec::new, |r| r.reviewers.clone()),
        backup: rule.map_or_else(Vec::new, |r| r.backup.clone()),
        secret_headers: rule.map_or_else(Vec::new, |r| {
            r.secret_headers
                .iter()
                .map(|h| h.as_str().to_owned())
                .collect()
        }),
        window: rule
            .and_then(|r| r.window)
            .unwrap_or(holding.default_window),
        escalate_after: rule.and_then(|r| r.escalate_after),
        max_wait,
        agent,
        agent_label,
        trigger,
        method: parts.method.to_string(),
        url,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        content_type: header_text(&parts, &header::CONTENT_TYPE),
        idempotency_key,
        identity,
        approvals: rule.map_or(1, |r| r.approvals),
        slack_channel: rule.and_then(|r| r.slack_channel.clone()),
    }
    .into_hold(&body, now, &holding.business_hours);
    // Listen before storing, so a decision made at once is not missed.
    let events = wait.map(|_| store.subscribe());
    let created = store
        .create(new, body, holding.max_pending_per_agent)
        .await
        .map_err(|e| match e {
            StoreError::IdempotencyKeyReused => ProxyError::IdempotencyKeyReused,
            StoreError::TooManyPending {
                max,
                soonest_expiry,
            } => ProxyError::TooManyHolds {
                max,
                retry_after: retry_after(now, soonest_expiry),
            },
            e => ProxyError::Hold(e.to_string()),
        })?;
    let hold = match created {
        // A retry that asks to wait waits on the hold it joins.
        Created::Existing(existing)
            if wait.is_some() && matches!(existing.state, State::Pending | State::Approved) =>
        {
            existing
        }
        Created::Existing(existing) => {
            return answer_retry(holding, existing, call.as_ref()).await;
        }
        Created::New(hold) => {
            tracing::info!(hold = %hold.id, rule = %hold.rule, agent = %hold.agent, %peer, "request held for review");
            hold
        }
    };
    let (Some(wait), Some(events)) = (wait, events) else {
        return Ok(about(holding.answers(), &hold, false, call.as_ref()));
    };
    let applied = |res| match asked {
        Some(_) => with_preference(res, wait),
        None => res,
    };
    // A tool call whose client takes an event stream and progress: the
    // stream starts now, and progress keeps the client's reads alive.
    if let Some(call) = call
        .as_ref()
        .filter(|c| c.accepts_sse && c.progress_token.is_some())
    {
        let waiting = super::mcp::Waiting {
            store: store.clone(),
            stop: holding.stop.clone(),
            held_status: holding.held_status,
            public_url: holding.answers().public_url.to_owned(),
        };
        return Ok(applied(super::mcp::streaming(
            waiting,
            hold,
            events,
            wait,
            call.clone(),
        )));
    }
    let hold = settle(store, holding.stop.clone(), hold, events, wait).await?;
    Ok(applied(about(
        holding.answers(),
        &hold,
        false,
        call.as_ref(),
    )))
}

/// Waits up to `wait` for `hold` to become final; returns it as it then is.
pub(super) async fn settle(
    store: &Store,
    mut stop: tokio::sync::watch::Receiver<bool>,
    hold: Hold,
    mut events: tokio::sync::broadcast::Receiver<crate::holds::store::HoldEvent>,
    wait: Duration,
) -> Result<Hold, ProxyError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Events are the fast way to hear; the store is read again now and
    // then in case one was missed (a lagging receiver, or a shared store's
    // event connection that was down for a moment).
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        let heard = tokio::select! {
            e = tokio::time::timeout_at(deadline, events.recv()) => match e {
                Err(_) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => true,
                Ok(Err(_)) => break,
                Ok(Ok(e)) => e.id == hold.id && e.state.is_final(),
            },
            _ = recheck.tick() => true,
            _ = crate::proxy::stopped(&mut stop) => break,
        };
        if !heard {
            continue;
        }
        match store
            .get(&hold.id)
            .await
            .map_err(|e| ProxyError::Hold(e.to_string()))?
        {
            None => break,
            Some(now) if now.state.is_final() => return Ok(now),
            Some(_) => {}
        }
    }
    Ok(store
        .get(&hold.id)
        .await
        .map_err(|e| ProxyError::Hold(e.to_string()))?
        .unwrap_or(hold))
}

/// What the agent hears of `hold`: airlock's own answer, or for an MCP tool
/// call the same said as a tool result.
pub(super) fn about(
    answers: respond::Answers<'_>,
    hold: &Hold,
    replay: bool,
    call: Option<&crate::canonical::mcp::Call>,
) -> Response<Body> {
    let res = respond::outcome(answers, hold, replay);
    match call {
        None => res,
        Some(call) => super::mcp::about(res, answers.public_url, hold, call),
    }
}

/// An identical request while its hold stands.
async fn answer_retry(
    holding: &Holding,
    hold: Hold,
    call: Option<&crate::canonical::mcp::Call>,
) -> Result<Response<Body>, ProxyError> {
    if hold.state == State::Released {
        let first = holding
            .store
            .mark_replayed(&hold.id)
            .await
            .map_err(|e| ProxyError::Hold(e.to_string()))?;
        if first {
            return Ok(about(holding.answers(), &hold, true, call));
        }
    }
    Ok(about(holding.answers(), &hold, false, call))
}

fn with_preference(mut res: Response<Body>, wait: Duration) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
        res.headers_mut().insert("preference-applied", v);
    }
    res
}

/// `Prefer: wait=N` (RFC 7240), in seconds.
fn prefer_wait(parts: &Parts) -> Option<Duration> {
    parts
        .headers
        .get_all(&PREFER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .map(Duration::from_secs)
}

fn header_text(parts: &Parts, name: &http::HeaderName) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Seconds an agent over its pending cap should wait: until its soonest
/// pending hold expires, at least 1 and at most [`MAX_RETRY_AFTER`].
fn retry_after(now: jiff::Timestamp, soonest_expiry: Option<jiff::Timestamp>) -> u64 {
    soonest_expiry
        .map_or(MAX_RETRY_AFTER, |at| {
            u64::try_from(at.duration_since(now).as_secs()).unwrap_or(0)
        })
        .clamp(1, MAX_RETRY_AFTER)
}
