//! The audit log: one record per event in a hold's life, numbered in order
//! and chained by SHA-256 over the previous record, so that any edit, gap or
//! reordering is found by [`verify`] (through the store).
//!
//! Records are written only inside a store backend's transactions, together
//! with the state change they describe; this module makes and checks them,
//! never writes on its own and never records credentials.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hex;

/// The hash that stands before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// The fields of a record its writer chooses.
pub(super) struct Entry<'a> {
    pub(super) event: &'a str,
    pub(super) hold: &'a str,
    pub(super) rule: &'a str,
    pub(super) actor: &'a str,
    pub(super) detail: serde_json::Value,
}

/// The record that follows the chain's head (`None` before the first
/// record): numbered next and hashed over the head's hash. Each backend
/// calls it inside the transaction that holds the head, and stores the
/// record and the new head with the state change it describes.
pub(super) fn next(head: Option<(u64, &str)>, at: jiff::Timestamp, entry: Entry<'_>) -> Record {
    let (seq, prev) = match head {
        Some((seq, hash)) => (seq + 1, hash.to_owned()),
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
    record
}

/// Why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {reason}")]
pub struct VerifyError {
    pub seq: u64,
    pub reason: String,
}

/// Checks a chain record by record, in sequence order, wherever the
/// records come from.
#[derive(Debug)]
pub(super) struct Verifier {
    expected_seq: u64,
    prev: String,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            expected_seq: 1,
            prev: GENESIS.to_owned(),
        }
    }
}

impl Verifier {
    /// The next record, stored under `key_seq`.
    pub(super) fn check(&mut self, key_seq: u64, record: Record) -> Result<(), VerifyError> {
        let fail = |reason: String| VerifyError {
            seq: key_seq,
            reason,
        };
        if key_seq != self.expected_seq || record.seq != key_seq {
            return Err(fail(format!(
                "expected sequence number {}, found {} (key {key_seq})",
                self.expected_seq, record.seq
            )));
        }
        if record.prev != self.prev {
            return Err(fail("does not follow the record before it".into()));
        }
        if record.compute_hash() != record.hash {
            return Err(fail("its content does not match its hash".into()));
        }
        self.prev = record.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// A record that could not be read where `seq` was expected.
    pub(super) fn unreadable(
        &self,
        seq: Option<u64>,
        reason: impl std::fmt::Display,
    ) -> VerifyError {
        VerifyError {
            seq: seq.unwrap_or(self.expected_seq),
            reason: format!("unreadable: {reason}"),
        }
    }

    /// How many records were checked.
    pub(super) fn checked(&self) -> u64 {
        self.expected_seq - 1
    }
}
