//! The hold lifecycle on PostgreSQL: each transition one transaction with
//! its audit record (see the module above for the locking order).

use bytes::Bytes;
use deadpool_postgres::GenericClient;

use super::{PgStore, append, decode, encode, put, uuid};
use crate::holds::audit::Record;
use crate::holds::store::{
    Created, Decision, Lifecycle, ListFilter, Outcome, Recovered, SYSTEM, StoreError, Sweep,
    held_detail, interrupt, settle, stands,
};
use crate::holds::{Hold, State};

/// How many due holds one sweep transaction takes.
const SWEEP_BATCH: i64 = 200;
/// An approved hold nobody claimed for this long is sent by whichever
/// instance sweeps first (its decider normally claims it at once).
const UNCLAIMED_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The newest hold of a lookup, locked.
async fn newest(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Hold>, StoreError> {
    match tx.query_opt(sql, params).await? {
        Some(row) => Ok(Some(decode(row.get(0))?)),
        None => Ok(None),
    }
}

/// The hold with this id, its row locked until the transaction ends.
async fn locked(tx: &impl GenericClient, id: &uuid::Uuid) -> Result<Option<Hold>, StoreError> {
    newest(tx, "SELECT doc FROM holds WHERE id = $1 FOR UPDATE", &[id]).await
}

/// A list cursor: `expires_at µs:id` for pending holds (the column's own
/// value, to its precision), the id otherwise.
fn pending_cursor(expires_at: jiff::Timestamp, hold: &Hold) -> String {
    format!("{}:{}", expires_at.as_microsecond(), hold.id)
}

impl Lifecycle for PgStore {
    async fn create(
        &self,
        hold: Hold,
        body: Bytes,
        max_pending: u64,
        now: jiff::Timestamp,
    ) -> Result<(Created, Option<Record>), StoreError> {
        let id = uuid(&hold.id).ok_or_else(|| StoreError::Corrupt("bad hold id".into()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One agent's new holds one at a time, across the fleet.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&hold.agent],
        )
        .await?;
        // The key first: reused for a different request it is refused even
        // when that request is itself another hold's retry.
        if let Some(key) = &hold.idempotency_key {
            let existing = newest(
                &tx,
                "SELECT doc FROM holds WHERE agent = $1 AND idempotency_key = $2
                 ORDER BY id DESC LIMIT 1",
                &[&hold.agent, key],
            )
            .await?;
            if let Some(existing) = existing {
                if existing.fingerprint != hold.fingerprint {
                    return Err(StoreError::IdempotencyKeyReused);
                }
                if stands(&existing) {
                    return Ok((Created::Existing(existing), None));
                }
            }
        }
        let existing = newest(
            &tx,
            "SELECT doc FROM holds WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1",
            &[&hold.fingerprint],
        )
        .await?;
        if let Some(existing) = existing
            && stands(&existing)
        {
            return Ok((Created::Existing(existing), None));
        }
        // Counted only up to the cap: the cost follows the cap, not the queue.
        let cap = i64::try_from(max_pending).unwrap_or(i64::MAX);
        let pending: i64 = tx
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM holds
                                        WHERE agent = $1 AND state = 'pending' LIMIT $2) p",
                &[&hold.agent, &cap],
            )
            .await?
            .get(0);
        if u64::try_from(pending).unwrap_or(0) >= max_pending {
            return Err(StoreError::TooManyPending {
                max: max_pending,
                soonest_expiry: None,
            });
        }
        let escalate_at = hold.escalate_at.filter(|_| hold.escalated_at.is_none());
        tx.execute(
            "INSERT INTO holds (id, state, rule, agent, created_at, expires_at, escalate_at,
                                status_token, fingerprint, idempotency_key, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &id,
                &hold.state.as_str(),
                &hold.rule,
                &hold.agent,
                &hold.created_at,
                &hold.expires_at,
                &escalate_at,
                &hold.status_token,
                &hold.fingerprint,
                &hold.idempotency_key,
                &encode(&hold)?,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO hold_bodies (hold_id, body) VALUES ($1, $2)",
            &[&id, &body.as_ref()],
        )
        .await?;
        let record = append(
            &tx,
            &self.instance,
            now,
            "held",
            &hold,
            SYSTEM,
            held_detail(&hold),
        )
        .await?;
        tx.commit().await?;
        Ok((Created::New(hold), Some(record)))
    }

    async fn soonest_expiry_of(&self, agent: &str) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT min(expires_at) FROM holds WHERE agent = $1 AND state = 'pending'",
                &[&agent],
            )
            .await?
            .get(0))
    }

    async fn get(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let Some(id) = uuid(id) else {
            return Ok(None);
        };
        newest(
            &self.client().await?,
            "SELECT doc FROM holds WHERE id = $1",
            &[&id],
        )
        .await
    }

    async fn body(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(id) = uuid(id) else {
            return Ok(None);
        };
        Ok(self
            .client()
            .await?
            .query_opt("SELECT body FROM hold_bodies WHERE hold_id = $1", &[&id])
            .await?
            .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }

    async fn by_token(&self, token: &str) -> Result<Option<Hold>, StoreError> {
        newest(
            &self.client().await?,
            "SELECT doc FROM holds WHERE status_token = $1",
            &[&token],
        )
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<(Vec<Hold>, Option<String>), StoreError> {
        let limit = filter.limit.clamp(1, 1000);
        let limit_sql = i64::try_from(limit).unwrap_or(1000);
        let rule = filter.rule.as_deref();
        let client = self.client().await?;
        let rows = if filter.state == Some(State::Pending) {
            let after = filter.cursor.as_deref().and_then(|c| {
                let (us, id) = c.split_once(':')?;
                let at = jiff::Timestamp::from_microsecond(us.parse().ok()?).ok()?;
                Some((at, uuid(id)?))
            });
            let (at, id) = after.unzip();
            client
                .query(
                    "SELECT doc, expires_at FROM holds WHERE state = 'pending'
                       AND ($1::text IS NULL OR rule = $1)
                       AND ($2::timestamptz IS NULL OR (expires_at, id) > ($2, $3))
                     ORDER BY expires_at, id LIMIT $4",
                    &[&rule, &at, &id, &limit_sql],
                )
                .await?
        } else {
            let before = filter.cursor.as_deref().and_then(uuid);
            let state = filter.state.map(State::as_str);
            client
                .query(
                    "SELECT doc FROM holds WHERE ($1::text IS NULL OR state = $1)
                       AND ($2::text IS NULL OR rule = $2)
                       AND ($3::uuid IS NULL OR id < $3)
                     ORDER BY id DESC LIMIT $4",
                    &[&state, &rule, &before, &limit_sql],
                )
                .await?
        };
        let holds = rows
            .iter()
            .map(|row| decode(row.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (holds.last(), rows.last()) {
            (Some(last), Some(row)) if holds.len() == limit => {
                Some(if filter.state == Some(State::Pending) {
                    pending_cursor(row.get(1), last)
                } else {
                    last.id.clone()
                })
            }
            _ => None,
        };
        Ok((holds, next))
    }

    async fn pending_of(&self, agent: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM holds WHERE agent = $1 AND state = 'pending'",
                &[&agent],
            )
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn decide(
        &self,
        id: &str,
        who: &str,
        decision: &Decision,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError> {
        let key = uuid(id).ok_or(StoreError::NotFound)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut hold = locked(&tx, &key).await?.ok_or(StoreError::NotFound)?;
        if hold.state != State::Pending {
            return Err(StoreError::NotPending(hold.state));
        }
        let before = match decision.edited() {
            Some(body) => {
                let old: Option<Vec<u8>> = tx
                    .query_opt("SELECT body FROM hold_bodies WHERE hold_id = $1", &[&key])
                    .await?
                    .map(|row| row.get(0));
                tx.execute(
                    "UPDATE hold_bodies SET body = $2 WHERE hold_id = $1",
                    &[&key, &body.as_ref()],
                )
                .await?;
                Some(old.unwrap_or_default())
            }
            None => None,
        };
        let (event, detail) = decision.apply(&mut hold, who, now, before.as_deref())?;
        put(&tx, &mut hold).await?;
        let record = append(&tx, &self.instance, now, event, &hold, who, detail).await?;
        tx.commit().await?;
        Ok((hold, record))
    }

    async fn claim(&self, id: &str, instance: &str) -> Result<Option<(Hold, Bytes)>, StoreError> {
        let key = uuid(id).ok_or(StoreError::NotFound)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(mut hold) = locked(&tx, &key).await? else {
            return Ok(None);
        };
        if hold.state != State::Approved || hold.sending {
            return Ok(None);
        }
        hold.sending = true;
        tx.execute(
            "UPDATE holds SET claimed_by = $2, claimed_at = now(), doc = $3 WHERE id = $1",
            &[&key, &instance, &encode(&hold)?],
        )
        .await?;
        let body: Option<Vec<u8>> = tx
            .query_opt("SELECT body FROM hold_bodies WHERE hold_id = $1", &[&key])
            .await?
            .map(|row| row.get(0));
        tx.commit().await?;
        Ok(Some((hold, Bytes::from(body.unwrap_or_default()))))
    }

    async fn finish(
        &self,
        id: &str,
        outcome: &Outcome,
        now: jiff::Timestamp,
    ) -> Result<(Hold, Record), StoreError> {
        let key = uuid(id).ok_or(StoreError::NotFound)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut hold = locked(&tx, &key).await?.ok_or(StoreError::NotFound)?;
        if hold.state != State::Approved || !hold.sending {
            return Err(StoreError::Corrupt(format!(
                "hold {} was not being sent ({})",
                hold.id, hold.state
            )));
        }
        let detail = settle(&mut hold, outcome);
        put(&tx, &mut hold).await?;
        let event = hold.state.as_str();
        let record = append(&tx, &self.instance, now, event, &hold, SYSTEM, detail).await?;
        tx.commit().await?;
        Ok((hold, record))
    }

    async fn mark_replayed(&self, id: &str) -> Result<bool, StoreError> {
        let key = uuid(id).ok_or(StoreError::NotFound)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(mut hold) = locked(&tx, &key).await? else {
            return Ok(false);
        };
        if hold.state != State::Released || hold.replayed {
            return Ok(false);
        }
        hold.replayed = true;
        put(&tx, &mut hold).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn next_due(&self, sweep: Sweep) -> Result<Option<jiff::Timestamp>, StoreError> {
        let sql = match sweep {
            Sweep::Expire => "SELECT min(expires_at) FROM holds WHERE state = 'pending'",
            Sweep::Escalate => {
                "SELECT min(escalate_at) FROM holds
                 WHERE state = 'pending' AND escalate_at IS NOT NULL"
            }
        };
        Ok(self.client().await?.query_one(sql, &[]).await?.get(0))
    }

    async fn sweep(
        &self,
        sweep: Sweep,
        now: jiff::Timestamp,
    ) -> Result<Vec<(Hold, Record)>, StoreError> {
        let sql = match sweep {
            Sweep::Expire => {
                "SELECT doc FROM holds WHERE state = 'pending' AND expires_at <= $1
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            }
            Sweep::Escalate => {
                "SELECT doc FROM holds WHERE state = 'pending' AND escalate_at <= $1
                 ORDER BY escalate_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            }
        };
        let mut done = Vec::new();
        let mut client = self.client().await?;
        loop {
            let tx = client.transaction().await?;
            let rows = tx.query(sql, &[&now, &SWEEP_BATCH]).await?;
            let full = rows.len() as i64 == SWEEP_BATCH;
            let mut batch = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut hold = decode(row.get(0))?;
                let Some(detail) = sweep.step(&mut hold, now) else {
                    continue;
                };
                put(&tx, &mut hold).await?;
                let record = append(
                    &tx,
                    &self.instance,
                    now,
                    sweep.event(),
                    &hold,
                    SYSTEM,
                    detail,
                )
                .await?;
                batch.push((hold, record));
            }
            tx.commit().await?;
            done.extend(batch);
            if !full {
                return Ok(done);
            }
        }
    }

    /// Interrupts the claims of instances whose lease has lapsed, and finds
    /// approved holds nobody claimed: all of them at start-up, else those
    /// left unclaimed past a grace (their decider normally sends them).
    async fn recover(&self, now: jiff::Timestamp, starting: bool) -> Result<Recovered, StoreError> {
        let mut found = Recovered::default();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT doc FROM holds h WHERE state = 'approved' AND claimed_by IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM instances i
                                   WHERE i.id = h.claimed_by AND i.alive_until > now())
                 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        for row in &rows {
            let mut hold = decode(row.get(0))?;
            if hold.state != State::Approved || !hold.sending {
                continue;
            }
            let detail = interrupt(&mut hold);
            put(&tx, &mut hold).await?;
            let record = append(
                &tx,
                &self.instance,
                now,
                "interrupted",
                &hold,
                SYSTEM,
                detail,
            )
            .await?;
            found.interrupted.push((hold, record));
        }
        tx.commit().await?;
        let rows = client
            .query(
                "SELECT doc FROM holds WHERE state = 'approved' AND claimed_by IS NULL",
                &[],
            )
            .await?;
        for row in &rows {
            let hold = decode(row.get(0))?;
            let due = starting || hold.decided_at.is_none_or(|at| at + UNCLAIMED_GRACE <= now);
            if !hold.sending && due {
                found.to_send.push(hold.id);
            }
        }
        Ok(found)
    }

    async fn since(&self, since: jiff::Timestamp) -> Result<Vec<Hold>, StoreError> {
        self.client()
            .await?
            .query(
                "SELECT doc FROM holds WHERE created_at >= $1 ORDER BY id DESC",
                &[&since],
            )
            .await?
            .iter()
            .map(|row| decode(row.get(0)))
            .collect()
    }

    async fn pending_overview(&self) -> Result<(u64, Option<jiff::Timestamp>), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*), min(created_at) FROM holds WHERE state = 'pending'",
                &[],
            )
            .await?;
        let n: i64 = row.get(0);
        Ok((u64::try_from(n).unwrap_or(0), row.get(1)))
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM holds WHERE state = 'pending'", &[])
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every transaction is durable at commit.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
