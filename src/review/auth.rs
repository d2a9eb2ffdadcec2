//! Who is calling: `Authorization: Bearer <token>`, hashed with SHA-256 and
//! compared in constant time against every reviewer's stored hash; and who
//! may decide a hold (the rule's reviewers, or an admin).
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

/// The reviewer a token belongs to. Every hash is compared, so timing says
/// nothing about which one matched or how closely.
pub fn authenticate(reviewers: &[Reviewer], token: &str) -> Option<Caller> {
    let hash = token_hash(token);
    let mut found = None;
    for r in reviewers {
        if same_hash(&hash, &r.token_sha256) && found.is_none() {
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
        let Some(sid) = session::cookie(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "a bearer token or a page login is needed",
            ));
        };
        let Some(s) = session::lookup(&state.store, &sid).await else {
            return Err(ApiError::unauthorized(
                "the page session has ended; log in again",
            ));
        };
        let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
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
            token_sha256: token_hash(token),
            admin,
            notify: None,
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
