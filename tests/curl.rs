//! curl, the client most scripts use, through airlock: `-x` with `--cacert`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::process::Command;

use common::{Pki, airlock, require_tool, upstream};

const RULES: &str = r#"
[[rule]]
name = "tunnel"
action = "automatic"
host = ["tunnel.test"]

[[rule]]
name = "intercepted-reads"
action = "automatic"
host = ["intercept.test", "plain.test"]
method = ["GET"]
"#;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new(require_tool("curl"))
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn curl_reaches_a_tunnelled_host_with_the_upstream_ca() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let ca = a.dir.path().join("upstream-ca.pem");
    let url = format!("https://tunnel.test:{}/t", up.port());
    let proxy = a.proxy_url();
    let (out, err) = tokio::task::spawn_blocking(move || {
        curl(&["-x", &proxy, "--cacert", ca.to_str().unwrap(), &url])
    })
    .await
    .unwrap();
    assert_eq!(out, "hello from upstream /t", "{err}");
    a.stop().await;
}

#[tokio::test]
async fn curl_reaches_an_intercepted_host_with_the_airlock_ca() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let plain = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    let ca = a.ca_path();
    let proxy = a.proxy_url();
    let tls_url = format!("https://intercept.test:{}/i", up.port());
    let plain_url = format!("http://plain.test:{}/p", plain.port());
    let post_url = tls_url.clone();
    let (tls, plain_out, post) = tokio::task::spawn_blocking(move || {
        let cacert = ca.to_str().unwrap();
        (
            curl(&["-x", &proxy, "--cacert", cacert, &tls_url]),
            curl(&["-x", &proxy, &plain_url]),
            curl(&["-x", &proxy, "--cacert", cacert, "-d", "x=1", &post_url]),
        )
    })
    .await
    .unwrap();
    assert_eq!(tls.0, "hello from upstream /i", "{}", tls.1);
    assert_eq!(plain_out.0, "hello from upstream /p", "{}", plain_out.1);
    // POST matches no rule: unmatched defaults to review: held, never sent.
    assert!(post.0.contains("\"airlock\":\"held\""), "{post:?}");
    assert_eq!(up.count(), 1);
    a.stop().await;
}
