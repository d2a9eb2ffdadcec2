//! MCP over streamable HTTP as airlock reads it: which JSON-RPC messages in a
//! body are `tools/call` requests and of which tool, what a call is as a
//! retry is judged (without its JSON-RPC `id` and `params._meta`), and what
//! the client said it accepts in answer.
//!
//! Read two ways, like every condition: strictly for automatic rules (one
//! JSON-RPC 2.0 request, the method exactly `tools/call`), and leniently for
//! review and deny rules (any message of a batch, the method in any case),
//! so that no reading a server might take passes a reviewed tool unheld.
//! This module only reads; it answers nothing and decides nothing.

use std::borrow::Cow;

use base64::Engine;
use http::HeaderMap;
use http::header::{ACCEPT, HeaderValue};
use serde_json::Value;

/// The JSON-RPC method of a tool call.
pub const TOOLS_CALL: &str = "tools/call";

/// The session header of stateful streamable HTTP.
pub static SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// The tool an automatic rule may see called: one JSON-RPC 2.0 request
/// object whose method is exactly `tools/call`, with a string
/// `params.name`. A batch, a notification or any other shape calls no tool
/// an automatic rule may pass.
pub fn strict_tool(doc: &Value) -> Option<&str> {
    let msg = doc.as_object()?;
    if msg.get("jsonrpc")?.as_str()? != "2.0" || msg.get("method")?.as_str()? != TOOLS_CALL {
        return None;
    }
    msg.get("id")?;
    msg.get("params")?.get("name")?.as_str()
}

/// The 2026-07-28 revision repeats the method and the tool name in headers
/// (`Mcp-Method`, `Mcp-Name`), which a server or gateway may route by.
pub static METHOD_HEADER: http::HeaderName = http::HeaderName::from_static("mcp-method");
pub static NAME_HEADER: http::HeaderName = http::HeaderName::from_static("mcp-name");

/// Tool names in `Mcp-Name` headers: for review and deny rules, a call
/// whatever the body says. Each value may list names with commas, and a
/// name may come wrapped as `=?base64?…?=` (the revision's form for names
/// a header cannot carry as they are).
pub fn header_tools(headers: &HeaderMap) -> impl Iterator<Item = Cow<'_, str>> {
    headers
        .get_all(&NAME_HEADER)
        .iter()
        .flat_map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            let names: Vec<String> = text.split(',').map(|n| n.trim().to_owned()).collect();
            names
        })
        .map(|name| {
            let decoded = name
                .strip_prefix("=?base64?")
                .and_then(|b| b.strip_suffix("?="))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            Cow::Owned(decoded.unwrap_or(name))
        })
}

/// Every tool call a server might run from `doc`, as its tool name and its
/// message: the object, or each batch element, whose method reads as
/// `tools/call` in any case, whether or not it says `"jsonrpc": "2.0"` or
/// carries an id, the name trimmed. A rule's `json` conditions are read
/// against each message.
pub fn lenient_calls(doc: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let messages: &[Value] = match doc {
        Value::Array(batch) => batch,
        one => std::slice::from_ref(one),
    };
    messages.iter().filter_map(|msg| {
        let method = any_case(msg, "method")?.as_str()?;
        if !method.trim().eq_ignore_ascii_case(TOOLS_CALL) {
            return None;
        }
        // A server that trims the name calls the tool the trimmed name says.
        let name = any_case(any_case(msg, "params")?, "name")?.as_str()?;
        Some((name.trim(), msg))
    })
}

/// `key` of an object as a case-insensitive parser reads it (Go's
/// encoding/json takes `"NAME"` or `"naMe"` for a field `name`): the exact
/// key first, else the first key that folds to it.
pub fn any_case<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| super::json::fold(k) == key)
            .map(|(_, v)| v)
    })
}

/// Whether the 2026-07-28 headers, where sent, say what the body says:
/// every `Mcp-Method` the message's method and every `Mcp-Name` its
/// `params.name`, exactly. A request whose headers say otherwise has two
/// readings (a gateway may route by the header), so no automatic rule
/// passes it.
pub fn headers_agree(doc: &Value, headers: &HeaderMap) -> bool {
    let agree = |header: &http::HeaderName, said: Option<&str>| {
        headers
            .get_all(header)
            .iter()
            .all(|v| said.is_some_and(|s| v.as_bytes() == s.as_bytes()))
    };
    agree(&METHOD_HEADER, doc.get("method").and_then(Value::as_str))
        && agree(
            &NAME_HEADER,
            doc.pointer("/params/name").and_then(Value::as_str),
        )
}

/// A body with nothing in it calls no tool: not an ambiguous one.
pub fn is_empty(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// One MCP `tools/call` request as the proxy answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The JSON-RPC id, which every answer to this call must carry.
    pub id: Value,
    /// `params._meta.progressToken`: the client takes progress for it.
    pub progress_token: Option<Value>,
    /// The client accepts an event stream in answer.
    pub accepts_sse: bool,
    /// ... and only that: JSON it would refuse.
    pub sse_only: bool,
    /// `Mcp-Session-Id`, when sent.
    pub session: Option<HeaderValue>,
}

/// The call in a request with these headers, when its body (read with one
/// reading, [`super::json::Parsed::unambiguous`]) is one JSON-RPC 2.0
/// `tools/call` request.
pub fn call(headers: &HeaderMap, doc: &Value) -> Option<Call> {
    strict_tool(doc)?;
    let id = doc.get("id")?.clone();
    if !matches!(id, Value::String(_) | Value::Number(_)) {
        return None;
    }
    let progress_token = doc
        .pointer("/params/_meta/progressToken")
        .filter(|t| matches!(t, Value::String(_) | Value::Number(_)))
        .cloned();
    let (json, sse) = accepted(headers);
    Some(Call {
        id,
        progress_token,
        accepts_sse: sse,
        sse_only: sse && !json,
        session: headers.get(&SESSION_ID).cloned(),
    })
}

/// Whether `Accept` takes JSON, and an event stream. No `Accept` takes any.
fn accepted(headers: &HeaderMap) -> (bool, bool) {
    let mut any = true;
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(ACCEPT) {
        any = false;
        for range in value.to_str().unwrap_or_default().split(',') {
            let media = range
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                "*/*" => (json, sse) = (true, true),
                "application/*" | "application/json" => json = true,
                "text/*" | "text/event-stream" => sse = true,
                _ => {}
            }
        }
    }
    if any { (true, true) } else { (json, sse) }
}

/// What identical retries of a tool call are judged by: the call without
/// its JSON-RPC `id` and `params._meta`, keys in one order. `None` when
/// `doc` (the body's one reading) is not one `tools/call` request: it is
/// then judged by its bytes.
pub fn identity(doc: &Value) -> Option<Vec<u8>> {
    strict_tool(doc)?;
    let mut doc = doc.clone();
    let msg = doc.as_object_mut()?;
    msg.remove("id");
    if let Some(Value::Object(params)) = msg.get_mut("params") {
        params.remove("_meta");
    }
    // Numbers as parsed are exact only as integers: two calls whose
    // decimals differ past what a float keeps are not one call.
    if has_float(&doc) {
        return None;
    }
    // serde_json's maps are ordered by key: one text for one call.
    let mut out = b"mcp tools/call ".to_vec();
    serde_json::to_writer(&mut out, &doc).ok()?;
    Some(out)
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(body: &[u8]) -> Value {
        super::super::json::parse(body)
            .unambiguous()
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn identity(body: &[u8]) -> Option<Vec<u8>> {
        super::identity(&doc(body))
    }

    #[test]
    fn strictly_one_request_of_exactly_tools_call() {
        let call =
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email"}});
        assert_eq!(strict_tool(&call), Some("send_email"));
        for other in [
            json!([call.clone()]),
            json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"send_email"}}),
            json!({"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"send_email"}}),
            json!({"id":1,"method":"tools/call","params":{"name":"send_email"}}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["send_email"]}}),
        ] {
            assert_eq!(strict_tool(&other), None, "{other}");
        }
    }

    #[test]
    fn leniently_every_message_a_server_might_run() {
        let batch = json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_me"}},
            {"method":" TOOLS/CALL ","params":{"name":" send_email\n"}},
            {"jsonrpc":"2.0","id":2,"method":"tools/list"},
        ]);
        assert_eq!(
            lenient_calls(&batch).map(|(n, _)| n).collect::<Vec<_>>(),
            ["get_me", "send_email"]
        );
        assert_eq!(lenient_calls(&json!({"a": 1})).count(), 0);
        let mut headers = HeaderMap::new();
        headers.append(
            &NAME_HEADER,
            HeaderValue::from_static("get_me, =?base64?c2VuZF9lbWFpbA==?="),
        );
        headers.append(&NAME_HEADER, HeaderValue::from_static("x"));
        assert_eq!(
            header_tools(&headers).collect::<Vec<_>>(),
            ["get_me", "send_email", "x"]
        );
        // Alone, a key in another case is what a case-insensitive parser
        // reads (Go's encoding/json, with the long s folded to s).
        let folded = json!({"METHOD": "tools/call", "paramſ": {"NaMe": "delete_repository"}});
        assert_eq!(
            lenient_calls(&folded).map(|(n, _)| n).collect::<Vec<_>>(),
            ["delete_repository"]
        );
    }

    #[test]
    fn a_call_carries_what_its_answer_needs() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(&SESSION_ID, HeaderValue::from_static("s-1"));
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        let body = br#"{"jsonrpc":"2.0","id":"a7","method":"tools/call","params":{"name":"send_email","arguments":{"to":"x"},"_meta":{"progressToken":5}}}"#;
        let call = call(&headers, &doc(body)).unwrap();
        assert_eq!(call.id, json!("a7"));
        assert_eq!(call.progress_token, Some(json!(5)));
        assert!(call.sse_only && call.accepts_sse);
        assert_eq!(call.session.unwrap(), "s-1");
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let call2 = super::call(&headers, &doc(body)).unwrap();
        assert!(call2.accepts_sse && !call2.sse_only);
        // Two readings of one body: not a call airlock answers as one.
        let dup = br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(super::call(&headers, &doc(dup)), None);
    }

    #[test]
    fn identity_ignores_the_id_and_meta_only() {
        let a = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"a@x","subject":"s"},"_meta":{"progressToken":1}}}"#;
        let b = br#"{"params":{"arguments":{"subject":"s","to":"a@x"},"name":"send_email"},"method":"tools/call","id":"other","jsonrpc":"2.0"}"#;
        let c = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"b@x","subject":"s"}}}"#;
        assert_eq!(identity(a), identity(b));
        assert_ne!(identity(a), identity(c));
        assert!(identity(a).unwrap().starts_with(b"mcp tools/call "));
        assert_eq!(
            identity(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            None
        );
        assert_eq!(identity(b"not json"), None);
        // Decimals a float cannot tell apart: no identity, the bytes decide.
        let amount = |a: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"pay","arguments":{{"amount":{a}}}}}}}"#
            )
        };
        assert_eq!(identity(amount("0.10000000000000000001").as_bytes()), None);
        assert!(identity(amount("12").as_bytes()).is_some());
    }
}
