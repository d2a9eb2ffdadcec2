//! The canned answers agents get from airlock itself: denied, errors, and
//! every answer about a hold (held, dismissed, failed, a replayed
//! response). Each of airlock's own is JSON with an `airlock` field naming
//! what happened.
//!
//! These answers are built without fallible calls so that answering can
//! never fail; they never echo request bodies or credentials back.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PROXY_AUTHENTICATE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::json;

use super::forward::strip_hop_by_hop;
use crate::error::ProxyError;
use crate::holds::{Hold, State};
use crate::upstream::Body;

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = Response::new(crate::upstream::full(bytes));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Why a `what` ("request", "tool call") was refused.
pub fn denied_text(rule: Option<&str>, what: &str) -> String {
    match rule {
        Some(name) => format!("This {what} was NOT sent: rule {name:?} denies it."),
        None => format!(
            "This {what} was NOT sent: no rule matches it and unmatched requests are denied."
        ),
    }
}

/// A rule (or `unmatched = "deny"`) refuses this request.
pub fn denied(rule: Option<&str>) -> Response<Body> {
    let message = denied_text(rule, "request");
    json(
        StatusCode::FORBIDDEN,
        &json!({ "airlock": "denied", "rule": rule, "message": message }),
    )
}

/// An error while serving the request, with the headers its status calls
/// for: `Proxy-Authenticate` on 407, `Retry-After` on 429.
pub fn error(e: &ProxyError) -> Response<Body> {
    let mut res = json(
        e.status(),
        &json!({ "airlock": e.code(), "message": e.to_string() }),
    );
    match e {
        ProxyError::ProxyAuthRequired => {
            res.headers_mut().insert(
                PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"airlock\""),
            );
        }
        ProxyError::TooManyHolds { retry_after, .. } => {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        _ => {}
    }
    res
}

/// `200` with an empty body: the answer to a CONNECT that airlock accepts.
pub fn connected() -> Response<Body> {
    Response::new(crate::upstream::full(Bytes::new()))
}

/// What answers about holds need to know of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Answers<'a> {
    /// `[defaults] held_status`.
    pub held_status: StatusCode,
    /// The review server's public base URL, for `status_url`.
    pub public_url: &'a str,
}

/// What the agent gets for a hold in its current state.
pub fn outcome(answers: Answers<'_>, hold: &Hold, replay: bool) -> Response<Body> {
    match hold.state {
        State::Released => match &hold.response {
            Some(stored) => {
                let mut res = Response::new(crate::upstream::full(stored.body.clone()));
                *res.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
                for (k, v) in &stored.headers {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        res.headers_mut().append(k, v);
                    }
                }
                strip_hop_by_hop(res.headers_mut(), false);
                res.headers_mut().remove(http::header::CONTENT_LENGTH);
                if replay && let Ok(v) = HeaderValue::from_str(&hold.id) {
                    res.headers_mut().insert("airlock-replay", v);
                }
                res
            }
            None => held(answers, hold),
        },
        State::Dismissed => with_hold_headers(
            json(
                StatusCode::FORBIDDEN,
                &json!({
                    "airlock": "dismissed", "id": hold.id, "rule": hold.rule,
                    "reason": hold.reason,
                    "message": "This request was NOT sent: a reviewer dismissed it.",
                }),
            ),
            hold,
        ),
        State::Failed => with_hold_headers(
            json(
                StatusCode::BAD_GATEWAY,
                &json!({
                    "airlock": "failed", "id": hold.id, "rule": hold.rule, "error": hold.error,
                    "message": "The request was approved but the upstream could not be reached; it will not be retried.",
                }),
            ),
            hold,
        ),
        _ => held(answers, hold),
    }
}

/// The held answer.
pub fn held(answers: Answers<'_>, hold: &Hold) -> Response<Body> {
    let message = match hold.state {
        State::Pending => format!(
            "This request was NOT sent. It waits for human approval ({}) until {}; if nobody approves it by then it expires and is never sent.",
            hold.label, hold.expires_at
        ),
        State::Approved => "This request was approved and is being sent.".to_owned(),
        State::Expired => "This request was NOT sent: nobody decided within its window, so it expired.".to_owned(),
        State::Interrupted => "airlock stopped while sending this request; whether it arrived is unknown and it will not be sent again.".to_owned(),
        _ => format!("This hold is {}.", hold.state),
    };
    let res = json(
        answers.held_status,
        &json!({
            "airlock": "held",
            "id": hold.id,
            "state": hold.state,
            "rule": hold.rule,
            "message": message,
            "expires_at": hold.expires_at,
            "status_url": format!(
                "{}/api/status/{}",
                answers.public_url,
                hold.status_token
            ),
        }),
    );
    with_hold_headers(res, hold)
}

/// `Airlock-Hold` and `Airlock-State` on every answer about a hold, so an
/// agent can tell a held, dismissed or failed request apart without parsing.
pub fn with_hold_headers(mut res: Response<Body>, hold: &Hold) -> Response<Body> {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&hold.id) {
        h.insert("airlock-hold", v);
    }
    h.insert(
        "airlock-state",
        HeaderValue::from_static(hold.state.as_str()),
    );
    res
}
