//! What the store and page benchmarks both need: pending holds and their
//! bodies, made up but shaped like SendGrid sends.

use airlock::holds::{Hold, State};
use bytes::Bytes;

/// The `i`th pending hold, expiring two hours (plus `i` ms) from now.
pub fn pending_hold(i: u64) -> Hold {
    let now = jiff::Timestamp::now();
    Hold {
        id: uuid::Uuid::now_v7().to_string(),
        state: State::Pending,
        rule: "sendgrid-mail-send".into(),
        label: "Outbound client message".into(),
        summary: format!("Email to client{i}@example.com: Your quote #{i}"),
        agent: "quote-bot".into(),
        agent_label: None,
        trigger: "Client asked for a quote".into(),
        method: "POST".into(),
        url: "https://api.sendgrid.com/v3/mail/send".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), "Bearer SG.secret".into()),
        ],
        secret_headers: vec![],
        body_size: 0,
        content_type: Some("application/json".into()),
        created_at: now,
        expires_at: now
            + jiff::SignedDuration::from_hours(2)
            + jiff::SignedDuration::from_millis(i as i64),
        decided_at: None,
        decided_by: None,
        note: None,
        reason: None,
        edited: false,
        sending: false,
        response: None,
        error: None,
        status_token: airlock::holds::random_token(),
        fingerprint: format!("{i:064x}"),
        idempotency_key: None,
        replayed: false,
        max_wait_secs: 120,
        reviewers: Vec::new(),
        backup: Vec::new(),
        escalate_at: None,
        escalated_at: None,
        approvals_needed: 1,
        approvals: Vec::new(),
        slack_channel: None,
    }
}

/// A SendGrid-style body for the `i`th hold (the store bench's; the page
/// bench weighs its own).
#[allow(dead_code)]
pub fn mail_body(i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"personalizations":[{{"to":[{{"email":"client{i}@example.com"}}]}}],"from":{{"email":"sales@example.com"}},"subject":"Your quote #{i}","content":[{{"type":"text/plain","value":"Hello, the total is 1,200 EUR. Kind regards."}}]}}"#
    ))
}
