//! The private PostgreSQL the store tests use (started from Debian's server
//! binaries on first use, loopback only, one fresh database per test, gone
//! when the test binary ends), and the store's schema migrations on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use common::postgres::{cluster, database};

#[test]
fn each_test_gets_its_own_database_on_a_loopback_cluster() {
    let (a, b) = (database(), database());
    assert_ne!(a, b);
    let c = cluster();
    assert!(a.starts_with(&format!("postgres://airlock@127.0.0.1:{}/", c.port)));
    let name_a = a.rsplit('/').next().unwrap();
    let name_b = b.rsplit('/').next().unwrap();
    c.psql(name_a, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    assert_eq!(c.psql(name_a, "SELECT count(*) FROM t").unwrap(), "1");
    assert!(
        c.psql(name_b, "SELECT count(*) FROM t").is_err(),
        "databases are separate"
    );
    assert_eq!(
        c.psql(name_a, "SHOW listen_addresses").unwrap(),
        "127.0.0.1"
    );
}

#[test]
fn the_server_stops_with_the_test_binary() {
    // The postmaster is this process's child, spawned from a thread that
    // lives as long as the binary, with a parent-death signal: it cannot
    // outlive the binary.
    let postmaster = cluster().postmaster_pid();
    let status = std::fs::read_to_string(format!("/proc/{postmaster}/status")).unwrap();
    let ppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ppid, std::process::id());
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Instances that start together on one database agree on the schema: one
/// applies each migration, once; the rest find nothing to do.
#[tokio::test]
async fn instances_starting_together_migrate_the_schema_once() {
    use airlock::holds::postgres::migrate::{latest, migrate};
    let url = database();
    let mut starts = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        starts.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            migrate(&mut client).await
        }));
    }
    for start in starts {
        assert_eq!(start.await.unwrap().unwrap(), latest());
    }
    let client = connect(&url).await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM airlock_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=latest()).collect::<Vec<_>>());
    for table in [
        "holds",
        "hold_bodies",
        "audit",
        "audit_head",
        "outbox",
        "notify_cursor",
        "records",
    ] {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{table}");
    }
    // Starting again changes nothing.
    let mut again = connect(&url).await;
    assert_eq!(migrate(&mut again).await.unwrap(), latest());
    let head: i64 = client
        .query_one("SELECT count(*) FROM audit_head", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, 1);
}

/// An airlock older than the schema it finds refuses to start.
#[tokio::test]
async fn an_older_airlock_refuses_a_newer_schema() {
    use airlock::holds::postgres::migrate::{MigrateError, latest, migrate};
    let url = database();
    let mut client = connect(&url).await;
    migrate(&mut client).await.unwrap();
    client
        .execute(
            "INSERT INTO airlock_schema (version, name) VALUES ($1, 'from the future')",
            &[&(latest() + 1)],
        )
        .await
        .unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    assert!(matches!(err, MigrateError::Newer { .. }), "{err}");
    assert!(err.to_string().contains("upgrade airlock"), "{err}");
}
