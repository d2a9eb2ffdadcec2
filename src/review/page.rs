//! The approval page: bundled HTML, CSS and JS (no network fetches, no build
//! step), plus the login and logout that turn a reviewer's token into a
//! page session. Everything the page shows it reads from the review API.

use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::ReviewState;
use super::api::ApiError;
use super::auth::{Caller, authenticate};
use super::session;

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// The page's security headers: nothing loads from elsewhere, nothing frames it.
fn page_headers(content_type: &'static str) -> [(http::HeaderName, &'static str); 5] {
    [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, "no-store"),
        (
            http::HeaderName::from_static("content-security-policy"),
            "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
        (http::HeaderName::from_static("x-frame-options"), "DENY"),
        (
            http::HeaderName::from_static("referrer-policy"),
            "no-referrer",
        ),
    ]
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /`: the page; with `?token=…`, a login that lands back on `/`
/// without the token in the address bar or history.
/// Signed in by a trusted proxy's header, the page gets a session of its
/// own (and so a CSRF token) for that reviewer, unless it has one already.
pub async fn index(
    State(state): State<Arc<ReviewState>>,
    Query(q): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = q.token {
        return login_with(&state, &token).await;
    }
    let res = (page_headers("text/html; charset=utf-8"), Html(INDEX)).into_response();
    let Some(caller) = super::auth::signed_in_by_header(&state, &headers, Some(peer)) else {
        return res;
    };
    let current = match session::cookie(&headers) {
        Some(sid) => session::lookup(&state.store, &sid).await,
        None => None,
    };
    if current.is_some_and(|s| s.reviewer == caller.name) {
        return res;
    }
    with_new_session(&state, &caller, res).await
}

pub async fn app_js() -> Response {
    (page_headers("text/javascript; charset=utf-8"), APP_JS).into_response()
}

pub async fn style() -> Response {
    (page_headers("text/css; charset=utf-8"), STYLE).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login` from the page's token form.
pub async fn login(State(state): State<Arc<ReviewState>>, Form(form): Form<LoginForm>) -> Response {
    login_with(&state, form.token.trim()).await
}

async fn login_with(state: &ReviewState, token: &str) -> Response {
    let Some(caller) = authenticate(&state.reviewers, token) else {
        let mut res = (page_headers("text/html; charset=utf-8"), Html(INDEX)).into_response();
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return res;
    };
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut()
        .insert(LOCATION, http::HeaderValue::from_static("/"));
    with_new_session(state, &caller, res).await
}

/// `res` with a new page session for `caller` in its cookie.
async fn with_new_session(state: &ReviewState, caller: &Caller, mut res: Response) -> Response {
    match session::create(&state.store, caller).await {
        Ok(sid) => {
            if let Ok(v) =
                http::HeaderValue::from_str(&session::set_cookie(Some(&sid), state.secure_cookies))
            {
                res.headers_mut().insert(SET_COOKIE, v);
            }
            res
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /logout`: ends the page session (CSRF-checked like any change).
pub async fn logout(
    _caller: Caller,
    State(state): State<Arc<ReviewState>>,
    headers: HeaderMap,
) -> Response {
    if let Some(sid) = session::cookie(&headers) {
        let _ = session::remove(&state.store, &sid).await;
    }
    let mut res = axum::Json(json!({ "logged_out": true })).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(None, state.secure_cookies)) {
        res.headers_mut().insert(SET_COOKIE, v);
    }
    res
}

/// `GET /api/session`: who the page is logged in as, and its CSRF token.
pub async fn whoami(
    caller: Caller,
    State(state): State<Arc<ReviewState>>,
    headers: HeaderMap,
) -> Response {
    let csrf = match session::cookie(&headers) {
        Some(sid) => session::lookup(&state.store, &sid).await.map(|s| s.csrf),
        None => None,
    };
    axum::Json(json!({ "reviewer": caller.name, "admin": caller.admin, "csrf": csrf }))
        .into_response()
}
