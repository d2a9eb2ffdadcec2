//! The hold store as the rest of airlock sees it: one handle, [`Store`],
//! over one of two backends that keep the same contract — sled, embedded,
//! the default (`[store] path`), and PostgreSQL, one queue for a fleet
//! (`[store] url`). The contract is five traits, one per concern: the hold
//! lifecycle ([`Lifecycle`]), the audit log, one hash chain
//! ([`AuditLog`]), the notification outbox ([`Outbox`]), small records
//! such as reviewers' sessions ([`Records`]), and the event stream, which
//! the handle owns and each backend feeds.
//!
//! Every state change is atomic with its audit record and durable before
//! the caller acts on it or anyone hears of it. This module knows no HTTP:
//! it never sends anything and never decides who may decide.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::audit::{Record, VerifyError};
use super::postgres::PgStore;
use super::sled::SledStore;
use super::{Hold, State, StoredResponse};
pub use crate::slack::MessageRef;

/// Where "now" comes from: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage underneath failed; the message is its own.
    #[error("the hold store failed: {0}")]
    Backend(String),
    #[error("the hold store holds unreadable data: {0}")]
    Corrupt(String),
    #[error("no such hold")]
    NotFound,
    #[error("the hold is {0}, not pending")]
    NotPending(State),
    #[error("this rule does not allow editing the body")]
    NotEditable,
    /// This reviewer's approval is already counted; another must approve.
    #[error("you already approved this hold; it needs {needed} approvals from different reviewers")]
    AlreadyApproved { needed: u32 },
    /// The agent reused an idempotency key for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The agent already has as many pending holds as it may.
    #[error("the agent already has {max} pending holds")]
    TooManyPending {
        max: u64,
        /// When the agent's soonest-ending pending hold expires, if known.
        soonest_expiry: Option<jiff::Timestamp>,
    },
}

/// What happened to a hold, for the page, waiting agents and notifications.
#[derive(Debug, Clone, Serialize)]
pub struct HoldEvent {
    /// held, approved, dismissed, expired, released, failed, interrupted,
    /// escalated.
    pub event: &'static str,
    pub id: String,
    pub state: State,
    pub rule: String,
    pub actor: String,
}

/// Every event name an audit record may carry.
pub const EVENTS: [&str; 9] = [
    "held",
    "approval",
    "approved",
    "dismissed",
    "expired",
    "released",
    "failed",
    "interrupted",
    "escalated",
];

/// The static name of an event read back from a record or a peer.
pub fn event_name(name: &str) -> Option<&'static str> {
    EVENTS.iter().copied().find(|e| *e == name)
}

/// The result of storing a new hold.
#[derive(Debug)]
pub enum Created {
    New(Hold),
    /// An identical request's hold that still stands.
    Existing(Hold),
}

/// How a send ended.
#[derive(Debug)]
pub enum Outcome {
    Released(StoredResponse),
    Failed(String),
}

/// A person's decision on a pending hold.
#[derive(Debug)]
pub enum Decision {
    Approve {
        note: Option<String>,
        /// A replacement body (the rule allows editing).
        edited: Option<Bytes>,
        /// Where the decision was made, when not the page or the API
        /// (`slack:U0123ABCD`), for the audit record.
        via: Option<String>,
    },
    Dismiss {
        reason: Option<String>,
        via: Option<String>,
    },
}

impl Decision {
    pub(super) fn state(&self) -> State {
        match self {
            Decision::Approve { .. } => State::Approved,
            Decision::Dismiss { .. } => State::Dismissed,
        }
    }

    /// Applies what the decision carries to a pending hold (all but the
    /// body, which `body_before` is the stored one of): the event and the
    /// audit detail. An approval short of the rule's quorum leaves the hold
    /// pending (`approval`); the one that completes it approves it. The
    /// same reviewer is counted once; an edited body needs everyone's
    /// approval again, since earlier approvals were of another text.
    /// Where the decision was made is recorded in the detail as `via`.
    pub(super) fn apply(
        &self,
        hold: &mut Hold,
        who: &str,
        now: jiff::Timestamp,
        body_before: Option<&[u8]>,
    ) -> Result<(&'static str, serde_json::Value), StoreError> {
        let (event, mut detail) = self.applied(hold, who, now, body_before)?;
        if let Decision::Approve { via: Some(via), .. } | Decision::Dismiss { via: Some(via), .. } =
            self
        {
            detail["via"] = via.clone().into();
        }
        Ok((event, detail))
    }

    fn applied(
        &self,
        hold: &mut Hold,
        who: &str,
        now: jiff::Timestamp,
        body_before: Option<&[u8]>,
    ) -> Result<(&'static str, serde_json::Value), StoreError> {
        let needed = hold.approvals_needed.max(1);
        let detail = match self {
            Decision::Approve { note, edited, .. } => {
                if hold.approvals.iter().any(|a| a.by == who) {
                    return Err(StoreError::AlreadyApproved { needed });
                }
                let mut detail = serde_json::json!({ "note": note, "edited": edited.is_some() });
                if let Some(body) = edited {
                    detail["body_sha256_before"] =
                        sha256_hex(body_before.unwrap_or_default()).into();
                    detail["body_sha256_after"] = sha256_hex(body).into();
                    hold.body_size = body.len() as u64;
                    hold.edited = true;
                    // The reviewer edits the body as read (decoded): it is
                    // sent as that text, not under the original coding.
                    hold.headers
                        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"));
                    if !hold.approvals.is_empty() {
                        detail["approvals_withdrawn"] = hold
                            .approvals
                            .iter()
                            .map(|a| a.by.clone())
                            .collect::<Vec<_>>()
                            .into();
                        hold.approvals.clear();
                    }
                }
                hold.approvals.push(super::Approval {
                    by: who.to_owned(),
                    at: now,
                    note: note.clone(),
                });
                let count = u32::try_from(hold.approvals.len()).unwrap_or(u32::MAX);
                if needed > 1 {
                    detail["approvals"] = count.into();
                    detail["needed"] = needed.into();
                }
                if count < needed {
                    return Ok(("approval", detail));
                }
                hold.note = note.clone();
                detail
            }
            Decision::Dismiss { reason, .. } => {
                hold.reason = reason.clone();
                serde_json::json!({ "reason": reason })
            }
        };
        hold.state = self.state();
        hold.decided_at = Some(now);
        hold.decided_by = Some(who.to_owned());
        Ok((hold.state.as_str(), detail))
    }

    /// The body that replaces the stored one.
    pub(super) fn edited(&self) -> Option<&Bytes> {
        match self {
            Decision::Approve { edited, .. } => edited.as_ref(),
            Decision::Dismiss { .. } => None,
        }
    }
}

/// Which holds a list shows.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<State>,
    pub rule: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The two sweeps of pending holds by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// `escalate_at` has come: the backup reviewers are told.
    Escalate,
    /// The window has ended: the hold expires, unsent.
    Expire,
}

impl Sweep {
    pub(super) fn event(self) -> &'static str {
        match self {
            Sweep::Escalate => "escalated",
            Sweep::Expire => "expired",
        }
    }

    /// Applies the sweep to a hold it found due; the audit detail, or
    /// `None` when the hold no longer qualifies.
    pub(super) fn step(self, hold: &mut Hold, now: jiff::Timestamp) -> Option<serde_json::Value> {
        match self {
            Sweep::Escalate => {
                if hold.state != State::Pending
                    || hold.escalated_at.is_some()
                    || hold.escalate_at.is_none_or(|at| at > now)
                {
                    return None;
                }
                hold.escalated_at = Some(now);
                Some(serde_json::json!({ "backup": hold.backup, "expires_at": hold.expires_at }))
            }
            Sweep::Expire => {
                if hold.state != State::Pending || hold.expires_at > now {
                    return None;
                }
                hold.state = State::Expired;
                hold.decided_at = Some(now);
                Some(serde_json::json!({ "expires_at": hold.expires_at, "unactioned": true }))
            }
        }
    }
}

/// What start-up or a claim sweep found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Approved holds nobody claimed: to be sent now.
    pub to_send: Vec<String>,
    /// Holds whose send was cut short, now `interrupted`.
    pub interrupted: Vec<(Hold, Record)>,
}

/// Who acts when no person does.
pub const SYSTEM: &str = "airlock";

/// Why a send that was cut short is never repeated.
pub(super) const INTERRUPTED: &str = "airlock stopped while sending; whether the upstream received it is unknown, so it is not sent again";

/// Marks a claimed hold interrupted; the audit detail.
pub(super) fn interrupt(hold: &mut Hold) -> serde_json::Value {
    hold.state = State::Interrupted;
    hold.sending = false;
    hold.error = Some(INTERRUPTED.into());
    serde_json::json!({})
}

/// Records how a claimed send ended on the hold; the audit detail.
pub(super) fn settle(hold: &mut Hold, outcome: &Outcome) -> serde_json::Value {
    hold.sending = false;
    match outcome {
        Outcome::Released(res) => {
            hold.state = State::Released;
            hold.response = Some(res.clone());
            serde_json::json!({ "status": res.status })
        }
        Outcome::Failed(err) => {
            hold.state = State::Failed;
            hold.error = Some(err.clone());
            serde_json::json!({ "error": err })
        }
    }
}

/// Removes the credential headers of a hold whose state is final.
pub(super) fn purge_credentials(hold: &mut Hold) {
    if !hold.state.is_final() {
        return;
    }
    let secret: Vec<bool> = hold
        .headers
        .iter()
        .map(|(k, _)| hold.is_secret(&k.to_ascii_lowercase()))
        .collect();
    let mut i = 0;
    hold.headers.retain(|_| {
        i += 1;
        !secret[i - 1]
    });
}

/// The audit detail of a new hold.
pub(super) fn held_detail(hold: &Hold) -> serde_json::Value {
    serde_json::json!({
        "agent": hold.agent, "agent_label": hold.agent_label,
        "trigger": hold.trigger, "method": hold.method,
        "url": hold.url, "expires_at": hold.expires_at, "body_size": hold.body_size,
    })
}

/// Does an identical request's hold still answer for a retry?
pub(super) fn stands(hold: &Hold) -> bool {
    match hold.state {
        State::Pending | State::Approved | State::Dismissed => true,
        State::Released => !hold.replayed,
        State::Failed | State::Interrupted | State::Expired => false,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    super::hex(&sha2::Sha256::digest(bytes))
}

/// A reviewer's login on the approval page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub reviewer: String,
    pub admin: bool,
    /// What every mutating request made with the session must carry.
    pub csrf: String,
    pub expires_at: jiff::Timestamp,
}

/// Where a delivery waits in the outbox. Opaque but for its id; a
/// reschedule gives the delivery a new key with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutboxKey(pub(super) [u8; 16]);

impl OutboxKey {
    /// A key: due time in milliseconds, then the delivery's id.
    pub(super) fn new(at: jiff::Timestamp, id: u64) -> OutboxKey {
        let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&ms.to_be_bytes());
        k[8..].copy_from_slice(&id.to_be_bytes());
        OutboxKey(k)
    }

    /// The delivery's id: unique, and the same across every retry.
    pub fn id(&self) -> u64 {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(id)
    }

    /// When the delivery is due, in milliseconds.
    pub(super) fn due_ms(&self) -> i64 {
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&self.0[..8]);
        i64::try_from(u64::from_be_bytes(ms)).unwrap_or(i64::MAX)
    }
}

/// One delivery as the outbox keeps it: the receiver's name, which the
/// store reads to let its caller schedule by receiver, and the delivery
/// as its owner serialised it, which the store never reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub receiver: String,
    pub payload: Vec<u8>,
}

/// A delivery found due: its key, and what it carries (`None` when the
/// stored entry is unreadable).
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub key: OutboxKey,
    pub item: Option<OutboxItem>,
}

/// Asked of each due delivery with its key and receiver: take it now?
pub type Take<'a> = &'a mut (dyn FnMut(&OutboxKey, &str) -> bool + Send);

/// The hold lifecycle: creation, decisions, the one claim to send, sweeps
/// by time, recovery, and the reads the page and the API need. Times come
/// from the caller's clock (`now`), never the backend's.
pub(crate) trait Lifecycle {
    /// Stores a new hold durably, unless an identical request's hold still
    /// stands (then that one, and no record). Refuses a reused idempotency
    /// key and an agent over `max_pending`, with nothing stored; the cap is
    /// checked atomically with the insert.
    async fn create(
        &self,
        hold: Hold,
        body: Bytes,
        max_pending: u64,
        now: jiff::Timestamp,
    ) -> Result<(Created, Option<Record>), StoreError>;
    /// When the agent's soonest-ending pending hold expires.
    async fn soonest_expiry_of(&self, agent: &str) -> Result<Option<jiff::Timestamp>, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Hold>, StoreError>;
    async fn body(&self, id: &str) -> Result<Option<Bytes>, StoreError>;
    async fn by_token(&self, token: &str) -> Result<Option<Hold>, StoreError>;
    /// Pending holds soonest expiry first, others newest first; the cursor
    /// is opaque to callers.
    async fn list(&self, filter: &ListFilter) -> Result<(Vec<Hold>, Option<String>), StoreError>;
    async fn pending_of(&self, agent: &str) -> Result<u64, StoreError>;
    /// Pending → approved or dismissed; of any number of concurrent
    /// decisions exactly one succeeds.
    async fn decide(
        &self,
        id: &str,
        who: &str,
        decision: &Decision,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError>;
    /// Claims an approved, unclaimed hold for `instance` to send, durably.
    async fn claim(&self, id: &str, instance: &str) -> Result<Option<(Hold, Bytes)>, StoreError>;
    /// Records how a claimed send ended.
    async fn finish(
        &self,
        id: &str,
        outcome: &Outcome,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError>;
    /// True the first time only, for a released hold.
    async fn mark_replayed(&self, id: &str) -> Result<bool, StoreError>;
    /// The soonest time a sweep has work.
    async fn next_due(&self, sweep: Sweep) -> Result<Option<jiff::Timestamp>, StoreError>;
    /// Applies a sweep to every hold due at `now`, each once.
    async fn sweep(
        &self,
        sweep: Sweep,
        now: jiff::Timestamp,
    ) -> Result<Vec<(Hold, Record)>, StoreError>;
    /// Claims whose sender is gone become `interrupted`; approved holds
    /// nobody claimed are returned to be sent. `starting` is true once, when
    /// this instance starts.
    async fn recover(&self, now: jiff::Timestamp, starting: bool) -> Result<Recovered, StoreError>;
    /// Holds created at or after `since`, newest first.
    async fn since(&self, since: jiff::Timestamp) -> Result<Vec<Hold>, StoreError>;
    /// How many holds are pending, and since when the oldest has waited.
    async fn pending_overview(&self) -> Result<(u64, Option<jiff::Timestamp>), StoreError>;
    /// How many holds are pending.
    async fn pending_count(&self) -> Result<u64, StoreError>;
    /// Makes everything written so far durable.
    async fn flush(&self) -> Result<(), StoreError>;
}

/// The audit log: one chain, appended only by [`Lifecycle`]'s transitions.
pub(crate) trait AuditLog {
    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError>;
    async fn last_audit_seq(&self) -> Result<u64, StoreError>;
    async fn verify_audit(&self) -> Result<u64, VerifyError>;
    /// Tests only: writes a record as given, no chain.
    async fn overwrite_audit_record(&self, record: &Record) -> Result<(), StoreError>;
}

/// The notification outbox and the cursor that feeds it from the log.
pub(crate) trait Outbox {
    /// The last audit record turned into deliveries; on first use, the
    /// newest record.
    async fn notify_cursor(&self) -> Result<u64, StoreError>;
    /// Queues deliveries due now and moves the cursor from `from` to `to`,
    /// atomically; false (nothing queued) when the cursor was not at `from`.
    async fn enqueue(
        &self,
        deliveries: &[OutboxItem],
        from: u64,
        to: u64,
        now: jiff::Timestamp,
    ) -> Result<bool, StoreError>;
    async fn outbox_due(
        &self,
        now: jiff::Timestamp,
        limit: usize,
        scan: usize,
        take: Take<'_>,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    async fn outbox_next_due(&self) -> Result<Option<jiff::Timestamp>, StoreError>;
    async fn outbox_len(&self) -> Result<u64, StoreError>;
    /// Moves a delivery to `at` with new contents if it is still at `key`.
    async fn outbox_reschedule(
        &self,
        key: &OutboxKey,
        at: jiff::Timestamp,
        delivery: &OutboxItem,
    ) -> Result<Option<OutboxKey>, StoreError>;
    async fn outbox_remove(&self, key: &OutboxKey) -> Result<(), StoreError>;
}

/// Small records: reviewers' page sessions (under a hash of their id) and
/// the first-start admin token's hash. Never a secret in the clear.
pub(crate) trait Records {
    async fn session_put(&self, sid_hash: &str, session: &Session) -> Result<(), StoreError>;
    async fn session_get(&self, sid_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn session_remove(&self, sid_hash: &str) -> Result<(), StoreError>;
    async fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError>;
    /// Stores the hash unless one is stored already (instances starting
    /// together agree on one); the hash stored.
    async fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<[u8; 32], StoreError>;
    /// The Slack messages posted about a hold.
    async fn slack_messages(&self, hold: &str) -> Result<Vec<MessageRef>, StoreError>;
    /// Remembers a Slack message posted about a hold (once).
    async fn add_slack_message(&self, hold: &str, message: &MessageRef) -> Result<(), StoreError>;
}

/// The backend behind a [`Store`].
enum Backend {
    Sled(SledStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! on {
    ($store:expr, $b:ident => $call:expr) => {
        match &$store.inner.backend {
            Backend::Sled($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

/// The store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    events: broadcast::Sender<HoldEvent>,
    clock: Clock,
    /// This process's name in claims and events, unique per start.
    instance: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

fn new_instance() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Store {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open(path: &Path, clock: Clock) -> Result<Store, StoreError> {
        let (events, _) = broadcast::channel(1024);
        Ok(Store {
            inner: Arc::new(Inner {
                backend: Backend::Sled(SledStore::open(path)?),
                events,
                clock,
                instance: new_instance(),
            }),
        })
    }

    /// Connects to the shared store at a PostgreSQL URL, migrating its
    /// schema, and starts following the other instances' events. The URL is
    /// never logged and never part of an error.
    pub async fn connect(
        url: &str,
        ca: &[std::path::PathBuf],
        clock: Clock,
    ) -> Result<Store, StoreError> {
        let (events, _) = broadcast::channel(1024);
        let instance = new_instance();
        let pg = PgStore::connect(url, ca, &instance, events.clone()).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend: Backend::Postgres(pg),
                events,
                clock,
                instance,
            }),
        })
    }

    /// The store a configuration names: PostgreSQL when it has a URL, else
    /// sled at its path.
    pub async fn from_config(
        config: &crate::config::StoreConfig,
        clock: Clock,
    ) -> Result<Store, StoreError> {
        match &config.url {
            Some(url) => Store::connect(url.expose(), &config.ca, clock).await,
            None => Store::open(&config.path, clock),
        }
    }

    /// Which backend this is: "sled" or "postgres".
    pub fn kind(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sled(_) => "sled",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// This process's name in claims and events.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.inner.clock)()
    }

    /// Hold events as they happen, here and (on PostgreSQL) on every other
    /// instance on the same database.
    pub fn subscribe(&self) -> broadcast::Receiver<HoldEvent> {
        self.inner.events.subscribe()
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        on!(self, b => b.flush().await)
    }

    /// Logs a committed record and tells this instance's subscribers (the
    /// backend tells the others).
    fn announce(&self, record: &Record, hold: &Hold) {
        let event = event_name(&record.event).unwrap_or("held");
        tracing::info!(
            target: "airlock::audit",
            seq = record.seq,
            event,
            hold = %hold.id,
            rule = %hold.rule,
            actor = %record.actor,
            detail = %record.detail,
            hash = %record.hash,
            "audit"
        );
        let _ = self.inner.events.send(HoldEvent {
            event,
            id: hold.id.clone(),
            state: hold.state,
            rule: hold.rule.clone(),
            actor: record.actor.clone(),
        });
    }

    /// Stores a new hold durably, unless an identical request's hold still
    /// stands (pending, approved, released and not yet replayed, or
    /// dismissed), in which case that one is returned.
    ///
    /// Refused, with nothing stored: an idempotency key this agent already
    /// used for a different request ([`StoreError::IdempotencyKeyReused`]),
    /// and a new hold for an agent that already has `max_pending` pending
    /// ([`StoreError::TooManyPending`]).
    pub async fn create(
        &self,
        hold: Hold,
        body: Bytes,
        max_pending: u64,
    ) -> Result<Created, StoreError> {
        let agent = hold.agent.clone();
        let now = self.now();
        match on!(self, b => b.create(hold, body, max_pending, now).await) {
            Err(StoreError::TooManyPending { max, .. }) => Err(StoreError::TooManyPending {
                max,
                soonest_expiry: on!(self, b => b.soonest_expiry_of(&agent).await)?,
            }),
            Err(e) => Err(e),
            Ok((created, record)) => {
                if let (Created::New(hold), Some(record)) = (&created, &record) {
                    self.announce(record, hold);
                }
                Ok(created)
            }
        }
    }

    /// How many holds of one agent identity are pending.
    pub async fn pending_of(&self, agent: &str) -> Result<u64, StoreError> {
        on!(self, b => b.pending_of(agent).await)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        on!(self, b => b.get(id).await)
    }

    pub async fn body(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        on!(self, b => b.body(id).await)
    }

    /// The hold a status-URL secret names.
    pub async fn by_token(&self, token: &str) -> Result<Option<Hold>, StoreError> {
        on!(self, b => b.by_token(token).await)
    }

    /// A page of holds: pending ones soonest expiry first, others newest
    /// first. The cursor is opaque to callers.
    pub async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<(Vec<Hold>, Option<String>), StoreError> {
        on!(self, b => b.list(filter).await)
    }

    /// Pending → approved, atomically: of any number of concurrent
    /// approvals exactly one succeeds. An edited body replaces the stored one.
    pub async fn approve(
        &self,
        id: &str,
        who: &str,
        note: Option<String>,
        edited: Option<Bytes>,
    ) -> Result<Hold, StoreError> {
        self.decide(
            id,
            who,
            Decision::Approve {
                note,
                edited,
                via: None,
            },
        )
        .await
    }

    /// [`Store::approve`] made elsewhere than the page or the API, as
    /// `via` (`slack:U0123ABCD`) records.
    pub async fn approve_via(&self, id: &str, who: &str, via: String) -> Result<Hold, StoreError> {
        self.decide(
            id,
            who,
            Decision::Approve {
                note: None,
                edited: None,
                via: Some(via),
            },
        )
        .await
    }

    /// [`Store::dismiss`] made elsewhere than the page or the API.
    pub async fn dismiss_via(
        &self,
        id: &str,
        who: &str,
        reason: Option<String>,
        via: String,
    ) -> Result<Hold, StoreError> {
        self.decide(
            id,
            who,
            Decision::Dismiss {
                reason,
                via: Some(via),
            },
        )
        .await
    }

    /// Pending → dismissed.
    pub async fn dismiss(
        &self,
        id: &str,
        who: &str,
        reason: Option<String>,
    ) -> Result<Hold, StoreError> {
        self.decide(id, who, Decision::Dismiss { reason, via: None })
            .await
    }

    async fn decide(&self, id: &str, who: &str, decision: Decision) -> Result<Hold, StoreError> {
        let now = self.now();
        let (hold, record) = on!(self, b => b.decide(id, who, &decision, now).await)?;
        self.announce(&record, &hold);
        Ok(hold)
    }

    /// Claims an approved hold for sending by this instance and makes the
    /// claim durable before returning it: the only way to get a hold to
    /// send. `None` when it is not approved or someone else claimed it.
    pub async fn claim(&self, id: &str) -> Result<Option<(Hold, Bytes)>, StoreError> {
        on!(self, b => b.claim(id, &self.inner.instance).await)
    }

    /// Records how a claimed send ended.
    pub async fn finish(&self, id: &str, outcome: Outcome) -> Result<Hold, StoreError> {
        let now = self.now();
        let (hold, record) = on!(self, b => b.finish(id, &outcome, now).await)?;
        self.announce(&record, &hold);
        Ok(hold)
    }

    /// Hands a released hold's response to one identical retry: true the
    /// first time only.
    pub async fn mark_replayed(&self, id: &str) -> Result<bool, StoreError> {
        on!(self, b => b.mark_replayed(id).await)
    }

    /// The soonest expiry among pending holds.
    pub async fn next_expiry(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        on!(self, b => b.next_due(Sweep::Expire).await)
    }

    /// The soonest escalation among pending holds not yet escalated.
    pub async fn next_escalation(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        on!(self, b => b.next_due(Sweep::Escalate).await)
    }

    /// Marks every pending hold whose `escalate_at` has come as escalated,
    /// with its audit record; notifications follow from that record.
    pub async fn escalate_due(&self) -> Result<Vec<Hold>, StoreError> {
        self.sweep(Sweep::Escalate).await
    }

    /// Moves every pending hold whose window has ended to `expired`.
    pub async fn expire_due(&self) -> Result<Vec<Hold>, StoreError> {
        self.sweep(Sweep::Expire).await
    }

    async fn sweep(&self, sweep: Sweep) -> Result<Vec<Hold>, StoreError> {
        let now = self.now();
        let done = on!(self, b => b.sweep(sweep, now).await)?;
        Ok(done
            .into_iter()
            .map(|(hold, record)| {
                self.announce(&record, &hold);
                hold
            })
            .collect())
    }

    /// Start-up: a hold found mid-send by an instance that is gone becomes
    /// `interrupted` (its outcome is unknown, so it is never sent again);
    /// overdue holds expire. Returns the approved holds nobody had claimed
    /// yet, to be sent now.
    pub async fn recover(&self) -> Result<Vec<String>, StoreError> {
        let to_send = self.recover_claims(true).await?;
        self.expire_due().await?;
        Ok(to_send)
    }

    /// While running: on a shared store, the claims of instances that
    /// stopped renewing their lease become `interrupted`, and approved holds
    /// left unclaimed are returned to be sent. On sled, nothing to do.
    pub async fn recover_claims(&self, starting: bool) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let found = on!(self, b => b.recover(now, starting).await)?;
        for (hold, record) in &found.interrupted {
            self.announce(record, hold);
        }
        Ok(found.to_send)
    }

    /// Holds created at or after `since`, newest first.
    pub async fn since(&self, since: jiff::Timestamp) -> Result<Vec<Hold>, StoreError> {
        on!(self, b => b.since(since).await)
    }

    /// How many holds are pending, and since when the oldest has waited.
    pub async fn pending_overview(&self) -> Result<(u64, Option<jiff::Timestamp>), StoreError> {
        on!(self, b => b.pending_overview().await)
    }

    /// How many holds are pending.
    pub async fn pending_count(&self) -> Result<u64, StoreError> {
        on!(self, b => b.pending_count().await)
    }

    /// Audit records with sequence numbers after `after`, oldest first.
    pub async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        on!(self, b => b.audit_after(after, limit).await)
    }

    /// Checks the audit chain; how many records it holds.
    pub async fn verify_audit(&self) -> Result<u64, VerifyError> {
        on!(self, b => b.verify_audit().await)
    }

    /// The sequence number of the newest audit record (0 when none).
    pub async fn last_audit_seq(&self) -> Result<u64, StoreError> {
        on!(self, b => b.last_audit_seq().await)
    }

    /// Writes `record` over the one with its sequence number, as given:
    /// no hash, no chain. Only for tests that tamper with the log to see
    /// [`Store::verify_audit`] find it; the log is otherwise append-only.
    #[doc(hidden)]
    pub async fn overwrite_audit_record(&self, record: &Record) -> Result<(), StoreError> {
        on!(self, b => b.overwrite_audit_record(record).await)
    }

    /// Keeps a page session under `sid_hash` (a hash of its id: ids
    /// themselves are never stored).
    pub async fn session_put(&self, sid_hash: &str, session: &Session) -> Result<(), StoreError> {
        on!(self, b => b.session_put(sid_hash, session).await)
    }

    /// The session kept under `sid_hash`, live or not.
    pub async fn session_get(&self, sid_hash: &str) -> Result<Option<Session>, StoreError> {
        on!(self, b => b.session_get(sid_hash).await)
    }

    pub async fn session_remove(&self, sid_hash: &str) -> Result<(), StoreError> {
        on!(self, b => b.session_remove(sid_hash).await)
    }

    /// The SHA-256 of the admin token made on first start, when there is one.
    pub async fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        on!(self, b => b.admin_token_hash().await)
    }

    /// Stores the hash unless one is stored already; the hash stored.
    pub async fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        on!(self, b => b.set_admin_token_hash(hash).await)
    }

    /// The Slack messages posted about a hold.
    pub async fn slack_messages(&self, hold: &str) -> Result<Vec<MessageRef>, StoreError> {
        on!(self, b => b.slack_messages(hold).await)
    }

    /// Remembers a Slack message posted about a hold.
    pub async fn add_slack_message(
        &self,
        hold: &str,
        message: &MessageRef,
    ) -> Result<(), StoreError> {
        on!(self, b => b.add_slack_message(hold, message).await)
    }

    /// The last audit record already turned into notifications. On the
    /// first call it starts at the newest record, so a store that predates
    /// notifications does not replay its whole history to the sinks.
    pub async fn notify_cursor(&self) -> Result<u64, StoreError> {
        on!(self, b => b.notify_cursor().await)
    }

    /// Queues deliveries, due now, and moves the notification cursor from
    /// `from` to `to` in the same transaction: an audit record is turned
    /// into deliveries exactly once, even across a crash or by two
    /// instances at once. False, with nothing queued, when the cursor had
    /// moved from `from`.
    pub async fn enqueue(
        &self,
        deliveries: &[OutboxItem],
        from: u64,
        to: u64,
    ) -> Result<bool, StoreError> {
        let now = jiff::Timestamp::now();
        on!(self, b => b.enqueue(deliveries, from, to, now).await)
    }

    /// Deliveries due at `now`, soonest first: up to `limit` that `take`
    /// accepts (asked with each one's key and receiver), looking at no more
    /// than `scan` entries, so that deliveries the caller cannot send yet
    /// never hide the ones it can. An entry whose receiver cannot be read
    /// is always taken, with no item, for the caller to drop.
    pub async fn outbox_due(
        &self,
        now: jiff::Timestamp,
        limit: usize,
        scan: usize,
        take: Take<'_>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        on!(self, b => b.outbox_due(now, limit, scan, &mut *take).await)
    }

    /// When the soonest delivery is due.
    pub async fn outbox_next_due(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        on!(self, b => b.outbox_next_due().await)
    }

    /// Deliveries waiting, in flight included.
    pub async fn outbox_len(&self) -> Result<u64, StoreError> {
        on!(self, b => b.outbox_len().await)
    }

    /// Moves a delivery to `at` with new contents, atomically; the new key,
    /// or `None` when it is no longer at `key` (then nothing changes): of
    /// two instances moving one delivery, one does.
    pub async fn outbox_reschedule(
        &self,
        key: &OutboxKey,
        at: jiff::Timestamp,
        delivery: &OutboxItem,
    ) -> Result<Option<OutboxKey>, StoreError> {
        on!(self, b => b.outbox_reschedule(key, at, delivery).await)
    }

    /// Forgets a delivery: sent, or given up.
    pub async fn outbox_remove(&self, key: &OutboxKey) -> Result<(), StoreError> {
        on!(self, b => b.outbox_remove(key).await)
    }
}
