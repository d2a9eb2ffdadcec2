//! The approval page: bundled HTML, CSS and JS served as one answer (no
//! build step, nothing from elsewhere), plus the login and logout that turn
//! a reviewer's token into a page session. Everything the page shows is what
//! the review API answers: its first screen carried in the page, the rest
//! asked for.

use std::sync::{Arc, LazyLock};

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ReviewState;
use super::api::ApiError;
use super::auth::{Caller, authenticate};
use super::session::{self, Session};
use crate::holds::store::ListFilter;

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// How many pending holds the page carries: its first screen (app.js's
/// `FIRST_SCREEN`); the rest of the queue it asks the API for, preloaded
/// while the page parses.
const FIRST_SCREEN: usize = 12;

/// The page's policy: its own style and script run inline, allowed by their
/// hashes, so nothing else inline does; nothing loads from elsewhere and
/// nothing frames it.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = |text: &str| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    };
    format!(
        "default-src 'self'; style-src 'self' 'sha256-{}'; script-src 'self' 'sha256-{}'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        hash(STYLE),
        hash(APP_JS)
    )
});

/// The page's security headers.
fn page_headers(content_type: &'static str) -> [(http::HeaderName, &'static str); 5] {
    [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, "no-store"),
        (
            http::HeaderName::from_static("content-security-policy"),
            CSP.as_str(),
        ),
        (http::HeaderName::from_static("x-frame-options"), "DENY"),
        (
            http::HeaderName::from_static("referrer-policy"),
            "no-referrer",
        ),
    ]
}

/// The page in one answer: its style and script inline and, for a signed-in
/// reviewer, the session and the first screen of the queue as data
/// (`#boot`), so that screen is drawn without a further request.
fn page(boot: Option<&[u8]>) -> Response {
    let mut data = String::new();
    if let Some(json) = boot {
        data.reserve(json.len() + 64);
        data.push_str(r#"<script type="application/json" id="boot">"#);
        // `<` only ever occurs inside JSON strings: escaped, no text of a
        // hold can close the element or open another.
        data.push_str(&String::from_utf8_lossy(json).replace('<', "\\u003c"));
        data.push_str("</script>\n");
    }
    let html = INDEX
        .replace("<!--style-->", &format!("<style>{STYLE}</style>"))
        .replace("<!--script-->", &format!("{data}<script>{APP_JS}</script>"));
    (page_headers("text/html; charset=utf-8"), Html(html)).into_response()
}

/// The session and the first screen of the queue for `session`'s page; none
/// when the store fails (the page then asks the API, which says what went
/// wrong).
async fn boot(state: &ReviewState, session: &Session) -> Option<Vec<u8>> {
    let filter = ListFilter {
        state: Some(crate::holds::State::Pending),
        rule: None,
        limit: FIRST_SCREEN,
        cursor: None,
    };
    let queue = super::api::list_json(state, &filter, usize::MAX)
        .await
        .ok()?;
    let who = serde_json::to_vec(&json!({
        "reviewer": session.reviewer,
        "admin": session.admin,
        "csrf": session.csrf,
    }))
    .ok()?;
    let mut out = Vec::with_capacity(queue.len() + who.len() + 32);
    out.extend_from_slice(br#"{"session":"#);
    out.extend_from_slice(&who);
    out.extend_from_slice(br#","queue":"#);
    out.extend_from_slice(&queue);
    out.push(b'}');
    Some(out)
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
    let current = match session::cookie(&headers) {
        Some(sid) => session::lookup(&state.store, &sid).await,
        None => None,
    };
    let by_header = super::auth::signed_in_by_header(&state, &headers, Some(peer));
    match by_header {
        Some(caller) if current.as_ref().is_none_or(|s| s.reviewer != caller.name) => {
            match session::create(&state.store, &caller).await {
                Ok((sid, session)) => {
                    let res = page(boot(&state, &session).await.as_deref());
                    with_cookie(state.secure_cookies, &sid, res)
                }
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        _ => match current {
            Some(session) => page(boot(&state, &session).await.as_deref()),
            None => page(None),
        },
    }
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
        let mut res = page(None);
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return res;
    };
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut()
        .insert(LOCATION, http::HeaderValue::from_static("/"));
    match session::create(&state.store, &caller).await {
        Ok((sid, _)) => with_cookie(state.secure_cookies, &sid, res),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `res` with the page session `sid` in its cookie.
fn with_cookie(secure: bool, sid: &str, mut res: Response) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(Some(sid), secure)) {
        res.headers_mut().insert(SET_COOKIE, v);
    }
    res
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_script_and_style_cannot_end_early() {
        assert!(!APP_JS.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        assert!(INDEX.contains("<!--style-->") && INDEX.contains("<!--script-->"));
    }

    #[tokio::test]
    async fn no_text_of_a_hold_closes_the_data_element() {
        let res = page(Some(
            br#"{"summary":"</script><script>alert(1)</script><!--"}"#,
        ));
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let html = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains(
            r#"{"summary":"\u003c/script>\u003cscript>alert(1)\u003c/script>\u003c!--"}</script>"#
        ));
        // The data element and the page's script: nothing else closes.
        assert_eq!(html.matches("</script>").count(), 2, "{html}");
        let data: serde_json::Value = serde_json::from_str(
            &html[html.find(r#"id="boot">"#).unwrap() + 10..html.find("}</script>").unwrap() + 1],
        )
        .unwrap();
        assert_eq!(data["summary"], "</script><script>alert(1)</script><!--");
        // Only the page's own inline script and style run.
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(APP_JS));
        assert!(
            csp.contains(&format!("script-src 'self' 'sha256-{hash}'")),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
    }
}
