//! Transparent interception (`[proxy] transparent_listen`): connections the
//! pod's packet filter redirected to airlock, from an agent that never
//! asked for a proxy. The original destination (`SO_ORIGINAL_DST`, IPv4 and
//! IPv6) gives the port; the name comes from the TLS server name, or from
//! `Host` for plain HTTP. From there each connection takes the same path as
//! a CONNECT to that name and port: the same decision, the same ClientHello
//! check, interception, holds and credentials.
//!
//! The original address itself is never dialled: airlock connects to the
//! name, so an agent cannot reach one address while naming another. A TLS
//! connection without a server name, a connection that was not redirected,
//! and one redirected back to airlock's own listeners (a loop) are refused.
//! This module never sends anything upstream before the decision.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Proxy, Slot, Target, connect, forward, hello, identity, intercept, respond, tunnel};
use crate::error::ProxyError;
use crate::rules::ConnectDecision;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Where a redirected connection was going.
pub fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let addr = match stream.local_addr()? {
        SocketAddr::V4(_) => socket.original_dst_v4()?,
        // An IPv4 connection on a dual-stack listener (`[::]:3130`).
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => socket.original_dst_v4()?,
        SocketAddr::V6(_) => socket.original_dst_v6()?,
    };
    addr.as_socket().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the original destination is not an IP address",
        )
    })
}

/// Serves one redirected connection. `own` are airlock's listening
/// addresses: a connection redirected to one of them is a loop.
pub async fn serve(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    own: Arc<[SocketAddr]>,
) {
    let _ = stream.set_nodelay(true);
    let original = match original_destination(&stream) {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "transparent: no original destination (was the connection redirected?); closed");
            return;
        }
    };
    let local = stream.local_addr().ok().map(canonical_addr);
    let original = canonical_addr(original);
    if Some(original) == local || is_own(&own, original) {
        tracing::warn!(%peer, %original, "transparent: a connection to airlock's own listener (not redirected, or a redirect loop); closed");
        return;
    }
    if !proxy.agents.is_empty() {
        tracing::warn!(%peer, %original, "transparent: [[agent]] entries ask every agent to authenticate, and a redirected connection cannot; closed");
        return;
    }
    let Some(agent) = identity::identify(&[], &HeaderMap::new(), peer) else {
        return;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(proxy.header_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => {
            tracing::debug!(%peer, %original, "transparent: nothing sent in time; closed");
            return;
        }
    }
    if first[0] == TLS_HANDSHAKE {
        tls(proxy, stream, original.port(), agent, peer, slot).await;
    } else {
        plain(proxy, stream, original.port(), agent, peer, slot).await;
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// Is `addr` one of airlock's listeners (an unspecified listening address
/// stands for every local address on its port)?
fn is_own(own: &[SocketAddr], addr: SocketAddr) -> bool {
    own.iter()
        .any(|o| o.port() == addr.port() && (o.ip() == addr.ip() || o.ip().is_unspecified()))
}

async fn tls(
    proxy: Arc<Proxy>,
    mut stream: TcpStream,
    port: u16,
    agent: identity::Identity,
    peer: SocketAddr,
    slot: Slot,
) {
    let (bytes, client_hello) = match hello::read_within(&mut stream, proxy.header_timeout).await {
        Ok(read) => read,
        Err(why) => {
            tracing::info!(%peer, reason = %why, "transparent: not a TLS ClientHello; closed");
            hello::refuse(&mut stream).await;
            return;
        }
    };
    let name = client_hello
        .server_name
        .as_deref()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n.parse::<std::net::IpAddr>().is_err());
    let Some(name) = name else {
        tracing::warn!(%peer, port, "transparent: TLS without a server name; refused");
        hello::refuse(&mut stream).await;
        return;
    };
    let Ok(authority) = Authority::try_from(format!("{name}:{port}")) else {
        tracing::warn!(%peer, %name, "transparent: the TLS server name is not a host name; refused");
        hello::refuse(&mut stream).await;
        return;
    };
    let target = Target::new(Scheme::HTTPS, authority, agent);
    let rules = proxy.rules.load();
    let decision = connect::decide(&proxy, &rules, target.host());
    let blind = matches!(decision, ConnectDecision::Tunnel(_));
    if let Err(why) = hello::verdict(&client_hello, target.host(), blind) {
        tracing::warn!(%peer, host = target.host(), reason = %why, "transparent refused: ClientHello");
        hello::refuse(&mut stream).await;
        return;
    }
    match decision {
        ConnectDecision::Refuse(rule) => {
            proxy.metrics.connect[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(%peer, host = target.host(), rule = rule.map(|r| r.name.as_str()), "transparent connection refused");
            hello::refuse(&mut stream).await;
        }
        ConnectDecision::Tunnel(rule) => {
            proxy.metrics.connect[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let upstream = match proxy.upstream.dial(target.host(), port).await {
                Ok(s) => s,
                Err(e) => {
                    proxy.metrics.upstream_error(e.kind());
                    tracing::warn!(%peer, host = target.host(), error = %e, "transparent tunnel: upstream unreachable");
                    hello::refuse(&mut stream).await;
                    return;
                }
            };
            tracing::debug!(%peer, host = target.host(), rule = rule.map(|r| r.name.as_str()), "transparent tunnel opened");
            let _open = crate::metrics::Active::new(&proxy.metrics.tunnels_active);
            let (up, down) = tunnel::splice(stream, upstream, target.host(), &bytes).await;
            tracing::debug!(%peer, host = target.host(), up, down, "transparent tunnel closed");
            drop(slot);
        }
        ConnectDecision::Intercept => {
            proxy.metrics.connect[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let metrics = proxy.metrics.clone();
            let _open = crate::metrics::Active::new(&metrics.intercepted_active);
            let io = hello::Replayed::new(bytes, stream);
            intercept::serve(proxy, io, Arc::new(target), peer, slot).await;
        }
    }
}

/// Plain HTTP: each request goes to the host its `Host` header names, on
/// the original port.
async fn plain(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    port: u16,
    agent: identity::Identity,
    peer: SocketAddr,
    slot: Slot,
) {
    let mut stop = proxy.stop.clone();
    let header_timeout = proxy.header_timeout;
    let svc = service_fn(move |req: Request<Incoming>| {
        let (proxy, slot, agent) = (proxy.clone(), slot.clone(), agent.clone());
        async move {
            let res = match target_of(&req, port, agent) {
                Ok(target) => forward::handle(&proxy, req, &target, peer, &slot).await,
                Err(e) => respond::error(&e),
            };
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = super::serve_until_stopped!(conn, &mut stop) {
        tracing::debug!(%peer, error = %e, "transparent connection ended with an error");
    }
}

/// The target of a redirected plain-HTTP request: its `Host`'s name on the
/// original port. A request in absolute form must agree with `Host`.
fn target_of(
    req: &Request<Incoming>,
    port: u16,
    agent: identity::Identity,
) -> Result<Target, ProxyError> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| Authority::try_from(h).ok())
        .ok_or_else(|| {
            ProxyError::BadRequest("a redirected plain-HTTP request needs a Host header".into())
        })?;
    let name = host.host().trim_end_matches('.').to_ascii_lowercase();
    if let Some(uri_host) = req.uri().host()
        && !crate::canonical::same_host(uri_host, &name)
    {
        return Err(ProxyError::BadRequest(
            "the request line and Host name different hosts".into(),
        ));
    }
    let authority = Authority::try_from(format!("{name}:{port}"))
        .map_err(|_| ProxyError::BadRequest("the Host header is not a host name".into()))?;
    Ok(Target::new(Scheme::HTTP, authority, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listeners_include_every_address_of_an_unspecified_one() {
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:3128".parse().unwrap(),
            "0.0.0.0:3129".parse().unwrap(),
        ];
        assert!(is_own(&own, "127.0.0.1:3128".parse().unwrap()));
        assert!(is_own(&own, "10.1.2.3:3129".parse().unwrap()));
        assert!(!is_own(&own, "10.1.2.3:3128".parse().unwrap()));
        assert!(!is_own(&own, "127.0.0.1:443".parse().unwrap()));
    }
}
