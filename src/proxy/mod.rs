//! The forward proxy: one agent connection at a time, each request first
//! tied to an agent identity ([`identity`]; `407` when `[[agent]]` entries
//! demand credentials it lacks), then routed to CONNECT handling (tunnel,
//! refuse or intercept) or to request forwarding.
//!
//! Data flows one way: listener → proxy → rules → (tunnel | forward | refuse).
//! The proxy never reaches into the review server; it answers held requests
//! itself and, once holds exist, meets the review side only in the store.

pub mod connect;
pub mod forward;
pub mod held;
pub mod hello;
pub mod identity;
pub mod intercept;
pub mod mcp;
pub mod respond;
pub mod transparent;
pub mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::tls::LeafCache;
use crate::upstream::{Body, Upstream};

/// Everything a connection needs, shared by all of one worker's connections
/// (each worker has its own upstream pool; the rest is shared by all).
#[derive(Debug)]
pub struct Proxy {
    /// The classification every request is matched against; swapped whole
    /// when the rules are reloaded.
    pub rules: crate::reload::SharedRules,
    pub upstream: Upstream,
    /// Minted certificates for intercepted hosts, shared by all workers.
    pub leaves: Arc<LeafCache>,
    /// The most airlock buffers of a body a rule must inspect or hold.
    pub max_body: u64,
    /// Where reviewed requests go.
    pub holding: Arc<held::Holding>,
    /// Becomes true at shutdown: connections finish what is in flight and
    /// close instead of waiting for more.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long an agent may take to send a request head.
    pub header_timeout: std::time::Duration,
    /// `[[agent]]`: when not empty, every CONNECT and plain-HTTP request
    /// must authenticate as one of them.
    pub agents: Arc<[crate::config::Agent]>,
    /// `[[credential]]`: set on requests to their hosts on the way up.
    pub credentials: Arc<crate::credentials::Credentials>,
}

/// An agent connection's place under `[proxy] max_connections`: held by
/// whatever serves the connection, for as long as any part of it is open
/// (a tunnel, an intercepted session, an upgraded WebSocket), so the limit
/// and the shutdown grace count every connection until it really ends.
pub type Slot = Arc<tokio::sync::OwnedSemaphorePermit>;

/// Where a request goes: scheme and authority (host, port) upstream.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Who sent the request, as the CONNECT that opened an intercepted
    /// connection (requests inside carry no proxy headers) or the plain
    /// request itself established it.
    pub agent: identity::Identity,
    /// The `Host` every request to this target carries upstream, made once
    /// per target rather than per request.
    host_header: HeaderValue,
}

impl Target {
    pub fn new(scheme: Scheme, authority: Authority, agent: identity::Identity) -> Target {
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let text = match authority.port_u16() {
            Some(port) if port == default_port => authority.host(),
            _ => authority.as_str(),
        };
        let host_header =
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Target {
            scheme,
            authority,
            agent,
            host_header,
        }
    }

    /// The host without port or IPv6 brackets, as rules match it.
    pub fn host(&self) -> &str {
        let h = self.authority.host();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The `Host` every request to this target carries upstream: the
    /// target's authority, without the scheme's default port.
    pub fn host_header(&self) -> HeaderValue {
        self.host_header.clone()
    }

    /// What the rules see of a request to this target.
    pub fn view<'a>(&'a self, parts: &'a http::request::Parts) -> crate::rules::RequestView<'a> {
        crate::rules::RequestView {
            method: parts.method.as_str(),
            host: self.host(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        }
    }
}

/// The authority without a `user:password@` part: a credential that must
/// reach neither the upstream's request line nor a hold, the page or a
/// notification.
fn without_userinfo(authority: &Authority) -> Authority {
    match authority.as_str().rsplit_once('@') {
        Some((_, host)) => Authority::try_from(host).unwrap_or_else(|_| authority.clone()),
        None => authority.clone(),
    }
}

/// Resolves once shutdown has begun.
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves a hyper server connection until it ends; once shutdown begins it
/// finishes the requests in flight and takes no more. (A macro: hyper's
/// connection types share `graceful_shutdown` but no trait for it.)
macro_rules! serve_until_stopped {
    ($conn:expr, $stop:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = $crate::proxy::stopped($stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}
pub(crate) use serve_until_stopped;

impl Proxy {
    /// Serves one agent connection until it closes.
    pub async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let _ = stream.set_nodelay(true);
        let mut stop = self.stop.clone();
        let header_timeout = self.header_timeout;
        let svc = service_fn(move |req| {
            let (proxy, slot) = (self.clone(), slot.clone());
            async move { Ok::<_, Infallible>(proxy.route(req, peer, slot).await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let result = serve_until_stopped!(conn, &mut stop);
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "agent connection ended with an error");
        }
    }

    async fn route(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        slot: Slot,
    ) -> Response<Body> {
        let Some(agent) = identity::identify(&self.agents, req.headers(), peer) else {
            tracing::info!(%peer, method = %req.method(), "proxy credentials missing or wrong");
            return respond::error(&ProxyError::ProxyAuthRequired);
        };
        if req.method() == Method::CONNECT {
            return connect::handle(self, req, peer, slot, agent).await;
        }
        let uri = req.uri();
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) if *scheme == Scheme::HTTP => {
                let target = Target::new(Scheme::HTTP, without_userinfo(authority), agent);
                forward::handle(&self, req, &target, peer, &slot).await
            }
            (Some(_), Some(_)) => respond::error(&ProxyError::BadRequest(
                "only http:// URLs are forwarded as is; use CONNECT for https://".into(),
            )),
            _ => respond::error(&ProxyError::BadRequest(
                "airlock is a forward proxy: send an absolute http:// URL, or CONNECT host:port"
                    .into(),
            )),
        }
    }
}
