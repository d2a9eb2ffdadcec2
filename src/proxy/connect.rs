//! CONNECT: decide from the rules *before* answering. A host decided at
//! CONNECT time is refused with a real status or tunnelled blind (dialled
//! first, so an unreachable host gets 502, not 200 and a closed socket);
//! every other host is intercepted so its requests can be matched. Either
//! way the agent's ClientHello must name the CONNECT host ([`super::hello`]).
//!
//! This module never answers 200 for a tunnel it could not open.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;

use super::{Proxy, Target, intercept, respond, tunnel};
use crate::error::ProxyError;
use crate::rules::ConnectDecision;
use crate::upstream::Body;

pub async fn handle(
    proxy: Arc<Proxy>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    slot: super::Slot,
    agent: super::identity::Identity,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return respond::error(&ProxyError::BadRequest("CONNECT needs host:port".into()));
    };
    let Some(port) = authority.port_u16() else {
        return respond::error(&ProxyError::BadRequest(
            "CONNECT needs an explicit port, as in host:443".into(),
        ));
    };
    let target = Target::new(Scheme::HTTPS, normalise(authority), agent);
    let rules = proxy.rules.load();
    let decision = decide(&proxy, &rules, target.host());
    match decision {
        ConnectDecision::Refuse(rule) => {
            proxy.metrics.connect[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(%peer, host = target.host(), rule = rule.map(|r| r.name.as_str()), "CONNECT refused");
            respond::denied(rule.map(|r| r.name.as_str()))
        }
        ConnectDecision::Tunnel(rule) => {
            proxy.metrics.connect[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let upstream = match proxy.upstream.dial(target.host(), port).await {
                Ok(s) => s,
                Err(e) => {
                    proxy.metrics.upstream_error(e.kind());
                    tracing::warn!(%peer, host = target.host(), error = %e, "tunnel: upstream unreachable");
                    return respond::error(&ProxyError::Upstream(e));
                }
            };
            tracing::debug!(%peer, host = target.host(), rule = rule.map(|r| r.name.as_str()), "tunnel opened");
            let on_upgrade = hyper::upgrade::on(&mut req);
            let metrics = proxy.metrics.clone();
            let patience = proxy.header_timeout;
            tokio::spawn(async move {
                let _open = crate::metrics::Active::new(&metrics.tunnels_active);
                match tunnel::run(on_upgrade, upstream, target.host(), patience).await {
                    Ok((up, down)) => {
                        tracing::debug!(%peer, host = target.host(), up, down, "tunnel closed");
                    }
                    Err(why) => {
                        tracing::warn!(%peer, host = target.host(), reason = %why, "tunnel refused: nothing was sent upstream");
                    }
                }
                drop(slot);
            });
            respond::connected()
        }
        ConnectDecision::Intercept => {
            proxy.metrics.connect[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let metrics = proxy.metrics.clone();
                let _open = crate::metrics::Active::new(&metrics.intercepted_active);
                intercept::run(proxy, on_upgrade, Arc::new(target), peer, slot).await;
            });
            respond::connected()
        }
    }
}

/// What happens to a connection to `host`, decided before anything is sent.
pub fn decide<'r>(
    proxy: &Proxy,
    rules: &'r crate::rules::RuleSet,
    host: &str,
) -> ConnectDecision<'r> {
    match rules.decide_connect(host) {
        // A host airlock sets a credential for is always intercepted: the
        // credential goes on each request, never down a blind tunnel.
        ConnectDecision::Tunnel(_) if proxy.credentials.covers(host) => ConnectDecision::Intercept,
        decision => decision,
    }
}

/// Lower-cases the host so rules, certificates and the connection pool
/// all see one spelling.
fn normalise(authority: Authority) -> Authority {
    if authority.as_str().bytes().any(|b| b.is_ascii_uppercase()) {
        Authority::try_from(authority.as_str().to_ascii_lowercase()).unwrap_or(authority)
    } else {
        authority
    }
}
