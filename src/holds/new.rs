//! Making a hold: from a held request's plain data and the rule that holds
//! it, the new pending [`Hold`] — its id, status token, retry fingerprint,
//! window end and escalation time.
//!
//! This module reads no HTTP request and stores nothing: the proxy gathers
//! the data, and the store decides whether the hold is new or a retry's.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Hold, State, hex, random_token};
use crate::window::{Window, WorkingClock};

/// Everything a new hold is made of besides its body and the time.
#[derive(Debug, Clone)]
pub struct NewHold {
    /// The rule that holds the request, or [`super::UNMATCHED_RULE`].
    pub rule: String,
    pub label: String,
    pub summary: String,
    /// Who the rule names to decide and to stand in.
    pub reviewers: Vec<String>,
    pub backup: Vec<String>,
    /// Lower-cased extra header names the rule treats as credentials.
    pub secret_headers: Vec<String>,
    /// How long the hold stays open.
    pub window: Window,
    /// When the backup is told; `None` means half way to the window's end.
    pub escalate_after: Option<Duration>,
    /// Cap on `Prefer: wait`.
    pub max_wait: Duration,
    /// The agent's identity, and the name it gave itself.
    pub agent: String,
    pub agent_label: Option<String>,
    pub trigger: String,
    pub method: String,
    pub url: String,
    /// As they will be sent.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    /// What identical retries are judged by instead of the body, when that
    /// differs: an MCP tool call without its JSON-RPC id and `_meta`.
    pub identity: Option<Vec<u8>>,
    /// How many distinct reviewers must approve (at least 1).
    pub approvals: u32,
    pub slack_channel: Option<String>,
}

impl NewHold {
    /// The pending hold made at `now` for a request with `body`, its window
    /// read against `business_hours`.
    pub fn into_hold(
        self,
        body: &[u8],
        now: jiff::Timestamp,
        business_hours: &WorkingClock,
    ) -> Hold {
        let expires_at = self.window.ends_at(now, business_hours);
        let fingerprint = fingerprint(
            &self.agent,
            &self.method,
            &self.url,
            self.identity.as_deref().unwrap_or(body),
            self.identity.is_some(),
        );
        Hold {
            id: uuid::Uuid::now_v7().to_string(),
            state: State::Pending,
            rule: self.rule,
            label: self.label,
            summary: self.summary,
            agent: self.agent,
            agent_label: self.agent_label,
            trigger: self.trigger,
            method: self.method,
            url: self.url,
            headers: self.headers,
            secret_headers: self.secret_headers,
            body_size: body.len() as u64,
            content_type: self.content_type,
            created_at: now,
            expires_at,
            decided_at: None,
            decided_by: None,
            note: None,
            reason: None,
            edited: false,
            sending: false,
            response: None,
            error: None,
            status_token: random_token(),
            fingerprint,
            idempotency_key: self.idempotency_key,
            replayed: false,
            max_wait_secs: self.max_wait.as_secs(),
            reviewers: self.reviewers,
            backup: self.backup,
            escalate_at: escalate_at(now, expires_at, self.escalate_after),
            escalated_at: None,
            approvals_needed: self.approvals.max(1),
            approvals: Vec::new(),
            slack_channel: self.slack_channel,
        }
    }
}

/// SHA-256 (hex) over agent identity, method, URL and body, each but the
/// last length-prefixed: what makes two requests identical retries.
/// `identity` says `body` is what retries are judged by instead of the
/// bytes (an MCP call's identity): hashed in its own domain, so that no
/// body's bytes can stand for it.
fn fingerprint(agent: &str, method: &str, url: &str, body: &[u8], identity: bool) -> String {
    let mut h = Sha256::new();
    if identity {
        // A byte no plain fingerprint starts with: those begin with the
        // agent's length, whose first byte is 0 for any name a request carries.
        h.update([0xff]);
    }
    for part in [agent.as_bytes(), method.as_bytes(), url.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(body);
    hex(&h.finalize())
}

/// When the backup is told: `escalate_after` from creation, or half the way
/// to the window's end (which, for business-day windows, only the computed
/// end can say). Never at or after the end: expiry comes first then.
pub fn escalate_at(
    created: jiff::Timestamp,
    expires: jiff::Timestamp,
    after: Option<Duration>,
) -> Option<jiff::Timestamp> {
    let span = expires.duration_since(created);
    let after = match after {
        Some(d) => jiff::SignedDuration::try_from(d).ok()?,
        None => span / 2,
    };
    let at = created.checked_add(after).ok()?;
    (at < expires).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> NewHold {
        NewHold {
            rule: "payments".into(),
            label: "Payments".into(),
            summary: "POST api.example.com/pay".into(),
            reviewers: vec!["ana".into()],
            backup: vec!["bo".into()],
            secret_headers: Vec::new(),
            window: Window::Fixed(Duration::from_secs(3600)),
            escalate_after: None,
            max_wait: Duration::from_secs(120),
            agent: "bot".into(),
            agent_label: None,
            trigger: "Payments".into(),
            method: "POST".into(),
            url: "https://api.example.com/pay".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            content_type: Some("application/json".into()),
            idempotency_key: None,
            identity: None,
            approvals: 1,
            slack_channel: None,
        }
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_767_225_600).expect("a valid instant")
    }

    fn make(new: NewHold) -> Hold {
        new.into_hold(b"{\"amount\":5}", now(), &WorkingClock::default())
    }

    #[test]
    fn a_new_hold_is_pending_until_its_window_ends() {
        let hold = make(request());
        assert_eq!(hold.state, State::Pending);
        assert_eq!(hold.created_at, now());
        assert_eq!(
            hold.expires_at,
            now()
                .checked_add(jiff::SignedDuration::from_hours(1))
                .expect("in range")
        );
        assert_eq!(hold.body_size, 12);
        assert_eq!(hold.max_wait_secs, 120);
        assert_eq!(hold.status_token.len(), 64);
        assert!(uuid::Uuid::parse_str(&hold.id).is_ok());
    }

    #[test]
    fn the_fingerprint_is_stable_and_ignores_the_label() {
        let first = make(request());
        let labelled = make(NewHold {
            agent_label: Some("helper".into()),
            label: "Other".into(),
            trigger: "why".into(),
            ..request()
        });
        assert_eq!(first.fingerprint, labelled.fingerprint);
        assert_ne!(first.id, labelled.id);
        assert_ne!(first.status_token, labelled.status_token);
        let other_agent = make(NewHold {
            agent: "bot2".into(),
            ..request()
        });
        assert_ne!(first.fingerprint, other_agent.fingerprint);
        let other_body = request().into_hold(b"{}", now(), &WorkingClock::default());
        assert_ne!(first.fingerprint, other_body.fingerprint);
    }

    #[test]
    fn escalation_defaults_to_half_the_window() {
        let hold = make(request());
        assert_eq!(
            hold.escalate_at,
            Some(
                now()
                    .checked_add(jiff::SignedDuration::from_mins(30))
                    .expect("in range")
            )
        );
    }

    #[test]
    fn an_explicit_escalation_is_kept_inside_the_window() {
        let soon = make(NewHold {
            escalate_after: Some(Duration::from_secs(600)),
            ..request()
        });
        assert_eq!(
            soon.escalate_at,
            Some(
                now()
                    .checked_add(jiff::SignedDuration::from_mins(10))
                    .expect("in range")
            )
        );
        let late = make(NewHold {
            escalate_after: Some(Duration::from_secs(3600)),
            ..request()
        });
        assert_eq!(late.escalate_at, None);
    }
}
