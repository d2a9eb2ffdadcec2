//! The Slack app: the Web API calls airlock makes (`chat.postMessage`,
//! `chat.update`, `chat.postEphemeral`, `views.open`), the messages it
//! posts about a hold, and the check of Slack's request signatures
//! (`X-Slack-Signature`, v0). Deciding is not done here: the review side
//! verifies a click with [`verify`] and decides through the store as the
//! API does; notifications post and update messages through the outbox.
//!
//! The bot token and the signing secret never leave this module but in the
//! `Authorization` header of a call to Slack and the HMAC key.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::SlackConfig;
use crate::holds::{Hold, State};
use crate::upstream::Upstream;

/// How old a signed request may be.
const MAX_SKEW_SECS: i64 = 300;
/// How long one Web API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// `v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    #[expect(clippy::expect_used, reason = "HMAC-SHA256 takes a key of any length")]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", crate::holds::hex(&mac.finalize().into_bytes()))
}

/// Checks a request's signature and that it was signed within five
/// minutes of `now` (either way). The reason, when it fails.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<(), &'static str> {
    let timestamp = timestamp.ok_or("no X-Slack-Request-Timestamp")?;
    let signature = signature.ok_or("no X-Slack-Signature")?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "X-Slack-Request-Timestamp is not a number")?;
    if (now.as_second() - at).abs() > MAX_SKEW_SECS {
        return Err("the request was signed more than five minutes ago (or ahead)");
    }
    let expected = sign(secret, timestamp.trim(), body);
    if crate::config::same_text(signature.trim(), &expected) {
        Ok(())
    } else {
        Err("the signature does not match")
    }
}

/// A message airlock posted about a hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

/// Why a Web API call failed, and whether trying again can help.
#[derive(Debug)]
pub struct CallError {
    pub message: String,
    pub permanent: bool,
}

/// Slack Web API errors no retry will fix.
const PERMANENT: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "missing_scope",
    "message_not_found",
    "cant_update_message",
    "invalid_blocks",
    "is_archived",
];

/// The Slack Web API, as the bot.
#[derive(Debug, Clone)]
pub struct Slack {
    config: SlackConfig,
    upstream: Upstream,
}

impl Slack {
    pub fn new(config: SlackConfig, upstream: Upstream) -> Slack {
        Slack { config, upstream }
    }

    /// The channel a hold's message goes to.
    pub fn channel_for(&self, hold: &Hold) -> Option<String> {
        hold.slack_channel
            .clone()
            .or_else(|| self.config.channel.clone())
    }

    pub fn signing_secret(&self) -> &str {
        self.config.signing_secret.expose()
    }

    /// Calls `method` with a JSON body; Slack's answer when it says `ok`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, CallError> {
        let retryable = |message: String| CallError {
            message,
            permanent: false,
        };
        let url = format!("{}/{method}", self.config.api_url.trim_end_matches('/'));
        let req = Request::post(url.as_str())
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.config.bot_token.expose()),
            )
            .header(
                http::header::USER_AGENT,
                concat!("airlock/", env!("CARGO_PKG_VERSION")),
            )
            .body(crate::upstream::full(body.to_string()))
            .map_err(|e| CallError {
                message: format!("cannot build the request: {e}"),
                permanent: true,
            })?;
        let exchange = async {
            let res = self
                .upstream
                .send(req)
                .await
                .map_err(|e| retryable(e.to_string()))?;
            let status = res.status();
            let mut body = res.into_body();
            let mut bytes = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    bytes.extend_from_slice(d);
                }
                if bytes.len() > MAX_ANSWER {
                    break;
                }
            }
            Ok::<_, CallError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| retryable(format!("Slack did not answer {method} in time")))??;
        if !status.is_success() {
            return Err(CallError {
                message: format!("Slack answered {method} with {status}"),
                permanent: status.is_client_error()
                    && status != http::StatusCode::TOO_MANY_REQUESTS,
            });
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| retryable(format!("Slack's answer to {method} is not JSON: {e}")))?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        let error = answer["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_owned();
        Err(CallError {
            permanent: PERMANENT.contains(&error.as_str()),
            message: format!("Slack refused {method}: {error}"),
        })
    }

    /// Tells one person something only they see, in the channel of the
    /// message they clicked.
    pub async fn tell(&self, channel: &str, user: &str, text: &str) {
        let sent = self
            .call(
                "chat.postEphemeral",
                &json!({ "channel": channel, "user": user, "text": text }),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e.message, "telling a Slack user failed");
        }
    }

    /// Opens the dismissal dialog, which asks for a reason.
    pub async fn ask_reason(&self, trigger_id: &str, hold: &Hold) -> Result<(), CallError> {
        let view = json!({
            "type": "modal",
            "callback_id": DISMISS_VIEW,
            "private_metadata": hold.id,
            "title": { "type": "plain_text", "text": "Dismiss" },
            "submit": { "type": "plain_text", "text": "Dismiss" },
            "close": { "type": "plain_text", "text": "Cancel" },
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*\nIt will NOT be sent.", escape(&hold.summary)) } },
                { "type": "input", "block_id": "reason", "optional": true,
                  "label": { "type": "plain_text", "text": "Reason" },
                  "element": { "type": "plain_text_input", "action_id": "reason" } }
            ]
        });
        self.call(
            "views.open",
            &json!({ "trigger_id": trigger_id, "view": view }),
        )
        .await
        .map(|_| ())
    }
}

/// The dismissal dialog's callback id.
pub const DISMISS_VIEW: &str = "airlock-dismiss";
/// The buttons' action ids.
pub const APPROVE: &str = "airlock-approve";
pub const DISMISS: &str = "airlock-dismiss";

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message about a hold: what the agent wants done, why, who, until
/// when; with Approve and Dismiss while it is pending, and what became of
/// it once it is not.
pub fn message(hold: &Hold, public_url: &str) -> Value {
    let link = format!("{public_url}/#hold={}", hold.id);
    let mut facts = format!(
        "*{}*\n{}\nagent `{}` · rule `{}` · expires <!date^{}^{{date_short_pretty}} {{time}}|{}>",
        escape(&hold.summary),
        escape(&hold.trigger),
        escape(&hold.agent),
        escape(&hold.rule),
        hold.expires_at.as_second(),
        hold.expires_at
    );
    if hold.approvals_needed > 1 {
        let names: Vec<&str> = hold.approvals.iter().map(|a| a.by.as_str()).collect();
        facts.push_str(&format!(
            "\n{} of {} approvals{}",
            hold.approvals.len(),
            hold.approvals_needed,
            if names.is_empty() {
                String::new()
            } else {
                format!(" · {}", names.join(", "))
            }
        ));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": facts },
    })];
    let outcome = outcome(hold);
    match &outcome {
        None => blocks.push(json!({
            "type": "actions",
            "block_id": "decide",
            "elements": [
                { "type": "button", "action_id": APPROVE, "value": hold.id, "style": "primary",
                  "text": { "type": "plain_text", "text": "Approve" } },
                { "type": "button", "action_id": DISMISS, "value": hold.id, "style": "danger",
                  "text": { "type": "plain_text", "text": "Dismiss" } },
                { "type": "button", "action_id": "airlock-open", "url": link,
                  "text": { "type": "plain_text", "text": "Open" } }
            ]
        })),
        Some(text) => blocks.push(json!({
            "type": "context",
            "elements": [ { "type": "mrkdwn", "text": text } ]
        })),
    }
    // The notification's own text is mrkdwn too: the agent's words in it
    // mention nobody and link nowhere.
    let text = match outcome {
        None => format!("Review needed: {}", escape(&hold.summary)),
        Some(o) => format!("{}: {o}", escape(&hold.summary)),
    };
    json!({ "text": text, "blocks": blocks })
}

/// What became of a hold, once it is no longer pending.
fn outcome(hold: &Hold) -> Option<String> {
    let by = hold.decided_by.as_deref().unwrap_or("nobody");
    Some(match hold.state {
        State::Pending => return None,
        State::Approved => format!("Approved by {by}; sending"),
        State::Released => format!(
            "Approved by {by}; sent, the upstream answered {}",
            hold.response.as_ref().map_or(0, |r| r.status)
        ),
        State::Failed => format!("Approved by {by}; the send failed, not retried"),
        State::Interrupted => format!("Approved by {by}; interrupted mid-send, not sent again"),
        State::Dismissed => match &hold.reason {
            Some(reason) => format!("Dismissed by {by}: {}; not sent", escape(reason)),
            None => format!("Dismissed by {by}; not sent"),
        },
        State::Expired => "Expired: nobody decided in time; not sent".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Slack's documentation ("Verifying requests
    /// from Slack").
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn the_agents_words_are_text_wherever_the_message_shows_them() {
        let mut hold: Hold = serde_json::from_value(json!({
            "id": "0", "state": "pending", "rule": "r", "label": "l",
            "summary": "<!channel> <https://evil.example|Approve> & more",
            "agent": "a", "trigger": "t", "method": "POST", "url": "https://h/", "headers": [],
            "body_size": 0, "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T01:00:00Z", "status_token": "x", "fingerprint": "f",
            "secret_headers": [], "edited": false, "sending": false, "replayed": false,
            "max_wait_secs": 0,
        }))
        .unwrap();
        let escaped = "&lt;!channel&gt; &lt;https://evil.example|Approve&gt; &amp; more";
        for state in [State::Pending, State::Expired] {
            hold.state = state;
            let m = message(&hold, "http://review");
            let text = m["text"].as_str().unwrap();
            assert!(
                text.contains(escaped) && !text.contains("<!channel>"),
                "{text}"
            );
            assert!(
                m["blocks"][0]["text"]["text"]
                    .as_str()
                    .unwrap()
                    .contains(escaped)
            );
        }
    }

    #[test]
    fn the_signature_is_slacks_worked_example() {
        assert_eq!(sign(DOC_SECRET, DOC_TS, DOC_BODY.as_bytes()), DOC_SIG);
        let at = jiff::Timestamp::from_second(1_531_420_618 + 60).unwrap();
        assert_eq!(
            verify(
                DOC_SECRET,
                Some(DOC_TS),
                Some(DOC_SIG),
                DOC_BODY.as_bytes(),
                at
            ),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_a_stale_timestamp_or_a_missing_header_fails() {
        let at = jiff::Timestamp::from_second(1_531_420_618).unwrap();
        let body = DOC_BODY.as_bytes();
        assert!(verify(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), &body[1..], at).is_err());
        assert!(verify("other", Some(DOC_TS), Some(DOC_SIG), body, at).is_err());
        let late = jiff::Timestamp::from_second(1_531_420_618 + 301).unwrap();
        assert!(verify(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), body, late).is_err());
        let early = jiff::Timestamp::from_second(1_531_420_618 - 301).unwrap();
        assert!(verify(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), body, early).is_err());
        assert!(verify(DOC_SECRET, None, Some(DOC_SIG), body, at).is_err());
        assert!(verify(DOC_SECRET, Some(DOC_TS), None, body, at).is_err());
        assert!(verify(DOC_SECRET, Some("soon"), Some(DOC_SIG), body, at).is_err());
    }

    #[test]
    fn mrkdwn_is_escaped() {
        assert_eq!(
            escape("<@U1> & <!channel>"),
            "&lt;@U1&gt; &amp; &lt;!channel&gt;"
        );
    }
}
