//! Agent identity, retries and the pending cap end to end, against an agent
//! that tries on purpose to get a reviewed action sent without approval:
//! `[[agent]]` authentication (407), retries and idempotency keys keyed by
//! the authenticated identity (never by a name an agent gives itself), a
//! reused key with another request (422), queue flooding (429), and holds no
//! rule matched decided only by admins and `[defaults] unmatched_reviewers`.
//! Real clients (reqwest, curl, raw sockets) through real listeners; the
//! upstreams count what reaches them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::api::Api;
use common::{
    ALICE, BOB, Pki, ROOT, airlock_with, client, raw_body, raw_head, reviewers_toml, upstream,
};
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
reviewers = ["alice"]

[[rule]]
name = "plain-reads"
action = "automatic"
host = ["plain.test"]
method = ["GET"]

[[rule]]
name = "plain-sends"
action = "review"
host = ["plain.test"]
method = ["POST"]
"#;

/// Two agents that authenticate: (name, token).
const QUOTE_BOT: (&str, &str) = ("quote-bot", "quote-bot-token-0123456789");
const CRM_BOT: (&str, &str) = ("crm-bot", "crm-bot-token-0123456789");

fn agents_toml() -> String {
    [QUOTE_BOT, CRM_BOT]
        .iter()
        .map(|(name, token)| {
            let hash = airlock::holds::hex(&airlock::config::token_hash(token));
            format!("[[agent]]\nname = \"{name}\"\ntoken_sha256 = \"{hash}\"\n")
        })
        .collect()
}

/// `http://name:token@addr`: what `HTTPS_PROXY` carries for an agent.
fn proxy_as(a: &common::Airlock, (name, token): (&str, &str)) -> String {
    format!("http://{name}:{token}@{}", a.addr)
}

fn mail_url(port: u16) -> String {
    format!("https://mail.test:{port}/v3/mail/send")
}

async fn post_mail(
    c: &reqwest::Client,
    port: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = c
        .post(mail_url(port))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A TLS upstream and airlock with `extra` configuration, and its review API.
async fn start(extra: &str) -> (Pki, common::Upstream, common::Airlock, Api) {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock_with(
        &pki,
        RULES,
        "",
        extra,
        airlock::holds::store::system_clock(),
    )
    .await;
    let api = Api::new(a.review_url());
    (pki, up, a, api)
}

async fn pending(api: &Api) -> Vec<Value> {
    api.get("/api/holds?state=pending&limit=1000", ROOT.1).await["holds"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn without_credentials_an_agent_gets_407_and_nothing_is_held_or_sent() {
    let extra = format!("{}{}", reviewers_toml(), agents_toml());
    let (_pki, tls_up, a, api) = start(&extra).await;
    let plain_up = upstream(None).await;
    let (tp, pp) = (tls_up.port(), plain_up.port());

    let wrong = format!(
        "Proxy-Authorization: Basic {}\r\n",
        base64_of(&format!("{}:{}", QUOTE_BOT.0, CRM_BOT.1))
    );
    for credentials in ["", wrong.as_str()] {
        // A CONNECT: refused before any tunnel or interception.
        let (mut s, head) = raw_head(
            a.addr,
            format!("CONNECT mail.test:{tp} HTTP/1.1\r\nHost: mail.test:{tp}\r\n{credentials}\r\n")
                .as_bytes(),
        )
        .await;
        assert_proxy_auth_required(&head, &raw_body(&mut s, &head).await);
        // Plain HTTP, automatic and reviewed alike.
        for request in [
            format!(
                "GET http://plain.test:{pp}/page HTTP/1.1\r\nHost: plain.test:{pp}\r\n{credentials}\r\n"
            ),
            format!(
                "POST http://plain.test:{pp}/send HTTP/1.1\r\nHost: plain.test:{pp}\r\nContent-Length: 2\r\n{credentials}\r\n{{}}"
            ),
        ] {
            let (mut s, head) = raw_head(a.addr, request.as_bytes()).await;
            assert_proxy_auth_required(&head, &raw_body(&mut s, &head).await);
        }
    }
    // reqwest with no credentials in its proxy URL: the same.
    let anonymous = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = anonymous
        .get(format!("http://plain.test:{pp}/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 407);
    assert!(
        anonymous
            .post(mail_url(tp))
            .body("{}")
            .send()
            .await
            .is_err(),
        "the CONNECT is refused, so no request is made"
    );
    assert_eq!(tls_up.count() + plain_up.count(), 0, "nothing was sent");
    assert!(pending(&api).await.is_empty(), "nothing was held");

    // With its credentials the same agent is served and known by name.
    let bot = client(&proxy_as(&a, QUOTE_BOT), &[&a.ca_pem()]);
    let res = bot
        .get(format!("http://plain.test:{pp}/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(plain_up.count(), 1);
    let res = post_mail(&bot, tp, r#"{"to":"a@example.com"}"#, &[]).await;
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(hold["agent"], QUOTE_BOT.0);
    assert_eq!(hold["agent_label"], Value::Null);
    assert!(
        !hold.to_string().contains(QUOTE_BOT.1),
        "the agent's token is never shown"
    );
    assert_eq!(tls_up.count(), 0);
    a.stop().await;
}

fn assert_proxy_auth_required(head: &str, body: &str) {
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"airlock\""),
        "{head}"
    );
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["airlock"], "proxy_auth_required", "{v}");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn curl_authenticates_with_the_credentials_in_its_proxy_url() {
    let extra = format!("{}{}", reviewers_toml(), agents_toml());
    let (_pki, tls_up, a, api) = start(&extra).await;
    let plain_up = upstream(None).await;
    let curl = common::require_tool("curl");
    let run = |proxy: String, url: String| {
        let (curl, ca) = (curl.clone(), a.ca_path());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(curl)
                .args(["-sS", "-i", "--max-time", "20", "-x", &proxy, "--cacert"])
                .arg(ca)
                .args(["-H", "content-type: application/json", "-d", "{}", &url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
        })
    };
    let mail = mail_url(tls_up.port());
    let plain = format!("http://plain.test:{}/send", plain_up.port());

    // Without credentials: refused, CONNECT and plain alike.
    let out = run(a.proxy_url(), mail.clone()).await.unwrap();
    assert!(out.contains("407"), "{out}");
    let out = run(a.proxy_url(), plain.clone()).await.unwrap();
    assert!(out.starts_with("http/1.1 407"), "{out}");
    assert!(out.contains("proxy_auth_required"), "{out}");
    assert!(pending(&api).await.is_empty());

    // `-x http://name:token@host:port`: held, under the agent's name.
    for url in [mail, plain] {
        let out = run(proxy_as(&a, QUOTE_BOT), url).await.unwrap();
        assert!(out.contains("airlock-state: pending"), "{out}");
    }
    let holds = pending(&api).await;
    assert_eq!(holds.len(), 2);
    assert!(holds.iter().all(|h| h["agent"] == QUOTE_BOT.0), "{holds:?}");
    assert_eq!(tls_up.count() + plain_up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn an_agent_claiming_anothers_name_and_key_never_gets_the_others_hold_or_answer() {
    let extra = format!("{}{}", reviewers_toml(), agents_toml());
    let (_pki, up, a, api) = start(&extra).await;
    let port = up.port();
    let quote = client(&proxy_as(&a, QUOTE_BOT), &[&a.ca_pem()]);
    let crm = client(&proxy_as(&a, CRM_BOT), &[&a.ca_pem()]);
    let genuine = r#"{"to":"client@example.com","subject":"Your quote"}"#;
    let forged = r#"{"to":"attacker@example.com","subject":"Invoice attached"}"#;
    let claim = [
        ("airlock-agent", QUOTE_BOT.0),
        ("idempotency-key", "quote-42"),
    ];

    let first = post_mail(&quote, port, genuine, &claim).await;
    assert_eq!(first.status(), 403);
    let a_id = common::hold_id(&first);
    let a_status: Value = first.json().await.unwrap();

    // crm-bot claims quote-bot's name and key with another body, then sends
    // quote-bot's very body under its name: each time its own hold, never
    // quote-bot's hold or status URL.
    let name_only = [("airlock-agent", QUOTE_BOT.0)];
    let attempts: [(&str, &[(&str, &str)]); 2] = [(forged, &claim), (genuine, &name_only)];
    let mut b_ids = Vec::new();
    for (body, headers) in attempts {
        let res = post_mail(&crm, port, body, headers).await;
        assert_eq!(res.status(), 403);
        let id = common::hold_id(&res);
        let v: Value = res.json().await.unwrap();
        assert_ne!(id, a_id);
        assert_ne!(v["status_url"], a_status["status_url"]);
        b_ids.push(id);
    }
    assert_ne!(b_ids[0], b_ids[1]);
    // The key now names crm-bot's own first request: another body is refused.
    let reused = post_mail(&crm, port, genuine, &claim).await;
    assert_eq!(reused.status(), 422);
    assert!(reused.headers().get("airlock-hold").is_none());
    let b_hold = api.get(&format!("/api/holds/{}", b_ids[0]), ROOT.1).await;
    assert_eq!(
        b_hold["agent"], CRM_BOT.0,
        "the identity is the authenticated name"
    );
    assert_eq!(
        b_hold["agent_label"], QUOTE_BOT.0,
        "the claimed name is only a label"
    );
    assert_eq!(pending(&api).await.len(), 3);

    // quote-bot's hold is approved and sent; crm-bot retrying still hears
    // only of its own pending holds, never quote-bot's stored answer.
    let (status, v) = api.decide(&a_id, "approve", ALICE.1, None).await;
    assert_eq!(status, 200, "{v}");
    api.until(&a_id, "released").await;
    for ((body, headers), id) in attempts.into_iter().zip(&b_ids) {
        let retry = post_mail(&crm, port, body, headers).await;
        assert_eq!(retry.status(), 403);
        assert!(retry.headers().get("airlock-replay").is_none());
        assert_eq!(common::hold_id(&retry), *id);
        assert_eq!(retry.headers()["airlock-state"], "pending");
    }
    // quote-bot gets its own answer, once.
    let replay = post_mail(&quote, port, genuine, &claim).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["airlock-replay"], a_id.as_str());
    assert_eq!(up.count(), 1, "only the approved request was sent");
    assert_eq!(up.requests()[0].body, genuine.as_bytes());
    a.stop().await;
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_request_gets_422_and_nothing_is_held() {
    let (_pki, up, a, api) = start(&reviewers_toml()).await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let key = [("idempotency-key", "quote-42")];
    let first = post_mail(&c, up.port(), r#"{"subject":"Your quote"}"#, &key).await;
    assert_eq!(first.status(), 403);
    let id = common::hold_id(&first);

    let changed = post_mail(&c, up.port(), r#"{"subject":"Your quote (retry)"}"#, &key).await;
    assert_eq!(changed.status(), 422);
    assert!(changed.headers().get("airlock-hold").is_none());
    let v: Value = changed.json().await.unwrap();
    assert_eq!(v["airlock"], "idempotency_key_reused", "{v}");
    let holds = pending(&api).await;
    assert_eq!(holds.len(), 1, "nothing more was held: {holds:?}");

    // The identical request with its key joins the hold as before.
    let same = post_mail(&c, up.port(), r#"{"subject":"Your quote"}"#, &key).await;
    assert_eq!(same.status(), 403);
    assert_eq!(common::hold_id(&same), id);
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn without_agents_the_identity_is_the_address_and_a_given_name_an_unverified_label() {
    let (_pki, up, a, api) = start(&reviewers_toml()).await;
    let body = r#"{"subject":"Your quote"}"#;
    // A proxy user name nobody checks, then an Airlock-Agent header.
    let named = client(&proxy_as(&a, ("quote-bot", "unchecked")), &[&a.ca_pem()]);
    let first = post_mail(&named, up.port(), body, &[]).await;
    let id = common::hold_id(&first);
    let hold = api.get(&format!("/api/holds/{id}"), ROOT.1).await;
    assert_eq!(hold["agent"], "127.0.0.1");
    assert_eq!(hold["agent_label"], "quote-bot");

    // Another name from the same address is the same agent: the identical
    // request joins the same hold.
    let other = client(&a.proxy_url(), &[&a.ca_pem()]);
    let again = post_mail(&other, up.port(), body, &[("airlock-agent", "other-bot")]).await;
    assert_eq!(common::hold_id(&again), id);
    let res = post_mail(
        &other,
        up.port(),
        r#"{"subject":"x"}"#,
        &[("airlock-agent", "other-bot")],
    )
    .await;
    let hold = api
        .get(&format!("/api/holds/{}", common::hold_id(&res)), ROOT.1)
        .await;
    assert_eq!(
        (&hold["agent"], &hold["agent_label"]),
        (&"127.0.0.1".into(), &"other-bot".into())
    );

    a.stop().await;
}

#[tokio::test]
async fn a_flooding_agent_gets_429_past_its_cap_and_nothing_more_is_stored() {
    let extra = format!(
        "[defaults]\nmax_pending_per_agent = 5\n{}{}",
        reviewers_toml(),
        agents_toml()
    );
    let (_pki, up, a, api) = start(&extra).await;
    let port = up.port();
    let flood: Vec<_> = (0..30)
        .map(|i| {
            let bot = client(&proxy_as(&a, QUOTE_BOT), &[&a.ca_pem()]);
            tokio::spawn(async move {
                let res = post_mail(&bot, port, &format!(r#"{{"n":{i}}}"#), &[]).await;
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();
    let mut held = 0;
    let mut refused = 0;
    for t in flood {
        let (status, retry_after, body) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every agent is answered")
            .unwrap();
        match status {
            403 => held += 1,
            429 => {
                refused += 1;
                assert_eq!(body["airlock"], "too_many_holds", "{body}");
                let secs = retry_after.expect("429 carries Retry-After");
                assert!((1..=60).contains(&secs), "{secs}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((held, refused), (5, 25));
    let holds = pending(&api).await;
    assert_eq!(holds.len(), 5, "exactly the cap is stored");

    // An identical retry joins its hold: not a new hold, not refused.
    let bot = client(&proxy_as(&a, QUOTE_BOT), &[&a.ca_pem()]);
    let n: Value = api
        .get(
            &format!("/api/holds/{}", holds[0]["id"].as_str().unwrap()),
            ROOT.1,
        )
        .await["request"]["body"]
        .clone();
    let retry = post_mail(&bot, port, n.as_str().unwrap(), &[]).await;
    assert_eq!(retry.status(), 403);
    assert_eq!(common::hold_id(&retry), holds[0]["id"].as_str().unwrap());
    // Another agent is not held back by this one's flood.
    let crm = client(&proxy_as(&a, CRM_BOT), &[&a.ca_pem()]);
    assert_eq!(
        post_mail(&crm, port, r#"{"n":"crm"}"#, &[]).await.status(),
        403
    );
    // A decision frees a place.
    assert_eq!(
        post_mail(&bot, port, r#"{"n":"late"}"#, &[]).await.status(),
        429
    );
    let (status, _) = api
        .decide(holds[1]["id"].as_str().unwrap(), "dismiss", ROOT.1, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        post_mail(&bot, port, r#"{"n":"late"}"#, &[]).await.status(),
        403
    );
    assert_eq!(pending(&api).await.len(), 6);
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn unmatched_holds_are_decided_by_admins_and_the_unmatched_reviewers_only() {
    let extra = format!(
        "[defaults]\nunmatched_reviewers = [\"bob\"]\n{}",
        reviewers_toml()
    );
    let (_pki, up, a, api) = start(&extra).await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let mut ids = Vec::new();
    for n in [1, 2] {
        let res = c
            .delete(format!("https://mail.test:{}/v3/contacts/{n}", up.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        ids.push(common::hold_id(&res));
    }
    let hold = api.get(&format!("/api/holds/{}", ids[0]), ROOT.1).await;
    assert_eq!(hold["rule"], "unmatched");
    // alice reviews mail, not what no rule classified.
    let (status, v) = api.decide(&ids[0], "approve", ALICE.1, None).await;
    assert_eq!(status, 403, "{v}");
    let (status, _) = api.decide(&ids[0], "dismiss", ALICE.1, None).await;
    assert_eq!(status, 403);
    let (status, v) = api.decide(&ids[0], "approve", BOB.1, None).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = api.decide(&ids[1], "approve", ROOT.1, None).await;
    assert_eq!(status, 200, "{v}");
    api.until(&ids[0], "released").await;
    api.until(&ids[1], "released").await;
    assert_eq!(up.count(), 2);
    a.stop().await;
}
