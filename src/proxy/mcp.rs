//! airlock's own answers to an MCP `tools/call`, in the protocol's form so
//! that the client hands them to the model: HTTP 200 with a JSON-RPC
//! response carrying the call's `id` whose result is a tool error
//! (`isError: true`, `resultType: "complete"`, which every revision
//! accepts and the 2026-07-28 one requires), as JSON or as one event of an
//! event stream when the client accepts only that; progress notifications
//! for a call kept open; and a stored result handed to a later identical
//! call under that call's `id`.
//!
//! These answers never echo the call's arguments, and never fail to build.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::respond;
use crate::canonical::mcp::{Call, SESSION_ID};
use crate::holds::store::HoldEvent;
use crate::holds::{Hold, State, Store};
use crate::upstream::{Body, Own};

/// The most a stored result is decoded to for a replay: it was stored
/// within `max_body`, compressed or not.
const REPLAY_LIMIT: u64 = 64 * 1024 * 1024;

/// How long the outcome waits for room in a stream the client stopped
/// reading, before the task ends.
const FINAL_SEND: Duration = Duration::from_secs(30);

/// How often a call kept open over an event stream hears progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The answer about `hold` for an MCP tool call: `res` (airlock's own answer
/// for the hold's state) said as a tool result, or, once released, the
/// server's own result under the call's id.
pub fn about(res: Response<Body>, public_url: &str, hold: &Hold, call: &Call) -> Response<Body> {
    if hold.state == State::Released
        && let Some(stored) = &hold.response
        && !stored.truncated
        && let Some(replayed) = replay(res, &stored.body, call)
    {
        return replayed;
    }
    let text = explain(public_url, hold);
    respond::with_hold_headers(answer(call, &tool_error(call, &text)), hold)
}

/// What became of a held tool call, for the model to read.
fn explain(public_url: &str, hold: &Hold) -> String {
    let status_url = format!("{public_url}/api/status/{}", hold.status_token);
    match hold.state {
        State::Pending => format!(
            "This tool call was NOT performed. It waits for human approval ({}) until {}; if nobody approves it by then it expires and is never performed. \
             Once approved it is performed once, and calling this tool again with the same arguments returns its result. Status: {status_url}",
            hold.label, hold.expires_at
        ),
        State::Approved => format!(
            "This tool call was approved and is being performed. Call this tool again with the same arguments to get its result. Status: {status_url}"
        ),
        State::Released => match &hold.response {
            Some(r) if (200..300).contains(&r.status) => format!(
                "This tool call was approved and performed once (the MCP server answered {}), but its result cannot be shown here. \
                 It WAS performed: do not call it again to repeat it. Status: {status_url}",
                status_code_text(r.status)
            ),
            Some(r) => format!(
                "This tool call was approved and sent once, but the MCP server answered {} without a tool result (for a stateful server, its session may have ended). \
                 It will not be sent again; call the tool again to have it reviewed anew. Status: {status_url}",
                status_code_text(r.status)
            ),
            None => format!("This tool call was approved and sent. Status: {status_url}"),
        },
        State::Dismissed => format!(
            "This tool call was NOT performed: a reviewer dismissed it{}. Do not repeat it unchanged.",
            hold.reason.as_deref().map_or_else(String::new, |r| format!(" ({r})"))
        ),
        State::Expired => "This tool call was NOT performed: nobody approved it within its window, so it expired and will never be performed.".to_owned(),
        State::Failed => format!(
            "This tool call was approved but the MCP server could not be reached ({}); it was NOT performed and will not be retried.",
            hold.error.as_deref().unwrap_or("no answer")
        ),
        State::Interrupted => "airlock stopped while sending this approved tool call; whether it was performed is unknown, and it will not be sent again.".to_owned(),
    }
}

/// What a call kept open over an event stream needs, owned: it outlives
/// the request's handler.
pub struct Waiting {
    pub store: Store,
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub held_status: StatusCode,
    pub public_url: String,
}

/// An event stream answering `call`: progress every few seconds while its
/// hold waits (up to `wait`), then the server's result if it was approved
/// and sent in time, or a tool error saying what became of it.
pub fn streaming(
    waiting: Waiting,
    hold: Hold,
    events: tokio::sync::broadcast::Receiver<HoldEvent>,
    wait: Duration,
    call: Call,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut res = Response::new(http_body_util::Either::Right(Own::Fed(rx)));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let res = respond::with_hold_headers(with_session(res, &call), &hold);
    tokio::spawn(async move {
        let token = call.progress_token.clone().unwrap_or(Value::Null);
        let note = format!(
            "Waiting for human approval ({}); nothing is performed until a reviewer approves.",
            hold.label
        );
        let settled = super::held::settle(
            &waiting.store,
            waiting.stop.clone(),
            hold.clone(),
            events,
            wait,
        );
        tokio::pin!(settled);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut step = 0;
        let outcome = loop {
            tokio::select! {
                done = &mut settled => break done,
                _ = tick.tick() => {
                    step += 1;
                    // Never waits on a client that stopped reading: a
                    // progress it has no room for is skipped.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(event(&progress(&token, step, &note)))
                    {
                        // The client went away: its hold stays as it is.
                        return;
                    }
                }
            }
        };
        let now = outcome.unwrap_or(hold);
        let answers = respond::Answers {
            held_status: waiting.held_status,
            public_url: &waiting.public_url,
        };
        let res = about(
            respond::outcome(answers, &now, false),
            &waiting.public_url,
            &now,
            &call,
        );
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let Ok(body) = res.into_body().collect().await else {
            return;
        };
        let body = body.to_bytes();
        // An event stream goes on as it is; one JSON message becomes one event.
        let chunk = if content_type.starts_with("text/event-stream") {
            body
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(message) => event(&message),
                Err(_) => return,
            }
        };
        let _ = tokio::time::timeout(FINAL_SEND, tx.send(chunk)).await;
    });
    res
}

/// The JSON-RPC message of a tool error result for `call`.
pub fn tool_error(call: &Call, text: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": call.id,
        "result": {
            "content": [{ "type": "text", "text": text }],
            "isError": true,
            "resultType": "complete",
        },
    })
}

/// A progress notification for a call kept open: `step` counts up.
pub fn progress(token: &Value, step: u64, text: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": { "progressToken": token, "progress": step, "message": text },
    })
}

/// One event-stream event carrying `message`.
pub fn event(message: &Value) -> Bytes {
    let mut out = b"event: message\ndata: ".to_vec();
    out.extend(serde_json::to_vec(message).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `message` as the whole answer to `call`: JSON, or one event when the
/// client takes only an event stream.
pub fn answer(call: &Call, message: &Value) -> Response<Body> {
    let (bytes, content_type) = if call.sse_only {
        (event(message), "text/event-stream")
    } else {
        let mut bytes = serde_json::to_vec(message).unwrap_or_default();
        bytes.push(b'\n');
        (Bytes::from(bytes), "application/json")
    };
    let mut res = Response::new(crate::upstream::full(bytes));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_session(res, call)
}

/// The call's own session header back, as its server would answer it.
pub fn with_session(mut res: Response<Body>, call: &Call) -> Response<Body> {
    res.headers_mut().remove(&SESSION_ID);
    if let Some(session) = &call.session {
        res.headers_mut().insert(&SESSION_ID, session.clone());
    }
    res
}

/// A stored answer to an earlier identical call, made the answer to `call`:
/// its JSON-RPC response's `id` set to `call`'s, in a JSON body or in each
/// event of an event stream that carries a response; the session header
/// made `call`'s. `None` when the stored answer is not a JSON-RPC response
/// (an error status, another content type): the caller then says what
/// became of the call instead.
pub fn replay(res: Response<Body>, body: &[u8], call: &Call) -> Option<Response<Body>> {
    if !res.status().is_success() {
        return None;
    }
    // Stored as the server sent it: compressed, when the agent asked so.
    let body = crate::canonical::body::decode(res.headers(), body, REPLAY_LIMIT).ok()?;
    let body: &[u8] = &body;
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let rewritten = match content_type.as_str() {
        "application/json" => {
            let mut message: Value = serde_json::from_slice(body).ok()?;
            set_id(&mut message, &call.id).then_some(())?;
            let mut bytes = serde_json::to_vec(&message).ok()?;
            bytes.push(b'\n');
            bytes
        }
        "text/event-stream" => replay_events(body, &call.id)?,
        _ => return None,
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(http::header::CONTENT_ENCODING);
    let res = Response::from_parts(parts, crate::upstream::full(rewritten));
    Some(with_session(res, call))
}

/// Sets the `id` of a JSON-RPC response (a message with `result` or
/// `error`); false when `message` is not one.
fn set_id(message: &mut Value, id: &Value) -> bool {
    match message.as_object_mut() {
        Some(m)
            if m.contains_key("id") && (m.contains_key("result") || m.contains_key("error")) =>
        {
            m.insert("id".to_owned(), id.clone());
            true
        }
        _ => false,
    }
}

/// An event stream with the id of every response in it set to `id`; `None`
/// when no event carries a response.
fn replay_events(body: &[u8], id: &Value) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    // Lines end at CRLF, LF or CR; events at a blank line. An event the
    // stream did not finish is not one (a stored body cut short).
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    if !text.ends_with("\n\n") {
        blocks.pop();
    }
    let mut out = String::with_capacity(text.len());
    // Only the responses: the old call's progress, and any request its
    // server made of that session's client, are no answer to this call.
    for block in blocks {
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let Ok(mut message) = serde_json::from_str::<Value>(&data.join("\n")) else {
            continue;
        };
        if !set_id(&mut message, id) {
            continue;
        }
        out.push_str("event: message\ndata: ");
        out.push_str(&serde_json::to_string(&message).ok()?);
        out.push_str("\n\n");
    }
    (!out.is_empty()).then(|| out.into_bytes())
}

/// What the reviewer's card and the model read: an answer's status, as the
/// text of a tool error.
pub fn status_code_text(status: u16) -> String {
    StatusCode::from_u16(status).map_or_else(
        |_| status.to_string(),
        |s| {
            format!(
                "{} {}",
                s.as_u16(),
                s.canonical_reason().unwrap_or_default()
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn call(accept: &str, session: Option<&str>) -> Call {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        if let Some(s) = session {
            headers.insert(&SESSION_ID, HeaderValue::from_str(s).unwrap());
        }
        crate::canonical::mcp::call(
            &headers,
            &json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"send_email"}}),
        )
        .unwrap()
    }

    fn body(res: Response<Body>) -> (http::response::Parts, Vec<u8>) {
        let (parts, body) = res.into_parts();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(body.collect()).unwrap().to_bytes().to_vec();
        (parts, bytes)
    }

    #[test]
    fn a_tool_error_in_the_form_the_client_asked_for() {
        let json_call = call("application/json, text/event-stream", Some("s-1"));
        let (parts, bytes) = body(answer(&json_call, &tool_error(&json_call, "NOT performed")));
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers[CONTENT_TYPE], "application/json");
        assert_eq!(parts.headers[&SESSION_ID], "s-1");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"NOT performed"}],"isError":true,"resultType":"complete"}})
        );
        let sse_call = call("text/event-stream", None);
        let (parts, bytes) = body(answer(&sse_call, &tool_error(&sse_call, "x")));
        assert_eq!(parts.headers[CONTENT_TYPE], "text/event-stream");
        assert!(!parts.headers.contains_key(&SESSION_ID));
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("event: message\ndata: {") && text.ends_with("}\n\n"),
            "{text}"
        );
    }

    #[test]
    fn a_replay_carries_the_new_calls_id_and_session() {
        let new = call("application/json, text/event-stream", Some("new-session"));
        let stored = |ct: &str| {
            let mut res = Response::new(crate::upstream::full(Bytes::new()));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            res.headers_mut()
                .insert(&SESSION_ID, HeaderValue::from_static("old-session"));
            res
        };
        let json_body = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":false}}"#;
        let (parts, bytes) = body(replay(stored("application/json"), json_body, &new).unwrap());
        assert_eq!(parts.headers[&SESSION_ID], "new-session");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["result"]["isError"], false);

        let sse = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":3,\"progress\":1}}\r\n\r\nid: 9\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}\r\n\r\n";
        let (_, bytes) = body(replay(stored("text/event-stream"), sse.as_bytes(), &new).unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "event: message\ndata: {\"id\":42,\"jsonrpc\":\"2.0\",\"result\":{\"content\":[]}}\n\n",
            "only the response, under the new id"
        );
        // A response the stream never finished is not replayed.
        let cut = &sse[..sse.len() - 4];
        assert!(replay(stored("text/event-stream"), cut.as_bytes(), &new).is_none());
        // Stored compressed, as the agent's Accept-Encoding asked: decoded.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, json_body).unwrap();
        let mut compressed = stored("application/json");
        compressed.headers_mut().insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        let (parts, bytes) = body(replay(compressed, &gz.finish().unwrap(), &new).unwrap());
        assert!(!parts.headers.contains_key(http::header::CONTENT_ENCODING));
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["id"], 42);
        // Not a JSON-RPC response: no replay in the protocol's form.
        assert!(replay(stored("text/html"), b"<html>", &new).is_none());
        assert!(replay(stored("application/json"), b"{\"error\":\"x\"}", &new).is_none());
    }
}
