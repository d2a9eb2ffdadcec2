//! The embedded hold store on sled, the default backend: one directory,
//! every transition one sled transaction with its audit record, flushed to
//! disk before the caller acts on it.
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
//! hash), and `outbox` (notification deliveries, keyed by when they are
//! next due; see [`outbox`]). sled types never leave this module.
//!
//! One process owns the directory, so every claim found at start-up is this
//! process's own from before a crash.

mod outbox;

use std::path::Path;

use bytes::Bytes;
use sled::Tree;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

use super::audit::{self, Entry, Record, VerifyError};
use super::store::{
    AuditLog, Created, Decision, Lifecycle, ListFilter, Outcome, Recovered, SYSTEM, StoreError,
    Sweep,
};
use super::{Hold, State};

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
    } else if let Some(needed) = reason.strip_prefix(ALREADY_APPROVED) {
        needed.parse().map_or_else(
            |_| StoreError::Corrupt(reason.into()),
            |needed| StoreError::AlreadyApproved { needed },
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
const ALREADY_APPROVED: &str = "already approved: ";
const HEAD_KEY: &[u8] = b"audit_head";

fn abort<T>(reason: impl Into<String>) -> ConflictableTransactionResult<T, String> {
    Err(ConflictableTransactionError::Abort(reason.into()))
}

/// The sled store.
pub(crate) struct SledStore {
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
            super::store::purge_credentials(hold);
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

    /// Appends the record that follows the chain's head, in this
    /// transaction.
    fn audit(
        &self,
        at: jiff::Timestamp,
        event: &str,
        hold: &Hold,
        actor: &str,
        detail: serde_json::Value,
    ) -> ConflictableTransactionResult<Record, String> {
        let head: Option<Head> = self
            .meta
            .get(HEAD_KEY)?
            .and_then(|v| serde_json::from_slice(&v).ok());
        let record = audit::next(
            head.as_ref().map(|h| (h.seq, h.hash.as_str())),
            at,
            Entry {
                event,
                hold: &hold.id,
                rule: &hold.rule,
                actor,
                detail,
            },
        );
        let (Ok(bytes), Ok(head)) = (
            serde_json::to_vec(&record),
            serde_json::to_vec(&Head {
                seq: record.seq,
                hash: record.hash.clone(),
            }),
        ) else {
            return abort("audit record not serialisable");
        };
        self.audit.insert(&record.seq.to_be_bytes(), bytes)?;
        self.meta.insert(HEAD_KEY, head)?;
        Ok(record)
    }
}

/// The chain's head, kept in `meta`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Head {
    seq: u64,
    hash: String,
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

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SledStore {
    /// Opens (or creates) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(SledStore {
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
        })
    }

    /// sled 0.34's `flush_async` can leave concurrent callers waiting
    /// forever (spacejam/sled#1308), so the blocking flush runs on the
    /// blocking pool; concurrent flushes still share one fsync inside sled.
    async fn flush_now(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
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
        let r = (
            &self.holds,
            &self.bodies,
            &self.expiry,
            &self.escalation,
            &self.active,
            &self.lookup,
            &self.tokens,
            &self.agents,
            &self.audit,
            &self.meta,
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

    fn get_by_key(&self, key: &[u8]) -> Result<Option<Hold>, StoreError> {
        match self.holds.get(key)? {
            Some(v) => decode(&v).map(Some).map_err(StoreError::Corrupt),
            None => Ok(None),
        }
    }

    /// The time index a sweep reads.
    fn index(&self, sweep: Sweep) -> &Tree {
        match sweep {
            Sweep::Escalate => &self.escalation,
            Sweep::Expire => &self.expiry,
        }
    }
}

impl Lifecycle for SledStore {
    async fn create(
        &self,
        hold: Hold,
        body: Bytes,
        max_pending: u64,
        now: jiff::Timestamp,
    ) -> Result<(Created, Option<Record>), StoreError> {
        let key = id_key(&hold.id).ok_or_else(|| StoreError::Corrupt("bad hold id".into()))?;
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
                if super::store::stands(&existing) {
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
            let detail = super::store::held_detail(&hold);
            let record = tx.audit(now, "held", &hold, SYSTEM, detail)?;
            Ok((Created::New(hold), Some(record)))
        })?;
        self.flush_now().await?;
        Ok(result)
    }

    async fn soonest_expiry_of(&self, agent: &str) -> Result<Option<jiff::Timestamp>, StoreError> {
        let prefix = agent_prefix(b'p', agent);
        Ok(match self.agents.scan_prefix(&prefix).keys().next() {
            Some(k) => k?.get(prefix.len()..).and_then(key_time),
            None => None,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        match id_key(id) {
            Some(key) => self.get_by_key(&key),
            None => Ok(None),
        }
    }

    async fn body(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(key) = id_key(id) else {
            return Ok(None);
        };
        Ok(self.bodies.get(key)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    async fn by_token(&self, token: &str) -> Result<Option<Hold>, StoreError> {
        match self.tokens.get(token.as_bytes())? {
            Some(key) => self.get_by_key(&key),
            None => Ok(None),
        }
    }

    async fn list(&self, filter: &ListFilter) -> Result<(Vec<Hold>, Option<String>), StoreError> {
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
                Some(c) => self.expiry.range::<&[u8], _>((
                    std::ops::Bound::Excluded(c.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
                None => self.expiry.iter(),
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
                Some(c) => self.holds.range::<&[u8], _>(..c.as_slice()).rev(),
                None => self.holds.iter().rev(),
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

    async fn pending_of(&self, agent: &str) -> Result<u64, StoreError> {
        Ok(read_count(self.agents.get(agent_count_key(agent))?))
    }

    async fn decide(
        &self,
        id: &str,
        who: &str,
        decision: &Decision,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let done = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return abort("not found");
            };
            if hold.state != State::Pending {
                return abort(format!("not pending: {}", hold.state));
            }
            let before = match decision.edited() {
                Some(body) => {
                    let old = tx.bodies.get(&key[..])?.unwrap_or_default();
                    tx.bodies.insert(&key[..], body.as_ref())?;
                    Some(old)
                }
                None => None,
            };
            let (event, detail) = match decision.apply(&mut hold, who, now, before.as_deref()) {
                Ok(applied) => applied,
                Err(StoreError::AlreadyApproved { needed }) => {
                    return abort(format!("{ALREADY_APPROVED}{needed}"));
                }
                Err(e) => return abort(e.to_string()),
            };
            tx.put(&mut hold, &key)?;
            let record = tx.audit(now, event, &hold, who, detail)?;
            Ok((hold, record))
        })?;
        self.flush_now().await?;
        Ok(done)
    }

    async fn claim(&self, id: &str, _instance: &str) -> Result<Option<(Hold, Bytes)>, StoreError> {
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
            self.flush_now().await?;
        }
        Ok(claimed)
    }

    async fn finish(
        &self,
        id: &str,
        outcome: &Outcome,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError> {
        let key = id_key(id).ok_or(StoreError::NotFound)?;
        let done = self.transact(|tx| {
            let Some(mut hold) = tx.get(&key)? else {
                return abort("not found");
            };
            if hold.state != State::Approved || !hold.sending {
                return abort(format!(
                    "hold {} was not being sent ({})",
                    hold.id, hold.state
                ));
            }
            let detail = super::store::settle(&mut hold, outcome);
            tx.put(&mut hold, &key)?;
            let record = tx.audit(now, hold.state.as_str(), &hold, SYSTEM, detail)?;
            Ok((hold, record))
        })?;
        self.flush_now().await?;
        Ok(done)
    }

    async fn mark_replayed(&self, id: &str) -> Result<bool, StoreError> {
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
            self.flush_now().await?;
        }
        Ok(marked)
    }

    async fn next_due(&self, sweep: Sweep) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self.index(sweep).first()?.and_then(|(k, _)| key_time(&k)))
    }

    /// One transaction per hold the time index says is due, with its audit
    /// record; durable before anyone hears of it.
    async fn sweep(
        &self,
        sweep: Sweep,
        now: jiff::Timestamp,
    ) -> Result<Vec<(Hold, Record)>, StoreError> {
        let mut done = Vec::new();
        for key in due_keys(self.index(sweep), now) {
            let changed = self.transact(|tx| {
                let Some(mut hold) = tx.get(&key)? else {
                    return Ok(None);
                };
                let Some(detail) = sweep.step(&mut hold, now) else {
                    return Ok(None);
                };
                tx.put(&mut hold, &key)?;
                let record = tx.audit(now, sweep.event(), &hold, SYSTEM, detail)?;
                Ok(Some((hold, record)))
            })?;
            done.extend(changed);
        }
        if !done.is_empty() {
            self.flush_now().await?;
        }
        Ok(done)
    }

    /// Only at start-up: every claim then is this process's own from
    /// before it stopped.
    async fn recover(&self, now: jiff::Timestamp, starting: bool) -> Result<Recovered, StoreError> {
        let mut found = Recovered::default();
        if !starting {
            return Ok(found);
        }
        let keys: Vec<[u8; 16]> = self
            .active
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 16]>::try_from(&k[..]).ok())
            .collect();
        for key in keys {
            // Most active holds are pending and need nothing: read first,
            // transact only for the ones that change.
            let Some(hold) = self.get_by_key(&key)? else {
                continue;
            };
            if hold.state == State::Pending
                && !self.agents.contains_key(agent_pending_key(&hold, &key))?
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
                found.to_send.push(hold.id);
                continue;
            }
            let done = self.transact(|tx| {
                let Some(mut hold) = tx.get(&key)? else {
                    return Ok(None);
                };
                if hold.state != State::Approved || !hold.sending {
                    return Ok(None);
                }
                let detail = super::store::interrupt(&mut hold);
                tx.put(&mut hold, &key)?;
                let record = tx.audit(now, "interrupted", &hold, SYSTEM, detail)?;
                Ok(Some((hold, record)))
            })?;
            found.interrupted.extend(done);
        }
        self.flush_now().await?;
        Ok(found)
    }

    async fn since(&self, since: jiff::Timestamp) -> Result<Vec<Hold>, StoreError> {
        let mut out = Vec::new();
        for item in self.holds.iter().rev() {
            let (_, v) = item?;
            let hold = decode(&v).map_err(StoreError::Corrupt)?;
            if hold.created_at < since {
                // Ids are time-ordered: everything further is older.
                break;
            }
            out.push(hold);
        }
        Ok(out)
    }

    async fn pending_overview(&self) -> Result<(u64, Option<jiff::Timestamp>), StoreError> {
        let mut depth = 0;
        let mut oldest: Option<jiff::Timestamp> = None;
        for key in self.expiry.iter().keys() {
            let key = key?;
            depth += 1;
            if let Some(hold) = self.get_by_key(&key[8..])? {
                oldest = Some(oldest.map_or(hold.created_at, |o| o.min(hold.created_at)));
            }
        }
        Ok((depth, oldest))
    }

    /// The expiry index holds exactly the pending holds.
    async fn pending_count(&self) -> Result<u64, StoreError> {
        Ok(self.expiry.len() as u64)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_now().await
    }
}

impl AuditLog for SledStore {
    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.audit
            .range(start..)
            .take(limit.clamp(1, 1000))
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn last_audit_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .audit
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(&k[..]).ok())
            .map_or(0, u64::from_be_bytes))
    }

    async fn verify_audit(&self) -> Result<u64, VerifyError> {
        let mut verifier = audit::Verifier::default();
        for item in self.audit.iter() {
            let (key, value) = item.map_err(|e| verifier.unreadable(None, e))?;
            let key_seq = <[u8; 8]>::try_from(&key[..])
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let record: Record = serde_json::from_slice(&value).map_err(|e| VerifyError {
                seq: key_seq,
                reason: format!("not a record: {e}"),
            })?;
            verifier.check(key_seq, record)?;
        }
        Ok(verifier.checked())
    }

    async fn overwrite_audit_record(&self, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.audit.insert(record.seq.to_be_bytes(), bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(agent: &str, n: u32) -> Hold {
        let now = jiff::Timestamp::now();
        serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(), "state": "pending",
            "rule": "mail-send", "label": "l", "summary": "", "agent": agent,
            "trigger": "", "method": "POST", "url": "https://mail.test/send",
            "headers": [], "secret_headers": [], "body_size": 0, "created_at": now,
            "edited": false, "sending": false, "replayed": false, "max_wait_secs": 0,
            "expires_at": now + jiff::SignedDuration::from_secs(60),
            "status_token": crate::holds::random_token(),
            "fingerprint": format!("{agent}-{n}"),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn recovery_counts_pending_holds_the_index_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let now = jiff::Timestamp::now();
        for n in 0..2 {
            store
                .create(hold("a", n), Bytes::new(), 20, now)
                .await
                .unwrap();
        }
        // As a store written before the per-agent index would be.
        store.agents.clear().unwrap();
        assert_eq!(store.pending_of("a").await.unwrap(), 0);
        store.recover(now, true).await.unwrap();
        assert_eq!(store.pending_of("a").await.unwrap(), 2);
        store.recover(now, true).await.unwrap();
        assert_eq!(
            store.pending_of("a").await.unwrap(),
            2,
            "recovery is idempotent"
        );
    }
}
