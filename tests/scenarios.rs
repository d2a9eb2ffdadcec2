//! The four escalation scenarios the product is built around, end to end:
//! a real agent client through airlock, upstreams that count what reaches
//! them, reviewers on the real API, a webhook receiver for notifications,
//! and the store's clock moved instead of waiting out the windows.
//!
//! 1. Outbound client message: 2 h window; on expiry nothing is sent and the
//!    event is recorded as unactioned.
//! 2. Deal status change: 4 h window; on expiry the status stays as it was,
//!    and the next run's identical request is held afresh.
//! 3. Document delivery: one business day; on expiry the `expired`
//!    notification carries what the agent needs to send a holding message.
//! 4. Unrecognised input: no rule matches, so it is held as "No matching
//!    rule", dismissed, and nothing is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::api::Api;
use common::webhook::Webhook;
use common::{ALICE, Pki, ROOT, TestClock, airlock_with, client, reviewers_toml, upstream};
use serde_json::{Value, json};

const RULES: &str = r#"
[[rule]]
name = "client-message"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
reviewers = ["alice"]
summary = "Email to {/to}: {/subject}"

[[rule]]
name = "deal-stage"
action = "review"
label = "Deal status change"
host = ["review.test"]
method = ["PATCH"]
path = ["/crm/v3/objects/deals/*"]
json = { "/properties/dealstage" = "*" }
window = "4h"
reviewers = ["alice"]
summary = "Move deal {path} to {/properties/dealstage}"

[[rule]]
name = "document-delivery"
action = "review"
label = "Document delivery"
host = ["review.test"]
method = ["POST"]
path = ["/documents/send"]
window = "1bd"
reviewers = ["alice"]
summary = "Send {/document} to {/client/name} <{/client/email}>"
"#;

/// Every event to one sink, so the test can read what went out.
fn sink(hooks: &Webhook) -> String {
    format!(
        "{}[[notify]]\nname = \"ops\"\nurl = \"{}\"\n",
        reviewers_toml(),
        hooks.url("/airlock")
    )
}

/// Moves the clock past a hold's window and waits for the sweeper.
async fn run_out_the_window(api: &Api, clock: &TestClock, id: &str) -> Value {
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    let expires: jiff::Timestamp = hold["expires_at"].as_str().unwrap().parse().unwrap();
    let created: jiff::Timestamp = hold["created_at"].as_str().unwrap().parse().unwrap();
    clock.advance(Duration::from_secs(
        expires.duration_since(created).as_secs() as u64 + 1,
    ));
    api.until(id, "expired").await
}

/// The audit records of one hold, oldest first.
async fn audit_of(api: &Api, id: &str) -> Vec<Value> {
    let audit = api.get("/api/audit?limit=1000", ROOT.1).await;
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hold"] == id)
        .cloned()
        .collect()
}

#[tokio::test]
async fn outbound_client_message_expires_unsent_and_is_recorded_unactioned() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let hooks = Webhook::start().await;
    let clock = TestClock::new();
    let a = airlock_with(&pki, RULES, "", &sink(&hooks), clock.clock()).await;
    let api = Api::new(a.review_url());
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
        .header("content-type", "application/json")
        .header("airlock-trigger", "Deal inactive for 7 days")
        .body(r#"{"to":"dana@client.example","subject":"Checking in on the proposal","text":"Hi Dana, ..."}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);

    // What the reviewer receives: the draft, the trigger, the client.
    let card = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(card["trigger"], "Deal inactive for 7 days");
    assert_eq!(card["label"], "Outbound client message");
    assert_eq!(
        card["summary"],
        "Email to dana@client.example: Checking in on the proposal"
    );
    assert!(
        card["request"]["body"]
            .as_str()
            .unwrap()
            .contains("Hi Dana")
    );
    let created: jiff::Timestamp = card["created_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = card["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(created).as_secs(), 2 * 3600);

    clock.advance(Duration::from_secs(2 * 3600 - 60));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        api.get(&format!("/api/holds/{id}"), ROOT.1).await["state"],
        "pending"
    );
    let expired = run_out_the_window(&api, &clock, &id).await;
    assert_eq!(expired["decided_by"], Value::Null);
    assert_eq!(up.count(), 0, "an expired draft is never sent");
    let records = audit_of(&api, &id).await;
    let last = records.last().unwrap();
    assert_eq!(last["event"], "expired");
    assert_eq!(last["detail"]["unactioned"], true);
    hooks
        .wait_until(Duration::from_secs(15), "expired", |d| {
            !Webhook::events(d, "expired").is_empty()
        })
        .await;
    // Approving after the window changes nothing.
    let (status, _) = api.decide(&id, "approve", ALICE.1, Some(json!({}))).await;
    assert_eq!(status, 409);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn deal_status_change_waits_four_hours_then_stays_unchanged_until_the_trigger_fires_again() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let clock = TestClock::new();
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), clock.clock()).await;
    let api = Api::new(a.review_url());
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let move_deal = || {
        agent
            .patch(format!(
                "https://review.test:{}/crm/v3/objects/deals/4711",
                up.port()
            ))
            .header("content-type", "application/json")
            .header(
                "airlock-trigger",
                "Ready to close: signed order form received",
            )
            .body(r#"{"properties":{"dealstage":"closedwon"}}"#)
            .send()
    };
    let res = move_deal().await.unwrap();
    let id = common::hold_id(&res);
    let card = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(card["label"], "Deal status change");
    assert_eq!(
        card["summary"],
        "Move deal /crm/v3/objects/deals/4711 to closedwon"
    );
    let created: jiff::Timestamp = card["created_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = card["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(created).as_secs(), 4 * 3600);

    run_out_the_window(&api, &clock, &id).await;
    assert_eq!(up.count(), 0, "the status remains unchanged");
    let events: Vec<Value> = audit_of(&api, &id)
        .await
        .iter()
        .map(|r| r["event"].clone())
        .collect();
    assert_eq!(events.first().unwrap(), "held");
    assert_eq!(events.last().unwrap(), "expired");

    // The next day's run fires the trigger again: a new hold, this time approved.
    clock.advance(Duration::from_secs(20 * 3600));
    let res = move_deal().await.unwrap();
    let again = common::hold_id(&res);
    assert_ne!(again, id);
    let (status, _) = api
        .decide(&again, "approve", ALICE.1, Some(json!({})))
        .await;
    assert_eq!(status, 200);
    api.until(&again, "released").await;
    assert_eq!(up.count(), 1, "sent once, after approval");
    assert_eq!(up.requests()[0].method, "PATCH");
    a.stop().await;
}

#[tokio::test]
async fn document_delivery_expiry_tells_the_agent_enough_to_send_a_holding_message() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let hooks = Webhook::start().await;
    let clock = TestClock::new();
    let extra = format!(
        "{}[business_hours]\ntimezone = \"Europe/London\"\n",
        sink(&hooks)
    );
    let a = airlock_with(&pki, RULES, "", &extra, clock.clock()).await;
    let api = Api::new(a.review_url());
    let request = json!({
        "document": "Certificate of insurance",
        "client": {"name": "Dana Client", "email": "dana@client.example"},
        "request_ref": "REQ-2291",
    });
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .post(format!("https://review.test:{}/documents/send", up.port()))
        .header("content-type", "application/json")
        .header(
            "airlock-trigger",
            "Client asked for a certificate of insurance",
        )
        .header("airlock-agent", "docs-bot")
        .json(&request)
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let card = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(card["label"], "Document delivery");
    assert_eq!(
        card["summary"],
        "Send Certificate of insurance to Dana Client <dana@client.example>"
    );
    // One business day: at least 8 working hours away, whatever the weekday.
    let created: jiff::Timestamp = card["created_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = card["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires.duration_since(created).as_secs() >= 8 * 3600);

    run_out_the_window(&api, &clock, &id).await;
    assert_eq!(up.count(), 0);
    let got = hooks
        .wait_until(Duration::from_secs(15), "expired", |d| {
            !Webhook::events(d, "expired").is_empty()
        })
        .await;
    let note = Webhook::events(&got, "expired")[0].json();
    assert_eq!(note["id"], id);
    assert_eq!(note["unactioned"], true);
    assert_eq!(note["outcome"]["sent"], false);
    assert_eq!(note["agent"], "127.0.0.1");
    assert_eq!(note["agent_label"], "docs-bot");
    assert_eq!(
        note["trigger"],
        "Client asked for a certificate of insurance"
    );
    assert_eq!(note["label"], "Document delivery");
    // The original request, so the agent can acknowledge receipt to the client.
    assert_eq!(note["request"]["body"], request);
    assert_eq!(note["request"]["method"], "POST");
    a.stop().await;
}

#[tokio::test]
async fn unrecognised_input_is_held_as_no_matching_rule_and_dismissed_unsent() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let clock = TestClock::new();
    // alice, besides the admins, decides what no rule classifies.
    let extra = format!(
        "[defaults]\nunmatched_reviewers = [\"alice\"]\n{}",
        reviewers_toml()
    );
    let a = airlock_with(&pki, RULES, "", &extra, clock.clock()).await;
    let api = Api::new(a.review_url());
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let reply = || {
        agent
            .post(format!("https://review.test:{}/inbox/reply", up.port()))
            .header("content-type", "application/json")
            .body(r#"{"to":"someone@unknown.example","text":"Re: your unusual request"}"#)
            .send()
    };
    let res = reply().await.unwrap();
    let id = common::hold_id(&res);
    let card = api.get(&format!("/api/holds/{id}"), ALICE.1).await;
    assert_eq!(card["label"], "No matching rule");
    assert_eq!(card["rule"], "unmatched");
    assert!(
        card["request"]["body"]
            .as_str()
            .unwrap()
            .contains("your unusual request"),
        "the reviewer reads the full message"
    );
    assert!(
        card["rule_snippet"]
            .as_str()
            .unwrap()
            .contains("/inbox/reply")
    );

    let (status, _) = api
        .decide(
            &id,
            "dismiss",
            ALICE.1,
            Some(json!({"reason": "handled manually"})),
        )
        .await;
    assert_eq!(status, 200);
    // The agent retrying hears it was dismissed; nothing is ever sent.
    let retry = reply().await.unwrap();
    assert_eq!(retry.status(), 403);
    assert_eq!(retry.headers()["airlock-state"], "dismissed");
    assert_eq!(up.count(), 0);
    let last = audit_of(&api, &id).await.pop().unwrap();
    assert_eq!(last["event"], "dismissed");
    assert_eq!(last["detail"]["reason"], "handled manually");
    a.stop().await;
}
