//! Forwarding one HTTP request: classify it by the rules (reading the body
//! only when a rule needs it, and never more than `max_body`), then send it
//! upstream with hop-by-hop headers removed both ways, streaming bodies and
//! protocol upgrades through.
//!
//! A request whose verdict is not automatic is never sent from here.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Proxy, Target, respond};
use crate::error::ProxyError;
use crate::rules::{Action, BodyView, Decision};
use crate::upstream::Body;

/// Context headers from HITL-aware agents: for the reviewer, never upstream.
pub static AIRLOCK_TRIGGER: HeaderName = HeaderName::from_static("airlock-trigger");
pub static AIRLOCK_AGENT: HeaderName = HeaderName::from_static("airlock-agent");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// What the access log says of one request besides its answer.
#[derive(Default)]
struct Verdict<'r> {
    action: Option<Action>,
    rule: Option<&'r str>,
}

pub async fn handle(
    proxy: &Proxy,
    req: Request<Incoming>,
    target: &Target,
    peer: SocketAddr,
    slot: &super::Slot,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // Cheap: the URI's parts are shared, not copied.
    let uri = req.uri().clone();
    // One rule set for the whole request, even if a reload lands meanwhile.
    let rules = proxy.rules.load_full();
    let mut verdict = Verdict::default();
    let res = match classify_and_send(proxy, &rules, req, target, peer, slot, &mut verdict).await {
        Ok(res) => res,
        Err(e) => {
            if let ProxyError::Upstream(u) = &e {
                proxy.metrics.upstream_error(u.kind());
            }
            tracing::info!(%peer, host = target.host(), error = %e, "request failed");
            respond::error(&e)
        }
    };
    // One line per request: never bodies, never header values.
    tracing::info!(
        target: "airlock::access",
        %peer,
        %method,
        host = target.host(),
        path = uri.path(),
        verdict = verdict.action.map_or("-", |a| a.as_str()),
        rule = verdict.rule.unwrap_or(if verdict.action.is_some() { "unmatched" } else { "-" }),
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        bytes = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        "access"
    );
    res
}

async fn classify_and_send<'r>(
    proxy: &Proxy,
    rules: &'r crate::rules::RuleSet,
    mut req: Request<Incoming>,
    target: &Target,
    peer: SocketAddr,
    slot: &super::Slot,
    verdict: &mut Verdict<'r>,
) -> Result<Response<Body>, ProxyError> {
    let upgrade = is_websocket_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // The upstream, the rules and the reviewer all see the target as the
    // host, whatever `Host` the agent wrote.
    parts.headers.insert(header::HOST, target.host_header());
    crate::canonical::remove_target_overrides(&mut parts.headers);
    crate::canonical::remove_underscored(&mut parts.headers);
    // Hop-by-hop headers (and those `Connection` names) never reach the
    // upstream: removed before the rules look, so that a header a rule
    // judged is one the upstream receives.
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let view = target.view(&parts);
    let (decision, body, read) = match rules.decide(&view, BodyView::Unread) {
        Decision::NeedBody => {
            let mut body = body;
            let bytes = match read_body(&parts.headers, &mut body, proxy.max_body).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    linger(body, proxy);
                    return Err(e);
                }
            };
            let decoded = decode_body(&parts.headers, &bytes, proxy.max_body)?;
            let decision = rules.decide(
                &view,
                decoded
                    .as_ref()
                    .map_or(BodyView::Undecodable, |d| BodyView::Read(d)),
            );
            let decoded = decoded.map(|d| keep(&bytes, d));
            (
                decision,
                crate::upstream::full(bytes.clone()),
                Some((bytes, decoded)),
            )
        }
        decision => (decision, Either::Left(body), None),
    };
    let rule = decision.rule();
    rules.count(rule);
    let action = match decision {
        Decision::Matched(rule) => rule.action,
        Decision::Unmatched => rules.unmatched(),
        // A body was read and a rule still wants it: cannot happen, but if
        // it did, hold rather than send.
        Decision::NeedBody => Action::Review,
    };
    verdict.action = Some(action);
    verdict.rule = rule.map(|r| r.name.as_str());
    match action {
        Action::Deny => {
            if let Either::Left(incoming) = body {
                linger(incoming, proxy);
            }
            let name = rule.map(|r| r.name.as_str());
            // A tool call read for the rules is told so in MCP's own form.
            let call = read
                .as_ref()
                .and_then(|(_, decoded)| decoded.as_deref())
                .and_then(|d| {
                    crate::canonical::json::parse(d)
                        .unambiguous()
                        .and_then(|doc| crate::canonical::mcp::call(&parts.headers, doc))
                });
            return Ok(match call {
                Some(call) => super::mcp::answer(
                    &call,
                    &super::mcp::tool_error(&call, &respond::denied_text(name, "tool call")),
                ),
                None => respond::denied(name),
            });
        }
        Action::Review => {
            let (bytes, decoded) = match (read, body) {
                (Some(read), _) => read,
                (None, Either::Left(mut incoming)) => {
                    let bytes = match read_body(&parts.headers, &mut incoming, proxy.max_body).await
                    {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            linger(incoming, proxy);
                            return Err(e);
                        }
                    };
                    let decoded = decode_body(&parts.headers, &bytes, proxy.max_body)?
                        .map(|d| keep(&bytes, d));
                    (bytes, decoded)
                }
                // A read body always comes with its reading.
                (None, Either::Right(_)) => (Bytes::new(), None),
            };
            return super::held::hold(
                &proxy.holding,
                parts,
                bytes,
                decoded.as_deref(),
                rule,
                target,
                peer,
            )
            .await;
        }
        Action::Automatic => {}
    }
    // A body the agent streams without a length (chunked) must reach the
    // upstream too, even on a GET, where the client would otherwise send none.
    let streamed = !body.is_end_stream()
        && body.size_hint().exact().is_none()
        && !parts.headers.contains_key(header::CONTENT_LENGTH);
    prepare_request(&mut parts, target)?;
    if let Some(name) = proxy.credentials.apply(
        target.host(),
        target.scheme == http::uri::Scheme::HTTPS,
        &mut parts.headers,
    )? {
        tracing::debug!(credential = name, host = target.host(), "credential set");
    }
    if streamed {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let upstream_req = Request::from_parts(parts, body);
    let mut res = if upgrade {
        proxy.upstream.send_upgrade(upstream_req).await?
    } else {
        proxy.upstream.send(upstream_req).await?
    };
    if res.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        tokio::spawn(splice_upgrade(
            client_upgrade,
            upstream_upgrade,
            slot.clone(),
        ));
        strip_hop_by_hop(res.headers_mut(), true);
        return Ok(res.map(Either::Left));
    }
    strip_hop_by_hop(res.headers_mut(), false);
    Ok(res.map(Either::Left))
}

/// Buffers a body a rule must inspect, refusing one over `limit` before
/// reading it when its length is declared. On an error, what is left of
/// the body stays with the caller (see [`linger`]).
async fn read_body(
    headers: &HeaderMap,
    body: &mut Incoming,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The body decoded for reading (`None`: it cannot be decoded, which the
/// rules read as ambiguous); decoded larger than `limit` is too large.
fn decode_body<'b>(
    headers: &HeaderMap,
    raw: &'b Bytes,
    limit: u64,
) -> Result<Option<std::borrow::Cow<'b, [u8]>>, ProxyError> {
    match crate::canonical::body::decode(headers, raw, limit) {
        Ok(decoded) => Ok(Some(decoded)),
        Err(crate::canonical::body::BodyError::TooLarge { limit }) => {
            Err(ProxyError::BodyTooLarge { limit })
        }
        Err(crate::canonical::body::BodyError::Undecodable(_)) => Ok(None),
    }
}

/// The decoded body, kept for the hold's summary: it shares the body's
/// buffer unless decoding made new bytes.
fn keep(raw: &Bytes, decoded: std::borrow::Cow<'_, [u8]>) -> Bytes {
    match decoded {
        std::borrow::Cow::Borrowed(_) => raw.clone(),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    }
}

/// What the agent still sends of a request answered early is read and
/// discarded in the background (up to `max_body`, for at most the header
/// timeout), so the answer goes out first and the request stream ends
/// after it: an HTTP/2 client then reads the answer (the stream is closed
/// with `NO_ERROR`) instead of failing on a cancelled stream.
fn linger(body: Incoming, proxy: &Proxy) {
    if body.is_end_stream() {
        return;
    }
    let limit = usize::try_from(proxy.max_body).unwrap_or(usize::MAX);
    let patience = proxy.header_timeout;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(patience, Limited::new(body, limit).collect()).await;
    });
}

/// Points the request at the target and removes airlock's own context
/// headers (hop-by-hop ones went before the rules looked).
fn prepare_request(parts: &mut Parts, target: &Target) -> Result<(), ProxyError> {
    if parts.uri.scheme().is_none() || parts.uri.authority() != Some(&target.authority) {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)
            .map_err(|e| ProxyError::BadRequest(format!("cannot form the upstream URL: {e}")))?;
    }
    // The upstream client picks h2 or http/1.1 by ALPN; an h2 request
    // version would be refused on an http/1.1 connection.
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    headers.remove(&AIRLOCK_TRIGGER);
    headers.remove(&AIRLOCK_AGENT);
    Ok(())
}

/// A WebSocket upgrade: the only protocol switch airlock passes on. Any
/// other (`h2c`, say) would carry requests the rules never saw, so its
/// `Upgrade` header is dropped and the request goes on as a plain one.
fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(only), None) => only
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket")),
        _ => false,
    };
    websocket
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): those named by
/// `Connection`, and the fixed ones. With `upgrade`, `Upgrade` and
/// `Connection: upgrade` stay, since they carry the upgrade itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// After both sides agreed to switch protocols, copy bytes between them.
async fn splice_upgrade(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _slot: super::Slot,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade abandoned");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eDp5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "application/json"),
            ("authorization", "Bearer end-to-end"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["authorization", "content-type"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade() {
        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.contains_key("sec-websocket-key"));
    }
}
