//! Crash safety with the real binary: `kill -9` while holds are pending,
//! approved but not yet sent, and mid-send; restart on the same store; then
//! nothing is lost, nothing is sent twice, an interrupted send is not
//! resent, and holds whose window passed while airlock was down expire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{ALICE, Binary, Pki, ROOT, client, reviewers_toml, upstream, write_config};
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send", "/stall"]
window = "2h"
summary = "Email"

[[rule]]
name = "quick"
action = "review"
label = "Short window"
host = ["mail.test"]
method = ["POST"]
path = ["/quick"]
window = "1s"
summary = "Quick"
"#;

async fn hold(bin: &Binary, port: u16, ca: &str, path: &str, body: &str) -> String {
    let res = client(&format!("http://{}", bin.proxy_addr), &[ca])
        .post(format!("https://mail.test:{port}{path}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    common::hold_id(&res)
}

async fn state(bin: &Binary, id: &str) -> Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/api/holds/{id}", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn kill_9_loses_nothing_and_sends_nothing_twice() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    let bin = Binary::start(dir.path());
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let port = up.port();

    let pending = hold(&bin, port, &ca, "/v3/mail/send", "pending").await;
    let approved_later = hold(&bin, port, &ca, "/v3/mail/send", "approved while down").await;
    let overdue = hold(&bin, port, &ca, "/quick", "overdue").await;
    let mid_send = hold(&bin, port, &ca, "/stall", "mid-send").await;
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/api/holds/{mid_send}/approve",
            bin.review_addr
        ))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Wait until the stalling upstream has the request, then crash.
    for _ in 0..200 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(up.count(), 1, "the mid-send request reached the upstream");
    bin.kill9();

    // While airlock is down: a reviewer's approval lands in the store
    // (as if airlock died between approving and claiming).
    {
        let store =
            airlock::holds::Store::open(&config.store.path, airlock::holds::store::system_clock())
                .unwrap();
        store
            .approve(&approved_later, "alice", None, None)
            .await
            .unwrap();
    }
    // Let the one-second window pass while airlock is down.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let bin = Binary::start(dir.path());
    assert_eq!(state(&bin, &pending).await["state"], "pending");
    assert_eq!(state(&bin, &mid_send).await["state"], "interrupted");
    assert_eq!(state(&bin, &overdue).await["state"], "expired");
    for _ in 0..200 {
        if state(&bin, &approved_later).await["state"] == "released" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state(&bin, &approved_later).await["state"], "released");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = up.requests();
    let bodies: Vec<&[u8]> = seen.iter().map(|s| &s.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"mid-send"[..], &b"approved while down"[..]],
        "the interrupted send is not repeated; the expired and pending ones are not sent"
    );
    bin.kill9();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // Tampering is found and named.
    {
        let store =
            airlock::holds::Store::open(&config.store.path, airlock::holds::store::system_clock())
                .unwrap();
        let mut record = store.audit_after(1, 1).await.unwrap().remove(0);
        assert_eq!(record.seq, 2);
        record.detail = serde_json::json!({"note": "rewritten"});
        store.overwrite_audit_record(&record).await.unwrap();
        store.flush().await.unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit record 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
