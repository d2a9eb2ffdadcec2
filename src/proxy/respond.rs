//! The canned answers agents get from airlock itself: denied and errors
//! (the held answer lives with holding, in `held`). Each is JSON with an `airlock` field naming what happened.
//!
//! These answers are built without fallible calls so that answering can
//! never fail; they never echo request bodies or credentials back.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PROXY_AUTHENTICATE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use serde_json::json;

use crate::error::ProxyError;
use crate::upstream::Body;

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(bytes))));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A rule (or `unmatched = "deny"`) refuses this request.
pub fn denied(rule: Option<&str>) -> Response<Body> {
    let message = match rule {
        Some(name) => format!("This request was NOT sent: rule {name:?} denies it."),
        None => "This request was NOT sent: no rule matches it and unmatched requests are denied."
            .to_owned(),
    };
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
    Response::new(Either::Right(Full::new(Bytes::new())))
}
