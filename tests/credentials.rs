//! Credentials the agent never holds, with the real binary: the secret is
//! set on automatic requests and on released holds, replacing the agent's
//! own header; it is found nowhere else (the hold, the API, the page, the
//! event stream, the audit log, notifications, the log, the store's files);
//! a rotated secret file, swapped through a symlink as Kubernetes does, is
//! picked up within seconds; a missing secret fails closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Binary, Pki, ROOT, client, reviewers_toml, upstream, write_config};
use futures_util::StreamExt;

const RULES: &str = r#"
[[rule]]
name = "tunnel-host"
action = "automatic"
host = ["tunnel.test"]

[[rule]]
name = "mail-read"
action = "automatic"
host = ["mail.test"]
method = ["GET"]
path = ["/v3/**"]

[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
summary = "Email"
"#;

const FIRST: &str = "SG.first-secret-7f3a9";
const SECOND: &str = "SG.second-secret-c41d2";
const ENV_SECRET: &str = "env-secret-9b8e1";

/// A Kubernetes-style mounted Secret: `name -> ..data/name`, `..data ->
/// ..<version>`, swapped by replacing the `..data` link.
fn mount_secret(dir: &Path, version: &str, value: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("sendgrid"), format!("{value}\n")).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("sendgrid");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/sendgrid", &link).unwrap();
    }
}

/// Every file under `dir`, read whole.
fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_contain(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

fn api() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn text(bin: &Binary, path: &str) -> String {
    api()
        .get(format!("http://{}{path}", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_never_holds_the_secret_and_nothing_keeps_it() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let hooks = upstream(None).await;
    let port = up.port();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    mount_secret(&secrets, "v1", FIRST);
    let extra = format!(
        "{}\n[[notify]]\nname = \"hooks\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         events = [\"held\", \"decided\", \"released\"]\n\n\
         [[credential]]\nname = \"sendgrid\"\nhost = [\"mail.test\"]\nheader = \"Authorization\"\n\
         value = \"Bearer {{secret}}\"\nsecret_file = \"{}\"\n\n\
         [[credential]]\nname = \"tunnelled\"\nhost = [\"tunnel.test\"]\nheader = \"X-Api-Key\"\n\
         value = \"{{secret}}\"\nsecret_env = \"TEST_TUNNEL_API_KEY\"\n",
        reviewers_toml(),
        hooks.port(),
        secrets.join("sendgrid").display()
    );
    write_config(dir.path(), &pki, RULES, "", &extra);
    let bin = Binary::launch(
        dir.path(),
        &[],
        "run",
        &[("TEST_TUNNEL_API_KEY", ENV_SECRET)],
    );
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    let agent = client(&format!("http://{}", bin.proxy_addr), &[&ca]);
    let events = api()
        .get(format!("http://{}/api/events", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap();

    // Automatic, no header from the agent: set.
    let res = agent
        .get(format!("https://mail.test:{port}/v3/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Automatic, the agent's own (placeholder or stolen) header: replaced.
    let res = agent
        .get(format!("https://mail.test:{port}/v3/stats"))
        .header("authorization", "Bearer airlock")
        .header("authorization", "Bearer second-try")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A host-only automatic rule would tunnel blind: with a credential the
    // host is intercepted and the header set.
    let res = agent
        .get(format!("https://tunnel.test:{port}/anything"))
        .header("x-api-key", "placeholder")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = up.requests();
    let auth = |i: usize| {
        seen[i]
            .headers
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(auth(0), [format!("Bearer {FIRST}")]);
    assert_eq!(auth(1), [format!("Bearer {FIRST}")], "replaced, once");
    assert_eq!(seen[2].headers["x-api-key"], ENV_SECRET);

    // Held: the hold keeps what the agent sent; the secret goes on at release.
    let res = agent
        .post(format!("https://mail.test:{port}/v3/mail/send"))
        .header("authorization", "Bearer airlock")
        .body(r#"{"to":"client@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let id = common::hold_id(&res);
    let hold = text(&bin, &format!("/api/holds/{id}")).await;
    assert!(!hold.contains(FIRST), "{hold}");
    assert_eq!(up.count(), 3, "not sent while held");
    // Rotation, by a symlink swap, is seen within seconds.
    mount_secret(&secrets, "v2", SECOND);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = api()
        .post(format!("http://{}/api/holds/{id}/approve", bin.review_addr))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for _ in 0..100 {
        if up.count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    let released: Vec<_> = seen[3].headers.get_all("authorization").iter().collect();
    assert_eq!(
        released,
        [&format!("Bearer {SECOND}")],
        "the rotated secret, once"
    );
    let res = agent
        .get(format!("https://mail.test:{port}/v3/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        up.requests()[4].headers["authorization"],
        format!("Bearer {SECOND}").as_str()
    );

    // Nowhere else: API, page, events, audit, notifications, log, store.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stream = events.bytes_stream();
    let mut sse = String::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(chunk)) = stream.next().await {
            sse.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(sse.contains(&id), "the stream saw the hold: {sse}");
    let mut seen_anywhere = vec![
        ("list", text(&bin, "/api/holds?limit=100").await),
        ("hold", text(&bin, &format!("/api/holds/{id}")).await),
        ("audit", text(&bin, "/api/audit?limit=1000").await),
        ("page", text(&bin, "/").await),
        ("metrics", text(&bin, "/metrics").await),
        ("events", sse),
    ];
    let hooks_seen = hooks.requests();
    assert!(!hooks_seen.is_empty(), "notifications were sent");
    for h in &hooks_seen {
        seen_anywhere.push((
            "notification",
            String::from_utf8_lossy(&h.body).into_owned(),
        ));
        seen_anywhere.push(("notification headers", format!("{:?}", h.headers)));
    }
    seen_anywhere.push(("log", bin.log.lock().unwrap().join("\n")));
    for secret in [FIRST, SECOND, ENV_SECRET] {
        for (place, text) in &seen_anywhere {
            assert!(
                !text.contains(secret),
                "the secret is in the {place}: {text}"
            );
        }
        let files = files_contain(&dir.path().join("data"), secret.as_bytes());
        assert!(
            files.is_empty(),
            "the secret is in the store's files: {files:?}"
        );
    }

    // A missing secret fails closed, naming the credential, not a secret.
    std::fs::remove_file(secrets.join("..v2").join("sendgrid")).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = agent
        .get(format!("https://mail.test:{port}/v3/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("sendgrid") && body.contains("not available"),
        "{body}"
    );
    assert_eq!(up.count(), 5, "nothing was sent");
}

#[test]
fn rules_check_lists_credentials_and_warns_of_one_never_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/10.toml"),
        "[[rule]]\nname = \"mail\"\naction = \"automatic\"\nhost = [\"mail.test\"]\n\n\
         [[rule]]\nname = \"nope\"\naction = \"deny\"\nhost = [\"nope.test\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "[rules]\ndir = \"{}/rules\"\n\n\
             [[credential]]\nname = \"mail\"\nhost = [\"mail.test\"]\nheader = \"Authorization\"\n\
             value = \"Bearer {{secret}}\"\nsecret_env = \"NOT_SET_ANYWHERE\"\n\n\
             [[credential]]\nname = \"wide\"\nhost = [\"*.mail.test\"]\nheader = \"X-Key\"\n\
             value = \"{{secret}}\"\nsecret_env = \"NOT_SET_EITHER\"\n\n\
             [[credential]]\nname = \"refused\"\nhost = [\"nope.test\"]\nheader = \"X-Key\"\n\
             value = \"{{secret}}\"\nsecret_file = \"/nonexistent\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["rules", "check", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("credential mail: sets authorization on requests to mail.test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("credential refused is never used for nope.test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("credential wide goes to every host *.mail.test matches"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("credential mail goes to every host"),
        "{stdout}"
    );
    // A credential without a secret source is refused, located.
    std::fs::write(
        dir.path().join("airlock.toml"),
        "[[credential]]\nname = \"x\"\nhost = [\"a.test\"]\nheader = \"X-Key\"\nvalue = \"{secret}\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["rules", "check", "--config"])
        .arg(dir.path().join("airlock.toml"))
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("airlock.toml:")
            && stderr.contains("exactly one of secret_file and secret_env"),
        "{stderr}"
    );
}
