//! Interception: TLS termination with a leaf minted for the host, then HTTP
//! (h2 or http/1.1, as ALPN decided) served to the agent, each request
//! matched and handled like a plain one.
//!
//! The agent's SNI must name the CONNECT host, and the upstream is always
//! the CONNECT target with `Host` set to it, so a request cannot slip past
//! the decision made for its host. A client that refuses airlock's certificate is logged with
//! the host name and closed; it is never sent anything in the clear.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::AlertDescription;
use tokio_rustls::LazyConfigAcceptor;

use super::{Proxy, Target, forward};

pub async fn run(
    proxy: Arc<Proxy>,
    on_upgrade: OnUpgrade,
    target: Arc<Target>,
    peer: SocketAddr,
    slot: super::Slot,
) {
    let host = target.host().to_owned();
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, %host, error = %e, "intercept: client went away before upgrade");
            return;
        }
    };
    let mut io = TokioIo::new(upgraded);
    let first = match super::hello::check(&mut io, &host, false, proxy.header_timeout).await {
        Ok(first) => first,
        Err(why) => {
            tracing::warn!(%peer, %host, reason = %why, "intercept refused: ClientHello");
            return;
        }
    };
    serve(
        proxy,
        super::hello::Replayed::new(first, io),
        target,
        peer,
        slot,
    )
    .await;
}

/// Terminates TLS on a connection whose checked ClientHello is replayed
/// first, then serves its requests to `target`.
pub async fn serve<IO>(
    proxy: Arc<Proxy>,
    io: super::hello::Replayed<IO>,
    target: Arc<Target>,
    peer: SocketAddr,
    slot: super::Slot,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let host = target.host().to_owned();
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match acceptor.await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, %host, error = %e, "intercept: not a TLS client hello");
            return;
        }
    };
    // Without SNI (an IP address, or an old client) the CONNECT host names the leaf.
    let name = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| host.clone());
    let config = match proxy.leaves.server_config(&name) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%peer, %host, error = %e, "intercept: cannot mint a certificate");
            return;
        }
    };
    let tls = match start.into_stream(config).await {
        Ok(s) => s,
        Err(e) => {
            if rejected_certificate(&e) {
                tracing::warn!(%peer, %host, "client rejected airlock's certificate (certificate pinning, or the airlock CA is not trusted); connection closed");
            } else {
                tracing::info!(%peer, %host, error = %e, "intercept: TLS handshake failed");
            }
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let proxy_stop = proxy.stop.clone();
    let header_timeout = proxy.header_timeout;
    let svc = service_fn(move |req| {
        let (proxy, target, slot) = (proxy.clone(), target.clone(), slot.clone());
        async move {
            Ok::<_, std::convert::Infallible>(
                forward::handle(&proxy, req, &target, peer, &slot).await,
            )
        }
    });
    let io = TokioIo::new(tls);
    let mut stop = proxy_stop;
    // At shutdown: finish the requests in flight, take no more.
    let result = if h2 {
        let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc);
        super::serve_until_stopped!(conn, &mut stop)
    } else {
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(io, svc)
            .with_upgrades();
        super::serve_until_stopped!(conn, &mut stop)
    };
    if let Err(e) = result {
        tracing::debug!(%peer, %host, error = %e, "intercepted connection ended with an error");
    }
}

/// Did the client end the handshake because it does not accept our leaf?
fn rejected_certificate(e: &std::io::Error) -> bool {
    let Some(inner) = e.get_ref() else {
        return false;
    };
    matches!(
        inner.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::AccessDenied
        ))
    )
}
