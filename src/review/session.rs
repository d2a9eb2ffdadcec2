//! Browser sessions for the approval page: a reviewer's token, presented
//! once (the `/?token=…` login URL or the login form), becomes an HttpOnly,
//! SameSite=Strict cookie naming a session kept in the store; every mutating
//! request made with that cookie must carry the session's CSRF token.
//!
//! Session ids are stored only as hashes; tokens are never stored at all.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::Caller;
pub use crate::holds::store::Session;
use crate::holds::{Store, StoreError, hex, random_token};

pub const COOKIE: &str = "airlock_session";
/// The header mutating requests from the page carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a page login lasts.
const TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(12);

/// What the store keeps a session under: a hash of its id.
fn key(sid: &str) -> String {
    hex(&Sha256::digest(sid.as_bytes()))
}

/// Starts a session for `caller`; returns the cookie's value and the session.
pub async fn create(store: &Store, caller: &Caller) -> Result<(String, Session), StoreError> {
    let sid = random_token();
    let session = Session {
        reviewer: caller.name.clone(),
        admin: caller.admin,
        csrf: random_token(),
        expires_at: store.now() + TTL,
    };
    store.session_put(&key(&sid), &session).await?;
    Ok((sid, session))
}

/// The live session a cookie names.
pub async fn lookup(store: &Store, sid: &str) -> Option<Session> {
    let session = store.session_get(&key(sid)).await.ok()??;
    (session.expires_at > store.now()).then_some(session)
}

pub async fn remove(store: &Store, sid: &str) -> Result<(), StoreError> {
    store.session_remove(&key(sid)).await
}

/// The session cookie's value in a request.
pub fn cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_owned())
        })
}

/// `Set-Cookie` for a new session (or, with `None`, one that ends it).
pub fn set_cookie(sid: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match sid {
        Some(sid) => format!(
            "{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            TTL.as_secs()
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    }
}

/// Constant-time comparison of two tokens (only a difference in length shows).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
