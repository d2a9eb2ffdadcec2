//! Deciding in Slack, against a local fake of Slack's Web API (real HTTP,
//! recording `chat.postMessage`, `chat.update`, `chat.postEphemeral` and
//! `views.open`) and interaction payloads in Slack's own form encoding,
//! signed here with HMAC-SHA256 independently of airlock's signer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::Api;
use common::{ALICE, Pki, TestClock, airlock_with, client, reviewers_toml, upstream};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const SECRET: &str = "test-signing-secret-0123";
const BOT: &str = "xoxb-test-bot-token";

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
slack_channel = "C_MAIL"
summary = "Email to {/to}"
"#;

/// Slack's Web API, as far as airlock uses it: every call recorded.
#[derive(Clone, Default)]
struct FakeSlack {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl FakeSlack {
    async fn start(&self) -> u16 {
        let calls = self.calls.clone();
        let app = axum::Router::new().route(
            "/api/{method}",
            axum::routing::post(
                move |axum::extract::Path(method): axum::extract::Path<String>,
                      headers: http::HeaderMap,
                      body: String| {
                    let calls = calls.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        let mut calls = calls.lock().unwrap();
                        calls.push((method.clone(), auth, body.clone()));
                        let n = calls.len();
                        axum::Json(match method.as_str() {
                            "chat.postMessage" => json!({
                                "ok": true, "channel": body["channel"],
                                "ts": format!("1700000000.{n:06}"),
                            }),
                            _ => json!({ "ok": true }),
                        })
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn calls(&self, method: &str) -> Vec<(String, Value)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, auth, body)| (auth.clone(), body.clone()))
            .collect()
    }

    async fn wait(&self, method: &str, n: usize) -> Vec<(String, Value)> {
        for _ in 0..200 {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "Slack never got {n} {method}: {:?}",
            self.calls.lock().unwrap()
        );
    }
}

/// A signed interaction, as Slack posts it: `payload=<JSON>`, form-encoded.
async fn interact(review: &str, payload: &Value, secret: &str, age_secs: i64) -> u16 {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let ts = (jiff::Timestamp::now().as_second() - age_secs).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let signature = format!("v0={}", airlock::holds::hex(&mac.finalize().into_bytes()));
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{review}/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn click(user: &str, action: &str, hold: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": { "id": user },
        "channel": { "id": "C_MAIL" },
        "trigger_id": "trigger-1",
        "actions": [ { "action_id": action, "value": hold } ],
    })
}

/// Whether a message has buttons.
fn has_buttons(body: &Value) -> bool {
    body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["type"] == "actions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_decide_in_slack_and_every_message_follows() {
    let fake = FakeSlack::default();
    let slack_port = fake.start().await;
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bot"), format!("{BOT}\n")).unwrap();
    std::fs::write(dir.path().join("signing"), SECRET).unwrap();
    let extra = format!(
        "{}\n[slack]\nbot_token_file = \"{}\"\nsigning_secret_file = \"{}\"\nchannel = \"C_DEFAULT\"\napi_url = \"http://127.0.0.1:{slack_port}/api\"\n",
        reviewers_toml()
            .replace(
                "name = \"alice\"\n",
                "name = \"alice\"\nslack_user = \"U_ALICE\"\n"
            )
            .replace(
                "name = \"bob\"\n",
                "name = \"bob\"\nslack_user = \"U_BOB\"\n"
            ),
        dir.path().join("bot").display(),
        dir.path().join("signing").display(),
    );
    let a = airlock_with(&pki, RULES, "", &extra, TestClock::new().clock()).await;
    let review = a.review_url();
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let hold = |to: &'static str| {
        let agent = agent.clone();
        let port = up.port();
        async move {
            let res = agent
                .post(format!("https://mail.test:{port}/v3/mail/send"))
                .header("content-type", "application/json")
                .body(json!({ "to": to }).to_string())
                .send()
                .await
                .unwrap();
            common::hold_id(&res)
        }
    };

    // A hold posts one message, with buttons, to the rule's channel.
    let first = hold("ana@client.example").await;
    let posts = fake.wait("chat.postMessage", 1).await;
    let (auth, post) = &posts[0];
    assert_eq!(auth, &format!("Bearer {BOT}"));
    assert_eq!(post["channel"], "C_MAIL");
    assert!(
        post["blocks"]
            .to_string()
            .contains("Email to ana@client.example")
    );
    assert!(post["blocks"].to_string().contains(&first));
    assert!(has_buttons(post));

    // Unsigned, wrongly signed or stale: refused, nothing changes.
    assert_eq!(
        interact(
            &review,
            &click("U_ALICE", "airlock-approve", &first),
            "wrong",
            0
        )
        .await,
        401
    );
    assert_eq!(
        interact(
            &review,
            &click("U_ALICE", "airlock-approve", &first),
            SECRET,
            600
        )
        .await,
        401
    );
    // bob is a reviewer, not of this rule; U_NOBODY is nobody. Each is told,
    // alone; the hold stays pending.
    assert_eq!(
        interact(
            &review,
            &click("U_BOB", "airlock-approve", &first),
            SECRET,
            0
        )
        .await,
        200
    );
    assert_eq!(
        interact(
            &review,
            &click("U_NOBODY", "airlock-approve", &first),
            SECRET,
            0
        )
        .await,
        200
    );
    let told = fake.wait("chat.postEphemeral", 2).await;
    let bob = told.iter().find(|(_, b)| b["user"] == "U_BOB").unwrap();
    assert!(
        bob.1["text"]
            .as_str()
            .unwrap()
            .contains("not a reviewer of rule mail-send")
    );
    assert!(told.iter().any(|(_, b)| b["user"] == "U_NOBODY"));
    let api = Api::new(review.clone());
    assert_eq!(
        api.get(&format!("/api/holds/{first}"), ALICE.1).await["state"],
        "pending"
    );
    assert_eq!(up.count(), 0);

    // alice approves in Slack: sent once; the message loses its buttons
    // and says so; the audit record names the Slack user.
    assert_eq!(
        interact(
            &review,
            &click("U_ALICE", "airlock-approve", &first),
            SECRET,
            0
        )
        .await,
        200
    );
    api.until(&first, "released").await;
    assert_eq!(up.count(), 1);
    let updates = fake.wait("chat.update", 1).await;
    let last = updates
        .iter()
        .rev()
        .find(|(_, b)| b["ts"] == post_ts(&fake, 0))
        .unwrap();
    assert!(!has_buttons(&last.1));
    assert!(
        last.1["text"].as_str().unwrap().contains("alice"),
        "{}",
        last.1
    );
    let audit = api.get("/api/audit?limit=100", ALICE.1).await;
    let approved = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hold"] == first.as_str() && r["event"] == "approved")
        .unwrap()
        .clone();
    assert_eq!(approved["actor"], "alice");
    assert_eq!(approved["detail"]["via"], "slack:U_ALICE");

    // Dismiss asks for a reason in a dialog; its submission dismisses.
    let second = hold("bo@client.example").await;
    fake.wait("chat.postMessage", 2).await;
    assert_eq!(
        interact(
            &review,
            &click("U_ALICE", "airlock-dismiss", &second),
            SECRET,
            0
        )
        .await,
        200
    );
    let opened = fake.wait("views.open", 1).await;
    assert_eq!(opened[0].1["trigger_id"], "trigger-1");
    assert_eq!(opened[0].1["view"]["private_metadata"], second.as_str());
    let submit = json!({
        "type": "view_submission",
        "user": { "id": "U_ALICE" },
        "view": {
            "callback_id": "airlock-dismiss",
            "private_metadata": second,
            "state": { "values": { "reason": { "reason": { "type": "plain_text_input", "value": "wrong client" } } } },
        },
    });
    assert_eq!(interact(&review, &submit, SECRET, 0).await, 200);
    let dismissed = api.until(&second, "dismissed").await;
    assert_eq!(dismissed["reason"], "wrong client");
    let ts = post_ts(&fake, 1);
    let updated = wait_update(&fake, &ts, "wrong client").await;
    assert!(!has_buttons(&updated));

    // Decided on the API: the Slack message follows all the same.
    let third = hold("cy@client.example").await;
    fake.wait("chat.postMessage", 3).await;
    let (status, _) = api.decide(&third, "dismiss", ALICE.1, None).await;
    assert_eq!(status, 200);
    let ts = post_ts(&fake, 2);
    wait_update(&fake, &ts, "Dismissed by alice").await;
    assert_eq!(up.count(), 1, "dismissed holds are never sent");
}

/// The `ts` Slack gave the `i`th posted message.
fn post_ts(fake: &FakeSlack, i: usize) -> String {
    let calls = fake.calls.lock().unwrap();
    let n = calls
        .iter()
        .enumerate()
        .filter(|(_, (m, _, _))| m == "chat.postMessage")
        .nth(i)
        .unwrap()
        .0;
    format!("1700000000.{:06}", n + 1)
}

/// Waits for an update of the message `ts` whose text contains `text`.
async fn wait_update(fake: &FakeSlack, ts: &str, text: &str) -> Value {
    for _ in 0..200 {
        if let Some((_, body)) = fake
            .calls("chat.update")
            .into_iter()
            .find(|(_, b)| b["ts"] == ts && b["text"].as_str().unwrap_or("").contains(text))
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "no update of {ts} saying {text:?}: {:?}",
        fake.calls("chat.update")
    );
}
