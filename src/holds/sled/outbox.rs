//! The sled store's notification outbox and small records.
//!
//! `outbox` keys are due time ‖ id (see [`OutboxKey`]), so the soonest
//! delivery comes first; a value is the receiver's name (two bytes of
//! length, then the name) ahead of the payload, which is never read here.
//! `meta` holds the notification cursor, page sessions under
//! `session:<hash of the id>`, and the admin token's hash.

use sled::transaction::ConflictableTransactionError;

use super::SledStore;
use crate::holds::store::{
    MessageRef, Outbox, OutboxEntry, OutboxItem, OutboxKey, Records, Session, StoreError, Take,
};

const NOTIFY_CURSOR: &[u8] = b"notify_cursor";
const ADMIN_TOKEN_KEY: &[u8] = b"admin_token_sha256";

fn session_key(sid_hash: &str) -> String {
    format!("session:{sid_hash}")
}

/// The stored form of a delivery.
fn to_value(item: &OutboxItem) -> Result<Vec<u8>, StoreError> {
    let name = item.receiver.as_bytes();
    let len = u16::try_from(name.len())
        .map_err(|_| StoreError::Corrupt("notification sink name too long".into()))?;
    let mut out = Vec::with_capacity(2 + name.len() + item.payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&item.payload);
    Ok(out)
}

/// The receiver's name and the payload of a stored outbox value.
fn split_receiver(value: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::from(u16::from_be_bytes(value.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(value.get(2..2 + len)?).ok()?;
    Some((name, &value[2 + len..]))
}

fn read_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

impl Outbox for SledStore {
    async fn notify_cursor(&self) -> Result<u64, StoreError> {
        if let Some(v) = self.meta.get(NOTIFY_CURSOR)?
            && let Some(cursor) = read_u64(&v)
        {
            return Ok(cursor);
        }
        let head = crate::holds::store::AuditLog::last_audit_seq(self).await?;
        let cursor = self.meta.fetch_and_update(NOTIFY_CURSOR, |old| {
            Some(old.map_or_else(|| head.to_be_bytes().to_vec(), <[u8]>::to_vec))
        })?;
        Ok(cursor.and_then(|v| read_u64(&v)).unwrap_or(head))
    }

    async fn enqueue(
        &self,
        deliveries: &[OutboxItem],
        from: u64,
        to: u64,
        now: jiff::Timestamp,
    ) -> Result<bool, StoreError> {
        use sled::Transactional;
        let values = deliveries
            .iter()
            .map(to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let ids = deliveries
            .iter()
            .map(|_| self.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        let moved = (&self.outbox, &self.meta).transaction(|(outbox, meta)| {
            let at = meta.get(NOTIFY_CURSOR)?.and_then(|v| read_u64(&v));
            if at.is_some_and(|at| at != from) {
                return Ok(false);
            }
            for (value, id) in values.iter().zip(&ids) {
                outbox.insert(&OutboxKey::new(now, *id).0[..], value.as_slice())?;
            }
            meta.insert(NOTIFY_CURSOR, &to.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<String>>(true)
        })?;
        Ok(moved)
    }

    async fn outbox_due(
        &self,
        now: jiff::Timestamp,
        limit: usize,
        scan: usize,
        take: Take<'_>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let end = OutboxKey::new(now, u64::MAX);
        let mut out = Vec::new();
        for entry in self.outbox.range(..=&end.0[..]).take(scan) {
            let (k, v) = entry?;
            // Keys are only ever written by `OutboxKey::new`.
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

    async fn outbox_next_due(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self.outbox.first()?.and_then(|(k, _)| super::key_time(&k)))
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.outbox.len() as u64)
    }

    async fn outbox_reschedule(
        &self,
        key: &OutboxKey,
        at: jiff::Timestamp,
        delivery: &OutboxItem,
    ) -> Result<Option<OutboxKey>, StoreError> {
        let value = to_value(delivery)?;
        let new = OutboxKey::new(at, key.id());
        let moved = self.outbox.transaction(|outbox| {
            if outbox.remove(&key.0[..])?.is_none() {
                return Ok(false);
            }
            outbox.insert(&new.0[..], value.as_slice())?;
            Ok::<_, ConflictableTransactionError<String>>(true)
        })?;
        Ok(moved.then_some(new))
    }

    async fn outbox_remove(&self, key: &OutboxKey) -> Result<(), StoreError> {
        self.outbox.remove(&key.0[..])?;
        Ok(())
    }
}

fn slack_key(hold: &str) -> String {
    format!("slack:{hold}")
}

impl Records for SledStore {
    async fn slack_messages(&self, hold: &str) -> Result<Vec<MessageRef>, StoreError> {
        match self.meta.get(slack_key(hold))? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    async fn add_slack_message(&self, hold: &str, message: &MessageRef) -> Result<(), StoreError> {
        self.meta.update_and_fetch(slack_key(hold), |old| {
            let mut list: Vec<MessageRef> = old
                .and_then(|v| serde_json::from_slice(v).ok())
                .unwrap_or_default();
            if !list.contains(message) {
                list.push(message.clone());
            }
            serde_json::to_vec(&list)
                .ok()
                .or_else(|| old.map(<[u8]>::to_vec))
        })?;
        self.flush_now().await
    }

    async fn session_put(&self, sid_hash: &str, session: &Session) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.meta.insert(session_key(sid_hash), bytes)?;
        self.flush_now().await
    }

    async fn session_get(&self, sid_hash: &str) -> Result<Option<Session>, StoreError> {
        self.meta
            .get(session_key(sid_hash))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn session_remove(&self, sid_hash: &str) -> Result<(), StoreError> {
        self.meta.remove(session_key(sid_hash))?;
        self.flush_now().await
    }

    async fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self
            .meta
            .get(ADMIN_TOKEN_KEY)?
            .and_then(|h| <[u8; 32]>::try_from(&h[..]).ok()))
    }

    async fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        let stored = self
            .meta
            .update_and_fetch(ADMIN_TOKEN_KEY, |old| match old {
                Some(old) if old.len() == 32 => Some(old.to_vec()),
                _ => Some(hash.to_vec()),
            })?;
        self.flush_now().await?;
        stored
            .and_then(|v| <[u8; 32]>::try_from(&v[..]).ok())
            .ok_or_else(|| StoreError::Corrupt("the stored admin token hash".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_values_name_their_receiver_ahead_of_the_payload() {
        let item = OutboxItem {
            receiver: "reviewer:alice".into(),
            payload: b"{}".to_vec(),
        };
        let value = to_value(&item).unwrap();
        assert_eq!(value, b"\x00\x0ereviewer:alice{}");
        assert_eq!(split_receiver(&value), Some(("reviewer:alice", &b"{}"[..])));
        assert_eq!(split_receiver(b"\x00"), None);
        assert_eq!(split_receiver(b"\x00\x09short"), None);
    }

    #[tokio::test]
    async fn sessions_and_the_admin_token_hash_keep_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let session = Session {
            reviewer: "alice".into(),
            admin: false,
            csrf: "c".into(),
            expires_at: jiff::Timestamp::UNIX_EPOCH,
        };
        store.session_put("abc", &session).await.unwrap();
        assert!(store.meta.get("session:abc").unwrap().is_some());
        store.meta.insert(ADMIN_TOKEN_KEY, &b"short"[..]).unwrap();
        assert_eq!(store.admin_token_hash().await.unwrap(), None, "not a hash");
        assert_eq!(store.set_admin_token_hash(&[7; 32]).await.unwrap(), [7; 32]);
        assert_eq!(store.set_admin_token_hash(&[8; 32]).await.unwrap(), [7; 32]);
        assert_eq!(
            store.meta.get("admin_token_sha256").unwrap().unwrap(),
            &[7u8; 32][..]
        );
    }
}
