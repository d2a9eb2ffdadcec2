//! Signing in with the company's identity: `[review] trusted_header` set by
//! an authenticating proxy (oauth2-proxy, Pomerium, an ingress with auth)
//! is believed only from `trusted_proxies`. Real sockets: the trusted peer
//! is 127.0.0.2, a loopback address the test's client binds to; everyone
//! else is 127.0.0.1. A header-signed-in person may read; a change needs
//! the page session the page gets by signing in that way, and its CSRF
//! token, so a cross-site request carried through the proxy changes
//! nothing. Bearer tokens keep working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{ALICE, Pki, client, reviewers_toml, upstream, write_config};
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
reviewers = ["alice", "carol"]
summary = "Email"
"#;

const HEADER: &str = "x-forwarded-email";

fn from(addr: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::from(addr)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_header_from_a_trusted_proxy_signs_in_and_from_anyone_else_is_ignored() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}[[reviewer]]\nname = \"carol\"\nemail = \"Carol@Example.com\"\n",
        reviewers_toml().replace(
            "name = \"alice\"\n",
            "name = \"alice\"\nemail = \"alice@example.com\"\n"
        )
    );
    let mut config = write_config(dir.path(), &pki, RULES, "", &extra);
    config.review.trusted_header = Some(http::HeaderName::from_static(HEADER));
    config.review.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let running = airlock::server::start(&config).await.unwrap();
    let review = format!("http://{}", running.review_addr);
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let res = client(&format!("http://{}", running.proxy_addr.unwrap()), &[&ca])
        .post(format!("https://mail.test:{}/v3/mail/send", up.port()))
        .body("hello")
        .send()
        .await
        .unwrap();
    let id = common::hold_id(&res);
    let (trusted, untrusted) = (from([127, 0, 0, 2]), from([127, 0, 0, 1]));

    // From anyone else the header proves nothing.
    let res = untrusted
        .get(format!("{review}/api/holds"))
        .header(HEADER, "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // From the trusted proxy it signs carol in (case-insensitively), to read.
    let res = trusted
        .get(format!("{review}/api/session"))
        .header(HEADER, "CAROL@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["reviewer"], "carol");
    // Someone the proxy signed in who is no reviewer is nobody.
    let res = trusted
        .get(format!("{review}/api/holds"))
        .header(HEADER, "mallory@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A change with the header alone (a cross-site form through the proxy)
    // changes nothing.
    let res = trusted
        .post(format!("{review}/api/holds/{id}/approve"))
        .header(HEADER, "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(up.count(), 0);

    // The page signs in: a session of carol's own, and its CSRF token.
    let res = trusted
        .get(format!("{review}/"))
        .header(HEADER, "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session: Value = trusted
        .get(format!("{review}/api/session"))
        .header("cookie", &cookie)
        .header(HEADER, "carol@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["reviewer"], "carol");
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    let res = trusted
        .post(format!("{review}/api/holds/{id}/approve"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the CSRF token is still needed");
    let res = trusted
        .post(format!("{review}/api/holds/{id}/approve"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["decided_by"], "carol", "{body}");
    for _ in 0..100 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(up.count(), 1);
    // Bearer tokens keep working, from anywhere.
    let res = untrusted
        .get(format!("{review}/api/holds/{id}"))
        .bearer_auth(ALICE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    running.shutdown().await;
}

#[test]
fn a_trusted_header_needs_trusted_proxies_and_a_reviewer_needs_a_way_in() {
    let env = airlock::config::Env::default();
    let err = airlock::config::Config::parse(
        "airlock.toml",
        "[review]\ntrusted_header = \"X-Forwarded-Email\"\n",
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("trusted_header needs trusted_proxies"),
        "{err}"
    );
    let err = airlock::config::Config::parse(
        "airlock.toml",
        "[review]\ntrusted_proxies = [\"not an address\"]\n",
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("airlock.toml:2:19"), "{err}");
    let err =
        airlock::config::Config::parse("airlock.toml", "[[reviewer]]\nname = \"dana\"\n", &env)
            .unwrap_err()
            .to_string();
    assert!(err.contains("needs a token_sha256, or an email"), "{err}");
    let ok = airlock::config::Config::parse(
        "airlock.toml",
        "[review]\ntrusted_header = \"X-Forwarded-Email\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n\n[[reviewer]]\nname = \"dana\"\nemail = \"dana@example.com\"\n",
        &env,
    )
    .unwrap();
    assert_eq!(ok.review.trusted_proxies.len(), 2);
    assert_eq!(ok.reviewers[0].email.as_deref(), Some("dana@example.com"));
}
