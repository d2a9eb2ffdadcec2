//! MCP tool calls through airlock, with the official MCP Python SDK on both
//! sides: a server over streamable HTTP with TLS (`tests/mcp/server.py`)
//! as the upstream, and the SDK's client (`tests/mcp/client.py`) as an
//! unmodified agent that only has `HTTPS_PROXY` and airlock's CA. Both
//! protocol styles the SDK speaks are driven: session-based (`legacy`:
//! `initialize`, `Mcp-Session-Id`) and session-less (`auto`: the
//! 2026-07-28 revision its default client picks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::api::Api;
use common::{Airlock, Pki, ROOT, airlock_with, require_tool, reviewers_toml};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const RULES: &str = r#"
[[rule]]
name = "mcp-send-waiting"
action = "review"
label = "Email the agent waits for"
host = ["mcp.test"]
mcp_tool = ["send_email"]
json = { "/params/arguments/subject" = "wait:*" }
wait = "30s"
summary = "Email to {/params/arguments/to}: {/params/arguments/subject}"

[[rule]]
name = "mcp-send"
action = "review"
label = "Email from the agent"
host = ["mcp.test"]
mcp_tool = ["send_email"]
summary = "Email to {/params/arguments/to}: {/params/arguments/subject}"

[[rule]]
name = "mcp-delete"
action = "deny"
host = ["mcp.test"]
mcp_tool = ["delete_*"]

[[rule]]
name = "mcp-other"
action = "automatic"
host = ["mcp.test"]
method = ["GET", "POST", "DELETE"]
"#;

/// The Python server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(pki: &Pki, mode: &str) -> Server {
        let python = require_tool("python3");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.server_pem();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let log = dir.path().join("performed.jsonl");
        let mut child = Command::new(python)
            .arg(script("server.py"))
            .arg(dir.path().join("cert.pem"))
            .arg(dir.path().join("key.pem"))
            .arg(&log)
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the MCP server starts (the tools' virtualenv needs `mcp`: run ./test.sh)")
            .unwrap()
            .expect("the MCP server prints its port");
        let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        // Uvicorn listens once it has started; the port is bound already.
        wait_listening(port).await;
        Server {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("https://mcp.test:{}/mcp", self.port)
    }

    /// Every tool call the server really performed.
    fn performed(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn wait_listening(port: u16) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the MCP server never listened on {port}");
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// The SDK's client as an agent: `HTTPS_PROXY` and airlock's CA only.
struct Agent {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    protocol: String,
}

impl Agent {
    async fn connect(a: &Airlock, server: &Server, mode: &str) -> Agent {
        let mut child = Command::new(require_tool("python3"))
            .arg(script("client.py"))
            .arg(server.url())
            .arg(mode)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HTTPS_PROXY", a.proxy_url())
            .env("SSL_CERT_FILE", a.ca_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut agent = Agent {
            _child: child,
            stdin,
            lines,
            protocol: String::new(),
        };
        let hello = agent.read().await;
        assert_eq!(hello["connected"], true, "{hello}");
        agent.protocol = hello["protocol"].as_str().unwrap().to_owned();
        agent
    }

    async fn send(&mut self, cmd: Value) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the MCP client answers")
            .unwrap()
            .expect("the MCP client is running");
        serde_json::from_str(&line).unwrap()
    }

    async fn ask(&mut self, cmd: Value) -> Value {
        self.send(cmd).await;
        let answer = self.read().await;
        assert!(
            answer.get("exception").is_none(),
            "the client failed: {answer}"
        );
        answer
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.ask(json!({"op": "call", "tool": tool, "args": args}))
            .await
    }

    async fn close(mut self) {
        let bye = self.ask(json!({"op": "close"})).await;
        assert_eq!(bye["closed"], true);
    }
}

async fn setup(mode: &str) -> (Pki, Server, Airlock, Api) {
    let pki = Pki::new();
    let server = Server::start(&pki, mode).await;
    let a = airlock_with(
        &pki,
        RULES,
        "",
        &reviewers_toml(),
        airlock::holds::store::system_clock(),
    )
    .await;
    let api = Api::new(a.review_url());
    (pki, server, a, api)
}

async fn pending(api: &Api) -> Vec<Value> {
    api.get("/api/holds?state=pending", ROOT.1).await["holds"]
        .as_array()
        .unwrap()
        .clone()
}

async fn one_pending(api: &Api) -> Value {
    for _ in 0..400 {
        if let [hold] = pending(api).await.as_slice() {
            return hold.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no pending hold appeared");
}

/// Held, not performed; approved, performed once; the identical call after
/// that gets the real result under its own id, and the one after that is
/// held anew.
async fn held_then_approved(mode: &str, protocol: &str) {
    let (_pki, server, a, api) = setup("stateful").await;
    let mut agent = Agent::connect(&a, &server, mode).await;
    assert_eq!(agent.protocol, protocol);
    let tools = agent.ask(json!({"op": "list"})).await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("send_email"))
    );

    let args = json!({"to": "ana@client.example", "subject": "Quote"});
    let held = agent.call("send_email", args.clone()).await;
    assert_eq!(held["isError"], true, "{held}");
    let text = held["text"].as_str().unwrap();
    assert!(
        text.contains("NOT performed") && text.contains("/api/status/"),
        "{text}"
    );
    assert!(
        server.performed().is_empty(),
        "a held call is not performed"
    );

    let hold = one_pending(&api).await;
    assert_eq!(hold["rule"], "mcp-send");
    assert_eq!(hold["summary"], "Email to ana@client.example: Quote");
    let draft = hold["request"]["body"].as_str().unwrap();
    assert!(
        draft.contains("\"send_email\"") && draft.contains("ana@client.example"),
        "{draft}"
    );
    let id = hold["id"].as_str().unwrap();
    let (status, _) = api.decide(id, "approve", ROOT.1, None).await;
    assert_eq!(status, 200);
    api.until(id, "released").await;
    assert_eq!(server.performed().len(), 1, "performed once, on approval");

    let result = agent.call("send_email", args.clone()).await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["text"], "sent to ana@client.example: Quote");
    assert_eq!(server.performed().len(), 1, "the result is the stored one");

    let again = agent.call("send_email", args).await;
    assert_eq!(again["isError"], true, "a later call is held anew: {again}");
    assert_eq!(server.performed().len(), 1);
    agent.close().await;
    a.stop().await;
}

#[tokio::test]
async fn a_session_based_client_gets_a_tool_error_then_the_approved_result() {
    held_then_approved("legacy", "2025-11-25").await;
}

#[tokio::test]
async fn a_sessionless_client_gets_a_tool_error_then_the_approved_result() {
    held_then_approved("auto", "2026-07-28").await;
}

#[tokio::test]
async fn a_denied_tool_is_never_performed() {
    let (_pki, server, a, api) = setup("stateless").await;
    let mut agent = Agent::connect(&a, &server, "auto").await;
    let denied = agent.call("delete_mailbox", json!({"name": "ceo"})).await;
    assert_eq!(denied["isError"], true);
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("rule \"mcp-delete\" denies it"),
        "{denied}"
    );
    // Automatic tools pass.
    let read = agent.call("get_inbox", json!({})).await;
    assert_eq!(
        read,
        json!({"isError": false, "text": "3 unread", "progress": [], "ms": read["ms"]})
    );
    assert!(server.performed().is_empty());
    assert!(pending(&api).await.is_empty(), "nothing is held");
    agent.close().await;
    a.stop().await;
}

/// `wait`: the call stays open, the client hears progress meanwhile, and
/// the approved call's real result arrives on the same call.
#[tokio::test]
async fn wait_delivers_the_real_result_on_the_same_call() {
    let (_pki, server, a, api) = setup("stateful").await;
    let mut agent = Agent::connect(&a, &server, "auto").await;
    agent
        .send(json!({"op": "call", "tool": "send_email", "progress": true,
                     "args": {"to": "bo@client.example", "subject": "wait: invoice"}}))
        .await;
    let hold = one_pending(&api).await;
    assert_eq!(hold["rule"], "mcp-send-waiting");
    // Past the first progress notification (every 5 s).
    tokio::time::sleep(Duration::from_millis(5600)).await;
    assert!(server.performed().is_empty());
    api.decide(hold["id"].as_str().unwrap(), "approve", ROOT.1, None)
        .await;
    let result = agent.read().await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["text"], "sent to bo@client.example: wait: invoice");
    let progress = result["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "progress while it waited: {result}");
    assert!(
        progress[0]["message"]
            .as_str()
            .unwrap()
            .contains("Waiting for human approval"),
        "{result}"
    );
    assert_eq!(server.performed().len(), 1);

    // Without a progress token the call waits as plainly.
    agent
        .send(json!({"op": "call", "tool": "send_email",
                     "args": {"to": "bo@client.example", "subject": "wait: receipt"}}))
        .await;
    let hold = one_pending(&api).await;
    api.decide(hold["id"].as_str().unwrap(), "approve", ROOT.1, None)
        .await;
    let result = agent.read().await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["text"], "sent to bo@client.example: wait: receipt");
    assert_eq!(server.performed().len(), 2);
    agent.close().await;
    a.stop().await;
}

/// Automatic calls stream: progress the server sends arrives while the
/// tool still runs, not with its result.
#[tokio::test]
async fn automatic_event_streams_arrive_as_they_are_sent() {
    let (_pki, server, a, _api) = setup("stateful").await;
    let mut agent = Agent::connect(&a, &server, "legacy").await;
    let result = agent
        .ask(json!({"op": "call", "tool": "count_slowly", "args": {"steps": 4}, "progress": true}))
        .await;
    assert_eq!(result["text"], "counted to 4", "{result}");
    let progress = result["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 4, "{result}");
    let first = progress[0]["ms"].as_u64().unwrap();
    let done = result["ms"].as_u64().unwrap();
    assert!(
        done >= first + 800,
        "the first step arrived {first} ms in, the result {done} ms in: buffered"
    );
    agent.close().await;
    a.stop().await;
}

/// A session-based call approved after its client's session ended: sent
/// once with its old session, refused by the server (404), never
/// performed; the next identical call hears so, and the one after is held
/// anew.
#[tokio::test]
async fn a_call_approved_after_its_session_ended_is_refused_by_the_server() {
    let (_pki, server, a, api) = setup("stateful").await;
    let mut agent = Agent::connect(&a, &server, "legacy").await;
    let args = json!({"to": "cy@client.example", "subject": "Late"});
    let held = agent.call("send_email", args.clone()).await;
    assert_eq!(held["isError"], true);
    agent.close().await; // DELETE: the server ends the session
    let hold = one_pending(&api).await;
    let id = hold["id"].as_str().unwrap();
    api.decide(id, "approve", ROOT.1, None).await;
    let released = api.until(id, "released").await;
    assert_eq!(released["response"]["status"], 404, "{released}");
    assert!(server.performed().is_empty());

    let mut agent = Agent::connect(&a, &server, "legacy").await;
    let told = agent.call("send_email", args.clone()).await;
    assert_eq!(told["isError"], true);
    let text = told["text"].as_str().unwrap();
    assert!(text.contains("404") && text.contains("session"), "{text}");
    let anew = agent.call("send_email", args).await;
    assert!(
        anew["text"].as_str().unwrap().contains("NOT performed"),
        "{anew}"
    );
    assert_eq!(pending(&api).await.len(), 1);
    assert!(server.performed().is_empty());
    agent.close().await;
    a.stop().await;
}

/// The README's example rules for an MCP server classify as it says.
#[test]
fn the_readmes_mcp_example_holds_what_it_says() {
    use airlock::rules::{Action, BodyView, Decision, RequestView, RuleSet};
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = &readme[readme.find("## Agents that use MCP").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let toml = &section[start..start + section[start..].find("```").unwrap()];
    let rules = airlock::rules::parse_file("README.md", toml).unwrap();
    let set = RuleSet::new(rules, Action::Review).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let decide = |method: &str, body: &str| {
        let view = RequestView {
            method,
            host: "mcp.mail.example.com",
            path: "/mcp",
            query: None,
            headers: &headers,
        };
        match set.decide(&view, BodyView::Read(body.as_bytes())) {
            Decision::Matched(rule) => rule.name.clone(),
            Decision::Unmatched => "(unmatched)".to_owned(),
            Decision::NeedBody => "(needs body)".to_owned(),
        }
    };
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"to":"a@b"}}}}}}"#
        )
    };
    assert_eq!(decide("POST", &call("get_inbox")), "mail-mcp-reads");
    assert_eq!(decide("POST", &call("send_email")), "mail-mcp-send");
    assert_eq!(decide("POST", &call("Send_Email")), "mail-mcp-send");
    assert_eq!(decide("POST", &call("delete_all")), "mail-mcp-delete");
    assert_eq!(
        decide("POST", &call("forward_email")),
        "(unmatched)",
        "an unknown tool is reviewed"
    );
    let batch = format!("[{},{}]", call("get_inbox"), call("send_email"));
    assert_eq!(decide("POST", &batch), "mail-mcp-send");
    assert_eq!(
        decide("POST", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
        "mail-mcp-plumbing"
    );
    assert_eq!(
        decide(
            "POST",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ),
        "mail-mcp-plumbing"
    );
    assert_eq!(decide("GET", ""), "mail-mcp-session");
    assert_eq!(decide("DELETE", ""), "mail-mcp-session");
}

/// A client that accepts only an event stream gets the tool error as one
/// event; an identical call with another id and `_meta` joins the same
/// hold, and each answer carries its own call's id.
#[tokio::test]
async fn an_event_stream_only_client_gets_one_event_under_its_own_id() {
    let (_pki, server, a, api) = setup("stateless").await;
    let agent = common::client(&a.proxy_url(), &[&a.ca_pem()]);
    let call = |id: u32, token: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "send_email", "arguments": {"to": "di@client.example", "subject": "Hi"},
            "_meta": {"progressToken": token}}})
        .to_string()
    };
    for (id, token) in [(1, 10), (2, 20)] {
        let res = agent
            .post(server.url())
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(call(id, token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let text = res.text().await.unwrap();
        let data = text
            .strip_prefix("event: message\ndata: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("one event: {text:?}"));
        let message: Value = serde_json::from_str(data).unwrap();
        assert_eq!(message["id"], id);
        assert_eq!(message["result"]["isError"], true);
        assert_eq!(message["result"]["resultType"], "complete");
    }
    assert_eq!(pending(&api).await.len(), 1, "one hold for both calls");
    assert!(server.performed().is_empty());
    a.stop().await;
}
