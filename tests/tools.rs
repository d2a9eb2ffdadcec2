//! The tools `./test.sh` installs are found by the tests' one lookup
//! (`common::require_tool`) and run: those on `PATH`, the virtualenv's, and
//! PostgreSQL's server binaries, which Debian keeps off `PATH`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::process::Command;

use common::require_tool;

/// Runs `tool args…`; its standard output, after asserting it succeeded.
fn run(tool: &str, args: &[&str]) -> String {
    let path = require_tool(tool);
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_tool_the_script_installs_is_found_and_runs() {
    for tool in ["curl", "chromium", "chromedriver", "node", "hadolint"] {
        run(tool, &["--version"]);
    }
    run("kubernetes-validate", &["--help"]);
    run("kill", &["-l"]);
    run("python3", &["-c", "import requests"]);
    assert!(run("iptables", &["--version"]).contains("iptables"));
    assert!(run("nft", &["--version"]).contains("nftables"));
    assert!(run("ip", &["-V"]).contains("iproute2"));
    for tool in ["unshare", "nsenter", "setpriv"] {
        assert!(run(tool, &["--version"]).contains("util-linux"), "{tool}");
    }
}

#[test]
fn postgresql_server_binaries_are_found_off_path() {
    for tool in ["initdb", "pg_ctl", "postgres", "psql"] {
        let version = run(tool, &["--version"]);
        assert!(version.contains("(PostgreSQL)"), "{tool}: {version}");
    }
}
