//! The approval page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): log in with the token URL,
//! holds appear live, Approve and Dismiss from the card, decisions made
//! elsewhere disappear, edit-and-approve sends the edit, and a request
//! without the CSRF token is refused. Screenshots go to target/screenshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    ALICE, Pki, ROOT, TestClock, airlock_with, client, require_tool, reviewers_toml, upstream,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const RULES: &str = r#"
[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
summary = "Email to {/to}: {/subject}"

[[rule]]
name = "crm-edit"
action = "review"
label = "Deal stage change"
host = ["mail.test"]
method = ["PATCH"]
window = "4h"
allow_edit = true
summary = "Deal stage to {/stage}"

[[rule]]
name = "mcp-send"
action = "review"
label = "Email by MCP tool"
host = ["mcp.test"]
mcp_tool = ["send_email"]
summary = "Email to {/params/arguments/to}"
"#;

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn browser() -> Browser {
    let chromium = require_tool("chromium");
    let chromedriver = require_tool("chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session");
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

async fn wait_for(b: &Browser, css: &str) -> fantoccini::elements::Element {
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

async fn wait_gone(b: &Browser, css: &str) {
    for _ in 0..200 {
        if b.client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never went away");
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn screenshot_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_reviewer_decides_holds_from_the_page() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let mail = |to: &str, subject: &str| {
        agent
            .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
            .header("content-type", "application/json")
            .header("authorization", "Bearer sg-secret-never-shown")
            .header("airlock-trigger", "Client asked for a quote")
            .header("airlock-agent", "quote-bot")
            .body(json!({"to": to, "subject": subject, "text": "Total: 1,200 EUR"}).to_string())
            .send()
    };
    let id_of = |res: reqwest::Response| common::hold_id(&res);

    let b = browser().await;
    // Log in with the token URL: the page lands on / with the token gone.
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains("token"), "{url}");

    // A held request appears without a reload, with its draft and no secret.
    let first = id_of(mail("ana@client.example", "Your quote").await.unwrap());
    let card = wait_for(&b, &format!(".card[data-id='{first}']")).await;
    let text = card.text().await.unwrap();
    assert!(
        text.contains("Email to ana@client.example: Your quote"),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("client asked for a quote"),
        "{text}"
    );
    assert!(text.contains("1,200 EUR"), "{text}");
    // The agent is its address; the name it gave itself is marked unchecked.
    assert!(
        text.contains("agent 127.0.0.1 · calls itself \"quote-bot\" (unverified)"),
        "{text}"
    );
    assert!(
        !b.client
            .source()
            .await
            .unwrap()
            .contains("sg-secret-never-shown")
    );
    let second = id_of(mail("bo@client.example", "Your invoice").await.unwrap());
    wait_for(&b, &format!(".card[data-id='{second}']")).await;
    let dir = screenshot_dir();
    std::fs::write(
        dir.join("queue-desktop.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();
    b.client.set_window_size(380, 900).await.unwrap();
    std::fs::write(
        dir.join("queue-380.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();
    b.client.set_window_size(1280, 900).await.unwrap();

    // Approve on the card: sent once, and the card leaves.
    wait_for(&b, &format!(".card[data-id='{first}'] .approve"))
        .await
        .click()
        .await
        .unwrap();
    wait_gone(&b, &format!(".card[data-id='{first}']")).await;
    until("the approved email to arrive", || up.count() == 1).await;

    // Dismiss with a reason: nothing sent, the history shows the reason.
    wait_for(&b, &format!(".card[data-id='{second}'] .reason"))
        .await
        .send_keys("wrong client")
        .await
        .unwrap();
    wait_for(&b, &format!(".card[data-id='{second}'] .dismiss"))
        .await
        .click()
        .await
        .unwrap();
    wait_gone(&b, &format!(".card[data-id='{second}']")).await;
    wait_for(&b, ".tab[data-view=history]")
        .await
        .click()
        .await
        .unwrap();
    let history = wait_for(&b, "#history table").await;
    let text = history.text().await.unwrap();
    assert!(text.contains("wrong client"), "{text}");
    assert!(text.contains("dismissed"), "{text}");
    wait_for(&b, ".tab[data-view=queue]")
        .await
        .click()
        .await
        .unwrap();

    // Decided elsewhere (the API): the card disappears by itself.
    let third = id_of(mail("cy@client.example", "Reminder").await.unwrap());
    wait_for(&b, &format!(".card[data-id='{third}']")).await;
    let status = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/api/holds/{third}/approve", a.review_url()))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    wait_gone(&b, &format!(".card[data-id='{third}']")).await;
    until("the API-approved email to arrive", || up.count() == 2).await;
    let notices = wait_for(&b, "#notices").await.text().await.unwrap();
    assert!(notices.contains("approved by alice"), "{notices}");

    // Without the CSRF token, the session cookie alone changes nothing.
    let fourth = id_of(mail("di@client.example", "Hello").await.unwrap());
    wait_for(&b, &format!(".card[data-id='{fourth}']")).await;
    let refused = b
        .client
        .execute(
            "return fetch('/api/holds/' + arguments[0] + '/approve', {method: 'POST', credentials: 'same-origin'}).then(r => r.status);",
            vec![json!(fourth)],
        )
        .await
        .unwrap();
    assert_eq!(refused, json!(403));
    assert_eq!(
        a.store()
            .get(&fourth)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "pending"
    );

    // Edit & approve sends the edited body.
    let deal = agent
        .patch(format!("https://mail.test:{}/deals/7", up.port()))
        .header("content-type", "application/json")
        .body(r#"{"stage":"won"}"#)
        .send()
        .await
        .unwrap();
    let deal = id_of(deal);
    wait_for(&b, &format!(".card[data-id='{deal}'] .edit"))
        .await
        .click()
        .await
        .unwrap();
    let editor = wait_for(&b, &format!(".card[data-id='{deal}'] .editor")).await;
    editor.clear().await.unwrap();
    editor.send_keys(r#"{"stage":"lost"}"#).await.unwrap();
    wait_for(
        &b,
        &format!(".card[data-id='{deal}'] .editor + .actions .approve"),
    )
    .await
    .click()
    .await
    .unwrap();
    until("the edited deal to arrive", || up.count() == 3).await;
    assert_eq!(up.requests()[2].body, r#"{"stage":"lost"}"#.as_bytes());

    // The keyboard: the selected card is approved with `a`.
    let keyed = id_of(mail("ed@client.example", "Keys").await.unwrap());
    wait_for(&b, &format!(".card[data-id='{keyed}']")).await;
    // `j` moves the selection down to it (it expires last).
    let body = b.client.find(Locator::Css("body")).await.unwrap();
    for _ in 0..5 {
        body.send_keys("j").await.unwrap();
    }
    wait_for(&b, &format!(".card.selected[data-id='{keyed}']")).await;
    assert_eq!(up.count(), 3, "moving the selection decides nothing");
    b.client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("a")
        .await
        .unwrap();
    wait_gone(&b, &format!(".card[data-id='{keyed}']")).await;
    until("the keyboard-approved email to arrive", || up.count() == 4).await;

    // Queue health lists the rule with its figures.
    wait_for(&b, ".tab[data-view=health]")
        .await
        .click()
        .await
        .unwrap();
    let health = wait_for(&b, "#health table").await.text().await.unwrap();
    assert!(health.contains("mail-send"), "{health}");
    assert!(health.contains("crm-edit"), "{health}");

    b.client.clone().close().await.unwrap();
    a.stop().await;
}

#[tokio::test]
async fn the_token_form_logs_in_and_logout_ends_the_session() {
    let pki = Pki::new();
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let b = browser().await;
    b.client.goto(&a.review_url()).await.unwrap();
    wait_for(&b, "#login:not([hidden]) input[name=token]")
        .await
        .send_keys(ALICE.1)
        .await
        .unwrap();
    wait_for(&b, "#login button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    let who = wait_for(&b, "#who").await.text().await.unwrap();
    assert_eq!(who, "alice");
    // A wrong token is refused.
    let status = b
        .client
        .execute(
            "return fetch('/login', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'token=wrong', redirect: 'manual'}).then(r => r.status);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));
    wait_for(&b, "#logout").await.click().await.unwrap();
    wait_for(&b, "#login:not([hidden])").await;
    let after = b
        .client
        .execute("return fetch('/api/holds').then(r => r.status);", vec![])
        .await
        .unwrap();
    assert_eq!(after, json!(401));
    b.client.clone().close().await.unwrap();
    a.stop().await;
}

#[tokio::test]
async fn links_open_their_card_and_escalation_shows_live() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let clock = TestClock::new();
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), clock.clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let mut ids = Vec::new();
    for to in [
        "ana@client.example",
        "bo@client.example",
        "cy@client.example",
    ] {
        let res = agent
            .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
            .header("content-type", "application/json")
            .body(json!({"to": to, "subject": "Hello"}).to_string())
            .send()
            .await
            .unwrap();
        ids.push(common::hold_id(&res));
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let dismissed = &ids[0];
    let res = http
        .post(format!("{}/api/holds/{dismissed}/dismiss", a.review_url()))
        .bearer_auth(ALICE.1)
        .json(&json!({"reason": "duplicate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    // A notification's link selects its card, not the first one.
    let linked = &ids[2];
    b.client
        .goto(&format!("{}/#hold={linked}", a.review_url()))
        .await
        .unwrap();
    b.client.refresh().await.unwrap();
    wait_for(&b, &format!(".card.selected[data-id='{linked}']")).await;
    // A stale link says what became of the hold.
    b.client
        .goto(&format!("{}/#hold={dismissed}", a.review_url()))
        .await
        .unwrap();
    b.client.refresh().await.unwrap();
    let notice = wait_for(&b, "#notices p").await.text().await.unwrap();
    assert!(notice.contains("already dismissed by alice"), "{notice}");

    // Half the 2 h window later the pending cards show "escalated", live.
    let card = format!(".card[data-id='{linked}']");
    assert!(
        b.client
            .find_all(Locator::Css(&format!("{card} .badge-escalated")))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_secs(3601));
    let badge = wait_for(&b, &format!("{card}.escalated .badge-escalated")).await;
    assert_eq!(badge.text().await.unwrap().to_lowercase(), "escalated");
    std::fs::write(
        screenshot_dir().join("queue-escalated.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();

    // Queue health states its findings: these rules name no owner.
    wait_for(&b, ".tab[data-view=health]")
        .await
        .click()
        .await
        .unwrap();
    let findings = wait_for(&b, "#health .findings")
        .await
        .text()
        .await
        .unwrap();
    assert!(findings.contains("no named owner: mail-send"), "{findings}");
    b.client.clone().close().await.unwrap();
    a.stop().await;
}

/// What the reviewer reads is what will be sent: the full URL with its
const HOSTILE: &str = "</script><script>document.title='pwned'</script><!--";

/// query, the headers that change who acts (credentials redacted), the body
/// decoded from its compression, and, flagged, every other reading.
#[tokio::test]
async fn the_card_shows_what_will_be_sent_and_every_other_reading() {
    use std::io::Write as _;
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let body = br#"{"to":"ana@client.example","subject":"Quote","to":"eve@attacker.example"}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let res = agent
        .post(format!(
            "https://mail.test:{}/v3//mail/send?send_at=now&on_behalf_of=ceo",
            up.port()
        ))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("authorization", "Bearer sg-secret-never-shown")
        .header("on-behalf-of", "subuser-ceo")
        // Carried in the page's own answer as data: it must stay text.
        .header("airlock-trigger", HOSTILE)
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);

    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    let card = wait_for(&b, &format!(".card[data-id='{id}']")).await;
    let text = card.text().await.unwrap();
    for shown in [
        "?send_at=now&on_behalf_of=ceo",
        "on-behalf-of",
        "subuser-ceo",
        "[redacted]",
        "Read with care",
        "the key \"to\" appears more than once",
        "is read as \"/v3/mail/send\"",
        "Shown decoded from gzip",
        "ana@client.example",
        "eve@attacker.example",
    ] {
        assert!(text.contains(shown), "{shown:?} not on the card:\n{text}");
    }
    // The trigger line is shown in capitals.
    assert!(
        text.contains(&HOSTILE.to_uppercase()),
        "shown as text:\n{text}"
    );
    let title = b
        .client
        .execute("return document.title", vec![])
        .await
        .unwrap();
    assert_eq!(
        title,
        json!("airlock — review queue"),
        "no text of a hold runs"
    );
    assert!(
        !b.client
            .source()
            .await
            .unwrap()
            .contains("sg-secret-never-shown")
    );
    std::fs::write(
        screenshot_dir().join("card-ambiguous.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();
    assert_eq!(up.count(), 0);
    a.stop().await;
}

/// An MCP tool call's card leads with the tool and its arguments; the
/// whole JSON-RPC message, envelope and all, is one click away.
#[tokio::test]
async fn an_mcp_tool_calls_card_shows_the_tool_and_its_arguments() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "send_email",
        "arguments": {"to": "ana@client.example", "subject": "Quote"},
        "_meta": {"io.modelcontextprotocol/clientInfo": {"name": "envelope-marker"}}}});
    let res = agent
        .post(format!("https://mcp.test:{}/mcp", up.port()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    // The MCP answer: 200 with a tool error, and the hold in its headers.
    assert_eq!(res.status(), 200);
    let id = common::hold_id(&res);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["isError"], true);

    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    let card = format!(".card[data-id='{id}']");
    let tool = wait_for(&b, &format!("{card} .draft .tool")).await;
    assert_eq!(tool.text().await.unwrap(), "MCP tool send_email");
    let shown = wait_for(&b, &format!("{card} .draft > pre"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        shown.contains("\"to\": \"ana@client.example\"") && shown.contains("Quote"),
        "{shown}"
    );
    assert!(
        !shown.contains("envelope-marker"),
        "the envelope waits behind a click: {shown}"
    );
    b.client
        .find(Locator::Css(&format!("{card} details.message summary")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let whole = wait_for(&b, &format!("{card} details.message pre"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        whole.contains("envelope-marker") && whole.contains("tools/call"),
        "{whole}"
    );
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn a_card_counts_approvals_toward_its_rules_quorum_live() {
    let rules = RULES.replace(
        "summary = \"Email to {/to}: {/subject}\"\n",
        "summary = \"Email to {/to}: {/subject}\"\napprovals = 2\n",
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
    let res = client(&a.proxy_url(), &[&a.ca_pem()])
        .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
        .header("content-type", "application/json")
        .body(json!({"to": "ana@client.example", "subject": "Payment"}).to_string())
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    let card = format!(".card[data-id='{id}']");
    let quorum = wait_for(&b, &format!("{card} .quorum")).await;
    assert_eq!(quorum.text().await.unwrap(), "0 of 2 approvals");
    // Another reviewer approves elsewhere: the count follows, live.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let res = http
        .post(format!("{}/api/holds/{id}/approve", a.review_url()))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    for _ in 0..100 {
        text = b
            .client
            .find(Locator::Css(&format!("{card} .quorum")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.starts_with("1 of 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text, "1 of 2 approvals · alice");
    std::fs::write(
        screenshot_dir().join("queue-quorum.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();
    // The second approval, from the page, completes it: the card goes and
    // the request is sent once.
    b.client
        .find(Locator::Css(&format!("{card} button.approve")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_gone(&b, &card).await;
    for _ in 0..100 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn cards_past_the_first_screen_draw_their_draft_when_they_come_near() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(&pki, RULES, "", &reviewers_toml(), TestClock::new().clock()).await;
    let agent = client(&a.proxy_url(), &[&a.ca_pem()]);
    let mut ids = Vec::new();
    // Under the default pending cap of 20 per agent; past the first screen's 12.
    // The last one's body is longer than the whole list's preview: its
    // draft is read whole when it is shown.
    for i in 0..18 {
        let text = if i == 17 {
            format!("{}THE END", "words ".repeat(600))
        } else {
            "Hi".into()
        };
        let res = agent
            .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
            .header("content-type", "application/json")
            .body(
                json!({"to": format!("client{i}@example.com"), "subject": "Hello", "text": text})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        ids.push(common::hold_id(&res));
    }
    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", a.review_url(), ROOT.1))
        .await
        .unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    let cards = b.client.find_all(Locator::Css(".card")).await.unwrap();
    assert_eq!(cards.len(), 18, "every card is in the queue");
    // The last card, far below: its draft is drawn once it is near.
    let last = ids.last().unwrap();
    let card = format!(".card[data-id='{last}']");
    b.client
        .execute(
            &format!("document.querySelector(\"{card}\").scrollIntoView();"),
            vec![],
        )
        .await
        .unwrap();
    let draft = wait_for(&b, &format!("{card} .draft pre")).await;
    let text = draft.text().await.unwrap();
    assert!(
        text.contains("client17@example.com"),
        "the draft of the last card"
    );
    assert!(
        text.contains("THE END"),
        "the whole body, not the list's preview: {}",
        &text[text.len().saturating_sub(200)..]
    );
    assert!(
        b.client
            .find_all(Locator::Css(&format!("{card} .draft-slot")))
            .await
            .unwrap()
            .is_empty()
    );
    // Routine headers only: the table is made when a reviewer opens it.
    let table = format!("{card} details.headers table");
    assert!(
        b.client
            .find_all(Locator::Css(&table))
            .await
            .unwrap()
            .is_empty()
    );
    b.client
        .find(Locator::Css(&format!("{card} details.headers summary")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = wait_for(&b, &table).await.text().await.unwrap();
    assert!(shown.contains("application/json"), "{shown}");
}

/// An authenticating proxy, as oauth2-proxy stands in front of the page:
/// every request is forwarded to the review server from 127.0.0.2 (the
/// trusted peer) with `X-Forwarded-Email` set to `email`, whatever the
/// browser sent. The event stream is not proxied (the page works without).
async fn signing_proxy(review: std::net::SocketAddr, email: &'static str) -> String {
    let upstream = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let upstream = upstream.clone();
        async move {
            let (parts, body) = req.into_parts();
            if parts.uri.path() == "/api/events" {
                return axum::response::Response::builder()
                    .status(404)
                    .body(axum::body::Body::empty())
                    .unwrap();
            }
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut forward = upstream.request(
                parts.method.clone(),
                format!("http://{review}{}", parts.uri.path_and_query().unwrap()),
            );
            for (k, v) in &parts.headers {
                if k != "host" && k != "x-forwarded-email" {
                    forward = forward.header(k, v);
                }
            }
            let res = forward
                .header("x-forwarded-email", email)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut back = axum::response::Response::builder().status(res.status());
            for (k, v) in res.headers() {
                if k != "transfer-encoding" && k != "content-length" {
                    back = back.header(k, v);
                }
            }
            back.body(axum::body::Body::from(res.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reviewer_signed_in_by_the_proxy_decides_on_the_page() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}[[reviewer]]\nname = \"carol\"\nemail = \"carol@example.com\"\n",
        reviewers_toml()
    );
    let mut config = common::write_config(dir.path(), &pki, RULES, "", &extra);
    config.review.trusted_header = Some(http::HeaderName::from_static("x-forwarded-email"));
    config.review.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let running = airlock::server::start(&config).await.unwrap();
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let res = client(&format!("http://{}", running.proxy_addr.unwrap()), &[&ca])
        .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
        .header("content-type", "application/json")
        .body(json!({"to": "ana@client.example", "subject": "Hello"}).to_string())
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let front = signing_proxy(running.review_addr, "carol@example.com").await;

    let b = browser().await;
    // No token anywhere: the proxy's header signs carol in.
    b.client.goto(&format!("{front}/")).await.unwrap();
    wait_for(&b, "body[data-ready=true]").await;
    let who = wait_for(&b, "#who").await.text().await.unwrap();
    assert_eq!(who, "carol");
    let card = format!(".card[data-id='{id}']");
    wait_for(&b, &card).await;
    b.client
        .find(Locator::Css(&format!("{card} button.approve")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_gone(&b, &card).await;
    for _ in 0..100 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.count(), 1, "approved on the page, sent once");
    let hold = running.store.get(&id).await.unwrap().unwrap();
    assert_eq!(hold.decided_by.as_deref(), Some("carol"));
    running.shutdown().await;
}
