//! The `airlock` binary as a person uses it: exit codes, messages that name
//! file, line and column, the CA commands, and `run` on embedded defaults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn airlock(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("RUST_LOG", "info");
    c
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

#[test]
fn bad_config_stops_start_up_with_exit_2_and_a_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("airlock.toml"),
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[defaults]\nunmatchd = \"deny\"\n",
    )
    .unwrap();
    let (code, _, err) = output(airlock(dir.path()).args(["run", "--config", "airlock.toml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("airlock.toml:5:1"), "{err}");
    assert!(err.contains("unmatchd"), "{err}");
}

#[test]
fn bad_environment_override_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = output(
        airlock(dir.path())
            .args(["rules", "check"])
            .env("AIRLOCK_DEFAULTS_UNMATCHED", "sometimes"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("AIRLOCK_DEFAULTS_UNMATCHED"), "{err}");
}

#[test]
fn rules_check_prints_the_table_for_the_shipped_rules() {
    let (code, out, err) =
        output(airlock(Path::new(env!("CARGO_MANIFEST_DIR"))).args(["rules", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RULE"), "{out}");
    assert!(out.contains("(unmatched)"), "{out}");
}

#[test]
fn rules_check_names_reviewed_rules_without_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/10.toml"),
        "[[rule]]\nname = \"owned\"\naction = \"review\"\nreviewers = [\"alice\"]\nescalate_after = \"5h\"\n\n[[rule]]\nname = \"orphan\"\naction = \"review\"\nescalate_after = \"1h\"\n",
    )
    .unwrap();
    let (code, out, err) = output(airlock(dir.path()).args(["rules", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no named owner: orphan"), "{out}");
    assert!(!out.contains("no named owner: owned"), "{out}");
    // The default window is 4h: 5h never comes, 1h does.
    assert!(
        out.contains("never escalates: owned")
            && out.contains("escalate_after 5h but the default window is 4h"),
        "{out}"
    );
    assert!(!out.contains("never escalates: orphan"), "{out}");
}

#[test]
fn rules_check_names_each_bad_rule_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/10-bad.toml"),
        "[[rule]]\nname = \"x\"\naction = \"sometimes\"\n\n[[rule]]\nname = \"y\"\naction = \"deny\"\nwindow = \"2 fortnights\"\n",
    )
    .unwrap();
    let (code, _, err) = output(airlock(dir.path()).args(["rules", "check"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("10-bad.toml:3:"), "{err}");
    assert!(err.contains("10-bad.toml:8:"), "{err}");
}

#[test]
fn explain_names_the_matching_rule_and_what_connect_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/10-mail.toml"),
        "[[rule]]\nname = \"mail-send\"\naction = \"review\"\nhost = [\"api.mail.example\"]\nmethod = [\"POST\"]\npath = [\"/v3/send\"]\n\n\
         [[rule]]\nname = \"llm\"\naction = \"automatic\"\nhost = [\"api.llm.example\"]\n",
    )
    .unwrap();
    let (code, out, err) =
        output(airlock(dir.path()).args(["explain", "POST", "https://api.mail.example/v3/send"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mail-send"), "{out}");
    assert!(out.contains("review"), "{out}");
    assert!(out.contains("intercept"), "{out}");
    let (code, out, _) =
        output(airlock(dir.path()).args(["explain", "GET", "https://api.llm.example/v1/models"]));
    assert_eq!(code, 0);
    assert!(out.contains("llm"), "{out}");
    assert!(out.contains("tunnel"), "{out}");
}

#[test]
fn ca_init_writes_a_private_key_and_keeps_an_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(airlock(dir.path()).args(["ca", "init", "--dir", "ca"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    let cert = std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca/ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, out, _) = output(airlock(dir.path()).args(["ca", "init", "--dir", "ca"]));
    assert_eq!(code, 0);
    assert!(out.contains("already"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap(),
        cert
    );
}

#[test]
fn ca_bundle_holds_the_system_roots_and_the_airlock_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = output(
        airlock(dir.path())
            .args(["ca", "bundle", "--out", "bundle.pem"])
            .env("AIRLOCK_TLS_CA_DIR", dir.path().join("certs")),
    );
    assert_eq!(code, 0, "{err}");
    let bundle = std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    assert!(bundle.ends_with(&ca));
    let certs = bundle.matches("BEGIN CERTIFICATE").count();
    assert!(
        certs > 1,
        "expected system roots too, found {certs} certificate(s)"
    );
}

#[test]
fn run_on_embedded_defaults_creates_the_ca_and_listens() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_rules(), dir.path().join("rules")).unwrap();
    let (child, _, log, addr) = run_in(dir.path());
    assert!(
        !log.join("\n").contains("built into airlock"),
        "./rules is read"
    );
    // A real request to the proxy port (not a proxy request): 400, JSON.
    let out = Command::new(common::require_tool("curl"))
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{addr}/"),
        ])
        .output()
        .unwrap();
    drop(child);
    assert!(dir.path().join("certs/ca.pem").exists());
    assert!(dir.path().join("certs/ca-key.pem").exists());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
}

/// Kills the child when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `airlock run` in `dir` on free ports; the child, its log lines
/// as they come, and the proxy address once it listens.
fn run_in(
    dir: &Path,
) -> (
    KillOnDrop,
    std::sync::mpsc::Receiver<String>,
    Vec<String>,
    String,
) {
    let mut child = KillOnDrop(
        airlock(dir)
            .arg("run")
            .env("AIRLOCK_PROXY_LISTEN", "127.0.0.1:0")
            .env("AIRLOCK_REVIEW_LISTEN", "127.0.0.1:0")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line.clone());
            if line.contains("airlock proxy listening")
                && let Some(addr) = line
                    .split("listen=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
            {
                let addr = addr.to_owned();
                return (child, rx, seen, addr);
            }
        }
    }
    panic!("airlock did not start:\n{}", seen.join("\n"));
}

#[test]
fn run_in_an_empty_directory_uses_the_shipped_packs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _, log, _) = run_in(dir.path());
    drop(child);
    let log = log.join("\n");
    assert!(
        log.contains("no ./rules directory: using the rule packs built into airlock"),
        "{log}"
    );
    assert!(log.contains("airlock rules init"), "{log}");
    assert!(
        !dir.path().join("rules").exists(),
        "run writes no rules files"
    );
}

#[test]
fn rules_check_and_explain_in_an_empty_directory_use_the_shipped_packs() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(airlock(dir.path()).args(["rules", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sendgrid-mail-send"), "{out}");
    assert!(out.contains("rules from the shipped packs"), "{out}");
    assert!(
        err.contains("using the rule packs built into airlock"),
        "{err}"
    );

    let (code, out, err) = output(airlock(dir.path()).args([
        "explain",
        "POST",
        "https://api.sendgrid.com/v3/mail/send",
    ]));
    assert_eq!(code, 0, "{err}");
    // Located as in the repository, where `rules init` writes them.
    assert!(
        out.contains("matched: \"sendgrid-mail-send\" (rules/20-email.toml:"),
        "{out}"
    );
}

#[test]
fn a_rules_directory_the_configuration_names_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = output(
        airlock(dir.path())
            .args(["rules", "check"])
            .env("AIRLOCK_RULES_DIR", "mounted-rules"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mounted-rules: cannot read the rules directory"),
        "{err}"
    );
}

#[test]
fn rules_init_writes_the_shipped_packs_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(airlock(dir.path()).args(["rules", "init"]));
    assert_eq!(code, 0, "{err}");
    let mut shipped: Vec<_> = std::fs::read_dir(repo_rules())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    shipped.sort();
    for name in &shipped {
        let name = name.to_string_lossy();
        assert!(out.contains(&format!("wrote ./rules/{name}")), "{out}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("rules").join(&*name)).unwrap(),
            std::fs::read_to_string(repo_rules().join(&*name)).unwrap(),
            "{name}"
        );
    }

    // An edited pack survives a second init, which says it kept it.
    let edited = dir.path().join("rules/20-email.toml");
    std::fs::write(&edited, "# ours now\n").unwrap();
    let (code, out, err) = output(airlock(dir.path()).args(["rules", "init"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept ./rules/20-email.toml"), "{out}");
    assert!(!out.contains("wrote"), "{out}");
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), "# ours now\n");

    // From now on the directory is what airlock reads.
    let (code, out, err) = output(airlock(dir.path()).args(["rules", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rules from ./rules"), "{out}");
    assert!(!out.contains("sendgrid-mail-send"), "{out}");

    let (code, out, err) =
        output(airlock(dir.path()).args(["rules", "init", "--dir", "elsewhere"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote elsewhere/20-email.toml"), "{out}");
}

#[test]
fn report_on_a_fresh_install_is_an_empty_review_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(airlock(dir.path()).arg("report"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("No holds in this period."), "{out}");
    assert!(out.contains("Queue now: 0 pending"), "{out}");
    let (code, out, err) = output(airlock(dir.path()).args(["report", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["rules"], serde_json::json!([]), "{out}");
    assert_eq!(report["queue_depth"], 0, "{out}");
    assert!(
        !dir.path().join("airlock-data").exists(),
        "reading a report creates no store"
    );
}

/// Every command that prints, with its reader gone before it writes a
/// byte (`airlock … | head -0`): no panic, no message, exit 0.
#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &["explain", "POST", "https://api.sendgrid.com/v3/mail/send"],
        &["rules", "check"],
        &["rules", "check", "--format", "json"],
        &["report"],
        &["report", "--format", "csv"],
        &["ca", "init", "--dir", "ca"],
        &["ca", "bundle"],
        &["rules", "init", "--dir", "packs"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = airlock(dir.path())
            .args(*args)
            .env("AIRLOCK_TLS_CA_DIR", "ca")
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("airlock: "),
            "{args:?}:\n{err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{err}");
    }
}

#[test]
fn rules_check_fits_a_narrow_terminal_and_prints_in_full_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (code, narrow, err) = output(
        airlock(dir.path())
            .args(["rules", "check"])
            .env("COLUMNS", "100"),
    );
    assert_eq!(code, 0, "{err}");
    let table: Vec<&str> = narrow
        .lines()
        .take_while(|l| !l.contains(" rules from "))
        .collect();
    assert!(table.len() > 10, "{narrow}");
    for line in &table {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line:?}"
        );
    }
    assert!(
        narrow.contains(",…+"),
        "long lists say how much they leave out:\n{narrow}"
    );

    // Into a pipe, with no COLUMNS: the full text.
    let (code, full, err) = output(
        airlock(dir.path())
            .args(["rules", "check"])
            .env_remove("COLUMNS"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!full.contains('…'), "{full}");
    assert!(full.lines().any(|l| l.chars().count() > 100), "{full}");

    // JSON is never cut, whatever the terminal.
    let (code, json, err) = output(
        airlock(dir.path())
            .args(["rules", "check", "--format", "json"])
            .env("COLUMNS", "40"),
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["from"], "shipped");
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(
        rules.len(),
        table.len() - 2,
        "one per table row but header and fallback"
    );
    let mail = rules
        .iter()
        .find(|r| r["name"] == "sendgrid-mail-send")
        .unwrap();
    assert_eq!(mail["action"], "review");
    assert!(
        mail["location"]
            .as_str()
            .unwrap()
            .starts_with("rules/20-email.toml:")
    );
    assert!(
        rules
            .iter()
            .any(|r| r["host"].as_array().unwrap().len() > 3)
    );
    assert_eq!(json["unmatched"]["action"], "review");
}

#[test]
fn explain_counts_the_rules_for_other_hosts_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(airlock(dir.path()).args([
        "explain",
        "POST",
        "https://api.sendgrid.com/v3/mail/send",
    ]));
    assert_eq!(code, 0, "{err}");
    let skipped = out
        .lines()
        .find(|l| l.contains("rules for other hosts"))
        .unwrap_or_else(|| panic!("no count of skipped rules:\n{out}"));
    assert!(skipped.trim().starts_with("skipped "), "{skipped}");
    for line in out.lines().filter(|l| l.contains("passed over")) {
        assert!(
            line.contains("sendgrid") || !line.contains("host"),
            "{line}"
        );
    }
    assert!(!out.contains("does not match [\"api.openai.com\""), "{out}");
    assert!(out.lines().count() < 20, "{out}");
}
