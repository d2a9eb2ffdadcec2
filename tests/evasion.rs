//! A hostile agent tries to get a reviewed or denied request to its upstream
//! without approval, one way per test. The upstreams count and record
//! everything that reaches them (SNI, Host, request line, body) before
//! answering; every test checks that what should not arrive did not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::io::Write as _;
use std::process::Command;

use common::{Pki, airlock, raw_head, require_tool, tls_client, upstream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RULES: &str = r#"
[[rule]]
name = "models"
action = "automatic"
host = ["tunnel.test"]

[[rule]]
name = "mail-send"
action = "review"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]

[[rule]]
name = "templates-delete"
action = "deny"
host = ["mail.test"]
method = ["DELETE"]
path = ["/v3/templates/*"]

[[rule]]
name = "mail-rest"
action = "automatic"
host = ["mail.test"]
path = ["/v3/**"]

[[rule]]
name = "envelope-send"
action = "review"
host = ["intercept.test"]
method = ["POST"]
path = ["/envelopes"]
json = { "/status" = "sent" }
summary = "Envelope {/status}"

[[rule]]
name = "envelope-draft"
action = "automatic"
host = ["intercept.test"]
method = ["POST"]
path = ["/envelopes"]
json = { "/status" = "created" }

[[rule]]
name = "test-transfers"
action = "automatic"
host = ["intercept.test"]
method = ["POST"]
path = ["/transfers"]
headers = { "x-account" = "acct_test_*" }

[[rule]]
name = "deletes"
action = "deny"
host = ["intercept.test"]
method = ["DELETE"]

[[rule]]
name = "reads"
action = "automatic"
host = ["intercept.test", "plain.test"]
method = ["GET"]
"#;

/// CONNECTs to `connect` and starts TLS asking for `sni` (an IP address
/// sends no SNI), trusting `pem`. The handshake's outcome.
async fn tls_as(
    proxy: std::net::SocketAddr,
    connect: &str,
    port: u16,
    sni: &str,
    pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (tcp, head) = raw_head(
        proxy,
        format!("CONNECT {connect}:{port} HTTP/1.1\r\nHost: {connect}:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tls_client(pem).connect(name, tcp).await
}

/// Sends one HTTP/1.1 request over `tls` and returns the whole answer.
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_blind_tunnel_carries_only_tls_for_its_own_host() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let port = front.port();

    // The front end serves mail.test too: asking for it inside the tunnel
    // opened for tunnel.test is refused before a byte reaches it.
    let fronted = tls_as(a.addr, "tunnel.test", port, "mail.test", &pki.ca_pem).await;
    assert!(
        fronted.is_err(),
        "SNI mail.test inside a tunnel.test tunnel"
    );
    // No SNI at all on a named host.
    let unnamed = tls_as(a.addr, "tunnel.test", port, "127.0.0.1", &pki.ca_pem).await;
    assert!(unnamed.is_err(), "no SNI inside a tunnel.test tunnel");
    // Plain HTTP inside the tunnel, naming another host.
    let (mut tcp, head) = raw_head(
        a.addr,
        format!("CONNECT tunnel.test:{port} HTTP/1.1\r\nHost: tunnel.test:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answer = exchange(
        &mut tcp,
        "POST /v3/mail/send HTTP/1.1\r\nHost: mail.test\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(!answer.contains("hello from upstream"), "{answer}");
    // An encrypted ClientHello whose outer name is the tunnel's host.
    let (mut tcp, head) = raw_head(
        a.addr,
        format!("CONNECT tunnel.test:{port} HTTP/1.1\r\nHost: tunnel.test:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(&client_hello("tunnel.test", true))
        .await
        .unwrap();
    let mut alert = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut alert),
    )
    .await;
    assert_eq!(alert, [21, 3, 3, 0, 2, 2, 49], "a TLS access_denied alert");

    assert!(front.handshakes().is_empty(), "{:?}", front.handshakes());
    assert_eq!(front.count(), 0);

    // The tunnel's own name, in any case and with a trailing dot, goes through.
    let mut ok = tls_as(a.addr, "tunnel.test", port, "Tunnel.Test", &pki.ca_pem)
        .await
        .unwrap();
    let answer = exchange(
        &mut ok,
        "GET /m HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains("hello from upstream /m"), "{answer}");
    assert_eq!(front.handshakes(), vec![Some("tunnel.test".to_owned())]);
    a.stop().await;
}

#[tokio::test]
async fn an_intercepted_connection_carries_only_its_own_host() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let port = front.port();
    let ca = a.ca_pem();
    assert!(
        tls_as(a.addr, "intercept.test", port, "mail.test", &ca)
            .await
            .is_err()
    );
    assert!(
        tls_as(a.addr, "intercept.test", port, "127.0.0.1", &ca)
            .await
            .is_err()
    );

    // Inside, a Host naming another host is replaced by the target's.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let answer = exchange(
        &mut tls,
        "GET /h HTTP/1.1\r\nHost: mail.test\r\nX-Forwarded-Host: mail.test\r\nForwarded: host=mail.test\r\nX-Original-URL: /v3/mail/send\r\nX-Rewrite-URL: /v3/mail/send\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains("hello from upstream /h"), "{answer}");
    let seen = front.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sni.as_deref(), Some("intercept.test"));
    assert_eq!(
        seen[0].headers["host"],
        format!("intercept.test:{port}").as_str()
    );
    // Headers that re-route to another host or URL never leave airlock.
    for routed in [
        "x-forwarded-host",
        "forwarded",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(!seen[0].headers.contains_key(routed), "{routed}");
    }

    // A held request stores the target as its host too, so what is
    // approved is what is sent.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let body = r#"{"status":"sent"}"#;
    let answer = exchange(
        &mut tls,
        &format!(
            "POST /envelopes HTTP/1.1\r\nHost: mail.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.contains("\"airlock\":\"held\""), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("airlock-hold: "))
        .unwrap()
        .trim()
        .to_owned();
    let hold = a.store().get(&id).await.unwrap().unwrap();
    assert_eq!(hold.url, format!("https://intercept.test:{port}/envelopes"));
    let host: Vec<&str> = hold
        .headers
        .iter()
        .filter(|(k, _)| k == "host")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(host, vec![format!("intercept.test:{port}").as_str()]);
    assert_eq!(front.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn a_plain_http_request_goes_to_its_url_whatever_its_host_header() {
    let pki = Pki::new();
    let plain = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    let port = plain.port();
    let (mut s, head) = raw_head(
        a.addr,
        format!("GET http://plain.test:{port}/p HTTP/1.1\r\nHost: mail.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = common::raw_body(&mut s, &head).await;
    let seen = plain.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["host"],
        format!("plain.test:{port}").as_str()
    );
    a.stop().await;
}

fn curl(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(require_tool("curl"))
        .args(["-sS", "--max-time", "20", "--path-as-is"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Every spelling of `/v3/mail/send` (and of a template) an upstream may
/// read as that path.
const SEND_SPELLINGS: &[&str] = &[
    "//v3/mail/send",
    "/v3//mail/send",
    "/v3/mail/send/",
    "/v3/mail%2Fsend",
    "/v3/mail%252Fsend",
    "/V3/MAIL/SEND",
    "/v3/mail;x=1/send",
    "/v3/mail/send;jsessionid=1",
    "/v3/x/../mail/send",
    "/v3/mail/sen%64",
];

#[tokio::test]
async fn every_spelling_of_a_reviewed_path_is_held_over_http1_and_http2() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let port = front.port();
    let (proxy, ca) = (a.proxy_url(), a.ca_path());
    let answers = tokio::task::spawn_blocking(move || {
        let cacert = ca.to_str().unwrap();
        let mut answers = Vec::new();
        for version in ["--http1.1", "--http2"] {
            for path in SEND_SPELLINGS {
                let url = format!("https://mail.test:{port}{path}");
                let out = curl(&[
                    "-x", &proxy, "--cacert", cacert, version, "-d", "{}", "-i", &url,
                ]);
                answers.push((format!("{version} {path}"), out));
            }
            for path in [
                "/v3//templates/t1",
                "/V3/Templates/t1/",
                "/v3/templates%2Ft1",
            ] {
                let url = format!("https://mail.test:{port}{path}");
                let out = curl(&[
                    "-x", &proxy, "--cacert", cacert, version, "-X", "DELETE", "-i", &url,
                ]);
                answers.push((format!("{version} DELETE {path}"), out));
            }
        }
        answers
    })
    .await
    .unwrap();
    for (what, (out, err, ok)) in &answers {
        assert!(ok, "{what}: {err}");
        if what.contains("DELETE") {
            assert!(out.contains("\"airlock\":\"denied\""), "{what}: {out}");
        } else {
            assert!(out.contains("\"airlock\":\"held\""), "{what}: {out}");
        }
    }
    assert_eq!(front.count(), 0, "{:?}", front.requests());
    // The canonical spelling of an automatic path still passes.
    let (proxy, ca) = (a.proxy_url(), a.ca_path());
    let (out, err, _) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-x",
            &proxy,
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://mail.test:{port}/v3/stats"),
        ])
    })
    .await
    .unwrap();
    assert_eq!(out, "hello from upstream /v3/stats", "{err}");
    a.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn a_json_condition_holds_for_every_reading_of_the_body() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "max_body = \"64KiB\"").await;
    let client = common::client(&a.proxy_url(), &[&a.ca_pem()]);
    let url = format!("https://intercept.test:{}/envelopes", front.port());
    let sent = br#"{"status":"sent"}"#;
    let utf16: Vec<u8> = std::str::from_utf8(sent)
        .unwrap()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(sent);
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("gzip", gzip(sent), Some("gzip")),
        ("byte-order mark", bom, None),
        ("UTF-16", utf16, None),
        (
            "trailing data",
            br#"{"status":"created"} {"status":"sent"}"#.to_vec(),
            None,
        ),
        (
            "duplicate key",
            br#"{"status":"sent","status":"created"}"#.to_vec(),
            None,
        ),
        (
            "case-variant key",
            br#"{"status":"created","Status":"sent"}"#.to_vec(),
            None,
        ),
        ("corrupt gzip", b"not gzip at all".to_vec(), Some("gzip")),
        ("unknown coding", sent.to_vec(), Some("x-secret")),
    ];
    for (what, body, coding) in cases {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(coding) = coding {
            req = req.header("content-encoding", coding);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{what}");
        assert!(res.headers().contains_key("airlock-hold"), "{what}");
    }
    assert_eq!(front.count(), 0);

    // A compression bomb: small on the wire, past max_body decoded.
    let mut bomb = br#"{"status":"created","pad":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 1 << 20));
    bomb.extend_from_slice(br#""}"#);
    let res = client
        .post(&url)
        .header("content-encoding", "gzip")
        .body(gzip(&bomb))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // One clear reading: a draft passes, byte for byte, still compressed.
    let draft = gzip(br#"{"status":"created"}"#);
    let res = client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(draft.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = front.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), &draft[..]);
    assert_eq!(seen[0].headers["content-encoding"], "gzip");
    assert_eq!(
        a.store().pending_count().await.unwrap(),
        8,
        "each ambiguous body is held, nothing else"
    );
    a.stop().await;
}

#[tokio::test]
async fn a_method_override_is_classified_as_the_method_it_names() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let client = common::client(&a.proxy_url(), &[&a.ca_pem()]);
    let port = front.port();
    for header in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let res = client
            .get(format!("https://mail.test:{port}/v3/mail/send"))
            .header(header, "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{header}");
        assert!(res.headers().contains_key("airlock-hold"), "{header}");
        let res = client
            .get(format!("https://mail.test:{port}/v3/templates/t1"))
            .header(header, "delete")
            .send()
            .await
            .unwrap();
        let body = res.text().await.unwrap();
        assert!(body.contains("\"airlock\":\"denied\""), "{header}: {body}");
    }
    assert_eq!(front.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn only_websocket_upgrades_are_passed_on_and_chunked_bodies_arrive() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let port = front.port();
    let ca = a.ca_pem();

    // h2c on an automatic GET: the upstream never hears of the upgrade, and
    // the connection stays HTTP/1.1 that airlock reads request by request.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    tls.write_all(
        b"GET /u HTTP/1.1\r\nHost: intercept.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"hello from upstream /u") {
        let mut byte = [0u8; 1];
        let n = tls.read(&mut byte).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Then a reviewed request on the same connection is held, not spliced.
    let body = r#"{"status":"sent"}"#;
    let answer = exchange(
        &mut tls,
        &format!(
            "POST /envelopes HTTP/1.1\r\nHost: intercept.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.contains("\"airlock\":\"held\""), "{answer}");
    let seen = front.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].headers.contains_key("upgrade"),
        "{:?}",
        seen[0].headers
    );

    // A chunked GET body reaches the upstream.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let answer = exchange(
        &mut tls,
        "GET /echo HTTP/1.1\r\nHost: intercept.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        answer.ends_with("hello world") || answer.contains("hello world"),
        "{answer}"
    );
    assert_eq!(front.requests()[1].body.as_ref(), b"hello world");
    a.stop().await;
}

#[tokio::test]
async fn http2_clients_read_early_answers_to_requests_with_bodies() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "max_body = \"64KiB\"").await;
    let (proxy, ca) = (a.proxy_url(), a.ca_path());
    let port = front.port();
    let big = a.dir.path().join("big.json");
    std::fs::write(&big, vec![b'x'; 200 * 1024]).unwrap();
    let outs = tokio::task::spawn_blocking(move || {
        let cacert = ca.to_str().unwrap();
        let base = ["-x", &proxy, "--cacert", cacert, "--http2", "-i"];
        let url = format!("https://intercept.test:{port}/x");
        let big_arg = format!("@{}", big.display());
        let mut outs = Vec::new();
        for body in ["small body", big_arg.as_str()] {
            let mut args = base.to_vec();
            args.extend(["-X", "DELETE", "--data-binary", body, url.as_str()]);
            outs.push(curl(&args));
        }
        let mut args = base.to_vec();
        let envelopes = format!("https://intercept.test:{port}/envelopes");
        args.extend(["--data-binary", big_arg.as_str(), envelopes.as_str()]);
        outs.push(curl(&args));
        outs
    })
    .await
    .unwrap();
    for (i, (out, err, ok)) in outs.iter().enumerate() {
        assert!(ok, "request {i}: {err}");
        if i < 2 {
            assert!(out.contains("\nHTTP/2 403"), "{out}");
            assert!(out.contains("\"airlock\":\"denied\""), "{out}");
        } else {
            assert!(out.contains("\nHTTP/2 413"), "{out}");
        }
    }
    assert_eq!(front.count(), 0);
    a.stop().await;
}

/// A TLS 1.3 ClientHello record naming `sni`, with an Encrypted Client
/// Hello extension when `ech`.
fn client_hello(sni: &str, ech: bool) -> Vec<u8> {
    let mut exts: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut entry = vec![0];
    entry.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    entry.extend_from_slice(sni.as_bytes());
    let mut names = (entry.len() as u16).to_be_bytes().to_vec();
    names.extend_from_slice(&entry);
    exts.push((0, names));
    exts.push((43, vec![2, 3, 4])); // supported_versions: TLS 1.3
    if ech {
        exts.push((0xfe0d, vec![0; 40]));
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    let ext_bytes: Vec<u8> = exts
        .iter()
        .flat_map(|(k, d)| {
            let mut e = k.to_be_bytes().to_vec();
            e.extend_from_slice(&(d.len() as u16).to_be_bytes());
            e.extend_from_slice(d);
            e
        })
        .collect();
    body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext_bytes);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Python requests, the client most agent frameworks use, trying the same
/// tricks: a doubled slash, a method override, a compressed body with a
/// duplicate key. Each is held or denied; nothing reaches the upstream.
#[tokio::test]
async fn python_requests_cannot_reshape_a_reviewed_request() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let python = require_tool("python3");
    let script = r#"
import gzip, json, sys, requests
proxy, ca, port = sys.argv[1], sys.argv[2], sys.argv[3]
opts = {"proxies": {"https": proxy}, "verify": ca, "timeout": 20}
out = []
r = requests.post(f"https://mail.test:{port}//v3/mail/send", json={"to": "a@b"}, **opts)
out.append([r.status_code, r.json()["airlock"]])
r = requests.get(f"https://mail.test:{port}/v3/templates/t1", headers={"X-HTTP-Method-Override": "DELETE"}, **opts)
out.append([r.status_code, r.json()["airlock"]])
body = gzip.compress(b'{"status":"created","status":"sent"}')
r = requests.post(f"https://intercept.test:{port}/envelopes", data=body,
                  headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}, **opts)
out.append([r.status_code, r.json()["airlock"]])
print(json.dumps(out))
"#;
    let (proxy, ca, port) = (a.proxy_url(), a.ca_path(), front.port().to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", script, &proxy, ca.to_str().unwrap(), &port])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        r#"[[403, "held"], [403, "denied"], [403, "held"]]"#
    );
    assert_eq!(front.count(), 0);
    a.stop().await;
}

/// A header the rules judged is one the upstream receives: `Connection`
/// cannot name it away after the decision, and headers with underscores,
/// which CGI-style servers read as their dashed twins, never leave.
#[tokio::test]
async fn the_headers_the_rules_judge_are_the_headers_sent() {
    let pki = Pki::new();
    let front = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let port = front.port();
    let ca = a.ca_pem();
    let transfer = |extra: &str| {
        format!(
            "POST /transfers HTTP/1.1\r\nHost: intercept.test\r\nX-Account: acct_test_1\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    // Plainly a test-account transfer: automatic.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let answer = exchange(&mut tls, &transfer("")).await;
    assert!(
        answer.contains("hello from upstream /transfers"),
        "{answer}"
    );
    // The account header named in Connection would be dropped on the way:
    // the request is judged without it, and held.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let answer = exchange(
        &mut tls,
        "POST /transfers HTTP/1.1\r\nHost: intercept.test\r\nX-Account: acct_test_1\r\nConnection: X-Account, close\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(answer.contains("\"airlock\":\"held\""), "{answer}");
    // Underscored look-alikes of routing headers never leave.
    let mut tls = tls_as(a.addr, "intercept.test", port, "intercept.test", &ca)
        .await
        .unwrap();
    let answer = exchange(
        &mut tls,
        &transfer("X_HTTP_Method_Override: DELETE\r\nX_Forwarded_Host: mail.test\r\n"),
    )
    .await;
    assert!(
        answer.contains("hello from upstream /transfers"),
        "{answer}"
    );
    let seen = front.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].headers.keys().all(|k| !k.as_str().contains('_')),
        "{:?}",
        seen[1].headers
    );
    a.stop().await;
}
