//! The hold store: sled trees and every state transition, each one atomic
//! with its audit record and flushed to disk before the caller acts on it.
//!
//! Trees: `holds` (id → hold), `bodies` (id → request body), `expiry`
//! (expires_at ‖ id, pending holds only, so the sweeper's cost follows what
//! expires), `escalation` (escalate_at ‖ id, pending holds not yet
//! escalated), `active` (pending and approved ids, for start-up recovery),
//! `lookup` (retry fingerprints and idempotency keys → id), `tokens`
//! (status-URL secret → id), `agents` (each agent identity's pending holds
//! and their count, kept true by every transition, so the pending cap is
//! checked in the transaction that stores a hold), `audit`, `meta` (audit
//! head, notification cursor, page sessions, the first-start admin token's
//! hash), and
//! `outbox` (notification deliveries, keyed by when they are next due and
//! filed under their receiver's name; their payload is opaque here, and
//! callers see keys only as [`OutboxKey`]s). This module knows no HTTP:
//! it never sends anything and never decides who may decide.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sled::Tree;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use tokio::sync::broadcast;

use super::audit::{self, Entry, Record};
use super::{Hold, State, StoredResponse};

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

impl From<TransactionError<String>> for StoreError {
    fn from(e: TransactionError<String>) -> StoreError {
        match e {
            TransactionError::Abort(reason) => decode_abort(&reason),
            TransactionError::Storage(e) => StoreError::from(e),
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

/// Transactions abort with a string; these prefixes carry the typed errors.
fn decode_abort(reason: &str) -> StoreError {
    if reason == "not found" {
        StoreError::NotFound
    } else if reason == IDEMPOTENCY_KEY_REUSED {
        StoreError::IdempotencyKeyReused
    } else if let Some(max) = reason.strip_prefix(TOO_MANY_PENDING) {
        max.parse().map_or_else(
            |_| StoreError::Corrupt(reason.into()),
            |max| StoreError::TooManyPending {
                max,
                soonest_expiry: None,
            },
        )
    } else if let Some(state) = reason.strip_prefix("not pending: ") {
        State::parse(state).map_or_else(
            || StoreError::Corrupt(reason.into()),
            StoreError::NotPending,
        )
    } else {
        StoreError::Corrupt(reason.into())
    }
}

const IDEMPOTENCY_KEY_REUSED: &str = "idempotency key reused";
const TOO_MANY_PENDING: &str = "too many pending: ";

fn abort<T>(reason: impl Into<String>) -> ConflictableTransactionResult<T, String> {
    Err(ConflictableTransactionError::Abort(reason.into()))
}

/// What happened to a hold, for the page, waiting agents and notifications.
#[derive(Debug, Clone, Serialize)]
pub struct HoldEvent {
    /// held, approved, dismissed, expired, released, failed, interrupted.
    pub event: &'static str,
    pub id: String,
    pub state: State,
    pub rule: String,
    pub actor: String,
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

/// Which holds a list shows.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<State>,
    pub rule: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

struct Inner {
    db: sled::Db,
    holds: Tree,
    bodies: Tree,
    expiry: Tree,
    escalation: Tree,
    active: Tree,
    lookup: Tree,
    tokens: Tree,
    agents: Tree,
    audit: Tree,
    meta: Tree,
    outbox: Tree,
    events: broadcast::Sender<HoldEvent>,
    clock: Clock,
}

/// The trees as one transaction sees them.
struct Tx<'a> {
    holds: &'a TransactionalTree,
    bodies: &'a TransactionalTree,
    expiry: &'a TransactionalTree,
    escalation: &'a TransactionalTree,
    active: &'a TransactionalTree,
    lookup: &'a TransactionalTree,
    tokens: &'a TransactionalTree,
    agents: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

fn id_key(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

fn expiry_key(hold: &Hold, key: &[u8; 16]) -> [u8; 24] {
    time_key(hold.expires_at, key)
}

/// A time index key: milliseconds, big-endian so sled orders them, then id.
fn time_key(at: jiff::Timestamp, key: &[u8; 16]) -> [u8; 24] {
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(key);
    k
}

fn idempotency_lookup(agent: &str, key: &str) -> Vec<u8> {
    let mut k = b"i:".to_vec();
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `agents` keys: `p` ‖ agent ‖ expires_at ‖ id for each pending hold (so
/// an agent's soonest expiry comes first), `c` ‖ agent for their count. The
/// agent is length-prefixed so that no identity is a prefix of another's keys.
fn agent_prefix(kind: u8, agent: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent.len() + 29);
    k.push(kind);
    k.extend_from_slice(&(agent.len() as u32).to_be_bytes());
    k.extend_from_slice(agent.as_bytes());
    k
}

fn agent_pending_key(hold: &Hold, key: &[u8; 16]) -> Vec<u8> {
    let mut k = agent_prefix(b'p', &hold.agent);
    k.extend_from_slice(&expiry_key(hold, key));
    k
}

fn agent_count_key(agent: &str) -> Vec<u8> {
    agent_prefix(b'c', agent)
}

fn read_count(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
        .map_or(0, u64::from_be_bytes)
}

fn fingerprint_lookup(fingerprint: &str) -> Vec<u8> {
    let mut k = b"f:".to_vec();
    k.extend_from_slice(fingerprint.as_bytes());
    k
}

fn decode(bytes: &[u8]) -> Result<Hold, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("hold record: {e}"))
}

impl Tx<'_> {
    fn get(&self, key: &[u8; 16]) -> ConflictableTransactionResult<Option<Hold>, String> {
        match self.holds.get(key)? {
            Some(v) => match decode(&v) {
                Ok(h) => Ok(Some(h)),
                Err(e) => abort(e),
            },
            None => Ok(None),
        }
    }

    /// How many holds of `agent` are pending.
    fn pending_of(&self, agent: &str) -> ConflictableTransactionResult<u64, String> {
        Ok(read_count(self.agents.get(agent_count_key(agent))?))
    }

    /// Keeps the agent's pending index and count true to the hold's state:
    /// every transition passes here, so leaving `pending` (decided,
    /// expired, or anything else) frees the agent's place.
    fn index_agent(
        &self,
        hold: &Hold,
        key: &[u8; 16],
    ) -> ConflictableTransactionResult<(), String> {
        let pk = agent_pending_key(hold, key);
        let pending = hold.state == State::Pending;
        let indexed = self.agents.get(&pk)?.is_some();
        if pending == indexed {
            return Ok(());
        }
        let ck = agent_count_key(&hold.agent);
        let count = self.pending_of(&hold.agent)?;
        if pending {
            self.agents.insert(pk, &[])?;
            self.agents.insert(ck, &(count + 1).to_be_bytes())?;
        } else {
            self.agents.remove(pk)?;
            match count.saturating_sub(1) {
                0 => self.agents.remove(ck)?,
                n => self.agents.insert(ck, &n.to_be_bytes())?,
            };
        }
        Ok(())
    }

    /// Writes a hold and keeps the indexes true to its state; purges
    /// credentials once the state is final.
    fn put(&self, hold: &mut Hold, key: &[u8; 16]) -> ConflictableTransactionResult<(), String> {
        self.index_agent(hold, key)?;
        if hold.state.is_final() {
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
            self.active.remove(&key[..])?;
        } else {
            self.active.insert(&key[..], &[])?;
        }
        let ek = expiry_key(hold, key);
        if hold.state == State::Pending {
            self.expiry.insert(&ek[..], &[])?;
        } else {
            self.expiry.remove(&ek[..])?;
        }
        if let Some(at) = hold.escalate_at {
            let k = time_key(at, key);
            if hold.state == State::Pending && hold.escalated_at.is_none() {
                self.escalation.insert(&k[..], &[])?;
            } else {
                self.escalation.remove(&k[..])?;
            }
        }
        match serde_json::to_vec(hold) {
            Ok(bytes) => {
                self.holds.insert(&key[..], bytes)?;
                Ok(())
            }
            Err(e) => abort(e.to_string()),
        }
    }

    fn audit(
        &self,
        at: jiff::Timestamp,
        event: &str,
        hold: &Hold,
        actor: &str,
        detail: serde_json::Value,
    ) -> ConflictableTransactionResult<Record, String> {
        audit::append(
            self.audit,
            self.meta,
            at,
            Entry {
                event,
                hold: &hold.id,
                rule: &hold.rule,
                actor,
                detail,
            },
        )
    }
}

/// Who acts when no person does.
pub const SYSTEM: &str = "airlock";

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, clock: Clock) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        let (events, _) = broadcast::channel(1024);
        Ok(Store {
            inner: Arc::new(Inner {
                holds: db.open_tree("holds")?,
                bodies: db.open_tree("bodies")?,
                expiry: db.open_tree("expiry")?,
                escalation: db.open_tree("escalation")?,
                active: db.open_tree("active")?,
                lookup: db.open_tree("lookup")?,
                tokens: db.open_tree("tokens")?,
                agents: db.open_tree("agents")?,
                audit: db.open_tree("audit")?,
                meta: db.open_tree("meta")?,
                outbox: db.open_tree("outbox")?,
                db,
                events,
                clock,
            }),
        })
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.inner.clock)()
    }

    /// Hold events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<HoldEvent> {
        self.inner.events.subscribe()
    }

    /// Makes everything written so far durable.
    ///
    /// sled 0.34's `flush_async` can leave concurrent callers waiting
    /// forever (spacejam/sled#1308), so the blocking flush runs on the
    /// blocking pool; concurrent flushes still share one fsync inside sled.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Corrupt(format!("flush task failed: {e}")))??;
        Ok(())
    }

    fn transact<R>(
        &self,
        f: impl Fn(&Tx<'_>) -> ConflictableTransactionResult<R, String>,
    ) -> Result<R, StoreError> {
        use sled::Transactional;
        let i = &self.inner;
        let r = (
            &i.holds,
            &i.bodies,
            &i.expiry,
            &i.escalation,
            &i.active,
            &i.lookup,
            &i.tokens,
            &i.agents,
            &i.audit,
            &i.meta,
        )
            .transaction(
                |(
                    holds,
                    bodies,
                    expiry,
                    escalation,
                    active,
                    lookup,
                    tokens,
                    agents,
                    audit,
                    meta,
                )| {
                    f(&Tx {
                        holds,
                        bodies,
                        expiry,
                        escalation,
                        active,
                        lookup,
                        tokens,
                        agents,
                        audit,
                        meta,
                    })
                },
            )?;
        Ok(r)
    }

    fn announce(&self, record: &Record, hold: &Hold, event: &'static str) {
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
    /// ([`StoreError::TooManyPending`]). The cap is checked in the
    /// transaction that stores the hold, so concurrent requests never pass
    /// it together.
    pub async fn create(
        &self,
        hold: Hold,
        body: Bytes,
        max_pending: u64,
    ) -> Result<Created, StoreError> {
        let key = id_key(&hold.id).ok_or_else(|| StoreError::Corrupt("bad hold id".into()))?;
        let now = self.now();
        let fp = fingerprint_lookup(&hold.fingerprint);
        let idem = hold
            .idempotency_key
            .as_deref()
            .map(|k| idempotency_lookup(&hold.agent, k));
        let result = self.transact(|tx| {
            // The key first: reused for a different request it is refused
            // even when that request is itself another hold's retry.
            for lookup in idem.iter().chain(std::iter::once(&fp)) {
                let Some(existing) = tx.lookup.get(lookup)? else {
                    continue;
                };
                let Ok(existing_key) = <[u8; 16]>::try_from(&existing[..]) else {
                    continue;
                };
                let Some(existing) = tx.get(&existing_key)? else {
                    continue;
                };
                // Keys are per agent identity: another agent's key is
                // never found here, and this agent's key names one request.
                if existing.fingerprint != hold.fingerprint {
                    return abort(IDEMPOTENCY_KEY_REUSED);
                }
                if stands(&existing) {
                    return Ok((Created::Existing(existing), None));
                }
            }
            if tx.pending_of(&hold.agent)? >= max_pending {
                return abort(format!("{TOO_MANY_PENDING}{max_pending}"));
            }
            let mut hold = hold.clone();
            tx.put(&mut hold, &key)?;
            tx.bodies.insert(&key[..], body.as_ref())?;
            tx.tokens.insert(hold.status_token.as_bytes(), &key[..])?;
            tx.lookup.insert(fp.as_slice(), &key[..])?;
            if let Some(idem) = &idem {
                tx.lookup.insert(idem.as_slice(), &key[..])?;
            }
            let record = tx.audit(
                now,
                "held",
                &hold,
                SYSTEM,
                serde_json::json!({
                    "agent": hold.agent, "agent_label": hold.agent_label,
                    "trigger": hold.trigger, "method": hold.method,
                    "url": hold.url, "expires_at": hold.expires_at, "body_size": hold.body_size,
                }),
            )?;
            Ok((Created::New(hold), Some(record)))
        });
        let result = match result {
            Err(StoreError::TooManyPending { max, .. }) => {
                return Err(StoreError::TooManyPending {
                    max,
                    soonest_expiry: self.soonest_expiry_of(&hold.agent)?,
                });
            }
            other => other?,
        };
        self.flush().await?;
        match result {
            (Created::New(hold), Some(record)) => {
                self.announce(&record, &hold, "held");
                Ok(Created::New(hold))
            }
            (created, _) => Ok(created),
        }
    }

    /// How many holds of one agent identity are pending.
    pub fn pending_of(&self, agent: &str) -> Result<u64, StoreError> {
        Ok(read_count(self.inner.agents.get(agent_count_key(agent))?))
    }

    /// When the agent's soonest-ending pending hold expires.
    fn soonest_expiry_of(&self, agent: &str) -> Result<Option<jiff::Timestamp>, StoreError> {
        let prefix = agent_prefix(b'p', agent);
        Ok(match self.inner.agents.scan_prefix(&prefix).keys().next() {
            Some(k) => k?.get(prefix.len()..).and_then(key_time),
            None => None,
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let Some(key) = id_key(id) else {
            return Ok(None);
        };
        match self.inner.holds.get(key)? {
            Some(v) => decode(&v).map(Some).map_err(StoreError::Corrupt),
            None => Ok(None),
        }
    }

    pub fn body(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(key) = id_key(id) else {
            return Ok(None);
        };
        Ok(self
            .inner
            .bodies
            .get(key)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// The hold a status-URL secret names.
    pub fn by_token(&self, token: &str) -> Result<Option<Hold>, StoreError> {
        match self.inner.tokens.get(token.as_bytes())? {
            Some(key) => match self.inner.holds.get(key)? {
                Some(v) => decode(&v).map(Some).map_err(StoreError::Corrupt),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A page of holds: pending ones soonest expiry first, others newest
    /// first. The cursor is opaque to callers.
    pub fn list(&self, filter: &ListFilter) -> Result<(Vec<Hold>, Option<String>), StoreError> {
        let limit = filter.limit.clamp(1, 1000);
        let mut out = Vec::with_capacity(limit);
        let cursor = filter.cursor.as_deref().and_then(unhex);
        let keep = |h: &Hold| {
            filter.state.is_none_or(|s| h.state == s)
                && filter.rule.as_deref().is_none_or(|r| h.rule == r)
        };
        let mut last: Option<Vec<u8>> = None;
        if filter.state == Some(State::Pending) {
            let range = match &cursor {
                Some(c) => self.inner.expiry.range::<&[u8], _>((
                    std::ops::Bound::Excluded(c.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
                None => self.inner.expiry.iter(),
            };
            for item in range {
                let (k, _) = item?;
                let Some(hold) = self.get_by_key(&k[8..])? else {
                    continue;
                };
                if keep(&hold) {
                    out.push(hold);
                    last = Some(k.to_vec());
                    if out.len() == limit {
                        break;
                    }
                }
            }
        } else {
            let range = match &cursor {
                Some(c) => self.inner.holds.range::<&[u8], _>(..c.as_slice()).rev(),
                None => self.inner.holds.iter().rev(),
            };
            for item in range {
                let (k, v) = item?;
                let hold = decode(&v).map_err(StoreError::Corrupt)?;
                if keep(&hold) {
                    out.push(hold);
                    last = Some(k.to_vec());
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        let next = if out.len() == limit {
            last.map(|k| super::hex(&k))
        } else {
            None
        };
        Ok((out, next))
    }

    fn get_by_key(&self, key: &[u8]) -> Result<Option<Hold>, StoreError> {
        match self.inner.holds.get(key)? {
            Some(v) => decode(&v).map(Some).map_err(StoreError::Corrupt),
            None => Ok(None),
        }
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
        self.decide(id, who, State::Approved, |tx, key, hold| {
            let mut detail = serde_json::json!({ "note": note, "edited": edited.is_some() });
            if let Some(body) = &edited {
                let old = tx.bodies.get(&key[..])?.unwrap_or_default();
                detail["body_sha256_before"] = sha256_hex(&old).into();
                detail["body_sha256_after"] = sha256_hex(body).into();
                tx.bodies.insert(&key[..], body.as_ref())?;
                hold.body_size = body.len() as u64;
                hold.edited = true;
                // The reviewer edits the body as read (decoded): it is sent
                // as that text, not under the original coding.
                hold.headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"));
            }
            hold.note = note.clone();
            Ok(detail)
        })
        .await
    }

    /// Pending → dismissed.
    pub async fn dismiss(
        &self,
        id: &str,
        who: &str,
        reason: Option<String>,
    ) -> Result<Hold, StoreError> {
        self.decide(id, who, State::Dismissed, |_, _, hold| {
            hold.reason = reason.clone();
            Ok(serde_json::json!({ "reason": reason }))
        })
        .await
    }

    /// A person's decision: one transaction from `pending` to `to`, with
    /// `apply` adding what the decision carries and returning the audit detail.
    async fn decide(
        &self,
        id: &str,
        who: &str,
        to: State,
        apply: impl Fn(
            &Tx<'_>,
            &[u8; 16],
            &mut Hold,
        ) -> ConflictableTransactionResult<serde_json::Value, String>,
    ) -> Result<Hold, StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let now = self.now();
        let event = to.as_str();
        let (hold, record) = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return abort("not found");
            };
            if hold.state != State::Pending {
                return abort(format!("not pending: {}", hold.state));
            }
            let detail = apply(tx, &key, &mut hold)?;
            hold.state = to;
            hold.decided_at = Some(now);
            hold.decided_by = Some(who.to_owned());
            tx.put(&mut hold, &key)?;
            let record = tx.audit(now, event, &hold, who, detail)?;
            Ok((hold, record))
        })?;
        self.flush().await?;
        self.announce(&record, &hold, event);
        Ok(hold)
    }

    /// Claims an approved hold for sending and makes the claim durable
    /// before returning it: the only way to get a hold to send. `None` when
    /// it is not approved or someone else claimed it.
    pub async fn claim(&self, id: &str) -> Result<Option<(Hold, Bytes)>, StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let claimed = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return Ok(None);
            };
            if hold.state != State::Approved || hold.sending {
                return Ok(None);
            }
            hold.sending = true;
            tx.put(&mut hold, &key)?;
            let body = tx.bodies.get(&key[..])?.unwrap_or_default();
            Ok(Some((hold, Bytes::copy_from_slice(&body))))
        })?;
        if claimed.is_some() {
            self.flush().await?;
        }
        Ok(claimed)
    }

    /// Records how a claimed send ended.
    pub async fn finish(&self, id: &str, outcome: Outcome) -> Result<Hold, StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let now = self.now();
        let (hold, record, event) = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return abort("not found");
            };
            if hold.state != State::Approved || !hold.sending {
                return abort(format!(
                    "hold {} was not being sent ({})",
                    hold.id, hold.state
                ));
            }
            hold.sending = false;
            let (event, detail) = match &outcome {
                Outcome::Released(res) => {
                    hold.state = State::Released;
                    hold.response = Some(res.clone());
                    ("released", serde_json::json!({ "status": res.status }))
                }
                Outcome::Failed(err) => {
                    hold.state = State::Failed;
                    hold.error = Some(err.clone());
                    ("failed", serde_json::json!({ "error": err }))
                }
            };
            tx.put(&mut hold, &key)?;
            let record = tx.audit(now, event, &hold, SYSTEM, detail)?;
            Ok((hold, record, event))
        })?;
        self.flush().await?;
        self.announce(&record, &hold, event);
        Ok(hold)
    }

    /// Hands a released hold's response to one identical retry: true the
    /// first time only.
    pub async fn mark_replayed(&self, id: &str) -> Result<bool, StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let marked = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return Ok(false);
            };
            if hold.state != State::Released || hold.replayed {
                return Ok(false);
            }
            hold.replayed = true;
            tx.put(&mut hold, &key)?;
            Ok(true)
        })?;
        if marked {
            self.flush().await?;
        }
        Ok(marked)
    }

    /// The soonest expiry among pending holds.
    pub fn next_expiry(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self.inner.expiry.first()?.and_then(|(k, _)| key_time(&k)))
    }

    /// The soonest escalation among pending holds not yet escalated.
    pub fn next_escalation(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self
            .inner
            .escalation
            .first()?
            .and_then(|(k, _)| key_time(&k)))
    }

    /// Marks every pending hold whose `escalate_at` has come as escalated,
    /// with its audit record; notifications follow from that record.
    pub async fn escalate_due(&self) -> Result<Vec<Hold>, StoreError> {
        self.sweep(&self.inner.escalation, "escalated", |hold, now| {
            if hold.state != State::Pending
                || hold.escalated_at.is_some()
                || hold.escalate_at.is_none_or(|at| at > now)
            {
                return None;
            }
            hold.escalated_at = Some(now);
            Some(serde_json::json!({ "backup": hold.backup, "expires_at": hold.expires_at }))
        })
        .await
    }

    /// Moves every pending hold whose window has ended to `expired`.
    /// Reads only the expiry index up to now.
    pub async fn expire_due(&self) -> Result<Vec<Hold>, StoreError> {
        self.sweep(&self.inner.expiry, "expired", |hold, now| {
            if hold.state != State::Pending || hold.expires_at > now {
                return None;
            }
            hold.state = State::Expired;
            hold.decided_at = Some(now);
            Some(serde_json::json!({ "expires_at": hold.expires_at, "unactioned": true }))
        })
        .await
    }

    /// Applies `step` to each hold a time index says is due, one
    /// transaction per hold with its audit record (`step` returns the
    /// record's detail, or `None` when the hold no longer qualifies). The
    /// changes are durable before anyone hears of them: nobody is told of a
    /// step a crash could undo.
    async fn sweep(
        &self,
        index: &Tree,
        event: &'static str,
        step: impl Fn(&mut Hold, jiff::Timestamp) -> Option<serde_json::Value>,
    ) -> Result<Vec<Hold>, StoreError> {
        let now = self.now();
        let mut done = Vec::new();
        for key in due_keys(index, now) {
            let changed = self.transact(|tx| {
                let Some(mut hold) = tx.get(&key)? else {
                    return Ok(None);
                };
                let Some(detail) = step(&mut hold, now) else {
                    return Ok(None);
                };
                tx.put(&mut hold, &key)?;
                let record = tx.audit(now, event, &hold, SYSTEM, detail)?;
                Ok(Some((hold, record)))
            })?;
            done.extend(changed);
        }
        if !done.is_empty() {
            self.flush().await?;
        }
        Ok(done
            .into_iter()
            .map(|(hold, record)| {
                self.announce(&record, &hold, event);
                hold
            })
            .collect())
    }

    /// Start-up: a hold found mid-send becomes `interrupted` (its outcome is
    /// unknown, so it is never sent again); overdue holds expire. Returns
    /// the approved holds nobody had claimed yet, to be sent now.
    pub async fn recover(&self) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let keys: Vec<[u8; 16]> = self
            .inner
            .active
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 16]>::try_from(&k[..]).ok())
            .collect();
        let mut to_send = Vec::new();
        for key in keys {
            // Most active holds are pending and need nothing: read first,
            // transact only for the ones that change.
            let Some(hold) = self.get_by_key(&key)? else {
                continue;
            };
            if hold.state == State::Pending
                && !self
                    .inner
                    .agents
                    .contains_key(agent_pending_key(&hold, &key))?
            {
                // Held before the per-agent index existed: count it now.
                self.transact(|tx| match tx.get(&key)? {
                    Some(mut hold) => tx.put(&mut hold, &key),
                    None => Ok(()),
                })?;
            }
            if hold.state != State::Approved {
                continue;
            }
            if !hold.sending {
                to_send.push(hold.id);
                continue;
            }
            let done = self.transact(|tx| {
                let Some(mut hold) = tx.get(&key)? else {
                    return Ok(None);
                };
                if hold.state != State::Approved || !hold.sending {
                    return Ok(None);
                }
                hold.state = State::Interrupted;
                hold.sending = false;
                hold.error = Some(
                    "airlock stopped while sending; whether the upstream received it is unknown, so it is not sent again".into(),
                );
                tx.put(&mut hold, &key)?;
                let record = tx.audit(now, "interrupted", &hold, SYSTEM, serde_json::json!({}))?;
                Ok(Some((hold, record)))
            })?;
            if let Some((hold, record)) = done {
                self.announce(&record, &hold, "interrupted");
            }
        }
        self.flush().await?;
        self.expire_due().await?;
        Ok(to_send)
    }

    /// Visits holds newest first until `visit` returns false.
    pub fn scan_newest_first(
        &self,
        mut visit: impl FnMut(&Hold) -> bool,
    ) -> Result<(), StoreError> {
        for item in self.inner.holds.iter().rev() {
            let (_, v) = item?;
            let hold = decode(&v).map_err(StoreError::Corrupt)?;
            if !visit(&hold) {
                break;
            }
        }
        Ok(())
    }

    /// How many holds are pending (the expiry index holds exactly those).
    pub fn pending_count(&self) -> u64 {
        self.inner.expiry.len() as u64
    }

    /// How many holds are pending, and since when the oldest has waited.
    pub fn pending_overview(&self) -> Result<(u64, Option<jiff::Timestamp>), StoreError> {
        let mut depth = 0;
        let mut oldest: Option<jiff::Timestamp> = None;
        for key in self.inner.expiry.iter().keys() {
            let key = key?;
            depth += 1;
            if let Some(hold) = self.get_by_key(&key[8..])? {
                oldest = Some(oldest.map_or(hold.created_at, |o| o.min(hold.created_at)));
            }
        }
        Ok((depth, oldest))
    }

    /// Audit records with sequence numbers after `after`, oldest first.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.inner
            .audit
            .range(start..)
            .take(limit.clamp(1, 1000))
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Checks the audit chain.
    pub fn verify_audit(&self) -> Result<u64, audit::VerifyError> {
        audit::verify(&self.inner.audit)
    }

    /// Keeps a page session under `sid_hash` (a hash of its id: ids
    /// themselves are never stored).
    pub async fn session_put(&self, sid_hash: &str, session: &Session) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inner.meta.insert(session_key(sid_hash), bytes)?;
        self.flush().await
    }

    /// The session kept under `sid_hash`, live or not.
    pub fn session_get(&self, sid_hash: &str) -> Result<Option<Session>, StoreError> {
        self.inner
            .meta
            .get(session_key(sid_hash))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn session_remove(&self, sid_hash: &str) -> Result<(), StoreError> {
        self.inner.meta.remove(session_key(sid_hash))?;
        self.flush().await
    }

    /// The SHA-256 of the admin token made on first start, when there is one.
    pub fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self
            .inner
            .meta
            .get(ADMIN_TOKEN_KEY)?
            .and_then(|h| <[u8; 32]>::try_from(&h[..]).ok()))
    }

    pub async fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.inner.meta.insert(ADMIN_TOKEN_KEY, &hash[..])?;
        self.flush().await
    }

    /// The sequence number of the newest audit record (0 when none).
    pub fn last_audit_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .inner
            .audit
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(&k[..]).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The last audit record already turned into notifications. On the
    /// first call it starts at the newest record, so a store that predates
    /// notifications does not replay its whole history to the sinks.
    pub fn notify_cursor(&self) -> Result<u64, StoreError> {
        if let Some(v) = self.inner.meta.get(NOTIFY_CURSOR)?
            && let Ok(bytes) = <[u8; 8]>::try_from(&v[..])
        {
            return Ok(u64::from_be_bytes(bytes));
        }
        let head = self.last_audit_seq()?;
        let cursor = self.inner.meta.fetch_and_update(NOTIFY_CURSOR, |old| {
            Some(old.map_or_else(|| head.to_be_bytes().to_vec(), <[u8]>::to_vec))
        })?;
        Ok(match cursor {
            Some(v) => <[u8; 8]>::try_from(&v[..]).map_or(head, u64::from_be_bytes),
            None => head,
        })
    }

    /// Queues deliveries, due now, and moves the notification cursor to
    /// `cursor` in the same transaction: an audit record is turned into
    /// deliveries exactly once, even across a crash.
    pub fn enqueue(&self, deliveries: &[OutboxItem], cursor: u64) -> Result<(), StoreError> {
        use sled::Transactional;
        let due = jiff::Timestamp::now();
        let values = deliveries
            .iter()
            .map(OutboxItem::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let ids = deliveries
            .iter()
            .map(|_| self.inner.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        (&self.inner.outbox, &self.inner.meta).transaction(|(outbox, meta)| {
            for (value, id) in values.iter().zip(&ids) {
                outbox.insert(&outbox_key(due, *id)[..], value.as_slice())?;
            }
            meta.insert(NOTIFY_CURSOR, &cursor.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<String>>(())
        })?;
        Ok(())
    }

    /// Deliveries due at `now`, soonest first: up to `limit` that `take`
    /// accepts (asked with each one's key and receiver), looking at no more
    /// than `scan` entries, so that deliveries the caller cannot send yet
    /// never hide the ones it can. An entry whose receiver cannot be read
    /// is always taken, with no item, for the caller to drop.
    pub fn outbox_due(
        &self,
        now: jiff::Timestamp,
        limit: usize,
        scan: usize,
        mut take: impl FnMut(&OutboxKey, &str) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let end = outbox_key(now, u64::MAX);
        let mut out = Vec::new();
        for entry in self.inner.outbox.range(..=&end[..]).take(scan) {
            let (k, v) = entry?;
            // Keys are only ever written by `outbox_key`.
            let Ok(key) = <[u8; 16]>::try_from(&k[..]).map(OutboxKey) else {
                continue;
            };
            let item = match split_receiver(&v) {
                Some((receiver, _)) if !take(&key, receiver) => continue,
                Some((receiver, payload)) => Some(OutboxItem {
                    receiver: receiver.to_owned(),
                    payload: payload.to_vec(),
                }),
                None => None,
            };
            out.push(OutboxEntry { key, item });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// When the soonest delivery is due.
    pub fn outbox_next_due(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self.inner.outbox.first()?.and_then(|(k, _)| key_time(&k)))
    }

    /// Deliveries waiting, in flight included.
    pub fn outbox_len(&self) -> u64 {
        self.inner.outbox.len() as u64
    }

    /// Moves a delivery to `at` with new contents, atomically; the new key,
    /// or `None` when it is no longer at `key` (then nothing changes).
    pub fn outbox_reschedule(
        &self,
        key: &OutboxKey,
        at: jiff::Timestamp,
        delivery: &OutboxItem,
    ) -> Result<Option<OutboxKey>, StoreError> {
        let value = delivery.to_value()?;
        let new = outbox_key(at, key.id());
        let moved = self.inner.outbox.transaction(|outbox| {
            if outbox.remove(&key.0[..])?.is_none() {
                return Ok(false);
            }
            outbox.insert(&new[..], value.as_slice())?;
            Ok::<_, ConflictableTransactionError<String>>(true)
        })?;
        Ok(moved.then_some(OutboxKey(new)))
    }

    /// Forgets a delivery: sent, or given up.
    pub fn outbox_remove(&self, key: &OutboxKey) -> Result<(), StoreError> {
        self.inner.outbox.remove(&key.0[..])?;
        Ok(())
    }

    /// Writes `record` over the one with its sequence number, as given:
    /// no hash, no chain. Only for tests that tamper with the log to see
    /// [`Store::verify_audit`] find it; the log is otherwise append-only.
    #[doc(hidden)]
    pub fn overwrite_audit_record(&self, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inner.audit.insert(record.seq.to_be_bytes(), bytes)?;
        Ok(())
    }
}

const NOTIFY_CURSOR: &[u8] = b"notify_cursor";
const ADMIN_TOKEN_KEY: &[u8] = b"admin_token_sha256";

fn session_key(sid_hash: &str) -> String {
    format!("session:{sid_hash}")
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
pub struct OutboxKey([u8; 16]);

impl OutboxKey {
    /// The delivery's id: unique, and the same across every retry.
    pub fn id(&self) -> u64 {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(id)
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

impl OutboxItem {
    /// The stored form: the receiver's name (two bytes of length, then the
    /// name) ahead of the payload.
    fn to_value(&self) -> Result<Vec<u8>, StoreError> {
        let name = self.receiver.as_bytes();
        let len = u16::try_from(name.len())
            .map_err(|_| StoreError::Corrupt("notification sink name too long".into()))?;
        let mut out = Vec::with_capacity(2 + name.len() + self.payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.payload);
        Ok(out)
    }
}

/// The receiver's name and the payload of a stored outbox value.
fn split_receiver(value: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::from(u16::from_be_bytes(value.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(value.get(2..2 + len)?).ok()?;
    Some((name, &value[2 + len..]))
}

/// A delivery found due: its key, and what it carries (`None` when the
/// stored entry is unreadable).
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub key: OutboxKey,
    pub item: Option<OutboxItem>,
}

/// An outbox key: due time in milliseconds, then a unique id.
fn outbox_key(at: jiff::Timestamp, id: u64) -> [u8; 16] {
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The time in a time index key.
fn key_time(k: &[u8]) -> Option<jiff::Timestamp> {
    let ms = u64::from_be_bytes(<[u8; 8]>::try_from(k.get(..8)?).ok()?);
    jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// The hold keys of a time index up to and including `now`.
fn due_keys(index: &Tree, now: jiff::Timestamp) -> Vec<[u8; 16]> {
    let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let end = now_ms.saturating_add(1).to_be_bytes();
    index
        .range(..&end[..])
        .filter_map(|item| item.ok())
        .filter_map(|(k, _)| <[u8; 16]>::try_from(&k[8..]).ok())
        .collect()
}

/// Does an identical request's hold still answer for a retry?
fn stands(hold: &Hold) -> bool {
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

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock_at(ms: Arc<std::sync::atomic::AtomicI64>) -> Clock {
        Arc::new(move || {
            jiff::Timestamp::from_millisecond(ms.load(std::sync::atomic::Ordering::SeqCst))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
    }

    fn hold(store: &Store, agent: &str, n: u32, window_secs: i64) -> Hold {
        let now = store.now();
        Hold {
            id: uuid::Uuid::now_v7().to_string(),
            state: State::Pending,
            rule: "mail-send".into(),
            label: "Outbound client message".into(),
            summary: String::new(),
            agent: agent.into(),
            agent_label: None,
            trigger: String::new(),
            method: "POST".into(),
            url: "https://mail.test/send".into(),
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body_size: 0,
            content_type: None,
            created_at: now,
            expires_at: now + jiff::SignedDuration::from_secs(window_secs),
            decided_at: None,
            decided_by: None,
            note: None,
            reason: None,
            edited: false,
            sending: false,
            response: None,
            error: None,
            status_token: crate::holds::random_token(),
            fingerprint: format!("{agent}-{n}"),
            idempotency_key: Some(format!("key-{n}")),
            replayed: false,
            max_wait_secs: 0,
            reviewers: Vec::new(),
            backup: Vec::new(),
            escalate_at: None,
            escalated_at: None,
        }
    }

    async fn create(store: &Store, h: Hold, max: u64) -> Result<Created, StoreError> {
        store.create(h, Bytes::new(), max).await
    }

    #[tokio::test]
    async fn the_pending_cap_counts_each_agent_and_frees_a_place_on_every_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(std::sync::atomic::AtomicI64::new(
            jiff::Timestamp::now().as_millisecond(),
        ));
        let store = Store::open(dir.path(), clock_at(now.clone())).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            match create(&store, hold(&store, "a", n, 60 + i64::from(n)), 3).await {
                Ok(Created::New(h)) => ids.push(h.id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(store.pending_of("a").unwrap(), 3);
        match create(&store, hold(&store, "a", 9, 60), 3).await {
            Err(StoreError::TooManyPending {
                max: 3,
                soonest_expiry: Some(at),
            }) => assert_eq!(at, store.get(&ids[0]).unwrap().unwrap().expires_at),
            other => panic!("{other:?}"),
        }
        // An identical request is not a new hold: it is never refused.
        assert!(matches!(
            create(&store, hold(&store, "a", 1, 60), 3).await,
            Ok(Created::Existing(h)) if h.id == ids[1]
        ));
        // Another agent has its own count.
        assert!(matches!(
            create(&store, hold(&store, "b", 0, 60), 3).await,
            Ok(Created::New(_))
        ));
        assert_eq!(store.pending_of("b").unwrap(), 1);

        store.dismiss(&ids[0], "alice", None).await.unwrap();
        assert_eq!(store.pending_of("a").unwrap(), 2);
        store.approve(&ids[1], "alice", None, None).await.unwrap();
        assert_eq!(store.pending_of("a").unwrap(), 1);
        now.fetch_add(120_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.expire_due().await.unwrap().len(), 2);
        assert_eq!(store.pending_of("a").unwrap(), 0);
        assert_eq!(store.pending_of("b").unwrap(), 0);
        assert!(matches!(
            create(&store, hold(&store, "a", 9, 60), 3).await,
            Ok(Created::New(_))
        ));
    }

    #[tokio::test]
    async fn an_idempotency_key_names_one_request_of_one_agent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), system_clock()).unwrap();
        let Ok(Created::New(first)) = create(&store, hold(&store, "a", 1, 60), 20).await else {
            panic!("not created")
        };
        let mut changed = hold(&store, "a", 2, 60);
        changed.idempotency_key = first.idempotency_key.clone();
        assert!(matches!(
            create(&store, changed, 20).await,
            Err(StoreError::IdempotencyKeyReused)
        ));
        assert_eq!(store.pending_of("a").unwrap(), 1, "nothing stored");
        // Another agent's use of the same key is its own.
        let mut other = hold(&store, "b", 1, 60);
        other.idempotency_key = first.idempotency_key.clone();
        assert!(matches!(create(&store, other, 20).await, Ok(Created::New(h)) if h.id != first.id));
    }

    #[tokio::test]
    async fn recovery_counts_pending_holds_the_index_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), system_clock()).unwrap();
        for n in 0..2 {
            create(&store, hold(&store, "a", n, 60), 20).await.unwrap();
        }
        // As a store written before the per-agent index would be.
        store.inner.agents.clear().unwrap();
        assert_eq!(store.pending_of("a").unwrap(), 0);
        store.recover().await.unwrap();
        assert_eq!(store.pending_of("a").unwrap(), 2);
        store.recover().await.unwrap();
        assert_eq!(store.pending_of("a").unwrap(), 2, "recovery is idempotent");
    }

    #[test]
    fn outbox_values_name_their_receiver_ahead_of_the_payload() {
        let item = OutboxItem {
            receiver: "reviewer:alice".into(),
            payload: b"{}".to_vec(),
        };
        let value = item.to_value().unwrap();
        assert_eq!(value, b"\x00\x0ereviewer:alice{}");
        assert_eq!(split_receiver(&value), Some(("reviewer:alice", &b"{}"[..])));
        assert_eq!(split_receiver(b"\x00"), None);
        assert_eq!(split_receiver(b"\x00\x09short"), None);
    }

    #[test]
    fn outbox_deliveries_keep_their_id_when_rescheduled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), system_clock()).unwrap();
        let item = |receiver: &str, payload: &[u8]| OutboxItem {
            receiver: receiver.into(),
            payload: payload.to_vec(),
        };
        store
            .enqueue(&[item("a", b"1"), item("b", b"2")], 7)
            .unwrap();
        assert_eq!(store.notify_cursor().unwrap(), 7);
        assert_eq!(store.outbox_len(), 2);
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let due = store.outbox_due(later, 10, 10, |_, r| r == "b").unwrap();
        assert_eq!(due.len(), 1);
        let entry = &due[0];
        assert_eq!(entry.item, Some(item("b", b"2")));
        let far = later + jiff::SignedDuration::from_secs(3600);
        let moved = store
            .outbox_reschedule(&entry.key, far, &item("b", b"3"))
            .unwrap()
            .unwrap();
        assert_eq!(moved.id(), entry.key.id());
        assert_ne!(moved, entry.key);
        assert_eq!(
            store
                .outbox_reschedule(&entry.key, far, &item("b", b"4"))
                .unwrap(),
            None,
            "a key already moved is not moved again"
        );
        let due = store.outbox_due(later, 10, 10, |_, _| true).unwrap();
        assert_eq!(due.len(), 1, "the rescheduled delivery is not due yet");
        store.outbox_remove(&moved).unwrap();
        store.outbox_remove(&due[0].key).unwrap();
        assert_eq!(store.outbox_len(), 0);
    }

    #[tokio::test]
    async fn sessions_and_the_admin_token_hash_keep_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), system_clock()).unwrap();
        let session = Session {
            reviewer: "alice".into(),
            admin: false,
            csrf: "c".into(),
            expires_at: jiff::Timestamp::UNIX_EPOCH,
        };
        assert_eq!(store.session_get("abc").unwrap(), None);
        store.session_put("abc", &session).await.unwrap();
        assert_eq!(store.session_get("abc").unwrap(), Some(session));
        assert!(store.inner.meta.get("session:abc").unwrap().is_some());
        store.session_remove("abc").await.unwrap();
        assert_eq!(store.session_get("abc").unwrap(), None);

        assert_eq!(store.admin_token_hash().unwrap(), None);
        store
            .inner
            .meta
            .insert(ADMIN_TOKEN_KEY, &b"short"[..])
            .unwrap();
        assert_eq!(store.admin_token_hash().unwrap(), None, "not a hash");
        store.set_admin_token_hash(&[7; 32]).await.unwrap();
        assert_eq!(store.admin_token_hash().unwrap(), Some([7; 32]));
        assert_eq!(
            store.inner.meta.get("admin_token_sha256").unwrap().unwrap(),
            &[7u8; 32][..]
        );
    }
}
