//! The review server: the review API and the approval page on
//! `[review] listen`. Reviewers read holds and decide them here; the proxy
//! never calls into this module, and this module never sends a request
//! except by handing an approved hold to the releaser.

pub mod api;
pub mod auth;
pub mod draft;
pub mod events;
pub mod page;
pub mod session;
pub mod slack;

use std::sync::Arc;

use crate::config::Reviewer;
use crate::holds::Store;
use crate::holds::release::Releaser;

/// What every review route needs.
#[derive(Debug)]
pub struct ReviewState {
    pub store: Store,
    pub releaser: Arc<Releaser>,
    /// Reloads the rules; also the way to read the set in force.
    pub reloader: crate::reload::Reloader,
    /// Configured reviewers, plus the generated admin when there are none.
    pub reviewers: Vec<Reviewer>,
    /// `[defaults] unmatched_reviewers`: besides admins, who decides holds
    /// no rule matched.
    pub unmatched_reviewers: Vec<String>,
    /// The airlock CA, served at `/ca.pem` for agents to trust.
    pub ca_pem: String,
    /// Flips to true at shutdown: long-lived streams end then, so stopping
    /// never waits on a reviewer's open page.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Session cookies get `Secure` when the page is served over https.
    pub secure_cookies: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub leaf_stats: LeafStats,
    /// `[review] trusted_header` and the peers it is believed from.
    pub trusted_header: Option<auth::TrustedHeader>,
    /// `[slack]`: the app whose buttons decide.
    pub slack: Option<crate::slack::Slack>,
}

/// Leaf-certificate cache (hits, misses), read at scrape time: the review
/// side sees the figures, not the proxy.
#[derive(Clone)]
pub struct LeafStats(pub Arc<dyn Fn() -> (u64, u64) + Send + Sync>);

impl std::fmt::Debug for LeafStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeafStats")
    }
}
