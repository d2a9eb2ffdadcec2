//! The hold store on PostgreSQL, for a fleet of sidecars sharing one queue
//! (`[store] url`). This module owns the schema and its migrations, the
//! connection pool, and the backend's side of the store contract; it must
//! never be required by the embedded default (sled), and never log the
//! database URL, which may carry a password.
//!
//! How it keeps the contract across instances:
//! - every transition is one transaction: the hold's row locked
//!   (`FOR UPDATE`, or `SKIP LOCKED` in sweeps, so each due hold is swept by
//!   one instance once), then the audit chain's head row locked, the record
//!   appended and the head moved, and a `NOTIFY` that PostgreSQL delivers
//!   to every instance at commit. The head is always locked last, so
//!   transactions never wait on each other in a cycle;
//! - a new hold takes a transaction-scoped advisory lock on its agent's
//!   identity, so retries, idempotency keys and the pending cap are judged
//!   with no concurrent insert of the same agent in between;
//! - a send is claimed in the hold's row with the claiming instance's id.
//!   Each instance renews a lease in `instances` while it runs; a claim
//!   whose instance's lease has lapsed is made `interrupted` by whichever
//!   instance notices first, and never sent again;
//! - [`listen`] turns the other instances' notifications into this
//!   instance's hold events.
//!
//! - [`migrate`]: versioned migrations from `migrations/postgres/`, applied
//!   by airlock itself on start, safe when instances start together.

mod lifecycle;
mod listen;
pub mod migrate;
mod records;

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::broadcast;

use super::Hold;
use super::audit::{self, Entry, Record};
use super::store::{HoldEvent, StoreError};

/// How long an instance's lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a running instance renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// The channel instances tell each other of hold events on.
const CHANNEL: &str = "airlock_events";
/// How long start-up waits for the event connection.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections each instance keeps at most.
const POOL_SIZE: usize = 16;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // The driver's messages name neither the URL nor its password.
        StoreError::Backend(match e.as_db_error() {
            Some(db) => format!("PostgreSQL: {}", db.message()),
            None => format!("PostgreSQL: {e}"),
        })
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            e => StoreError::Backend(format!("PostgreSQL pool: {e}")),
        }
    }
}

/// The PostgreSQL store.
pub(crate) struct PgStore {
    pool: Pool,
    instance: String,
    /// The lease and the listener, stopped with the store.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The TLS a connection uses when the URL's `sslmode` asks for it (the
/// default, `prefer`, uses it when the server offers it): the system's
/// roots and the PEM files of `AIRLOCK_STORE_CA` / `[store] ca`.
fn tls(ca: &[std::path::PathBuf]) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for path in ca {
        let text = std::fs::read(path).map_err(|e| {
            StoreError::Backend(format!("reading [store] ca {}: {e}", path.display()))
        })?;
        let pems = pem::parse_many(&text)
            .map_err(|e| StoreError::Backend(format!("[store] ca {}: {e}", path.display())))?;
        for p in pems.iter().filter(|p| p.tag() == "CERTIFICATE") {
            roots
                .add(p.contents().to_vec().into())
                .map_err(|e| StoreError::Backend(format!("[store] ca {}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Backend(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgStore {
    /// Connects, migrates the schema, takes this instance's lease and
    /// starts following the others' events.
    pub(crate) async fn connect(
        url: &str,
        ca: &[std::path::PathBuf],
        instance: &str,
        events: broadcast::Sender<HoldEvent>,
    ) -> Result<PgStore, StoreError> {
        // The parser's message never repeats the URL.
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!("[store] url is not a PostgreSQL URL: {e}"))
        })?;
        let tls = tls(ca)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
        {
            let mut client = pool.get().await?;
            migrate::migrate(&mut client)
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        let mut store = PgStore {
            pool,
            instance: instance.to_owned(),
            tasks: Vec::new(),
        };
        store.renew_lease().await?;
        let lease = tokio::spawn(listen::keep_lease(store.pool.clone(), instance.to_owned()));
        let (ready, listening) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen::follow(
            config,
            tls,
            instance.to_owned(),
            events,
            ready,
        ));
        store.tasks = vec![lease.abort_handle(), listener.abort_handle()];
        // Serve only once the others' events are heard.
        match tokio::time::timeout(LISTEN_TIMEOUT, listening).await {
            Ok(Ok(())) => Ok(store),
            _ => Err(StoreError::Backend(
                "PostgreSQL: could not LISTEN for the other instances' events".into(),
            )),
        }
    }

    async fn renew_lease(&self) -> Result<(), StoreError> {
        listen::renew(&self.pool, &self.instance).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// A hold as stored: its JSON text.
fn encode(hold: &Hold) -> Result<String, StoreError> {
    serde_json::to_string(hold).map_err(|e| StoreError::Corrupt(format!("hold record: {e}")))
}

fn decode(doc: &str) -> Result<Hold, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("hold record: {e}")))
}

fn uuid(id: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(id).ok()
}

/// Writes a hold's row as its state says: the columns queries filter on
/// and the document. Credentials go once the state is final; the
/// escalation column is cleared once the hold is escalated or decided.
async fn put(tx: &impl GenericClient, hold: &mut Hold) -> Result<(), StoreError> {
    super::store::purge_credentials(hold);
    let id = uuid(&hold.id).ok_or(StoreError::NotFound)?;
    let escalate_at = hold
        .escalate_at
        .filter(|_| hold.state == super::State::Pending && hold.escalated_at.is_none());
    tx.execute(
        "UPDATE holds SET state = $2, escalate_at = $3, doc = $4 WHERE id = $1",
        &[&id, &hold.state.as_str(), &escalate_at, &encode(hold)?],
    )
    .await?;
    Ok(())
}

/// Appends the record that follows the chain's head and tells every
/// instance of the event at commit. The head's row lock is held until the
/// transaction ends, so the chain has one order whichever instance writes.
async fn append(
    tx: &impl GenericClient,
    instance: &str,
    at: jiff::Timestamp,
    event: &str,
    hold: &Hold,
    actor: &str,
    detail: serde_json::Value,
) -> Result<Record, StoreError> {
    let head = tx
        .query_one("SELECT seq, hash FROM audit_head FOR UPDATE", &[])
        .await?;
    let seq: i64 = head.get(0);
    let hash: String = head.get(1);
    let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt("audit head".into()))?;
    let record = audit::next(
        (seq > 0).then_some((seq, hash.as_str())),
        at,
        Entry {
            event,
            hold: &hold.id,
            rule: &hold.rule,
            actor,
            detail,
        },
    );
    let text = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let seq = i64::try_from(record.seq).map_err(|_| StoreError::Corrupt("audit seq".into()))?;
    tx.execute(
        "INSERT INTO audit (seq, at, record, hash) VALUES ($1, $2, $3, $4)",
        &[&seq, &at, &text, &record.hash],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2",
        &[&seq, &record.hash],
    )
    .await?;
    let note = listen::Note {
        instance,
        event,
        id: &hold.id,
        state: hold.state,
        rule: &hold.rule,
        actor,
    };
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &listen::encode(&note)],
    )
    .await?;
    Ok(record)
}
