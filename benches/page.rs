//! The approval page's weight and the time to show 1,000 pending holds in
//! headless Chromium (Debian's chromium + chromium-driver), against a real
//! airlock whose store holds 1,000 pending holds.
//!
//! `cargo bench --bench page`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use airlock::config::{Config, Env};
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

/// A SendGrid send with an HTML part: what a quote email weighs.
fn html_mail(i: u64) -> bytes::Bytes {
    let para = "<p>Thank you for your enquiry. Please find below the quote for the items we discussed, valid for thirty days from today.</p>";
    let html = format!(
        "<html><body><h1>Your quote #{i}</h1>{}<p>Total: 1,200 EUR</p></body></html>",
        para.repeat(20)
    );
    bytes::Bytes::from(
        json!({
            "personalizations": [{"to": [{"email": format!("client{i}@example.com"), "name": format!("Client {i}")}]}],
            "from": {"email": "sales@example.com", "name": "Sales"},
            "subject": format!("Your quote #{i}"),
            "content": [{"type": "text/html", "value": html}],
        })
        .to_string(),
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let page = ["index.html", "app.js", "style.css"]
        .iter()
        .map(|f| {
            std::fs::metadata(format!(
                "{}/src/review/page/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
            .len()
        })
        .sum::<u64>();
    println!(
        "page weight (HTML + CSS + JS, uncompressed): {:.1} KB",
        page as f64 / 1000.0
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        let token = "bench-token";
        let hash = airlock::holds::hex(&airlock::review::auth::token_hash(token));
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[review]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{d}/data\"\n\
             [tls]\nca_dir = \"{d}/certs\"\n[rules]\ndir = \"{d}/rules\"\n\
             [[reviewer]]\nname = \"r\"\ntoken_sha256 = \"{hash}\"\nadmin = true\n"
        );
        let config = Config::parse("bench.toml", &text, &Env::default()).unwrap();
        let running = airlock::server::start(&config).await.unwrap();
        // Shaped as a real client sends them: the headers Python's
        // requests adds, and an HTML email of about 3 KB.
        for i in 0..1000 {
            let mut hold = support::pending_hold(i);
            let body = html_mail(i);
            hold.headers.extend([
                ("user-agent".into(), "python-requests/2.32.3".into()),
                ("accept-encoding".into(), "gzip, deflate, br, zstd".into()),
                ("accept".into(), "*/*".into()),
                ("connection".into(), "keep-alive".into()),
                ("content-length".into(), body.len().to_string()),
            ]);
            hold.body_size = body.len() as u64;
            running.store.create(hold, body, u64::MAX).await.unwrap();
        }
        // The API's part alone: the whole list, and the one the page asks
        // for past its first screen (no bodies), and their sizes.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for (what, query) in [("whole", ""), ("the page's (preview=0)", "&preview=0")] {
            let mut api_ms = Vec::new();
            let mut size = 0;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                let body = http
                    .get(format!(
                        "http://{}/api/holds?state=pending&limit=1000{query}",
                        running.review_addr
                    ))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                api_ms.push(t.elapsed().as_secs_f64() * 1e3);
                size = body.len();
            }
            api_ms.sort_by(f64::total_cmp);
            println!(
                "the API's list of 1,000 pending, {what}: median {:.1} ms, {:.0} KB",
                api_ms[2],
                size as f64 / 1000.0
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver on PATH (apt-get install chromium-driver)");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", format!("--user-data-dir={}", profile.path().display())]}});
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let base = format!("http://{}", running.review_addr);
        client.goto(&format!("{base}/?token={token}")).await.unwrap();
        client.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css("body[data-ready=true]")).await.unwrap();
        let v = client.execute("return [document.body.dataset.firstMs, document.body.dataset.loadMs];", vec![]).await.unwrap();
        println!("cold browser, first visit (login redirect included): first screen {} ms, all 1,000 {} ms", v[0].as_str().unwrap(), v[1].as_str().unwrap());
        let mut queue = Vec::new();
        let mut load = Vec::new();
        let mut first = Vec::new();
        for _ in 0..5 {
            client.refresh().await.unwrap();
            client.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css("body[data-ready=true]")).await.unwrap();
            let v = client
                .execute("return [document.body.dataset.queueMs, document.body.dataset.loadMs, document.querySelectorAll('.card').length, document.body.dataset.firstMs];", vec![])
                .await
                .unwrap();
            assert_eq!(v[2], json!(1000));
            queue.push(v[0].as_str().unwrap().parse::<u64>().unwrap());
            load.push(v[1].as_str().unwrap().parse::<u64>().unwrap());
            first.push(v[3].as_str().unwrap().parse::<u64>().unwrap());
        }
        first.sort();
        queue.sort();
        load.sort();
        println!("1,000 pending holds: fetch + render the queue median {} ms (min {}, max {}); from navigation, the first screen painted median {} ms, all 1,000 median {} ms (after layout and paint)",
                 queue[2], queue[0], queue[4], first[2], load[2]);
        client.close().await.unwrap();
        let _ = driver.kill();
        let _ = driver.wait();
        running.shutdown().await;
    });
}
