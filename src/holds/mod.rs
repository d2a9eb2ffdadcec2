//! Holds: reviewed requests kept, unsent, until a person decides or their
//! window ends. [`store`] is the store's contract and its one handle, over
//! two backends: `sled` (embedded, the default) and [`postgres`] (a
//! fleet's shared queue); every state transition is atomic with its audit
//! record. [`audit`] makes and checks the hash-chained log;
//! [`new`] makes a hold from a held request's data;
//! [`release`] the one path that sends an approved hold, at most once;
//! [`expiry`] the sweeper that ends overdue holds and resolves claims an
//! instance that stopped left behind; [`stats`] the queue's figures.
//!
//! Nothing here knows HTTP servers: the proxy creates holds and reads their
//! outcome, the review API decides them, and they meet only in the store.

pub mod audit;
pub mod expiry;
pub mod new;
pub mod postgres;
pub mod release;
mod sled;
pub mod stats;
pub mod store;

use serde::{Deserialize, Serialize};

pub use new::NewHold;
pub use store::{Store, StoreError};

/// Where a hold is in its life. Final states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Approved,
    Released,
    Failed,
    Interrupted,
    Dismissed,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Released => "released",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::Dismissed => "dismissed",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Pending,
            State::Approved,
            State::Released,
            State::Failed,
            State::Interrupted,
            State::Dismissed,
            State::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, State::Pending | State::Approved)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule name and label a hold records when no rule matched its request.
pub const UNMATCHED_RULE: &str = "unmatched";
pub const UNMATCHED_LABEL: &str = "No matching rule";

/// Headers that carry credentials: redacted in every answer and purged from
/// the store once a hold is final.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// What replaces a credential in API answers.
pub const REDACTED: &str = "[redacted]";

/// The upstream's answer to a released hold, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// The upstream body was longer than `max_body` and was cut there.
    #[serde(default)]
    pub truncated: bool,
}

/// One held request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// UUIDv7: ordered by creation time.
    pub id: String,
    pub state: State,
    pub rule: String,
    pub label: String,
    pub summary: String,
    /// The agent's identity: its `[[agent]]` name when agents authenticate,
    /// else the client's IP address. Retries, idempotency keys and the
    /// pending cap are keyed by it.
    pub agent: String,
    /// A name the agent gave itself (`Airlock-Agent`, or a proxy user name
    /// nobody checked): shown to reviewers as unverified, never trusted.
    #[serde(default)]
    pub agent_label: Option<String>,
    pub trigger: String,
    pub method: String,
    pub url: String,
    /// As they will be sent, credentials included until the hold is final.
    pub headers: Vec<(String, String)>,
    /// Lower-cased extra header names the rule treats as credentials.
    pub secret_headers: Vec<String>,
    pub body_size: u64,
    pub content_type: Option<String>,
    pub created_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    pub decided_at: Option<jiff::Timestamp>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    pub reason: Option<String>,
    /// The reviewer changed the body before approving.
    pub edited: bool,
    /// Durably claimed for sending: found so after a restart, the send's
    /// outcome is unknown and the hold becomes `interrupted`, never resent.
    pub sending: bool,
    pub response: Option<StoredResponse>,
    pub error: Option<String>,
    /// Secret of the agent's capability URL.
    pub status_token: String,
    /// SHA-256 (hex) over agent identity, method, URL and body: identical retries.
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    /// The stored response was already handed to one identical retry.
    pub replayed: bool,
    /// Cap on `Prefer: wait` from the rule, seconds.
    pub max_wait_secs: u64,
    /// Who the rule named to decide and to stand in, when the hold was made:
    /// the people its notifications go to.
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub backup: Vec<String>,
    /// When a hold still pending is escalated to the backup; `None` when the
    /// window ends first.
    #[serde(default)]
    pub escalate_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub escalated_at: Option<jiff::Timestamp>,
    /// How many distinct reviewers must approve (the rule's `approvals`).
    #[serde(default = "one")]
    pub approvals_needed: u32,
    /// Who approved so far, in order.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Where the Slack app posts this hold (the rule's `slack_channel`).
    #[serde(default)]
    pub slack_channel: Option<String>,
}

fn one() -> u32 {
    1
}

/// One reviewer's approval of a hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: jiff::Timestamp,
    pub note: Option<String>,
}

impl Hold {
    /// Whether `name` (lower case) is a credential for this hold.
    pub fn is_secret(&self, name: &str) -> bool {
        CREDENTIAL_HEADERS.contains(&name) || self.secret_headers.iter().any(|s| s == name)
    }

    /// The agent as a reviewer reads it: its identity, after the name it
    /// gave itself, marked unverified, when it gave one.
    pub fn agent_shown(&self) -> String {
        match &self.agent_label {
            Some(label) => format!("{label} (unverified; {})", self.agent),
            None => self.agent.clone(),
        }
    }

    /// Headers with credentials replaced, for anything a person or agent reads.
    pub fn redacted_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| {
                if self.is_secret(&k.to_ascii_lowercase()) {
                    (k.clone(), REDACTED.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// A fresh random secret, hex, for tokens and capability URLs.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    #[expect(
        clippy::expect_used,
        reason = "without the OS random source no secret can be made; stopping loudly is the only safe answer"
    )]
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    hex(&bytes)
}
