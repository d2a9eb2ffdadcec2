//! Rules reload while airlock runs: through the API (admins), on a change in
//! the rules directory, and on SIGHUP. A bad new set is refused with its
//! location and the old rules keep applying; a good one applies at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{ALICE, Binary, Pki, ROOT, TestClock, airlock_with, client, reviewers_toml, upstream};

const DENY_DELETE: &str = r#"
[[rule]]
name = "no-deletes"
action = "deny"
host = ["intercept.test"]
method = ["DELETE"]

[[rule]]
name = "reads"
action = "automatic"
host = ["intercept.test"]
method = ["GET"]
"#;

const ALLOW_DELETE: &str = r#"
[[rule]]
name = "deletes-now-fine"
action = "automatic"
host = ["intercept.test"]
method = ["DELETE", "GET"]
"#;

async fn delete_status(proxy: &str, ca: &str, port: u16) -> u16 {
    client(proxy, &[ca])
        .delete(format!("https://intercept.test:{port}/records/1"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reload(base: &str, token: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{base}/api/rules/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_bad_edit_is_refused_and_a_good_one_applies_without_restart() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(
        &pki,
        DENY_DELETE,
        "",
        &reviewers_toml(),
        TestClock::new().clock(),
    )
    .await;
    let (proxy, ca) = (a.proxy_url(), a.ca_pem());
    let rules_file = a.dir.path().join("rules/10-test.toml");
    assert_eq!(delete_status(&proxy, &ca, up.port()).await, 403);

    std::fs::write(
        &rules_file,
        "[[rule]]\nname = \"broken\"\naction = \"sometimes\"\n",
    )
    .unwrap();
    let (status, v) = reload(&a.review_url(), ROOT.1).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("10-test.toml:3:"),
        "{v}"
    );
    assert_eq!(
        delete_status(&proxy, &ca, up.port()).await,
        403,
        "old rules still apply"
    );
    assert_eq!(reload(&a.review_url(), ALICE.1).await.0, 403, "admins only");

    std::fs::write(&rules_file, ALLOW_DELETE).unwrap();
    let (status, v) = reload(&a.review_url(), ROOT.1).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rules"], 1);
    assert_eq!(delete_status(&proxy, &ca, up.port()).await, 200);
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn a_change_in_the_rules_directory_is_picked_up() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(
        &pki,
        DENY_DELETE,
        "",
        &reviewers_toml(),
        TestClock::new().clock(),
    )
    .await;
    let (proxy, ca) = (a.proxy_url(), a.ca_pem());
    std::fs::write(a.dir.path().join("rules/10-test.toml"), ALLOW_DELETE).unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = delete_status(&proxy, &ca, up.port()).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the edited rules applied within 20 s");
    a.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_rules_of_the_running_binary() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    common::write_config(dir.path(), &pki, DENY_DELETE, "", &reviewers_toml());
    let bin = Binary::start(dir.path());
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let proxy = format!("http://{}", bin.proxy_addr);
    assert_eq!(delete_status(&proxy, &ca, up.port()).await, 403);
    // A broken file first: SIGHUP refuses it and the old rules stay.
    std::fs::write(
        dir.path().join("rules/10-test.toml"),
        "[[rule]]\nname = 5\n",
    )
    .unwrap();
    bin.signal("HUP");
    let refused = || {
        bin.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload refused") && l.contains("10-test.toml:2:"))
    };
    for _ in 0..100 {
        if refused() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused(), "the refusal is logged with file:line");
    assert_eq!(delete_status(&proxy, &ca, up.port()).await, 403);
    std::fs::write(dir.path().join("rules/10-test.toml"), ALLOW_DELETE).unwrap();
    bin.signal("HUP");
    let mut status = 0;
    for _ in 0..50 {
        status = delete_status(&proxy, &ca, up.port()).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}
