//! The audit log's reads, the notification outbox and small records on
//! PostgreSQL. Deliveries are moved between due times by compare-and-swap
//! on the time they were due, so of two instances taking one delivery, one
//! does; the cursor that feeds the outbox moves the same way.

use super::PgStore;
use crate::holds::audit::{self, Record, VerifyError};
use crate::holds::store::{
    AuditLog, MessageRef, Outbox, OutboxEntry, OutboxItem, OutboxKey, Records, Session, StoreError,
    Take,
};

const ADMIN_TOKEN_KEY: &str = "admin_token_sha256";

fn session_key(sid_hash: &str) -> String {
    format!("session:{sid_hash}")
}

fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Outbox times are kept to the millisecond, as keys carry them.
fn ms(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

fn key_of(due: jiff::Timestamp, id: i64) -> OutboxKey {
    OutboxKey::new(due, u64::try_from(id).unwrap_or(0))
}

impl AuditLog for PgStore {
    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        self.client()
            .await?
            .query(
                "SELECT record FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq(after), &limit],
            )
            .await?
            .iter()
            .map(|row| {
                serde_json::from_str(row.get(0)).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn last_audit_seq(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .await?
            .query_one("SELECT seq FROM audit_head", &[])
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Reads the chain in pages, so its length does not matter.
    async fn verify_audit(&self) -> Result<u64, VerifyError> {
        let mut verifier = audit::Verifier::default();
        let client = self
            .client()
            .await
            .map_err(|e| verifier.unreadable(None, e))?;
        let mut after = 0i64;
        loop {
            let rows = client
                .query(
                    "SELECT seq, record FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1000",
                    &[&after],
                )
                .await
                .map_err(|e| verifier.unreadable(None, StoreError::from(e)))?;
            let Some(last) = rows.last() else {
                return Ok(verifier.checked());
            };
            after = last.get(0);
            for row in &rows {
                let key: i64 = row.get(0);
                let key = u64::try_from(key).unwrap_or(0);
                let record: Record = serde_json::from_str(row.get(1)).map_err(|e| VerifyError {
                    seq: key,
                    reason: format!("not a record: {e}"),
                })?;
                verifier.check(key, record)?;
            }
        }
    }

    async fn overwrite_audit_record(&self, record: &Record) -> Result<(), StoreError> {
        let text = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client()
            .await?
            .execute(
                "UPDATE audit SET record = $2, hash = $3 WHERE seq = $1",
                &[&seq(record.seq), &text, &record.hash],
            )
            .await?;
        Ok(())
    }
}

impl Outbox for PgStore {
    /// Starts at 0 in a new database, which is where its chain starts.
    async fn notify_cursor(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .await?
            .query_one("SELECT seq FROM notify_cursor", &[])
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn enqueue(
        &self,
        deliveries: &[OutboxItem],
        from: u64,
        to: u64,
        now: jiff::Timestamp,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE notify_cursor SET seq = $2 WHERE seq = $1",
                &[&seq(from), &seq(to)],
            )
            .await?;
        if moved != 1 {
            return Ok(false);
        }
        let due = ms(now);
        for d in deliveries {
            tx.execute(
                "INSERT INTO outbox (receiver, due, payload) VALUES ($1, $2, $3)",
                &[&d.receiver, &due, &d.payload],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn outbox_due(
        &self,
        now: jiff::Timestamp,
        limit: usize,
        scan: usize,
        take: Take<'_>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let scan = i64::try_from(scan).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, receiver, due, payload FROM outbox WHERE due <= $1
                 ORDER BY due, id LIMIT $2",
                &[&now, &scan],
            )
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let key = key_of(row.get(2), row.get(0));
            let receiver: String = row.get(1);
            if !take(&key, &receiver) {
                continue;
            }
            out.push(OutboxEntry {
                key,
                item: Some(OutboxItem {
                    receiver,
                    payload: row.get(3),
                }),
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    async fn outbox_next_due(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT min(due) FROM outbox", &[])
            .await?
            .get(0))
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM outbox", &[])
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn outbox_reschedule(
        &self,
        key: &OutboxKey,
        at: jiff::Timestamp,
        delivery: &OutboxItem,
    ) -> Result<Option<OutboxKey>, StoreError> {
        let id = i64::try_from(key.id()).map_err(|_| StoreError::NotFound)?;
        let was = jiff::Timestamp::from_millisecond(key.due_ms())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at = ms(at);
        let moved = self
            .client()
            .await?
            .execute(
                "UPDATE outbox SET due = $3, payload = $4, receiver = $5
                 WHERE id = $1 AND due = $2",
                &[&id, &was, &at, &delivery.payload, &delivery.receiver],
            )
            .await?;
        Ok((moved == 1).then(|| key_of(at, id)))
    }

    async fn outbox_remove(&self, key: &OutboxKey) -> Result<(), StoreError> {
        let id = i64::try_from(key.id()).map_err(|_| StoreError::NotFound)?;
        self.client()
            .await?
            .execute("DELETE FROM outbox WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }
}

impl Records for PgStore {
    async fn slack_messages(&self, hold: &str) -> Result<Vec<MessageRef>, StoreError> {
        match self
            .client()
            .await?
            .query_opt(
                "SELECT value FROM records WHERE key = $1",
                &[&format!("slack:{hold}")],
            )
            .await?
        {
            Some(row) => {
                serde_json::from_slice(row.get(0)).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            None => Ok(Vec::new()),
        }
    }

    /// Read, extend and write under the row's lock, so two instances
    /// adding at once keep both.
    async fn add_slack_message(&self, hold: &str, message: &MessageRef) -> Result<(), StoreError> {
        let key = format!("slack:{hold}");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO records (key, value) VALUES ($1, '\\x5b5d') ON CONFLICT (key) DO NOTHING",
            &[&key],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT value FROM records WHERE key = $1 FOR UPDATE",
                &[&key],
            )
            .await?;
        let mut list: Vec<MessageRef> = serde_json::from_slice(row.get(0)).unwrap_or_default();
        if !list.contains(message) {
            list.push(message.clone());
        }
        let bytes = serde_json::to_vec(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "UPDATE records SET value = $2 WHERE key = $1",
            &[&key, &bytes],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_put(&self, sid_hash: &str, session: &Session) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client()
            .await?
            .execute(
                "INSERT INTO records (key, value, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                 expires_at = excluded.expires_at",
                &[&session_key(sid_hash), &bytes, &session.expires_at],
            )
            .await?;
        Ok(())
    }

    async fn session_get(&self, sid_hash: &str) -> Result<Option<Session>, StoreError> {
        self.client()
            .await?
            .query_opt(
                "SELECT value FROM records WHERE key = $1",
                &[&session_key(sid_hash)],
            )
            .await?
            .map(|row| {
                serde_json::from_slice(row.get(0)).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    async fn session_remove(&self, sid_hash: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM records WHERE key = $1 OR (expires_at < now() AND key LIKE 'session:%')",
                &[&session_key(sid_hash)],
            )
            .await?;
        Ok(())
    }

    async fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT value FROM records WHERE key = $1",
                &[&ADMIN_TOKEN_KEY],
            )
            .await?
            .and_then(|row| <[u8; 32]>::try_from(row.get::<_, &[u8]>(0)).ok()))
    }

    /// The first instance to store one keeps it: instances starting together
    /// agree on one admin token.
    async fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO records (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&ADMIN_TOKEN_KEY, &&hash[..]],
            )
            .await?;
        client
            .query_one(
                "SELECT value FROM records WHERE key = $1",
                &[&ADMIN_TOKEN_KEY],
            )
            .await?
            .get::<_, &[u8]>(0)
            .try_into()
            .map_err(|_| StoreError::Corrupt("the stored admin token hash".into()))
    }
}
