//! The private PostgreSQL the store tests use: started from Debian's server
//! binaries on first use, loopback only, one fresh database per test, gone
//! when the test binary ends.
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
