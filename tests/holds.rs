//! Holds end to end: a real client through airlock, real upstreams that count
//! what they receive, and reviewers deciding through the real review API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::api::Api;
use common::{ALICE, BOB, Pki, ROOT, TestClock, airlock_with, client, reviewers_toml, upstream};
use serde_json::{Value, json};

const RULES: &str = r#"
[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
reviewers = ["alice"]
summary = "Email to {/to}: {/subject}"
secret_headers = ["x-mail-secret"]

[[rule]]
name = "crm-edit"
action = "review"
label = "Deal stage change"
host = ["mail.test"]
method = ["PATCH"]
window = "4h"
allow_edit = true
"#;

const MAIL: &str =
    r#"{"to":"client@example.com","subject":"Your quote","body":"Total: 1,200 EUR"}"#;

async fn setup() -> (Pki, common::Upstream, common::Airlock, Api, TestClock) {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let clock = TestClock::new();
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), clock.clock()).await;
    let api = Api::new(a.review_url());
    (pki, up, a, api, clock)
}

async fn send_mail(a: &common::Airlock, port: u16, body: &str) -> reqwest::Response {
    client(&a.proxy_url(), &[&a.ca_pem()])
        .post(format!("https://mail.test:{port}/v3/mail/send"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sg-live-secret")
        .header("x-mail-secret", "also-secret")
        .header("airlock-trigger", "Client asked for a quote")
        .header("airlock-agent", "quote-bot")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn held_email_is_sent_once_after_approval() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);
    assert_eq!(up.count(), 0, "held requests are not sent");

    let list = api.get("/api/holds?state=pending", ALICE.1).await;
    let card = &list["holds"][0];
    assert_eq!(card["id"], id);
    assert_eq!(card["summary"], "Email to client@example.com: Your quote");
    assert_eq!(card["label"], "Outbound client message");
    // Without [[agent]] entries the identity is the client's address; the
    // name the agent gave itself is only a label.
    assert_eq!(card["agent"], "127.0.0.1");
    assert_eq!(card["agent_label"], "quote-bot");
    assert_eq!(card["trigger"], "Client asked for a quote");
    let full = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(full["request"]["body"], MAIL);
    assert_eq!(full["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(full["request"]["headers"]["x-mail-secret"], "[redacted]");
    assert!(!full.to_string().contains("sg-live-secret"));

    let (status, v) = api
        .decide(
            &id,
            "approve",
            ALICE.1,
            Some(json!({"note": "looks right"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let done = api.until(&id, "released").await;
    assert_eq!(done["response"]["status"], 200);
    assert_eq!(done["decided_by"], "alice");
    assert_eq!(done["note"], "looks right");

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, MAIL.as_bytes(), "the original bytes");
    assert_eq!(seen[0].headers["authorization"], "Bearer sg-live-secret");
    assert!(seen[0].headers.get("airlock-trigger").is_none());

    // Credentials are gone from the store now the hold is final.
    let stored = a.store().get(&id).await.unwrap().unwrap();
    assert!(
        stored
            .headers
            .iter()
            .all(|(k, _)| k != "authorization" && k != "x-mail-secret")
    );
    // A second approval changes nothing.
    let (status, _) = api.decide(&id, "approve", ROOT.1, None).await;
    assert_eq!(status, 409);
    assert_eq!(up.count(), 1);
    assert!(a.store().verify_audit().await.unwrap() >= 3);
    a.stop().await;
}

#[tokio::test]
async fn dismissed_hold_is_never_sent_and_retries_are_told_why() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&res);
    let (status, _) = api
        .decide(
            &id,
            "dismiss",
            ALICE.1,
            Some(json!({"reason": "wrong price"})),
        )
        .await;
    assert_eq!(status, 200);
    let retry = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(retry.status(), 403);
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["airlock"], "dismissed");
    assert_eq!(body["reason"], "wrong price");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn expired_hold_is_never_sent_and_cannot_be_approved() {
    let (_pki, up, a, api, clock) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&res);
    clock.advance(Duration::from_secs(2 * 3600 + 1));
    let expired = a.store().expire_due().await.unwrap();
    assert_eq!(expired.len(), 1);
    let v = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(v["state"], "expired");
    let (status, _) = api.decide(&id, "approve", ALICE.1, None).await;
    assert_eq!(status, 409);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.count(), 0);
    let audit = api.get("/api/audit", ALICE.1).await;
    let events: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["held", "expired"]);
    a.stop().await;
}

#[tokio::test]
async fn identical_retries_share_one_hold_and_the_first_after_release_gets_the_response() {
    let (_pki, up, a, api, _) = setup().await;
    let first = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&first);
    let second = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(second.headers()["airlock-hold"], id.as_str());
    let list = api.get("/api/holds?state=pending", ALICE.1).await;
    assert_eq!(list["holds"].as_array().unwrap().len(), 1);
    api.decide(&id, "approve", ALICE.1, None).await;
    api.until(&id, "released").await;
    let replay = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["airlock-replay"], id.as_str());
    assert_eq!(
        replay.text().await.unwrap(),
        "hello from upstream /v3/mail/send"
    );
    // Once replayed, the same request is a new action: a new hold.
    let again = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(again.status(), 403);
    assert_ne!(again.headers()["airlock-hold"], id.as_str());
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn prefer_wait_returns_the_real_response_when_approved_in_time() {
    let (_pki, up, a, api, _) = setup().await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let url = format!("https://mail.test:{}/v3/mail/send", up.port());
    let waiting = tokio::spawn(async move {
        c.post(url)
            .header("prefer", "wait=30")
            .body(MAIL)
            .send()
            .await
            .unwrap()
    });
    let id = loop {
        let list = api.get("/api/holds?state=pending", ALICE.1).await;
        if let Some(id) = list["holds"][0]["id"].as_str() {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    api.decide(&id, "approve", ALICE.1, None).await;
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["preference-applied"], "wait=30");
    assert_eq!(
        res.text().await.unwrap(),
        "hello from upstream /v3/mail/send"
    );
    assert_eq!(up.count(), 1);
    a.stop().await;
}

/// A rule's `wait` keeps a held request open without the agent asking:
/// approved in time it gets the real response; otherwise the held answer
/// when the wait ends. `Prefer: wait` asks for longer, up to `max_wait`.
#[tokio::test]
async fn a_rules_wait_keeps_the_request_open_without_the_agent_asking() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let rules = r#"
[[rule]]
name = "mail-send"
action = "review"
host = ["mail.test"]
method = ["POST"]
wait = "1s"
max_wait = "20s"
"#;
    let a = airlock_with(&pki, rules, "", &reviewers_toml(), TestClock::new().clock()).await;
    let api = Api::new(a.review_url());
    let url = format!("https://mail.test:{}/v3/mail/send", up.port());
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    // Nobody decides: the held answer once the rule's second is over.
    let started = std::time::Instant::now();
    let res = c.post(&url).body("one").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        res.headers().get("preference-applied").is_none(),
        "nobody asked"
    );
    assert_eq!(res.headers()["airlock-state"], "pending");
    // Asking for longer than the rule's wait: approved meanwhile, the real
    // response on the same request.
    let waiting = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.post(url)
                .header("prefer", "wait=15")
                .body("two")
                .send()
                .await
                .unwrap()
        }
    });
    let id = loop {
        let list = api.get("/api/holds?state=pending", ROOT.1).await;
        let found = list["holds"].as_array().unwrap().iter().find_map(|h| {
            (h["request"]["body"] == "two").then(|| h["id"].as_str().unwrap().to_owned())
        });
        if let Some(id) = found {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.decide(&id, "approve", ROOT.1, None).await;
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["preference-applied"], "wait=15");
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_approvals_send_exactly_once() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&res);
    let base = a.review_url();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (base, id) = (base.clone(), id.clone());
            tokio::spawn(async move { Api::new(base).decide(&id, "approve", ROOT.1, None).await.0 })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1);
    api.until(&id, "released").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn only_listed_reviewers_and_admins_decide() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&res);
    let path = format!("/api/holds/{id}/approve");
    assert_eq!(api.call("POST", &path, Some(BOB.1), None).await.0, 403);
    assert_eq!(api.call("POST", &path, None, None).await.0, 401);
    assert_eq!(
        api.call("POST", &path, Some("not-a-token"), None).await.0,
        401
    );
    assert_eq!(api.call("GET", "/api/holds", None, None).await.0, 401);
    let missing = "0190b7a0-0000-7000-8000-000000000000";
    assert_eq!(api.decide(missing, "approve", ROOT.1, None).await.0, 404);
    let (status, v) = api
        .decide(&id, "dismiss", ALICE.1, Some(json!({"reason": 5})))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].is_string());
    // Editing is refused where the rule does not allow it.
    let (status, _) = api
        .call("POST", &path, Some(ROOT.1), Some(json!({"body": "{}"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(api.call("POST", &path, Some(ROOT.1), None).await.0, 200);
    api.until(&id, "released").await;
    a.stop().await;
}

#[tokio::test]
async fn an_edited_body_is_what_gets_sent_and_the_audit_records_both() {
    let (_pki, up, a, api, _) = setup().await;
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .patch(format!("https://mail.test:{}/deals/7", up.port()))
        .body(r#"{"stage":"won"}"#)
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let (status, _) = api
        .decide(
            &id,
            "approve",
            BOB.1,
            Some(json!({"body": "{\"stage\":\"lost\"}"})),
        )
        .await;
    assert_eq!(status, 200);
    api.until(&id, "released").await;
    assert_eq!(up.requests()[0].body, r#"{"stage":"lost"}"#.as_bytes());
    let audit = api.get("/api/audit", BOB.1).await;
    let approved = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["event"] == "approved")
        .unwrap();
    assert_eq!(approved["detail"]["edited"], true);
    assert_ne!(
        approved["detail"]["body_sha256_before"],
        approved["detail"]["body_sha256_after"]
    );
    a.stop().await;
}

#[tokio::test]
async fn the_status_url_needs_no_token_and_shows_the_outcome() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let held: Value = res.json().await.unwrap();
    let status_url = held["status_url"].as_str().unwrap().to_owned();
    let path = status_url
        .split_once("/api/")
        .map(|(_, p)| format!("/api/{p}"))
        .unwrap();
    let (status, v) = api.call("GET", &path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["state"], "pending");
    let id = held["id"].as_str().unwrap();
    api.decide(id, "approve", ALICE.1, None).await;
    api.until(id, "released").await;
    let (_, v) = api.call("GET", &path, None, None).await;
    assert_eq!(v["state"], "released");
    assert_eq!(v["response"]["status"], 200);
    assert_eq!(
        api.call("GET", "/api/status/guess", None, None).await.0,
        404
    );
    a.stop().await;
}

#[tokio::test]
async fn a_tampered_audit_record_is_found() {
    let (_pki, up, a, api, _) = setup().await;
    let res = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&res);
    api.decide(&id, "dismiss", ALICE.1, None).await;
    assert_eq!(a.store().verify_audit().await.unwrap(), 2);
    let mut record = a.store().audit_after(0, 1).await.unwrap().remove(0);
    assert_eq!(record.seq, 1);
    record.actor = "mallory".into();
    a.store().overwrite_audit_record(&record).await.unwrap();
    let err = a.store().verify_audit().await.unwrap_err();
    assert_eq!(err.seq, 1);
    a.stop().await;
}

#[tokio::test]
async fn events_stream_tells_of_holds_as_they_happen() {
    use futures_util::StreamExt;
    let (_pki, up, a, _api, _) = setup().await;
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/api/events", a.review_url()))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut stream = res.bytes_stream();
    let held = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&held);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: held"), "{text}");
    assert!(text.contains(&id), "{text}");
    assert!(
        !text.contains("client@example.com"),
        "events carry no request content"
    );
    a.stop().await;
}

#[tokio::test]
async fn idempotency_key_reused_with_a_changed_request_is_refused() {
    let (_pki, up, a, api, _) = setup().await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let url = format!("https://mail.test:{}/v3/mail/send", up.port());
    let mut statuses = Vec::new();
    for body in [
        MAIL,
        r#"{"to":"client@example.com","subject":"Your quote (retry)"}"#,
    ] {
        let res = c
            .post(&url)
            .header("idempotency-key", "quote-42")
            .body(body)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [403, 422]);
    let list = api.get("/api/holds?state=pending", ALICE.1).await;
    assert_eq!(list["holds"].as_array().unwrap().len(), 1);
    a.stop().await;
}

#[tokio::test]
async fn curl_is_held_and_gets_the_held_answer() {
    let (_pki, up, a, api, _) = setup().await;
    let curl = common::require_tool("curl");
    let (proxy, ca) = (a.proxy_url(), a.ca_path());
    let url = format!("https://mail.test:{}/v3/mail/send", up.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(curl)
            .args(["-sS", "-i", "-x", &proxy, "--cacert"])
            .arg(ca)
            .args(["-H", "content-type: application/json", "-d", MAIL, &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.contains("airlock-state: pending"), "{text}");
    assert!(text.contains("\"airlock\":\"held\""), "{text}");
    let list = api.get("/api/holds?state=pending", ALICE.1).await;
    assert_eq!(list["holds"].as_array().unwrap().len(), 1);
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn without_reviewers_an_admin_token_is_made_once_and_the_server_stays_on_loopback() {
    let pki = Pki::new();
    // Refused: a public review address with nobody configured to review.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::write_config(dir.path(), &pki, RULES, "", "");
    config.review.listen = "0.0.0.0:0".parse().unwrap();
    let err = airlock::server::start(&config).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("no [[reviewer]]"), "{err}");
    // On loopback: one admin token, its hash kept in the store.
    let config = common::write_config(dir.path(), &pki, RULES, "", "");
    let first = airlock::server::start(&config).await.unwrap();
    let hash = first.store.admin_token_hash().await.unwrap().unwrap();
    first.shutdown().await;
    let second = airlock::server::start(&config).await.unwrap();
    assert_eq!(
        second.store.admin_token_hash().await.unwrap().unwrap(),
        hash
    );
    second.shutdown().await;
}

#[tokio::test]
async fn many_agents_holding_at_once_are_all_answered() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    // All of them come from 127.0.0.1, one identity: lift its pending cap.
    let extra = format!(
        "[defaults]\nmax_pending_per_agent = 100\n{}",
        reviewers_toml()
    );
    let a = airlock_with(&pki, RULES, "", &extra, TestClock::new().clock()).await;
    let api = Api::new(a.review_url());
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (proxy, ca) = (a.proxy_url(), a.ca_pem());
            let url = format!("https://mail.test:{}/v3/mail/send", up.port());
            tokio::spawn(async move {
                client(&proxy, &[&ca])
                    .post(url)
                    .body(format!(r#"{{"to":"c{i}@example.com","subject":"n{i}"}}"#))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        let status = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("every held answer arrives")
            .unwrap();
        assert_eq!(status, 403);
    }
    let list = api.get("/api/holds?state=pending&limit=100", ALICE.1).await;
    assert_eq!(list["holds"].as_array().unwrap().len(), 40);
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn a_list_carries_the_preview_it_asks_for_and_says_when_a_body_is_cut() {
    let (_pki, up, a, api, _) = setup().await;
    let long = format!(r#"{{"to":"c@example.com","text":"{}"}}"#, "x".repeat(5000));
    let id = common::hold_id(&send_mail(&a, up.port(), &long).await);
    let short = common::hold_id(&send_mail(&a, up.port(), MAIL).await);
    let find = |list: &serde_json::Value, id: &str| {
        list["holds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap()["request"]
            .clone()
    };
    let full = api.get("/api/holds?state=pending", ALICE.1).await;
    assert_eq!(find(&full, &id)["body"], long.as_str());
    assert_eq!(find(&full, &id)["body_truncated"], false);
    let cut = api
        .get("/api/holds?state=pending&preview=2048", ALICE.1)
        .await;
    let req = find(&cut, &id);
    assert_eq!(req["body"].as_str().unwrap(), &long[..2048]);
    assert_eq!(req["body_truncated"], true);
    assert_eq!(req["body_size"], long.len());
    assert_eq!(find(&cut, &short)["body"], MAIL, "a short body is whole");
    assert_eq!(find(&cut, &short)["body_truncated"], false);
    // More than the default is the default; the whole hold is one GET away.
    let big = api
        .get("/api/holds?state=pending&preview=99999999", ALICE.1)
        .await;
    assert_eq!(find(&big, &id)["body"], long.as_str());
    let one = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(one["request"]["body"], long.as_str());
    assert_eq!(one["request"]["body_truncated"], false);
    let bad = reqwest::Client::new()
        .get(format!("{}/api/holds?preview=lots", a.review_url()))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    a.stop().await;
}

#[tokio::test]
async fn stats_count_outcomes_and_decision_times_per_rule() {
    let (_pki, up, a, api, clock) = setup().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let res = send_mail(
            &a,
            up.port(),
            &format!(r#"{{"to":"c{n}@example.com","subject":"s"}}"#),
        )
        .await;
        ids.push(common::hold_id(&res));
    }
    clock.advance(Duration::from_secs(10));
    api.decide(&ids[0], "approve", ALICE.1, None).await;
    clock.advance(Duration::from_secs(20));
    api.decide(&ids[1], "dismiss", ALICE.1, None).await;
    let v = api.get("/api/stats?since=30d", ALICE.1).await;
    assert_eq!(v["queue_depth"], 1);
    clock.advance(Duration::from_secs(2 * 3600));
    a.store().expire_due().await.unwrap();
    let v = api.get("/api/stats?since=30d", ALICE.1).await;
    let mail = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "mail-send")
        .unwrap();
    assert_eq!(mail["holds"], 3);
    assert_eq!(mail["approved"], 1);
    assert_eq!(mail["dismissed"], 1);
    assert_eq!(mail["expired"], 1);
    assert_eq!(mail["approval_rate"], 0.5);
    // Decision times 10 s and 30 s: nearest-rank median 10, p90 30.
    assert_eq!(mail["median_decision_secs"], 10.0);
    assert_eq!(mail["p90_decision_secs"], 30.0);
    assert_eq!(v["queue_depth"], 0);
    assert_eq!(
        api.call("GET", "/api/stats?since=soon", Some(ALICE.1), None)
            .await
            .0,
        400
    );
    a.stop().await;
}

#[tokio::test]
async fn an_identical_retry_that_asks_to_wait_waits_on_the_same_hold() {
    let (_pki, up, a, api, _) = setup().await;
    let first = send_mail(&a, up.port(), MAIL).await;
    let id = common::hold_id(&first);
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let url = format!("https://mail.test:{}/v3/mail/send", up.port());
    let waiting = tokio::spawn(async move {
        c.post(url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sg-live-secret")
            .header("x-mail-secret", "also-secret")
            .header("airlock-trigger", "Client asked for a quote")
            .header("airlock-agent", "quote-bot")
            .header("prefer", "wait=30")
            .body(MAIL)
            .send()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the retry waits instead of answering at once"
    );
    api.decide(&id, "approve", ALICE.1, None).await;
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn an_unmatched_hold_offers_a_rule_that_would_classify_it() {
    let (_pki, up, a, api, _) = setup().await;
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .delete(format!("https://mail.test:{}/v3/contacts/42", up.port()))
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let v = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(v["rule"], "unmatched");
    assert_eq!(v["label"], "No matching rule");
    let snippet = v["rule_snippet"].as_str().unwrap();
    // The snippet is a valid rule that matches this very request.
    let rules = airlock::rules::parse_file("snippet.toml", snippet).unwrap();
    let set = airlock::rules::RuleSet::new(rules, airlock::rules::Action::Review).unwrap();
    let headers = http::HeaderMap::new();
    let view = airlock::rules::RequestView {
        method: "DELETE",
        host: "mail.test",
        path: "/v3/contacts/42",
        query: None,
        headers: &headers,
    };
    match set.decide(&view, airlock::rules::BodyView::Unread) {
        airlock::rules::Decision::Matched(rule) => {
            assert_eq!(rule.name, "mail-test-delete-v3-contacts-42")
        }
        other => panic!("the snippet does not match: {other:?}"),
    }
    a.stop().await;
}

#[tokio::test]
async fn a_rule_asking_for_two_approvals_sends_only_after_two_reviewers() {
    let rules = RULES.replace(
        "reviewers = [\"alice\"]\n",
        "reviewers = [\"alice\", \"bob\"]\napprovals = 2\n",
    );
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(
        &pki,
        &rules,
        "",
        &reviewers_toml(),
        TestClock::new().clock(),
    )
    .await;
    let api = Api::new(a.review_url());
    let res = send_mail(&a, up.port(), MAIL).await;
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);

    let (status, first) = api
        .decide(&id, "approve", ALICE.1, Some(json!({"note": "fine by me"})))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["state"], "pending", "1 of 2");
    assert_eq!(first["approvals_needed"], 2);
    assert_eq!(first["approvals"][0]["by"], "alice");
    assert_eq!(first["approvals"][0]["note"], "fine by me");
    // The same person twice counts once.
    let (status, again) = api.decide(&id, "approve", ALICE.1, None).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("already approved"),
        "{again}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.count(), 0, "not sent on one approval");

    let (status, second) = api.decide(&id, "approve", BOB.1, None).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["state"], "approved");
    api.until(&id, "released").await;
    assert_eq!(up.count(), 1, "sent once, after the second approval");
    let records = api.get("/api/audit?limit=100", ROOT.1).await;
    let events: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hold"] == id.as_str())
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["held", "approval", "approved", "released"]);
}
