//! Versioned schema migrations, applied in order inside one transaction
//! under a transaction-scoped advisory lock, so any number of instances
//! starting at once on one database agree: the first applies what is
//! missing, the others then find nothing to do. An airlock older than the
//! schema it finds refuses to start rather than write rows it does not
//! understand. Migrations are SQL files in `migrations/postgres/`, compiled
//! in; a released file is never edited, a change is a new version.

use tokio_postgres::Client;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../../../migrations/postgres/0001_store.sql"),
    ),
    (
        2,
        "fleet",
        include_str!("../../../migrations/postgres/0002_fleet.sql"),
    ),
];

/// The advisory lock key all airlock instances take while migrating
/// (`airlock` in ASCII).
const LOCK: i64 = 0x0061_6972_6c6f_636b;

/// The schema version this airlock writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _, _)| *v)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database's airlock schema is version {found}, newer than this airlock's {supported}: upgrade airlock"
    )]
    Newer { found: i32, supported: i32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("reading the schema version: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Brings the schema to [`latest`]; the version it is at afterwards.
pub async fn migrate(client: &mut Client) -> Result<i32, MigrateError> {
    let tx = client.transaction().await?;
    // Taken before anything else, even creating the version table, so two
    // instances never race on DDL.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS airlock_schema (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM airlock_schema", &[])
        .await?
        .get(0);
    if found > latest() {
        return Err(MigrateError::Newer {
            found,
            supported: latest(),
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > found) {
        let failed = |source| MigrateError::Failed {
            version,
            name,
            source,
        };
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO airlock_schema (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(failed)?;
        tracing::info!(version, name, "store schema migrated");
    }
    tx.commit().await?;
    Ok(latest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_from_one_without_gaps() {
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i32::try_from(i).unwrap() + 1, "{name}");
            assert!(!sql.trim().is_empty(), "{name}");
        }
        assert_eq!(latest(), 2);
    }
}
