//! Who is calling: `Authorization: Bearer <token>`, hashed with SHA-256 and
//! compared in constant time against every reviewer's stored hash; the
//! page's session cookie; or the identity an authenticating proxy in front
//! put in `[review] trusted_header`, believed only from `trusted_proxies`
//! and only for reading (a change needs the page session and its CSRF
//! token, which the page gets by signing in that way). And who may decide a
//! hold (the rule's reviewers, or an admin).
//!
//! Tokens are never stored or logged in the clear.

use std::sync::Arc;

use super::api::ApiError;
use super::{ReviewState, session};
pub use crate::config::token_hash;
use crate::config::{Reviewer, same_hash};
use crate::holds::{Hold, UNMATCHED_RULE};
use axum::extract::FromRequestParts;
use http::request::Parts;

/// An authenticated reviewer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
}

/// `[review] trusted_header`, and the peers allowed to set it.
#[derive(Debug, Clone)]
pub struct TrustedHeader {
    pub header: http::HeaderName,
    pub proxies: Vec<ipnet::IpNet>,
}

/// The reviewer an authenticating proxy signed in, when the request came
/// from one of the trusted peers with the header naming a reviewer's email.
/// The header from anyone else is ignored.
pub fn signed_in_by_header(
    state: &ReviewState,
    headers: &http::HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> Option<Caller> {
    let trusted = state.trusted_header.as_ref()?;
    let value = headers.get(&trusted.header)?.to_str().ok()?.trim();
    let peer = peer?.ip().to_canonical();
    if !trusted.proxies.iter().any(|net| net.contains(&peer)) {
        tracing::warn!(%peer, header = %trusted.header, "identity header from a peer not in [review] trusted_proxies; ignored");
        return None;
    }
    let email = value.to_ascii_lowercase();
    let found = state
        .reviewers
        .iter()
        .find(|r| r.email.as_deref() == Some(email.as_str()));
    if found.is_none() {
        tracing::info!(header = %trusted.header, "signed in by the proxy as nobody listed in [[reviewer]] email");
    }
    found.map(|r| Caller {
        name: r.name.clone(),
        admin: r.admin,
    })
}

/// The reviewer a token belongs to. Every hash is compared, so timing says
/// nothing about which one matched or how closely.
pub fn authenticate(reviewers: &[Reviewer], token: &str) -> Option<Caller> {
    let hash = token_hash(token);
    let mut found = None;
    for r in reviewers {
        let matches = r.token_sha256.is_some_and(|h| same_hash(&hash, &h));
        if matches && found.is_none() {
            found = Some(Caller {
                name: r.name.clone(),
                admin: r.admin,
            });
        }
    }
    found
}

impl FromRequestParts<Arc<ReviewState>> for Caller {
    type Rejection = ApiError;

    /// A bearer token, or the page's session cookie; with the cookie, a
    /// request that changes anything must also carry the CSRF token.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ReviewState>,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if let Some(token) = bearer {
            return authenticate(&state.reviewers, token)
                .ok_or_else(|| ApiError::unauthorized("unknown token"));
        }
        let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
        let session = match session::cookie(&parts.headers) {
            Some(sid) => session::lookup(&state.store, &sid).await,
            None => None,
        };
        let Some(s) = session else {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            return match signed_in_by_header(state, &parts.headers, peer) {
                // Reading needs no more; a change needs the page session
                // (and its CSRF token), so a cross-site request carried
                // through the proxy changes nothing.
                Some(caller) if safe => Ok(caller),
                Some(_) => Err(ApiError::new(
                    http::StatusCode::FORBIDDEN,
                    "signed in through the proxy: open the page, whose session and CSRF token a change needs",
                )),
                None if session::cookie(&parts.headers).is_some() => Err(ApiError::unauthorized(
                    "the page session has ended; log in again",
                )),
                None => Err(ApiError::unauthorized(
                    "a bearer token or a page login is needed",
                )),
            };
        };
        if !safe {
            let sent = parts
                .headers
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session::same(sent, &s.csrf) {
                return Err(ApiError::new(
                    http::StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token",
                ));
            }
        }
        Ok(Caller {
            name: s.reviewer,
            admin: s.admin,
        })
    }
}

/// May `caller` decide `hold`? Admins always; a hold no rule matched, the
/// reviewers in `[defaults] unmatched_reviewers`; otherwise the rule's listed
/// reviewers (and its backup once the hold is escalated), or anyone when the
/// rule lists nobody. A hold whose rule no longer exists is left to admins.
pub fn may_decide(state: &ReviewState, caller: &Caller, hold: &Hold) -> bool {
    if caller.admin {
        return true;
    }
    if hold.rule == UNMATCHED_RULE {
        return state.unmatched_reviewers.contains(&caller.name);
    }
    match state.reloader.rules().load().rule(&hold.rule) {
        Some(rule) => {
            rule.reviewers.is_empty()
                || rule.reviewers.contains(&caller.name)
                // Once escalated the backup stands in: told and able to act.
                // (those the hold named, who were the ones told).
                || (hold.escalated_at.is_some() && hold.backup.contains(&caller.name))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer(name: &str, token: &str, admin: bool) -> Reviewer {
        Reviewer {
            name: name.into(),
            token_sha256: Some(token_hash(token)),
            admin,
            notify: None,
            email: None,
            slack_user: None,
        }
    }

    #[test]
    fn tokens_find_their_reviewer_and_nothing_else() {
        let rs = vec![
            reviewer("alice", "a-token", false),
            reviewer("root", "r-token", true),
        ];
        assert_eq!(authenticate(&rs, "a-token").unwrap().name, "alice");
        assert!(authenticate(&rs, "r-token").unwrap().admin);
        assert!(authenticate(&rs, "A-token").is_none());
        assert!(authenticate(&rs, "").is_none());
    }
}
