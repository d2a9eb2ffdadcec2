//! The audit log: one record per event in a hold's life, numbered in order
//! and chained by SHA-256 over the previous record, so that any edit, gap or
//! reordering is found by [`verify`] (through the store).
//!
//! Records are written only inside the store's transactions, together with
//! the state change they describe; this module never writes on its own and
//! never records credentials.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::TransactionalTree;

use super::hex;

/// The hash that stands before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD_KEY: &[u8] = b"audit_head";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: jiff::Timestamp,
    /// held, approved, dismissed, expired, released, failed, interrupted.
    pub event: String,
    pub hold: String,
    pub rule: String,
    /// Who acted: a reviewer, or `airlock` for the system.
    pub actor: String,
    pub detail: serde_json::Value,
    /// The previous record's hash.
    pub prev: String,
    pub hash: String,
}

/// What the hash covers: everything but the hash itself.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: &'a jiff::Timestamp,
    event: &'a str,
    hold: &'a str,
    rule: &'a str,
    actor: &'a str,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

impl Record {
    pub fn compute_hash(&self) -> String {
        let hashed = Hashed {
            seq: self.seq,
            at: &self.at,
            event: &self.event,
            hold: &self.hold,
            rule: &self.rule,
            actor: &self.actor,
            detail: &self.detail,
            prev: &self.prev,
        };
        let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The fields of a record its writer chooses.
pub(super) struct Entry<'a> {
    pub(super) event: &'a str,
    pub(super) hold: &'a str,
    pub(super) rule: &'a str,
    pub(super) actor: &'a str,
    pub(super) detail: serde_json::Value,
}

/// Appends a record inside a transaction; the caller commits it with the
/// state change it describes.
pub(super) fn append(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    at: jiff::Timestamp,
    entry: Entry<'_>,
) -> sled::transaction::ConflictableTransactionResult<Record, String> {
    let head: Option<Head> = meta
        .get(HEAD_KEY)?
        .and_then(|v| serde_json::from_slice(&v).ok());
    let (seq, prev) = match head {
        Some(h) => (h.seq + 1, h.hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut record = Record {
        seq,
        at,
        event: entry.event.to_owned(),
        hold: entry.hold.to_owned(),
        rule: entry.rule.to_owned(),
        actor: entry.actor.to_owned(),
        detail: entry.detail,
        prev,
        hash: String::new(),
    };
    record.hash = record.compute_hash();
    let bytes = serde_json::to_vec(&record)
        .map_err(|e| sled::transaction::ConflictableTransactionError::Abort(e.to_string()))?;
    audit.insert(&seq.to_be_bytes(), bytes)?;
    let head = serde_json::to_vec(&Head {
        seq,
        hash: record.hash.clone(),
    })
    .map_err(|e| sled::transaction::ConflictableTransactionError::Abort(e.to_string()))?;
    meta.insert(HEAD_KEY, head)?;
    Ok(record)
}

/// Why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {reason}")]
pub struct VerifyError {
    pub seq: u64,
    pub reason: String,
}

/// Walks the whole chain; returns how many records it checked.
pub(super) fn verify(audit: &sled::Tree) -> Result<u64, VerifyError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    for item in audit.iter() {
        let (key, value) = item.map_err(|e| VerifyError {
            seq: expected_seq,
            reason: format!("unreadable: {e}"),
        })?;
        let key_seq = <[u8; 8]>::try_from(&key[..])
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let record: Record = serde_json::from_slice(&value).map_err(|e| VerifyError {
            seq: key_seq,
            reason: format!("not a record: {e}"),
        })?;
        let fail = |reason: String| VerifyError {
            seq: key_seq,
            reason,
        };
        if key_seq != expected_seq || record.seq != key_seq {
            return Err(fail(format!(
                "expected sequence number {expected_seq}, found {} (key {key_seq})",
                record.seq
            )));
        }
        if record.prev != prev {
            return Err(fail("does not follow the record before it".into()));
        }
        if record.compute_hash() != record.hash {
            return Err(fail("its content does not match its hash".into()));
        }
        prev = record.hash;
        expected_seq += 1;
    }
    Ok(expected_seq - 1)
}
