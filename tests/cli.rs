//! The `airlock` binary as a person uses it: exit codes, messages that name
//! file, line and column, the CA commands, and `run` on embedded defaults.

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
    let mut child = KillOnDrop(
        airlock(dir.path())
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
    let mut listening = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while listening.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.contains("airlock proxy listening")
        {
            listening = line
                .split("listen=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map(str::to_owned);
        }
    }
    let addr = listening.expect("airlock logged its listening address");
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
