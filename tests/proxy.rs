//! The forward proxy end to end: real upstreams on 127.0.0.1, real clients
//! (reqwest, raw sockets, tungstenite) through a real airlock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::time::Duration;

use common::{
    Pki, airlock, client, peer_cert, raw_body, raw_head, self_signed_upstream, tls_via, upstream,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const RULES: &str = r#"
[[rule]]
name = "tunnel-all"
action = "automatic"
host = ["tunnel.test"]

[[rule]]
name = "denied-host"
action = "deny"
host = ["denied.test"]

[[rule]]
name = "intercept-deny-delete"
action = "deny"
host = ["intercept.test"]
method = ["DELETE"]

[[rule]]
name = "intercept-review-send"
action = "review"
host = ["intercept.test", "plain.test"]
method = ["POST"]
path = ["/send"]

[[rule]]
name = "intercept-deny-wire"
action = "deny"
host = ["intercept.test", "plain.test"]
method = ["POST"]
path = ["/pay"]
json = { "/amount" = "1000*" }

[[rule]]
name = "intercept-rest"
action = "automatic"
host = ["intercept.test", "plain.test"]
method = ["GET", "POST", "PUT", "DELETE", "PATCH"]
"#;

fn url(host: &str, port: u16, path: &str) -> String {
    format!("https://{host}:{port}{path}")
}

#[tokio::test]
async fn tunnelled_host_presents_the_upstreams_own_certificate() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    // Trusting only the upstream's CA: an airlock leaf would fail here.
    let c = client(&a.proxy_url(), &[&pki.ca_pem]);
    let res = c
        .get(url("tunnel.test", up.port(), "/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "hello from upstream /hello");
    assert_eq!(up.count(), 1);
    let tls = tls_via(a.addr, "tunnel.test", up.port(), &pki.ca_pem).await;
    assert_eq!(&peer_cert(&tls), up.cert.as_ref().unwrap());
    a.stop().await;
}

#[tokio::test]
async fn intercepted_host_presents_an_airlock_leaf() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = c
        .get(url("intercept.test", up.port(), "/hello?x=1"))
        .header("Airlock-Trigger", "unit test")
        .header("Airlock-Agent", "tester")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-upstream-hop").is_none());
    assert_eq!(res.text().await.unwrap(), "hello from upstream /hello");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/hello?x=1");
    assert!(seen[0].headers.get("airlock-trigger").is_none());
    assert!(seen[0].headers.get("airlock-agent").is_none());
    let tls = tls_via(a.addr, "intercept.test", up.port(), &a.ca_pem()).await;
    assert_ne!(&peer_cert(&tls), up.cert.as_ref().unwrap());
    // A client that only trusts the upstream CA refuses airlock's leaf.
    let strict = client(&a.proxy_url(), &[&pki.ca_pem]);
    assert!(
        strict
            .get(url("intercept.test", up.port(), "/"))
            .send()
            .await
            .is_err()
    );
    // ...and airlock keeps serving after that rejection.
    let again = c
        .get(url("intercept.test", up.port(), "/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    a.stop().await;
}

#[tokio::test]
async fn denied_host_is_refused_at_connect_and_never_reached() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let req = format!(
        "CONNECT denied.test:{p} HTTP/1.1\r\nHost: denied.test:{p}\r\n\r\n",
        p = up.port()
    );
    let (mut s, head) = raw_head(a.addr, req.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&raw_body(&mut s, &head).await).unwrap();
    assert_eq!(body["airlock"], "denied");
    assert_eq!(body["rule"], "denied-host");
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn unreachable_tunnel_host_gets_502_not_200() {
    let pki = Pki::new();
    let a = airlock(&pki, RULES, "").await;
    // A port nothing listens on: bind, note it, close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let req = format!("CONNECT tunnel.test:{port} HTTP/1.1\r\nHost: tunnel.test:{port}\r\n\r\n");
    let (_, head) = raw_head(a.addr, req.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    a.stop().await;
}

#[tokio::test]
async fn denied_request_inside_interception_never_reaches_upstream() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = c
        .delete(url("intercept.test", up.port(), "/records/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["airlock"], "denied");
    assert_eq!(body["rule"], "intercept-deny-delete");
    assert_eq!(up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn reviewed_request_is_held_and_never_forwarded() {
    let pki = Pki::new();
    let tls_up = upstream(Some(&pki)).await;
    let plain_up = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    for target in [
        url("intercept.test", tls_up.port(), "/send"),
        format!("http://plain.test:{}/send", plain_up.port()),
    ] {
        let res = c.post(&target).body("{\"to\":\"x\"}").send().await.unwrap();
        assert_eq!(res.status(), 403, "{target}");
        assert_eq!(res.headers()["airlock-state"], "pending");
        let id = common::hold_id(&res);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["airlock"], "held");
        assert_eq!(body["id"], id);
        assert_eq!(body["state"], "pending");
        assert_eq!(body["rule"], "intercept-review-send");
        assert!(body["message"].as_str().unwrap().contains("NOT sent"));
        assert!(
            body["status_url"]
                .as_str()
                .unwrap()
                .contains("/api/status/")
        );
    }
    assert_eq!(tls_up.count(), 0);
    assert_eq!(plain_up.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn json_rule_reads_the_body_and_forwards_it_intact() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "max_body = \"1KiB\"").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let deny = c
        .post(url("intercept.test", up.port(), "/pay"))
        .body(r#"{"amount": 100000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(deny.status(), 403);
    let small = r#"{"amount": 5}"#;
    let ok = c
        .post(url("intercept.test", up.port(), "/pay"))
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let big = format!(r#"{{"amount": 5, "pad": "{}"}}"#, "x".repeat(2048));
    let too_big = c
        .post(url("intercept.test", up.port(), "/pay"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "only the small automatic one was sent");
    assert_eq!(seen[0].body, small.as_bytes());
    a.stop().await;
}

#[tokio::test]
async fn plain_http_is_forwarded_without_hop_by_hop_headers() {
    let pki = Pki::new();
    let up = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    let (mut s, head) = raw_head(
        a.addr,
        format!(
            "GET http://plain.test:{p}/page HTTP/1.1\r\nHost: plain.test:{p}\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic YTpi\r\n\
             Connection: x-hop\r\nX-Hop: 1\r\nAirlock-Trigger: why\r\nX-Kept: yes\r\n\r\n",
            p = up.port()
        )
        .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("x-upstream-hop"),
        "{head}"
    );
    assert_eq!(raw_body(&mut s, &head).await, "hello from upstream /page");
    let seen = up.requests();
    let h = &seen[0].headers;
    for gone in [
        "proxy-connection",
        "proxy-authorization",
        "x-hop",
        "airlock-trigger",
    ] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded");
    }
    assert_eq!(h.get("x-kept").unwrap(), "yes");
    a.stop().await;
}

#[tokio::test]
async fn server_sent_events_arrive_as_they_are_sent() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = c
        .get(url("intercept.test", up.port(), "/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    // The upstream holds its second event until we have the first: a proxy
    // that buffered the response would never deliver it.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first event delivered before the response ended")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    up.sse_gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: second\n\n");
    a.stop().await;
}

#[tokio::test]
async fn websocket_echo_works_through_interception() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let tls = tls_via(a.addr, "intercept.test", up.port(), &a.ca_pem()).await;
    let (mut ws, res) =
        tokio_tungstenite::client_async(format!("wss://intercept.test:{}/ws", up.port()), tls)
            .await
            .unwrap();
    assert_eq!(res.status(), 101);
    for text in ["one", "two"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
    a.stop().await;
}

#[tokio::test]
async fn h2_client_works_through_interception() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = c
        .post(url("intercept.test", up.port(), "/echo"))
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "over h2");
    // Upstream also negotiated h2 with airlock's pooled client.
    assert_eq!(up.requests()[0].version, http::Version::HTTP_2);
    a.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let pki = Pki::new();
    let up = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT nohostport HTTP/1.1\r\n\r\n",
        b"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nContent-Length: nope\r\n\r\n",
    ] {
        let (_, head) = raw_head(a.addr, garbage).await;
        assert!(
            head.starts_with("HTTP/1.1 400"),
            "{:?} -> {head}",
            String::from_utf8_lossy(garbage)
        );
    }
    let c = client(&a.proxy_url(), &[]);
    let res = c
        .get(format!("http://plain.test:{}/still", up.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    a.stop().await;
}

#[tokio::test]
async fn a_self_signed_upstream_is_trusted_only_when_listed_in_upstream_ca() {
    let pki = Pki::new();
    let (listed, listed_pem) = self_signed_upstream().await;
    let (unlisted, _) = self_signed_upstream().await;
    let dir_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(dir_pem.path(), listed_pem).unwrap();
    let a = airlock(
        &pki,
        RULES,
        &format!("upstream_ca = [{:?}]", dir_pem.path().display().to_string()),
    )
    .await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let ok = c
        .get(url("intercept.test", listed.port(), "/pinned"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = c
        .get(url("intercept.test", unlisted.port(), "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    assert_eq!(unlisted.count(), 0);
    a.stop().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_at_the_header_timeout_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let up = upstream(None).await;
    let a = airlock(&pki, RULES, "header_timeout = \"1s\"").await;
    let mut slow = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    slow.write_all(b"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nX-Slow: ")
        .await
        .unwrap();
    // Others are served meanwhile.
    let c = client(&a.proxy_url(), &[]);
    let res = c
        .get(format!("http://plain.test:{}/fast", up.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The slow one is closed soon after its second runs out.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the slow connection was not cut");
    assert_eq!(up.count(), 1);
    a.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_504() {
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "response_timeout = \"1s\"").await;
    let c = client(&a.proxy_url(), &[&a.ca_pem()]);
    let res = c
        .get(url("intercept.test", up.port(), "/stall"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["airlock"], "bad_gateway");
    a.stop().await;
}

#[tokio::test]
async fn every_worker_serves_tunnels_interception_and_plain_http() {
    // Three workers on one listening socket: many connections at once all
    // get served, whichever worker takes them.
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let plain = upstream(None).await;
    let a = airlock(&pki, RULES, "workers = 3").await;
    let mut calls = Vec::new();
    for i in 0..24 {
        let (host, roots, port) = match i % 3 {
            0 => ("tunnel.test", pki.ca_pem.clone(), up.port()),
            1 => ("intercept.test", a.ca_pem(), up.port()),
            _ => ("plain.test", String::new(), plain.port()),
        };
        let scheme = if i % 3 == 2 { "http" } else { "https" };
        // A client per call: a connection per call.
        let c = client(&a.proxy_url(), &[&roots]);
        calls.push(tokio::spawn(async move {
            let res = c
                .get(format!("{scheme}://{host}:{port}/w{i}"))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "call {i}");
        assert_eq!(body, format!("hello from upstream /w{i}"));
    }
    assert_eq!(up.count() + plain.count(), 24);
    a.stop().await;
}

#[tokio::test]
async fn open_tunnels_count_against_max_connections_until_they_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let up = upstream(Some(&pki)).await;
    let a = airlock(&pki, RULES, "max_connections = 2\nworkers = 2").await;
    let connect = format!(
        "CONNECT tunnel.test:{0} HTTP/1.1\r\nHost: tunnel.test:{0}\r\n\r\n",
        up.port()
    );
    let (first, head) = raw_head(a.addr, connect.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_second, head) = raw_head(a.addr, connect.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Both places are taken by open tunnels: a third agent waits.
    let mut third = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    third.write_all(connect.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two tunnels were open"
    );
    // One tunnel closes: the third is served.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("the third connection is served once a tunnel closes")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    a.stop().await;
}

#[tokio::test]
async fn a_user_part_in_a_plain_http_url_reaches_neither_upstream_nor_a_hold() {
    let pki = Pki::new();
    let up = upstream(None).await;
    let a = airlock(&pki, RULES, "").await;
    let p = up.port();
    let (mut s, head) = raw_head(
        a.addr,
        format!(
            "GET http://agent:s3cret@plain.test:{p}/page HTTP/1.1\r\nHost: plain.test:{p}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(raw_body(&mut s, &head).await, "hello from upstream /page");
    let (_held, head) = raw_head(
        a.addr,
        format!(
            "POST http://agent:s3cret@plain.test:{p}/send HTTP/1.1\r\nHost: plain.test:{p}\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .await;
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("airlock-hold: "))
        .unwrap_or_else(|| panic!("not held: {head}"));
    let hold = a.store().get(id).await.unwrap().unwrap();
    assert_eq!(hold.url, format!("http://plain.test:{p}/send"));
    assert_eq!(up.count(), 1, "only the automatic request was sent");
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/page");
    assert!(!format!("{:?}", seen.headers).contains("s3cret"));
    a.stop().await;
}
