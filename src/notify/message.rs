//! What a notification says: the JSON document a webhook receives, and the
//! Slack message a person reads. Pure functions of a hold and the audit
//! record that caused the notification; nothing here sends or stores.

use serde_json::{Value, json};

use crate::holds::Hold;
use crate::holds::audit::Record;

/// The notification events, as sinks subscribe to them.
pub const HELD: &str = "held";
pub const ESCALATED: &str = "escalated";
pub const DECIDED: &str = "decided";
pub const EXPIRED: &str = "expired";
pub const RELEASED: &str = "released";
pub const FAILED: &str = "failed";

/// The notification event an audit record makes, if any.
pub fn event_of(audit_event: &str) -> Option<&'static str> {
    Some(match audit_event {
        "held" => HELD,
        "escalated" => ESCALATED,
        "approved" | "dismissed" => DECIDED,
        "expired" => EXPIRED,
        "released" => RELEASED,
        "failed" | "interrupted" => FAILED,
        _ => return None,
    })
}

/// Where a reviewer's page shows this hold's card.
pub fn card_link(public_url: &str, hold: &Hold) -> String {
    format!("{}/#hold={}", public_url.trim_end_matches('/'), hold.id)
}

/// The URL without its query: query strings carry tokens often enough that
/// a notification, which leaves airlock, never repeats them. (A hold's URL
/// never has a user part: the proxy drops it on the way in.)
fn url_without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(u, _)| u)
}

/// The largest request body an `expired` notification repeats.
const MAX_FOLLOW_UP_BODY: usize = 64 * 1024;

/// What became of the hold, from the record that says so.
fn outcome(event: &str, record: &Record) -> Value {
    let detail = &record.detail;
    match record.event.as_str() {
        "approved" => json!({
            "state": "approved", "by": record.actor, "at": record.at,
            "note": detail.get("note"), "edited": detail.get("edited"),
        }),
        "dismissed" => json!({
            "state": "dismissed", "by": record.actor, "at": record.at,
            "reason": detail.get("reason"),
        }),
        "expired" => json!({ "state": "expired", "at": record.at, "sent": false }),
        "released" => json!({
            "state": "released", "at": record.at, "status": detail.get("status"),
        }),
        "failed" | "interrupted" => json!({
            "state": record.event, "at": record.at, "error": detail.get("error"),
        }),
        _ if event == ESCALATED => json!({
            "state": "pending", "escalated_at": record.at, "backup": detail.get("backup"),
        }),
        _ => Value::Null,
    }
}

/// The request as an agent needs it to say "we received this and will get
/// back to you": its body, parsed when it is JSON. Only on `expired`, the one
/// event whose receiver may have to act for the request that was not sent.
fn request_for_follow_up(hold: &Hold, body: Option<&[u8]>) -> Value {
    let omitted = body.is_some_and(|b| b.len() > MAX_FOLLOW_UP_BODY);
    let body = body.filter(|_| !omitted).map_or(Value::Null, |b| {
        serde_json::from_slice::<Value>(b).unwrap_or_else(|_| match std::str::from_utf8(b) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => Value::Null,
        })
    });
    json!({
        "method": hold.method,
        "url": url_without_query(&hold.url),
        "content_type": hold.content_type,
        "body_size": hold.body_size,
        "body": body,
        "body_omitted": omitted,
    })
}

/// The JSON document: the hold's id, rule, label, summary, agent, trigger,
/// expiry, a deep link to its card, and the outcome where there is one.
pub fn json(
    event: &str,
    record: &Record,
    hold: &Hold,
    public_url: &str,
    body: Option<&[u8]>,
) -> Value {
    let mut doc = json!({
        "event": event,
        "sequence": record.seq,
        "occurred_at": record.at,
        "id": hold.id,
        "rule": hold.rule,
        "label": hold.label,
        "summary": hold.summary,
        "agent": hold.agent,
        "agent_label": hold.agent_label,
        "trigger": hold.trigger,
        "method": hold.method,
        "url": url_without_query(&hold.url),
        "created_at": hold.created_at,
        "expires_at": hold.expires_at,
        "reviewers": hold.reviewers,
        "backup": hold.backup,
        "link": card_link(public_url, hold),
        "outcome": outcome(event, record),
    });
    if event == EXPIRED {
        doc["unactioned"] = Value::Bool(true);
        doc["request"] = request_for_follow_up(hold, body);
    }
    doc
}

/// Slack's mrkdwn needs these three escaped, and nothing else.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A time Slack shows in the reader's own zone, with a UTC fallback.
fn slack_time(at: jiff::Timestamp) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{} UTC>",
        at.as_second(),
        at.strftime("%Y-%m-%d %H:%M")
    )
}

/// An incoming-webhook message. The first message for a hold carries the
/// summary, trigger, expiry and buttons to its card; every later one says
/// plainly what happened and by whom, so nobody acts on the first.
pub fn slack(record: &Record, hold: &Hold, public_url: &str) -> Value {
    let summary = escape(&hold.summary);
    let link = card_link(public_url, hold);
    let context = format!(
        "{} · agent {} · rule `{}` · expires {}",
        escape(&hold.trigger),
        escape(&hold.agent_shown()),
        escape(&hold.rule),
        slack_time(hold.expires_at)
    );
    let (headline, text, buttons) = match record.event.as_str() {
        "held" => (
            format!("*{}* waits for review", escape(&hold.label)),
            format!("Review needed: {summary} ({})", escape(&hold.label)),
            true,
        ),
        "escalated" => (
            format!(
                ":rotating_light: *Escalated*: still pending, expires {}",
                slack_time(hold.expires_at)
            ),
            format!("Escalated, still pending: {summary}"),
            true,
        ),
        "approved" => (
            format!(
                ":white_check_mark: *Approved by {}*: no action needed",
                escape(&record.actor)
            ),
            format!("Approved by {}: {summary}", escape(&record.actor)),
            false,
        ),
        "dismissed" => {
            let reason = record
                .detail
                .get("reason")
                .and_then(Value::as_str)
                .map(|r| format!(" ({})", escape(r)))
                .unwrap_or_default();
            (
                format!(
                    ":no_entry_sign: *Dismissed by {}*{reason}: not sent",
                    escape(&record.actor)
                ),
                format!("Dismissed by {}: {summary}", escape(&record.actor)),
                false,
            )
        }
        "expired" => (
            ":hourglass: *Expired*: nobody decided within the window, so it was not sent"
                .to_owned(),
            format!("Expired unsent: {summary}"),
            false,
        ),
        "released" => {
            let status = record.detail.get("status").and_then(Value::as_u64);
            (
                format!(
                    ":outbox_tray: *Sent*: the upstream answered {}",
                    status.map_or_else(|| "?".to_owned(), |s| s.to_string())
                ),
                format!("Sent: {summary}"),
                false,
            )
        }
        other => {
            let error = record
                .detail
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no answer");
            (
                format!(":warning: *Send {other}*: {}", escape(error)),
                format!("Send {other}: {summary}"),
                false,
            )
        }
    };
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("{headline}\n>{summary}") } }),
        json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }),
    ];
    if buttons {
        blocks.push(json!({
            "type": "actions",
            "elements": [
                { "type": "button", "style": "primary", "url": link,
                  "text": { "type": "plain_text", "text": "Review" } },
                { "type": "button", "url": format!("{}/", public_url.trim_end_matches('/')),
                  "text": { "type": "plain_text", "text": "Open queue" } },
            ],
        }));
    } else {
        blocks.push(json!({
            "type": "context",
            "elements": [ { "type": "mrkdwn", "text": format!("<{link}|Hold {}>", hold.id) } ],
        }));
    }
    json!({ "text": text, "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_audit_event_of_a_hold_maps_to_a_subscribable_event() {
        for (audit, event) in [
            ("held", "held"),
            ("escalated", "escalated"),
            ("approved", "decided"),
            ("dismissed", "decided"),
            ("expired", "expired"),
            ("released", "released"),
            ("failed", "failed"),
            ("interrupted", "failed"),
        ] {
            assert_eq!(event_of(audit), Some(event), "{audit}");
            assert!(crate::config::NOTIFY_EVENTS.contains(&event));
        }
        assert_eq!(event_of("rules_reloaded"), None);
    }

    #[test]
    fn queries_never_leave_in_a_notification() {
        assert_eq!(
            url_without_query("https://api.example/v1/send?token=s3cret"),
            "https://api.example/v1/send"
        );
        assert_eq!(
            url_without_query("https://a.example/x"),
            "https://a.example/x"
        );
        assert_eq!(url_without_query("https://a.example"), "https://a.example");
    }

    #[test]
    fn slack_text_is_escaped() {
        assert_eq!(escape("<b> & <@U1>"), "&lt;b&gt; &amp; &lt;@U1&gt;");
    }
}
