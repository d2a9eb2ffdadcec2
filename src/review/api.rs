//! The review API, exactly SPEC's routes: list and read holds (credentials
//! redacted), approve and dismiss them, follow events, read the audit log;
//! the agent's capability status URL; health and the CA certificate.
//!
//! Every `/api` route but the status URL needs a reviewer's bearer token;
//! every error is `{"error": …}` with a fitting status.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ReviewState;
use super::auth::{Caller, may_decide};
use crate::holds::store::ListFilter;
use crate::holds::{Hold, REDACTED, State as HoldState, StoreError};

/// An API error: status and a message for `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::NotFound => StatusCode::NOT_FOUND,
            StoreError::NotPending(_) | StoreError::AlreadyApproved { .. } => StatusCode::CONFLICT,
            StoreError::NotEditable => StatusCode::BAD_REQUEST,
            StoreError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::TooManyPending { .. } => StatusCode::TOO_MANY_REQUESTS,
            StoreError::Backend(_) | StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = axum::Json(json!({ "error": self.message })).into_response();
        *res.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

type ApiResult = Result<Response, ApiError>;

/// How much of each body a list carries (the full body is one GET away).
const LIST_BODY_PREVIEW: usize = 16 * 1024;

pub fn router(state: Arc<ReviewState>) -> Router {
    Router::new()
        .route("/api/holds", get(list))
        .route("/api/holds/{id}", get(one))
        .route("/api/holds/{id}/approve", post(approve))
        .route("/api/holds/{id}/dismiss", post(dismiss))
        .route("/api/events", get(super::events::stream))
        .route("/api/audit", get(audit))
        .route("/api/stats", get(stats))
        .route("/api/rules/reload", post(reload_rules))
        .route("/api/status/{token}", get(status))
        .route("/", get(super::page::index))
        .route("/login", post(super::page::login))
        .route("/slack/interactions", post(super::slack::interactions))
        .route("/logout", post(super::page::logout))
        .route("/api/session", get(super::page::whoami))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/ca.pem", get(ca_pem))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// A hold as the API shows it: credentials redacted, the body decoded for
/// reading (cut to `preview` bytes when given), and every other reading of
/// the request named in `request.ambiguities`. Borrowed from the hold and
/// written straight out: a list of a thousand is one pass, not a tree of
/// values built and then walked.
#[derive(Serialize)]
pub struct HoldView<'h> {
    id: &'h str,
    state: HoldState,
    rule: &'h str,
    label: &'h str,
    summary: &'h str,
    agent: &'h str,
    agent_label: Option<&'h str>,
    trigger: &'h str,
    method: &'h str,
    url: &'h str,
    created_at: jiff::Timestamp,
    expires_at: jiff::Timestamp,
    escalate_at: Option<jiff::Timestamp>,
    escalated: bool,
    escalated_at: Option<jiff::Timestamp>,
    reviewers: &'h [String],
    backup: &'h [String],
    decided_at: Option<jiff::Timestamp>,
    decided_by: Option<&'h str>,
    note: Option<&'h str>,
    reason: Option<&'h str>,
    edited: bool,
    approvals_needed: u32,
    approvals: &'h [crate::holds::Approval],
    request: RequestView<'h>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseView<'h>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'h str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_snippet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_edit: Option<bool>,
}

#[derive(Serialize)]
struct RequestView<'h> {
    headers: Headers<'h>,
    body: Option<String>,
    body_encoding: Option<&'static str>,
    /// `body` is the start of the body only (a list's preview).
    body_truncated: bool,
    body_size: u64,
    body_decoded_from: Option<String>,
    content_type: Option<&'h str>,
    ambiguities: Vec<String>,
}

#[derive(Serialize)]
struct ResponseView<'h> {
    status: u16,
    headers: Headers<'h>,
    body: std::borrow::Cow<'h, str>,
    truncated: bool,
}

/// Headers as a JSON object, secrets redacted. A header sent twice is shown
/// with both values, as one line would be.
struct Headers<'h> {
    hold: &'h Hold,
    list: &'h [(String, String)],
    /// Request headers merge repeated names; response headers are as stored.
    merge: bool,
}

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let shown = |k: &str, v: &'_ str| -> String {
            if self.hold.is_secret(&k.to_ascii_lowercase()) {
                REDACTED.to_owned()
            } else {
                v.to_owned()
            }
        };
        let mut map = s.serialize_map(None)?;
        let mut done: Vec<&str> = Vec::new();
        for (i, (k, v)) in self.list.iter().enumerate() {
            if !self.merge {
                map.serialize_entry(k, &shown(k, v))?;
                continue;
            }
            if done.contains(&k.as_str()) {
                continue;
            }
            done.push(k);
            let mut value = shown(k, v);
            for (k2, v2) in &self.list[i + 1..] {
                if k2 == k {
                    value.push_str(", ");
                    value.push_str(&shown(k2, v2));
                }
            }
            map.serialize_entry(k, &value)?;
        }
        map.end()
    }
}

pub fn view<'h>(hold: &'h Hold, body: Option<&[u8]>, preview: Option<usize>) -> HoldView<'h> {
    let draft = body.map(|b| super::draft::read(hold, b));
    let shown = draft.as_ref().map(|d| {
        let all: &[u8] = &d.body;
        all.get(..preview.unwrap_or(usize::MAX).min(all.len()))
            .unwrap_or_default()
    });
    let body_truncated = match (&draft, shown) {
        (Some(d), Some(b)) => b.len() < d.body.len(),
        _ => false,
    };
    let (body_text, encoding) = match shown {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(t) => (Some(t.to_owned()), None),
            // A preview cut inside a character: text up to the cut.
            Err(e) if e.error_len().is_none() => (
                Some(String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned()),
                None,
            ),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
                Some("base64"),
            ),
        },
    };
    let (body_decoded_from, ambiguities) =
        draft.map_or((None, Vec::new()), |d| (d.decoded_from, d.ambiguities));
    let rule_snippet = (hold.rule == crate::holds::UNMATCHED_RULE).then(|| {
        let (host, path) = crate::holds::stats::host_and_path(&hold.url);
        crate::report::rule_snippet(&hold.method, &host, &path)
    });
    HoldView {
        id: &hold.id,
        state: hold.state,
        rule: &hold.rule,
        label: &hold.label,
        summary: &hold.summary,
        agent: &hold.agent,
        agent_label: hold.agent_label.as_deref(),
        trigger: &hold.trigger,
        method: &hold.method,
        url: &hold.url,
        created_at: hold.created_at,
        expires_at: hold.expires_at,
        escalate_at: hold.escalate_at,
        escalated: hold.escalated_at.is_some(),
        escalated_at: hold.escalated_at,
        reviewers: &hold.reviewers,
        backup: &hold.backup,
        decided_at: hold.decided_at,
        decided_by: hold.decided_by.as_deref(),
        note: hold.note.as_deref(),
        reason: hold.reason.as_deref(),
        edited: hold.edited,
        approvals_needed: hold.approvals_needed,
        approvals: &hold.approvals,
        request: RequestView {
            headers: Headers {
                hold,
                list: &hold.headers,
                merge: true,
            },
            body: body_text,
            body_encoding: encoding,
            body_truncated,
            body_size: hold.body_size,
            body_decoded_from,
            content_type: hold.content_type.as_deref(),
            ambiguities,
        },
        response: hold.response.as_ref().map(|res| ResponseView {
            status: res.status,
            headers: Headers {
                hold,
                list: &res.headers,
                merge: false,
            },
            body: String::from_utf8_lossy(&res.body),
            truncated: res.truncated,
        }),
        error: hold.error.as_deref(),
        rule_snippet,
        allow_edit: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// Bytes of each body to carry, up to the default: a page drawing a
    /// thousand cards asks for less and reads a whole hold when it shows it.
    preview: Option<usize>,
}

async fn list(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let hold_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(HoldState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {s:?} is not one of pending, approved, released, failed, interrupted, dismissed, expired"
            ))
        })?),
    };
    let filter = ListFilter {
        state: hold_state,
        rule: q.rule.filter(|r| !r.is_empty()),
        limit: q.limit.unwrap_or(50),
        cursor: q.cursor.filter(|c| !c.is_empty()),
    };
    let preview = q.preview.unwrap_or(LIST_BODY_PREVIEW);
    let json = list_json(&state, &filter, preview).await?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// A list of holds as `GET /api/holds` answers it, serialised: each body
/// cut to `preview` bytes (at most [`LIST_BODY_PREVIEW`]).
pub(super) async fn list_json(
    state: &ReviewState,
    filter: &ListFilter,
    preview: usize,
) -> Result<Vec<u8>, ApiError> {
    let preview = preview.min(LIST_BODY_PREVIEW);
    let (holds, next) = state.store.list(filter).await?;
    let mut bodies = Vec::with_capacity(holds.len());
    for h in &holds {
        // Cards show the draft without a second request: a preview.
        bodies.push(state.store.body(&h.id).await.ok().flatten());
    }
    let rules = state.reloader.rules().load();
    let views: Vec<HoldView<'_>> = holds
        .iter()
        .zip(&bodies)
        .map(|(h, body)| {
            let mut v = view(h, body.as_deref(), Some(preview));
            v.allow_edit = Some(rules.rule(&h.rule).is_some_and(|r| r.allow_edit));
            v
        })
        .collect();
    #[derive(Serialize)]
    struct List<'a> {
        holds: Vec<HoldView<'a>>,
        next_cursor: Option<String>,
    }
    serde_json::to_vec(&List {
        holds: views,
        next_cursor: next,
    })
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn one(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let hold = state.store.get(&id).await?.ok_or(StoreError::NotFound)?;
    let body = state.store.body(&id).await?;
    let mut v = view(&hold, body.as_deref(), None);
    v.allow_edit = Some(
        state
            .reloader
            .rules()
            .load()
            .rule(&hold.rule)
            .is_some_and(|r| r.allow_edit),
    );
    Ok(axum::Json(v).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    note: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DismissBody {
    reason: Option<String>,
}

/// An optional JSON body: empty is the default, anything else must parse.
fn parse_body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

/// The hold a caller wants to decide, once they may.
async fn decidable(state: &ReviewState, caller: &Caller, id: &str) -> Result<Hold, ApiError> {
    let hold = state.store.get(id).await?.ok_or(StoreError::NotFound)?;
    if !may_decide(state, caller, &hold) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} is not a reviewer of rule {:?}", caller.name, hold.rule),
        ));
    }
    Ok(hold)
}

async fn approve(
    caller: Caller,
    State(state): State<Arc<ReviewState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let req: ApproveBody = parse_body(&bytes)?;
    let hold = decidable(&state, &caller, &id).await?;
    let edited = match req.body {
        None => None,
        Some(body) => {
            let allowed = state
                .reloader
                .rules()
                .load()
                .rule(&hold.rule)
                .is_some_and(|r| r.allow_edit);
            if !allowed {
                return Err(StoreError::NotEditable.into());
            }
            Some(Bytes::from(body))
        }
    };
    let hold = state
        .store
        .approve(&id, &caller.name, req.note, edited)
        .await?;
    // Short of the rule's quorum the hold stays pending: nothing to send.
    if hold.state == HoldState::Approved {
        state.releaser.spawn(hold.id.clone());
    }
    Ok(axum::Json(view(&hold, None, None)).into_response())
}

async fn dismiss(
    caller: Caller,
    State(state): State<Arc<ReviewState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let req: DismissBody = parse_body(&bytes)?;
    decidable(&state, &caller, &id).await?;
    let hold = state.store.dismiss(&id, &caller.name, req.reason).await?;
    Ok(axum::Json(view(&hold, None, None)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let records = state
        .store
        .audit_after(q.after.unwrap_or(0), q.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(json!({ "records": records })).into_response())
}

/// The agent's view of its own hold: no token, the secret is the URL.
async fn status(State(state): State<Arc<ReviewState>>, Path(token): Path<String>) -> ApiResult {
    let hold = state
        .store
        .by_token(&token)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut v = json!({
        "id": hold.id,
        "state": hold.state,
        "rule": hold.rule,
        "created_at": hold.created_at,
        "expires_at": hold.expires_at,
        "decided_at": hold.decided_at,
        "reason": hold.reason,
    });
    if let Some(res) = &hold.response {
        v["response"] = json!({
            "status": res.status,
            "headers": res.headers.iter().filter(|(k, _)| !hold.is_secret(&k.to_ascii_lowercase())).cloned().collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&res.body),
        });
    }
    if let Some(err) = &hold.error {
        v["error"] = Value::String(err.clone());
    }
    Ok(axum::Json(v).into_response())
}

async fn ca_pem(State(state): State<Arc<ReviewState>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca_pem.clone(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    since: Option<String>,
}

/// `GET /api/stats?since=30d`: per-rule queue figures.
async fn stats(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let period = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("30d");
    let since = crate::report::since(state.store.now(), period)
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    let rules = state.reloader.rules().load_full();
    let report = crate::report::Report::build(&state.store, &rules, since).await?;
    Ok(axum::Json(report).into_response())
}

/// `POST /api/rules/reload` (admins): load the rules again, atomically.
async fn reload_rules(caller: Caller, State(state): State<Arc<ReviewState>>) -> ApiResult {
    if !caller.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only admins may reload the rules",
        ));
    }
    match state
        .reloader
        .reload(&format!("API call by {}", caller.name))
    {
        Ok(n) => Ok(axum::Json(json!({ "rules": n })).into_response()),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let mut res = axum::Json(json!({
                "error": format!("the new rules were refused; the previous rules stay in force: {}", list.join("; ")),
                "errors": list,
            }))
            .into_response();
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(res)
        }
    }
}

/// `GET /readyz`: ready when the store answers.
async fn readyz(State(state): State<Arc<ReviewState>>) -> Response {
    match state.store.last_audit_seq().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(state): State<Arc<ReviewState>>) -> Response {
    let rules = state.reloader.rules().load();
    // A store that cannot answer shows as empty; /readyz says why.
    let pending = state.store.pending_count().await.unwrap_or(0);
    let outbox = state.store.outbox_len().await.unwrap_or(0);
    let text = state
        .metrics
        .render(&rules, pending, (state.leaf_stats.0)(), outbox);
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
