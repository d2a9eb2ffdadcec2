//! Graceful shutdown of the real binary: SIGTERM while a forward is in flight
//! and an agent waits with `Prefer: wait`. The forward completes, the waiting
//! agent gets the held answer, the process exits 0, and the hold is still
//! pending after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Binary, Pki, ROOT, client, reviewers_toml, upstream, write_config};

const RULES: &str = r#"
[[rule]]
name = "reads"
action = "automatic"
host = ["intercept.test"]
method = ["GET"]

[[rule]]
name = "mail-send"
action = "review"
host = ["mail.test"]
method = ["POST"]
window = "2h"
summary = "Email"
"#;

#[tokio::test]
async fn sigterm_finishes_in_flight_work_and_keeps_holds() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    let bin = Binary::start(dir.path());
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let proxy = format!("http://{}", bin.proxy_addr);

    let slow = {
        let c = client(&proxy, &[&ca]);
        let url = format!("https://intercept.test:{}/slow", up.port());
        tokio::spawn(async move { c.get(url).send().await.unwrap() })
    };
    let waiter = {
        let c = client(&proxy, &[&ca]);
        let url = format!("https://mail.test:{}/v3/mail/send", up.port());
        tokio::spawn(async move {
            c.post(url)
                .header("prefer", "wait=60")
                .body("hi")
                .send()
                .await
                .unwrap()
        })
    };
    let api = reqwest::Client::builder().no_proxy().build().unwrap();
    let pending_url = format!("http://{}/api/holds?state=pending", bin.review_addr);
    let mut id = None;
    for _ in 0..200 {
        let v: serde_json::Value = api
            .get(&pending_url)
            .bearer_auth(ROOT.1)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if up.count() == 1
            && let Some(h) = v["holds"][0]["id"].as_str()
        {
            id = Some(h.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = id.expect("the slow request is in flight and the mail is held");

    bin.signal("TERM");
    let held = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.status(), 403);
    assert_eq!(held.headers()["airlock-state"], "pending");
    let done = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(done.text().await.unwrap(), "slow done");
    let code = tokio::task::spawn_blocking(move || bin.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));

    let bin = Binary::start(dir.path());
    let v: serde_json::Value = api
        .get(format!("http://{}/api/holds/{id}", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "pending");
}

#[test]
fn without_its_store_airlock_is_never_ready_and_says_why() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    // Another process has the store: airlock cannot open it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _held =
        airlock::holds::Store::open(&config.store.path, airlock::holds::store::system_clock())
            .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["run", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .output()
        .unwrap();
    drop(rt);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("store"), "{err}");
    assert!(
        !err.contains("review server listening"),
        "no listener, so no /readyz, before the store is open: {err}"
    );
}
