//! `/metrics` parses as Prometheus exposition and its figures move with
//! real traffic through airlock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Pki, ROOT, TestClock, airlock_with, client, reviewers_toml, upstream};

const RULES: &str = r#"
[[rule]]
name = "tunnel"
action = "automatic"
host = ["tunnel.test"]

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
window = "2h"
"#;

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

async fn scrape(base: &str) -> prometheus_parse::Scrape {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition")
}

#[tokio::test]
async fn metrics_follow_the_traffic() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let before = scrape(&a.review_url()).await;
    assert_eq!(
        value(&before, "airlock_requests_total", &[("rule", "reads")]),
        0.0
    );

    let tunnel = client(&a.proxy_url(), &[&pki.ca_pem]);
    tunnel
        .get(format!("https://tunnel.test:{}/", up.port()))
        .send()
        .await
        .unwrap();
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    for _ in 0..2 {
        c.get(format!("https://intercept.test:{}/r", up.port()))
            .send()
            .await
            .unwrap();
    }
    let held = c
        .post(format!("https://intercept.test:{}/send", up.port()))
        .body("x")
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&held);
    let api = reqwest::Client::builder().no_proxy().build().unwrap();
    api.post(format!("{}/api/holds/{id}/approve", a.review_url()))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        if up.count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let after = scrape(&a.review_url()).await;
    assert_eq!(
        value(
            &after,
            "airlock_requests_total",
            &[("rule", "reads"), ("verdict", "automatic")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "airlock_requests_total",
            &[("rule", "mail-send"), ("verdict", "review")]
        ),
        1.0
    );
    assert!(value(&after, "airlock_connects_total", &[("decision", "tunnel")]) >= 1.0);
    assert!(
        value(
            &after,
            "airlock_connects_total",
            &[("decision", "intercept")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &after,
            "airlock_hold_outcomes_total",
            &[("state", "released")]
        ),
        1.0
    );
    assert_eq!(value(&after, "airlock_holds", &[("state", "pending")]), 0.0);
    assert!(value(&after, "airlock_leaf_cache_total", &[("result", "miss")]) >= 1.0);
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "airlock_hold_decision_seconds_count"
                && s.labels.get("rule") == Some("mail-send"))
    );
    a.stop().await;
}
