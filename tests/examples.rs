//! The shipped examples work as the README says: the walkthrough config and
//! rules load, and the five-minute walkthrough runs end to end: the fake mail
//! API, the real binary on the walkthrough rules with its generated admin
//! token, the Python and Node agents held, an approval, the email delivered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Binary, require_tool};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_config_and_rules_file_loads() {
    let config = airlock::config::Config::load(
        Some(&repo().join("examples/walkthrough/airlock.toml")),
        &airlock::config::Env::default(),
    )
    .unwrap();
    let rules = airlock::rules::load_dir(&repo().join(&config.rules.dir)).unwrap();
    let set = airlock::rules::RuleSet::new(rules, config.defaults.unmatched).unwrap();
    assert!(set.rule("fake-mail-send").is_some());
    let shipped = airlock::rules::load_dir(&repo().join("rules")).unwrap();
    airlock::rules::RuleSet::new(shipped, airlock::rules::Action::Review).unwrap();
}

/// The example binary cargo built beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds examples",
        path.display()
    );
    path
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_five_minute_walkthrough_holds_then_delivers_the_email() {
    let python = require_tool("python3");
    let node = require_tool("node");
    // 1. The fake mail API, printing what it receives.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut mail = Child(
        Command::new(example("fake-mail"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let printed = Arc::new(Mutex::new(String::new()));
    {
        let out = mail.0.stdout.take().unwrap();
        let printed = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                printed.lock().unwrap().push_str(&line);
                printed.lock().unwrap().push('\n');
            }
        });
    }
    // 2. airlock on the walkthrough rules, with its own ports and store.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let text = std::fs::read_to_string(repo().join("examples/walkthrough/airlock.toml"))
        .unwrap()
        .replace("127.0.0.1:3128", "127.0.0.1:0")
        .replace("127.0.0.1:3129", "127.0.0.1:0")
        .replace("./airlock-data/walkthrough", &format!("{d}/data"))
        .replace("\"./certs\"", &format!("\"{d}/certs\""))
        .replace(
            "./examples/walkthrough/rules",
            &repo()
                .join("examples/walkthrough/rules")
                .display()
                .to_string(),
        );
    std::fs::write(dir.path().join("airlock.toml"), text).unwrap();
    let bin = Binary::start(dir.path());
    let token = bin
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split("?token=").nth(1).map(|t| {
                t.chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect::<String>()
            })
        })
        .expect("the login URL is logged on first start");
    let proxy = format!("http://{}", bin.proxy_addr);
    let api = format!("http://localhost:{port}");

    // 3. The agents send; airlock holds.
    let (py_out, node_out) = {
        let (python, node, proxy, api) = (python.clone(), node.clone(), proxy.clone(), api.clone());
        tokio::task::spawn_blocking(move || {
            let run = |cmd: &Path, script: &str| {
                let out = Command::new(cmd)
                    .arg(repo().join(script))
                    .arg(&api)
                    .env("HTTP_PROXY", &proxy)
                    .env_remove("http_proxy")
                    .env_remove("NO_PROXY")
                    .env_remove("no_proxy")
                    .output()
                    .unwrap();
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            };
            (
                run(&python, "examples/agents/send_email.py"),
                run(&node, "examples/agents/send_email.mjs"),
            )
        })
        .await
        .unwrap()
    };
    assert!(
        py_out.contains("HTTP 403") && py_out.contains("Airlock-State: pending"),
        "{py_out}"
    );
    assert!(py_out.contains("NOT sent"), "{py_out}");
    assert!(
        node_out.contains("HTTP 403") && node_out.contains("airlock-state: pending"),
        "{node_out}"
    );
    assert!(
        !printed.lock().unwrap().contains("email received"),
        "nothing is sent before approval"
    );

    // 4. A reviewer approves the Python agent's email; the API receives it.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let list: serde_json::Value = http
        .get(format!(
            "http://{}/api/holds?state=pending",
            bin.review_addr
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let holds = list["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 2);
    let py = holds
        .iter()
        .find(|h| h["agent_label"] == "quote-agent")
        .unwrap();
    assert_eq!(py["summary"], "Email to client@example.com: Your quote");
    let id = py["id"].as_str().unwrap();
    let status = http
        .post(format!("http://{}/api/holds/{id}/approve", bin.review_addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    for _ in 0..100 {
        if printed.lock().unwrap().contains("email received") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let printed = printed.lock().unwrap().clone();
        assert_eq!(printed.matches("email received").count(), 1, "{printed}");
        assert!(printed.contains("Your quote"));
    }

    // 5. With --wait, the agent gets the mail API's own answer once approved.
    let waiting = {
        let (python, proxy) = (python.clone(), proxy.clone());
        let api = format!("http://127.0.0.1:{port}");
        tokio::task::spawn_blocking(move || {
            let out = Command::new(python)
                .arg(repo().join("examples/agents/send_email.py"))
                .args([api.as_str(), "--wait", "30"])
                .env("HTTP_PROXY", &proxy)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let id = loop {
        let list: serde_json::Value = http
            .get(format!(
                "http://{}/api/holds?state=pending",
                bin.review_addr
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = list["holds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["agent_label"] == "quote-agent")
            .and_then(|h| h["id"].as_str().map(str::to_owned));
        if let Some(id) = found {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    http.post(format!("http://{}/api/holds/{id}/approve", bin.review_addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let out = waiting.await.unwrap();
    assert!(
        out.contains("HTTP 202") && out.contains("Preference-Applied: wait=30"),
        "{out}"
    );
    assert_eq!(printed.lock().unwrap().matches("email received").count(), 2);
    drop(mail);
}
