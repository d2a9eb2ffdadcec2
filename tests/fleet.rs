//! A fleet with real processes: two `airlock run` sidecars and one
//! `airlock review` on one PostgreSQL database (the tests' private
//! cluster), an HTTPS upstream, and agents through reqwest. One queue, one
//! decision, one send, one chain, events everywhere; a killed sender's hold
//! is interrupted by the others and never resent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Binary, Pki, ROOT, client, reviewers_toml, upstream, write_config};
use futures_util::StreamExt;
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
window = "2s"
summary = "Quick"
"#;

fn api() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(bin: &Binary, path: &str) -> Value {
    api()
        .get(format!("http://{}{path}", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn approve(bin: &Binary, id: &str) -> u16 {
    api()
        .post(format!("http://{}/api/holds/{id}/approve", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn hold(bin: &Binary, port: u16, ca: &str, path: &str, body: &str) -> String {
    let res = client(&format!("http://{}", bin.proxy_addr), &[ca])
        .post(format!("https://mail.test:{port}{path}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "held");
    common::hold_id(&res)
}

async fn state_of(bin: &Binary, id: &str) -> String {
    get(bin, &format!("/api/holds/{id}")).await["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Polls until the hold reaches `state` on `bin`, or `within` passes.
async fn wait_state(bin: &Binary, id: &str, state: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = state_of(bin, id).await;
        if now == state || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_and_a_review_server_share_one_queue() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let port = up.port();
    let url = common::postgres::database();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    let env = [("AIRLOCK_STORE_URL", url.as_str())];
    let a = Binary::launch(dir.path(), &[], "run", &env);
    let b = Binary::launch(dir.path(), &[], "run", &env);
    let review = Binary::launch(dir.path(), &[], "review", &env);
    for bin in [&a, &b, &review] {
        assert!(bin.logged("using the shared PostgreSQL store"));
        assert!(
            !bin.log.lock().unwrap().iter().any(|l| l.contains(&url)),
            "the store URL is never logged"
        );
    }
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();

    // A hold made through A is listed and read on every review server.
    let first = hold(&a, port, &ca, "/v3/mail/send", "first").await;
    for bin in [&a, &b, &review] {
        let list = get(bin, "/api/holds?state=pending").await;
        assert!(
            list["holds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["id"] == first.as_str()),
            "{list}"
        );
    }

    // SSE on B shows a hold made through A.
    let events = api()
        .get(format!("http://{}/api/events", b.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let second = hold(&a, port, &ca, "/v3/mail/send", "second").await;
    let mut stream = events.bytes_stream();
    let mut seen = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains(&second) {
                return;
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "B's event stream did not show A's hold: {seen}"
    );
    drop(stream);

    // Thirty approvals of one hold across all three: one wins, one send.
    let approvals: Vec<_> = (0..30)
        .map(|i| {
            let target = [&a, &b, &review][i % 3].review_addr;
            let id = first.clone();
            tokio::spawn(async move {
                api()
                    .post(format!("http://{target}/api/holds/{id}/approve"))
                    .bearer_auth(ROOT.1)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in approvals {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        29,
        "{statuses:?}"
    );
    assert_eq!(
        wait_state(&b, &first, "released", Duration::from_secs(10)).await,
        "released"
    );

    // An agent waiting on B gets the upstream's answer to an approval on
    // the review server.
    let waiting = {
        let proxy = format!("http://{}", b.proxy_addr);
        let ca = ca.clone();
        tokio::spawn(async move {
            client(&proxy, &[&ca])
                .post(format!("https://mail.test:{port}/v3/mail/send"))
                .header("prefer", "wait=15")
                .body("waited")
                .send()
                .await
                .unwrap()
        })
    };
    let waited_id = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = get(&review, "/api/holds?state=pending").await;
            let found = list["holds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["request"]["body"] == "waited")
                .map(|h| h["id"].as_str().unwrap().to_owned());
            if let Some(id) = found {
                break id;
            }
            assert!(tokio::time::Instant::now() < deadline, "{list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let approved_at = tokio::time::Instant::now();
    assert_eq!(approve(&review, &waited_id).await, 200);
    let res = waiting.await.unwrap();
    assert!(
        approved_at.elapsed() < Duration::from_secs(3),
        "the waiting agent heard late"
    );
    assert_eq!(res.status(), 200, "the upstream's answer");
    let sent: Vec<Vec<u8>> = up.requests().iter().map(|s| s.body.to_vec()).collect();
    assert_eq!(
        sent,
        vec![b"first".to_vec(), b"waited".to_vec()],
        "each sent once"
    );

    // A short window expires once, whoever sweeps.
    let quick = hold(&b, port, &ca, "/quick", "quick").await;
    assert_eq!(
        wait_state(&review, &quick, "expired", Duration::from_secs(10)).await,
        "expired"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let audit = get(&review, "/api/audit?limit=1000").await;
    let expiries = audit
        .as_array()
        .or_else(|| audit["records"].as_array())
        .unwrap()
        .iter()
        .filter(|r| r["hold"] == quick.as_str() && r["event"] == "expired")
        .count();
    assert_eq!(expiries, 1, "{audit}");

    // A dies mid-send: B and the review server interrupt its hold once
    // its lease lapses, and nobody sends it again.
    let stalled = hold(&a, port, &ca, "/stall", "mid-send").await;
    assert_eq!(approve(&a, &stalled).await, 200);
    for _ in 0..200 {
        if up.count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(up.count(), 3, "the stalled send reached the upstream");
    a.kill9();
    assert_eq!(
        wait_state(&b, &stalled, "interrupted", Duration::from_secs(20)).await,
        "interrupted"
    );
    // The others keep serving.
    let after = hold(&b, port, &ca, "/v3/mail/send", "after").await;
    assert_eq!(state_of(&review, &after).await, "pending");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(up.count(), 3, "the interrupted send is never repeated");
    assert_eq!(state_of(&review, &stalled).await, "interrupted");

    // One chain for the fleet.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .env("AIRLOCK_STORE_URL", &url)
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("intact"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
