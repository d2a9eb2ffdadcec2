//! Notifications end to end: real webhook receivers on 127.0.0.1, real
//! agents through airlock, reviewers deciding through the real API. Shows
//! signed deliveries with deep links, Slack follow-ups, personal hooks,
//! delivery after a receiver outage across a restart, that a hung receiver
//! never holds up an agent, failing sinks in /metrics, and escalation to the
//! backup with the store's clock moved instead of waiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::api::Api;
use common::webhook::Webhook;
use common::{ALICE, BOB, Pki, ROOT, TestClock, airlock_with, client, reviewers_toml, upstream};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

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
backup = ["bob"]
escalate_after = "1h"
summary = "Email to {/to}: {/subject}"

[[rule]]
name = "deal-stage"
action = "review"
label = "Deal stage change"
host = ["mail.test"]
method = ["PATCH"]
window = "4h"
reviewers = ["alice"]
backup = ["bob"]

[[rule]]
name = "reads"
action = "automatic"
host = ["mail.test"]
method = ["GET"]
"#;

const MAIL: &str = r#"{"to":"client@example.com","subject":"Your quote"}"#;
const WAIT: Duration = Duration::from_secs(15);

/// `[[reviewer]]` for alice, bob and root, with personal hooks for alice and bob.
fn reviewers_with_hooks(alice: &Webhook, bob: &Webhook) -> String {
    reviewers_toml()
        .replace(
            "name = \"alice\"\n",
            &format!("name = \"alice\"\nnotify = \"{}\"\n", alice.url("/alice")),
        )
        .replace(
            "name = \"bob\"\n",
            &format!("name = \"bob\"\nnotify = \"{}\"\n", bob.url("/bob")),
        )
}

fn sink(url: &str, extra: &str) -> String {
    format!("[[notify]]\nname = \"hooks\"\nurl = \"{url}\"\n{extra}\n")
}

async fn send_mail(a: &common::Airlock, port: u16) -> reqwest::Response {
    send_mail_body(a, port, MAIL).await
}

async fn send_mail_body(a: &common::Airlock, port: u16, body: &str) -> reqwest::Response {
    client(&a.proxy_url(), &[&a.ca_pem()])
        .post(format!("https://mail.test:{port}/v3/mail/send"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sg-live-secret")
        .header("airlock-trigger", "Deal inactive for 7 days")
        .header("airlock-agent", "follow-up-bot")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// airlock on the test rules and reviewers, with one sink named `hooks`
/// pointing at `hooks` (plus `sink_extra` settings), and a recording upstream.
async fn with_sink(
    hooks: &Webhook,
    path: &str,
    sink_extra: &str,
    clock: &TestClock,
) -> (Pki, common::Upstream, common::Airlock) {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let extra = format!("{}{}", reviewers_toml(), sink(&hooks.url(path), sink_extra));
    let a = airlock_with(&pki, RULES, "", &extra, clock.clock()).await;
    (pki, up, a)
}

/// The `/metrics` text.
async fn scrape_metrics(a: &common::Airlock) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/metrics", a.review_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose name and labels are `name`; -1 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    airlock::holds::hex(&mac.finalize().into_bytes())
}

#[tokio::test]
async fn events_arrive_signed_with_a_link_to_the_card() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let hooks = Webhook::start().await;
    let (alice, bob) = (Webhook::start().await, Webhook::start().await);
    let extra = format!(
        "{}{}",
        reviewers_with_hooks(&alice, &bob),
        sink(&hooks.url("/in"), "secret = \"s3cret\"")
    );
    let a = airlock_with(&pki, RULES, "", &extra, TestClock::new().clock()).await;
    let api = Api::new(a.review_url());

    let res = send_mail(&a, up.port()).await;
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);
    let got = hooks
        .wait_until(WAIT, "held", |d| !Webhook::events(d, "held").is_empty())
        .await;
    let held = &Webhook::events(&got, "held")[0];
    let sig = held.header("airlock-signature").expect("signed");
    assert_eq!(sig, format!("sha256={}", hmac_hex("s3cret", &held.body)));
    assert_ne!(
        sig,
        format!("sha256={}", hmac_hex("other", &held.body)),
        "the signature depends on the secret"
    );
    assert!(held.header("airlock-delivery").is_some());
    let doc = held.json();
    assert_eq!(doc["event"], "held");
    assert_eq!(doc["id"], id);
    assert_eq!(doc["rule"], "mail-send");
    assert_eq!(doc["label"], "Outbound client message");
    assert_eq!(doc["summary"], "Email to client@example.com: Your quote");
    assert_eq!(doc["agent"], "127.0.0.1");
    assert_eq!(doc["agent_label"], "follow-up-bot");
    assert_eq!(doc["trigger"], "Deal inactive for 7 days");
    assert_eq!(doc["outcome"], Value::Null);
    assert_eq!(doc["link"], format!("{}/#hold={id}", a.review_url()));
    let card = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(doc["expires_at"], card["expires_at"]);
    assert!(
        !String::from_utf8_lossy(&held.body).contains("sg-live-secret"),
        "no credential leaves in a notification"
    );
    // The rule's reviewer hears of it on her own hook; the backup does not, yet.
    alice
        .wait_until(WAIT, "alice's held", |d| {
            !Webhook::events(d, "held").is_empty()
        })
        .await;

    let (status, _) = api
        .decide(&id, "approve", ALICE.1, Some(json!({"note": "fine"})))
        .await;
    assert_eq!(status, 200);
    let got = hooks
        .wait_until(WAIT, "decided and released", |d| {
            !Webhook::events(d, "decided").is_empty() && !Webhook::events(d, "released").is_empty()
        })
        .await;
    let decided = Webhook::events(&got, "decided")[0].json();
    assert_eq!(decided["outcome"]["state"], "approved");
    assert_eq!(decided["outcome"]["by"], "alice");
    assert_eq!(decided["outcome"]["note"], "fine");
    let released = Webhook::events(&got, "released")[0].json();
    assert_eq!(released["outcome"]["status"], 200);
    assert!(released["sequence"].as_u64() > decided["sequence"].as_u64());
    for d in &got {
        assert_eq!(
            d.header("airlock-signature").unwrap(),
            format!("sha256={}", hmac_hex("s3cret", &d.body))
        );
    }
    // Alice's follow-up says it is decided; bob was never involved.
    alice
        .wait_until(WAIT, "alice's decided", |d| {
            !Webhook::events(d, "decided").is_empty()
        })
        .await;
    assert!(bob.received().is_empty(), "{:?}", bob.received());
    a.stop().await;
}

#[tokio::test]
async fn slack_messages_link_to_the_card_and_follow_up_with_who_decided() {
    let hooks = Webhook::start().await;
    let (_pki, up, a) = with_sink(
        &hooks,
        "/services/T0/B0/x",
        "format = \"slack\"",
        &TestClock::new(),
    )
    .await;
    let api = Api::new(a.review_url());
    let id = common::hold_id(&send_mail(&a, up.port()).await);
    let got = hooks
        .wait_until(WAIT, "held", |d| !Webhook::events(d, "held").is_empty())
        .await;
    let held = Webhook::events(&got, "held")[0].json();
    let text = held["text"].as_str().unwrap();
    assert!(
        text.contains("Email to client@example.com: Your quote"),
        "{text}"
    );
    let blocks = held["blocks"].as_array().unwrap();
    let all = serde_json::to_string(blocks).unwrap();
    assert!(all.contains("Deal inactive for 7 days"), "trigger: {all}");
    assert!(
        all.contains("<!date^"),
        "expiry in the reader's time: {all}"
    );
    let buttons: Vec<&Value> = blocks
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .collect();
    assert_eq!(
        buttons[0]["url"],
        format!("{}/#hold={id}", a.review_url()),
        "{all}"
    );

    let (status, _) = api
        .decide(
            &id,
            "dismiss",
            ALICE.1,
            Some(json!({"reason": "wrong client"})),
        )
        .await;
    assert_eq!(status, 200);
    let got = hooks
        .wait_until(WAIT, "decided", |d| {
            !Webhook::events(d, "decided").is_empty()
        })
        .await;
    let follow_up = Webhook::events(&got, "decided")[0].json();
    let text = follow_up["text"].as_str().unwrap();
    assert!(text.starts_with("Dismissed by alice"), "{text}");
    let all = serde_json::to_string(&follow_up["blocks"]).unwrap();
    assert!(all.contains("wrong client"), "{all}");
    assert!(
        !all.contains("\"actions\""),
        "no buttons to act on a decided hold: {all}"
    );
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_even_across_a_restart() {
    let hooks = Webhook::start().await;
    hooks.down();
    let clock = TestClock::new();
    let (_pki, up, mut a) = with_sink(
        &hooks,
        "/in",
        "backoff = \"100ms\"\ntimeout = \"1s\"",
        &clock,
    )
    .await;
    let first = common::hold_id(&send_mail(&a, up.port()).await);
    let api = Api::new(a.review_url());
    let (status, _) = api
        .decide(&first, "dismiss", ALICE.1, Some(json!({})))
        .await;
    assert_eq!(status, 200);
    // Let a few attempts fail before the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hooks.received().is_empty());

    a.restart(clock.clock()).await;
    let second = common::hold_id(
        &send_mail_body(
            &a,
            up.port(),
            r#"{"to":"other@example.com","subject":"Hi"}"#,
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    hooks.up().await;
    let got = hooks
        .wait_until(WAIT, "every event", |d| {
            Webhook::events(d, "held").len() >= 2 && !Webhook::events(d, "decided").is_empty()
        })
        .await;
    let held: Vec<String> = Webhook::events(&got, "held")
        .iter()
        .map(|d| d.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(held.contains(&first) && held.contains(&second), "{held:?}");
    assert_eq!(
        Webhook::events(&got, "decided")[0].json()["id"],
        first.as_str()
    );
    // Each event once: retries stop once delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.received().len(), 3, "{:?}", hooks.received());
    a.stop().await;
}

#[tokio::test]
async fn a_hung_receiver_never_holds_up_an_agent_or_another_receiver() {
    let hooks = Webhook::start().await;
    hooks.hang();
    let good = Webhook::start().await;
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let extra = format!(
        "{}{}[[notify]]\nname = \"good\"\nurl = \"{}\"\n",
        reviewers_toml(),
        sink(&hooks.url("/in"), "timeout = \"60s\""),
        good.url("/in")
    );
    let a = airlock_with(&pki, RULES, "", &extra, TestClock::new().clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    // The first hold's notification reaches the receiver and hangs there.
    let res = send_mail(&a, up.port()).await;
    assert_eq!(res.status(), 403);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hooks.arrived() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it hangs, agents are answered: holds, and automatic reads.
    for i in 0..10 {
        let res = agent
            .patch(format!("https://mail.test:{}/deals/{i}", up.port()))
            .header("content-type", "application/json")
            .body(format!(r#"{{"stage":"closed-{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "held");
        let res = agent
            .get(format!("https://mail.test:{}/deals/{i}", up.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "automatic");
    }
    assert!(hooks.arrived() >= 1);
    assert!(
        hooks.received().is_empty(),
        "every request above completed while the receiver had answered nothing"
    );
    let all = airlock::holds::store::ListFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(a.store().list(&all).await.unwrap().0.len(), 11);
    // The other receiver hears of every hold meanwhile.
    good.wait_until(WAIT, "11 held", |d| Webhook::events(d, "held").len() == 11)
        .await;
    assert!(hooks.received().is_empty());
    a.stop().await;
}

#[tokio::test]
async fn a_failing_sink_shows_in_metrics_until_it_recovers() {
    let hooks = Webhook::start().await;
    hooks.fail();
    let (_pki, up, a) = with_sink(&hooks, "/in", "backoff = \"100ms\"", &TestClock::new()).await;
    send_mail(&a, up.port()).await;
    let scrape = || scrape_metrics(&a);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape().await;
        if metric(&text, "airlock_notify_failing{sink=\"hooks\"}") == 1.0
            && metric(
                &text,
                "airlock_notify_deliveries_total{sink=\"hooks\",result=\"failed\"}",
            ) >= 2.0
        {
            assert_eq!(metric(&text, "airlock_notify_outbox"), 1.0, "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hooks.answer();
    hooks
        .wait_until(WAIT, "held after recovery", |d| !d.is_empty())
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape().await;
        if metric(&text, "airlock_notify_failing{sink=\"hooks\"}") == 0.0 {
            assert_eq!(
                metric(
                    &text,
                    "airlock_notify_deliveries_total{sink=\"hooks\",result=\"delivered\"}"
                ),
                1.0
            );
            assert_eq!(metric(&text, "airlock_notify_outbox"), 0.0, "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
}

#[tokio::test]
async fn a_hold_still_pending_at_escalate_after_goes_to_the_backup() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let (alice, bob) = (Webhook::start().await, Webhook::start().await);
    let clock = TestClock::new();
    let a = airlock_with(
        &pki,
        RULES,
        "",
        &reviewers_with_hooks(&alice, &bob),
        clock.clock(),
    )
    .await;
    let api = Api::new(a.review_url());
    let id = common::hold_id(&send_mail(&a, up.port()).await);
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(hold["escalated"], false);
    // Before escalation the backup may not decide.
    let (status, _) = api.decide(&id, "approve", BOB.1, Some(json!({}))).await;
    assert_eq!(status, 403);

    clock.advance(Duration::from_secs(59 * 60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.get(&format!("/api/holds/{id}"), ROOT.1).await["escalated"],
        false,
        "not before escalate_after"
    );
    clock.advance(Duration::from_secs(2 * 60));
    let got = bob
        .wait_until(WAIT, "bob's escalated", |d| {
            !Webhook::events(d, "escalated").is_empty()
        })
        .await;
    let doc = Webhook::events(&got, "escalated")[0].json();
    assert_eq!(doc["id"], id);
    assert_eq!(doc["outcome"]["state"], "pending");
    assert_eq!(doc["backup"], json!(["bob"]));
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(hold["escalated"], true);
    assert_eq!(hold["state"], "pending");
    let audit = api.get("/api/audit?limit=100", ROOT.1).await;
    let escalations: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "escalated")
        .collect();
    assert_eq!(escalations.len(), 1, "{audit}");
    assert_eq!(escalations[0]["hold"], id);

    // Now the backup stands in, and both hear how it ended.
    let (status, _) = api.decide(&id, "approve", BOB.1, Some(json!({}))).await;
    assert_eq!(status, 200);
    for hook in [&alice, &bob] {
        hook.wait_until(WAIT, "decided", |d| {
            !Webhook::events(d, "decided").is_empty()
        })
        .await;
    }
    a.stop().await;
}

#[tokio::test]
async fn escalation_defaults_to_half_the_window() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let clock = TestClock::new();
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), clock.clock()).await;
    let api = Api::new(a.review_url());
    // deal-stage: 4 h window, no escalate_after.
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .patch(format!("https://mail.test:{}/deals/7", up.port()))
        .body(r#"{"stage":"won"}"#)
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    let created: jiff::Timestamp = hold["created_at"].as_str().unwrap().parse().unwrap();
    let escalate: jiff::Timestamp = hold["escalate_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(escalate.duration_since(created).as_secs(), 2 * 3600);
    clock.advance(Duration::from_secs(2 * 3600 - 60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.get(&format!("/api/holds/{id}"), ROOT.1).await["escalated"],
        false
    );
    clock.advance(Duration::from_secs(120));
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get(&format!("/api/holds/{id}"), ROOT.1).await["escalated"] != true {
        assert!(tokio::time::Instant::now() < deadline, "never escalated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
}

#[tokio::test]
async fn a_receiver_that_refuses_a_delivery_is_not_asked_again() {
    let hooks = Webhook::start().await;
    hooks.refuse();
    let (_pki, up, a) = with_sink(&hooks, "/in", "backoff = \"100ms\"", &TestClock::new()).await;
    send_mail(&a, up.port()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hooks.arrived() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A 500 would have been retried several times by now (100 ms backoff).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(hooks.arrived(), 1, "a 400 is not retried");
    let text = scrape_metrics(&a).await;
    let dropped = "airlock_notify_deliveries_total{sink=\"hooks\",result=\"dropped\"}";
    assert_eq!(metric(&text, dropped), 1.0, "{text}");
    assert_eq!(metric(&text, "airlock_notify_outbox"), 0.0, "{text}");
    a.stop().await;
}

#[tokio::test]
async fn an_unmatched_hold_is_told_to_the_unmatched_reviewers_not_to_other_reviewers() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let (alice, bob) = (Webhook::start().await, Webhook::start().await);
    let extra = format!(
        "[defaults]\nunmatched_reviewers = [\"bob\"]\n{}",
        reviewers_with_hooks(&alice, &bob)
    );
    let a = airlock_with(&pki, RULES, "", &extra, TestClock::new().clock()).await;
    let unmatched = client(&a.proxy_url(), &[&a.ca_pem()])
        .delete(format!("https://mail.test:{}/v3/contacts/42", up.port()))
        .send()
        .await
        .unwrap();
    let unmatched = common::hold_id(&unmatched);
    let got = bob
        .wait_until(WAIT, "bob's held", |d| {
            !Webhook::events(d, "held").is_empty()
        })
        .await;
    let doc = Webhook::events(&got, "held")[0].json();
    assert_eq!(
        (&doc["id"], &doc["rule"]),
        (&json!(unmatched), &json!("unmatched"))
    );
    // alice owns the mail rule only: she hears of her hold, not of that one.
    let mail = common::hold_id(&send_mail(&a, up.port()).await);
    let got = alice
        .wait_until(WAIT, "alice's held", |d| {
            !Webhook::events(d, "held").is_empty()
        })
        .await;
    let told: Vec<Value> = Webhook::events(&got, "held")
        .iter()
        .map(|d| d.json()["id"].clone())
        .collect();
    assert_eq!(told, [json!(mail)]);
    a.stop().await;
}
