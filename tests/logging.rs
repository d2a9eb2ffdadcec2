//! The access log: one line per request with verdict, rule, status,
//! duration and size; JSON with `--log-format json`; never bodies or
//! credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Binary, Pki, client, reviewers_toml, upstream, write_config};

const RULES: &str = r#"
[[rule]]
name = "reads"
action = "automatic"
host = ["intercept.test"]
method = ["GET"]

[[rule]]
name = "mail-send"
action = "review"
host = ["intercept.test"]
method = ["POST"]
"#;

#[tokio::test]
async fn one_json_access_line_per_request_without_secrets() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    let bin = Binary::start_with(dir.path(), &["--log-format", "json"]);
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let c = client(&format!("http://{}", bin.proxy_addr), &[&ca]);
    let ok = c
        .get(format!("https://intercept.test:{}/page", up.port()))
        .header("authorization", "Bearer top-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let held = c
        .post(format!("https://intercept.test:{}/send", up.port()))
        .header("cookie", "session=top-secret-cookie")
        .body("top-secret-body")
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = bin.log.lock().unwrap().clone();
    let access: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "airlock::access")
        .collect();
    assert_eq!(access.len(), 2, "{log:#?}");
    assert_eq!(access[0]["verdict"], "automatic");
    assert_eq!(access[0]["rule"], "reads");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["path"], "/page");
    assert!(access[0]["ms"].is_number());
    assert_eq!(access[1]["verdict"], "review");
    assert_eq!(access[1]["rule"], "mail-send");
    assert_eq!(access[1]["status"], 403);
    let all = log.join("\n");
    for secret in ["top-secret-token", "top-secret-cookie", "top-secret-body"] {
        assert!(!all.contains(secret), "{secret} leaked into the log");
    }
}
