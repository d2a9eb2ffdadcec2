//! The pooled upstream client (hyper-util + rustls): the one way airlock
//! reaches the outside, for forwarded requests, blind tunnels, and (later)
//! released holds, so neither of those callers imports the other.
//!
//! Upstream certificates are verified against the system roots plus
//! `[proxy] upstream_ca`; there is no switch to skip verification. This module
//! never decides whether a request may be sent: callers have done that.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

use crate::config::ProxyConfig;
use crate::tls::{TlsError, provider};

/// A body airlock sends or answers with: streamed from the other side, or
/// one of its own.
pub type Body = Either<Incoming, Own>;

/// A body of airlock's own: held in full (buffered for a rule, or a canned
/// answer), or fed as it goes (an event stream airlock writes itself, such
/// as an MCP call kept open for a decision).
#[derive(Debug)]
pub enum Own {
    Full(Full<Bytes>),
    Fed(tokio::sync::mpsc::Receiver<Bytes>),
}

/// `bytes` as a whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Own::Full(Full::new(bytes.into())))
}

impl hyper::body::Body for Own {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Own::Full(full) => std::pin::Pin::new(full).poll_frame(cx),
            Own::Fed(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Own::Full(full) => full.is_end_stream(),
            Own::Fed(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Own::Full(full) => full.size_hint(),
            Own::Fed(_) => hyper::body::SizeHint::default(),
        }
    }
}

type Connector = HttpsConnector<HttpConnector<Resolver>>;

/// Why an upstream exchange failed, by the kinds an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("connecting to {host}:{port} timed out")]
    ConnectTimeout { host: String, port: u16 },
    #[error("upstream exchange failed: {0}")]
    Exchange(String),
    #[error("the upstream sent no response head within {0} s")]
    ResponseTimeout(u64),
}

impl UpstreamError {
    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Resolve { .. } => "resolve",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout(_) => "timeout",
            UpstreamError::Exchange(m) if m.contains("certificate") || m.contains("tls") => "tls",
            UpstreamError::Exchange(_) => "upstream",
        }
    }
}

/// Name resolution with the `[proxy] hosts` overrides in front of the
/// system resolver.
#[derive(Clone, Debug)]
pub struct Resolver {
    hosts: Arc<BTreeMap<String, IpAddr>>,
}

impl Resolver {
    /// Addresses for `host`, with `port` filled in.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Some(ip) = self.hosts.get(host) {
            return Ok(vec![SocketAddr::new(*ip, port)]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let host = host.to_owned();
        tokio::task::spawn_blocking(move || (host.as_str(), port).to_socket_addrs())
            .await
            .map_err(io::Error::other)?
            .map(Iterator::collect)
    }
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.resolve(name.as_str(), 0).await?.into_iter()) })
    }
}

/// The shared upstream client.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// h2 or http/1.1 by ALPN, pooled per authority.
    client: Client<Connector, Body>,
    /// http/1.1 only: protocol upgrades (WebSocket) exist only there.
    h1_client: Client<Connector, Body>,
    resolver: Resolver,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &ProxyConfig) -> Result<Upstream, TlsError> {
        let (roots, pinned) = root_store(&config.upstream_ca)?;
        let resolver = Resolver {
            hosts: Arc::new(config.hosts.clone()),
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { webpki, pinned }))
            .with_no_client_auth();
        let http = || {
            let mut http = HttpConnector::new_with_resolver(resolver.clone());
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(config.connect_timeout));
            http
        };
        let both = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http());
        let h1 = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http());
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            // No pool timer: sweeping idle connections with one cost about
            // 10% of plain-HTTP throughput in the benchmark. Idle
            // connections are dropped when next looked up, or when the
            // upstream closes them (servers close idle keep-alives anyway).
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_adaptive_window(true);
        Ok(Upstream {
            client: builder.build(both),
            h1_client: builder.build(h1),
            resolver,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        })
    }

    /// Sends one request (absolute URI) and returns the streamed response.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        self.exchange(req, false).await
    }

    /// Sends a request that asks for a protocol upgrade, over http/1.1.
    pub async fn send_upgrade(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.exchange(req, true).await
    }

    async fn exchange(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let client = if upgrade {
            &self.h1_client
        } else {
            &self.client
        };
        match tokio::time::timeout(self.response_timeout, client.request(req)).await {
            Ok(result) => result.map_err(|e| UpstreamError::Exchange(error_chain(&e))),
            Err(_) => Err(UpstreamError::ResponseTimeout(
                self.response_timeout.as_secs(),
            )),
        }
    }

    /// Opens a TCP connection for a blind tunnel.
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let addrs =
            self.resolver
                .resolve(host, port)
                .await
                .map_err(|source| UpstreamError::Resolve {
                    host: host.to_owned(),
                    source,
                })?;
        let connect = async {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                host: host.to_owned(),
                port,
            })?
            .map_err(|source| UpstreamError::Connect {
                host: host.to_owned(),
                port,
                source,
            })?;
        // Small writes (TLS records, h2 frames) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Standard verification against the roots, plus one exception: a server
/// presenting exactly a certificate the operator listed in `upstream_ca` is
/// trusted as itself. Self-signed development certificates are often marked
/// as CAs, which path validation refuses to accept as a server's own.
#[derive(Debug)]
struct PinnedOrWebPki {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The system roots plus each extra PEM file, and the extra certificates
/// themselves (trusted as servers' own certificates too).
fn root_store(
    extra: &[impl AsRef<Path>],
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut pinned = Vec::new();
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for path in extra {
        let path = path.as_ref();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| TlsError::BadFile {
                path: path.to_owned(),
                message: format!("cannot read PEM certificates: {e}"),
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadFile {
                path: path.to_owned(),
                message: format!("bad PEM certificate: {e}"),
            })?;
        if certs.is_empty() {
            return Err(TlsError::BadFile {
                path: path.to_owned(),
                message: "holds no certificate".into(),
            });
        }
        for cert in certs {
            roots.add(cert.clone()).map_err(|e| TlsError::BadFile {
                path: path.to_owned(),
                message: format!("unusable root certificate: {e}"),
            })?;
            pinned.push(cert);
        }
    }
    Ok((roots, pinned))
}

/// The system roots as PEM text, for `airlock ca bundle`.
pub fn system_roots_pem() -> Vec<String> {
    rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())))
        .collect()
}

/// An error and its causes on one line: hyper's top-level messages
/// ("client error (Connect)") say little on their own.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let s = inner.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = inner.source();
    }
    out
}
