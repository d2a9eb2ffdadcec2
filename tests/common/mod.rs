//! Real servers and clients for the end-to-end tests: an upstream test CA,
//! HTTP/HTTPS upstreams (h1 and h2) that record what they receive, with SSE
//! and WebSocket routes, and airlock itself started on ephemeral ports with
//! its own temp directory. Everything listens on 127.0.0.1 and is dropped
//! (ports closed, directories removed) when the test ends.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

pub mod api;
pub mod postgres;
pub mod webhook;

use airlock::config::{Config, Env};
use airlock::server::Running;

/// Names test upstreams answer to; airlock resolves them to 127.0.0.1
/// through `[proxy] hosts`.
pub const NAMES: &[&str] = &[
    "tunnel.test",
    "intercept.test",
    "denied.test",
    "review.test",
    "plain.test",
    "mail.test",
    "mcp.test",
];

/// A CA for test upstreams, unknown to airlock unless configured.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "upstream test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for the test names and 127.0.0.1 and its key, as PEM,
    /// for upstreams that are not ours to configure (a Python server).
    pub fn server_pem(&self) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        names.push("127.0.0.1".into());
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server config for the test names and 127.0.0.1, h2 and http/1.1.
    pub fn server_config(&self) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        names.push("127.0.0.1".into());
        names.push("localhost".into());
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = cert.der().clone();
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        (Arc::new(config), der)
    }
}

/// What an upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The TLS server name the connection asked for (TLS upstreams only).
    pub sni: Option<String>,
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

type TestBody = BoxBody<Bytes, Infallible>;

/// A recording upstream server. A TLS upstream is a shared front end, as a
/// CDN's is: one port whose certificate covers every name in [`NAMES`], so
/// it answers whichever name a client asks for in SNI or `Host`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Every connection that reached it: the SNI of each TLS handshake
    /// (`None` without SNI), or `None` for each plain-TCP connection that
    /// sent any byte. Recorded before anything is answered.
    pub hellos: Arc<Mutex<Vec<Option<String>>>>,
    /// The certificate it presents (TLS upstreams only).
    pub cert: Option<CertificateDer<'static>>,
    /// `/sse` sends its second event only after this is notified.
    pub sse_gate: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The SNI of every TLS handshake that reached this upstream.
    pub fn handshakes(&self) -> Vec<Option<String>> {
        self.hellos.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Starts an upstream; with `tls`, HTTPS with h2 and http/1.1 by ALPN.
pub async fn upstream(tls: Option<&Pki>) -> Upstream {
    upstream_with(tls.map(Pki::server_config)).await
}

/// An HTTPS upstream whose certificate is self-signed and marked as a CA,
/// as development certificates made by `openssl req -x509` are. Returns it
/// and its certificate's PEM.
pub async fn self_signed_upstream() -> (Upstream, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    names.push("127.0.0.1".into());
    let mut params = CertificateParams::new(names).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (
        upstream_with(Some((Arc::new(config), cert.der().clone()))).await,
        cert.pem(),
    )
}

async fn upstream_with(tls: Option<(Arc<ServerConfig>, CertificateDer<'static>)>) -> Upstream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    upstream_listening(listener, tls).await
}

/// [`upstream`] on a listener the test bound itself (in a network
/// namespace of its own, say).
pub async fn upstream_on(listener: std::net::TcpListener, tls: Option<&Pki>) -> Upstream {
    upstream_listening(listener, tls.map(Pki::server_config)).await
}

async fn upstream_listening(
    listener: std::net::TcpListener,
    tls: Option<(Arc<ServerConfig>, CertificateDer<'static>)>,
) -> Upstream {
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let sse_gate = Arc::new(Notify::new());
    let (acceptor, cert) = match tls {
        Some((config, der)) => (Some(tokio_rustls::TlsAcceptor::from(config)), Some(der)),
        None => (None, None),
    };
    let (seen2, gate2, hellos2) = (seen.clone(), sse_gate.clone(), hellos.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, gate, acceptor, hellos) = (
                seen2.clone(),
                gate2.clone(),
                acceptor.clone(),
                hellos2.clone(),
            );
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let service = |sni: Option<String>| {
                    service_fn(move |req| {
                        let (seen, gate, sni) = (seen.clone(), gate.clone(), sni.clone());
                        async move { Ok::<_, Infallible>(answer(req, seen, gate, sni).await) }
                    })
                };
                match acceptor {
                    Some(acceptor) => {
                        let start = tokio_rustls::LazyConfigAcceptor::new(
                            rustls::server::Acceptor::default(),
                            stream,
                        );
                        let Ok(start) = start.await else {
                            return;
                        };
                        let sni = start.client_hello().server_name().map(str::to_owned);
                        hellos.lock().unwrap().push(sni.clone());
                        if let Ok(tls) = start.into_stream(acceptor.config().clone()).await {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), service(sni))
                                .await;
                        }
                    }
                    None => {
                        let mut first = [0u8; 1];
                        if matches!(stream.peek(&mut first).await, Ok(n) if n > 0) {
                            hellos.lock().unwrap().push(None);
                        }
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service(None))
                            .await;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        seen,
        hellos,
        cert,
        sse_gate,
        task,
    }
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

async fn answer(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
    sni: Option<String>,
) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return websocket_echo(&mut req);
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        sni,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    match path.as_str() {
        "/echo" => Response::new(full(body)),
        // Received, recorded, never answered: a send cut short.
        "/stall" => std::future::pending().await,
        // An exchange still in flight a moment later.
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            Response::new(full("slow done"))
        }
        "/sse" => {
            let events = futures_util::stream::unfold(0u8, move |n| {
                let gate = gate.clone();
                async move {
                    match n {
                        0 => Some((Ok(Frame::data(Bytes::from("data: first\n\n"))), 1)),
                        1 => {
                            gate.notified().await;
                            Some((Ok(Frame::data(Bytes::from("data: second\n\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(events)))
                .unwrap()
        }
        _ => Response::builder()
            .header("x-upstream", "yes")
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "must not reach the agent")
            .body(full(format!("hello from upstream {}", parts.uri.path())))
            .unwrap(),
    }
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<TestBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(full("not a websocket request"))
            .unwrap();
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    return;
                }
            } else if msg.is_close() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .body(full(Bytes::new()))
        .unwrap()
}

/// A running airlock with its own directory (CA, rules, store).
pub struct Airlock {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub config: Config,
}

impl Airlock {
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn review_url(&self) -> String {
        format!("http://{}", self.running.as_ref().unwrap().review_addr)
    }

    pub fn store(&self) -> &airlock::holds::Store {
        &self.running.as_ref().unwrap().store
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("certs/ca.pem")).unwrap()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Shuts airlock down and starts it again on the same directory (new
    /// ports), as a pod restart would.
    pub async fn restart(&mut self, clock: airlock::holds::store::Clock) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let running = airlock::server::start_with_clock(&self.config, clock)
            .await
            .unwrap();
        self.addr = running.proxy_addr.unwrap();
        self.running = Some(running);
    }
}

/// Writes `rules` and a configuration (plus `extra` TOML appended to the
/// `[proxy]` section) into a temp dir and starts airlock on it.
pub async fn airlock(pki: &Pki, rules: &str, extra_proxy: &str) -> Airlock {
    airlock_with(
        pki,
        rules,
        extra_proxy,
        "",
        airlock::holds::store::system_clock(),
    )
    .await
}

/// Reviewers the hold tests log in as: (name, token).
pub const ALICE: (&str, &str) = ("alice", "alice-token-0123456789");
pub const BOB: (&str, &str) = ("bob", "bob-token-0123456789");
pub const ROOT: (&str, &str) = ("root", "root-token-0123456789");

/// `[[reviewer]]` sections for alice, bob and root (admin).
pub fn reviewers_toml() -> String {
    [(ALICE, false), (BOB, false), (ROOT, true)]
        .iter()
        .map(|((name, token), admin)| {
            let hash = airlock::holds::hex(&airlock::review::auth::token_hash(token));
            format!("[[reviewer]]\nname = \"{name}\"\ntoken_sha256 = \"{hash}\"\nadmin = {admin}\n")
        })
        .collect()
}

/// A test clock: starts at the real now, moves only when told.
#[derive(Clone)]
pub struct TestClock(Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    pub fn new() -> TestClock {
        TestClock(Arc::new(std::sync::atomic::AtomicI64::new(
            jiff::Timestamp::now().as_millisecond(),
        )))
    }

    pub fn advance(&self, d: std::time::Duration) {
        self.0
            .fetch_add(d.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn clock(&self) -> airlock::holds::store::Clock {
        let at = self.0.clone();
        Arc::new(move || {
            jiff::Timestamp::from_millisecond(at.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
        })
    }
}

/// Starts airlock with extra top-level configuration and a clock.
pub async fn airlock_with(
    pki: &Pki,
    rules: &str,
    extra_proxy: &str,
    extra: &str,
    clock: airlock::holds::store::Clock,
) -> Airlock {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), pki, rules, extra_proxy, extra);
    let running = airlock::server::start_with_clock(&config, clock)
        .await
        .unwrap();
    Airlock {
        addr: running.proxy_addr.unwrap(),
        running: Some(running),
        dir,
        config,
    }
}

/// The configuration file text for a test directory.
pub fn write_config(dir: &Path, pki: &Pki, rules: &str, extra_proxy: &str, extra: &str) -> Config {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/10-test.toml"), rules).unwrap();
    std::fs::write(dir.join("upstream-ca.pem"), &pki.ca_pem).unwrap();
    let hosts = NAMES
        .iter()
        .map(|n| format!("\"{n}\" = \"127.0.0.1\""))
        .collect::<Vec<_>>()
        .join(", ");
    let d = dir.display();
    // A test may name its own upstream roots instead of the test CA.
    let roots = if extra_proxy.contains("upstream_ca") {
        String::new()
    } else {
        format!("upstream_ca = [\"{d}/upstream-ca.pem\"]\n")
    };
    // Tests stop airlock with their clients' tunnels still open: no need to
    // give those the production grace period.
    let grace = if extra_proxy.contains("shutdown_grace") {
        ""
    } else {
        "shutdown_grace = \"2s\"\n"
    };
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{roots}{grace}hosts = {{ {hosts} }}\n{extra_proxy}\n\
         [review]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{d}/data\"\n[tls]\nca_dir = \"{d}/certs\"\n[rules]\ndir = \"{d}/rules\"\n{extra}\n"
    );
    std::fs::write(dir.join("airlock.toml"), &text).unwrap();
    Config::parse("airlock.toml", &text, &Env::default()).unwrap()
}

/// A reqwest client through airlock that trusts exactly `roots`.
pub fn client(proxy: &str, roots: &[&str]) -> reqwest::Client {
    client_builder(proxy, roots).build().unwrap()
}

pub fn client_builder(proxy: &str, roots: &[&str]) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy).unwrap())
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(std::time::Duration::from_secs(20));
    for pem in roots {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b
}

/// Sends raw bytes to the proxy and returns everything up to the end of
/// the response head.
pub async fn raw_head(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("proxy answered in time")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&buf).into_owned())
}

/// Reads what is left of a response with a Content-Length.
pub async fn raw_body(s: &mut TcpStream, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

/// Where `./test.sh` keeps the Python tools (hadolint, kubernetes-validate and
/// a python3 with requests): `$AIRLOCK_TOOLS`, else a virtualenv under
/// `~/.cache`. Both read the same variable, so tests started by the script and
/// by a plain `cargo test` find the same tools.
pub fn tools_venv() -> PathBuf {
    match std::env::var_os("AIRLOCK_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/airlock-test-tools")
        }
    }
}

/// Path of a tool the test needs, or a panic naming the script that installs
/// it. Looked up in the tools' virtualenv first (its python3 has requests),
/// then on `PATH`, then among PostgreSQL's server binaries, which Debian keeps
/// off `PATH` (`/usr/lib/postgresql/<version>/bin`, newest first).
pub fn require_tool(name: &str) -> PathBuf {
    let mut dirs = vec![tools_venv().join("bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut postgres: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    postgres.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.extend(postgres.into_iter().map(|(_, dir)| dir));
    let search = std::env::join_paths(dirs).expect("tool directories join into a search path");
    let cwd = std::env::current_dir().expect("the test's working directory");
    which::which_in(name, Some(search), cwd).unwrap_or_else(|_| {
        panic!(
            "this test needs `{name}`, found neither in {} nor on PATH: \
             run ./test.sh in the repository, which installs the tools the tests drive",
            tools_venv().join("bin").display()
        )
    })
}

/// A rustls client config trusting exactly the certificates in `pem`.
pub fn tls_client(pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// CONNECTs through the proxy and completes a TLS handshake trusting `pem`.
pub async fn tls_via(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    pem: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (tcp, head) = raw_head(
        proxy,
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls_client(pem)
        .connect(host.to_owned().try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// The certificate a TLS stream's server presented.
pub fn peer_cert(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// The real binary, running on a test directory's `airlock.toml`.
pub struct Binary {
    child: std::process::Child,
    pub proxy_addr: SocketAddr,
    pub review_addr: SocketAddr,
    /// Every line it logged so far is kept here by a reader thread.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts `airlock run --config DIR/airlock.toml` and waits until both
    /// listeners are up.
    pub fn start(dir: &Path) -> Binary {
        Binary::start_with(dir, &[])
    }

    /// [`Binary::start`] with extra arguments to `airlock run`.
    pub fn start_with(dir: &Path, args: &[&str]) -> Binary {
        Binary::launch(dir, args, "run", &[])
    }

    /// `airlock ARGS COMMAND --config DIR/airlock.toml` (`run` or `review`)
    /// with extra environment, once its listeners are up (a review server
    /// has no proxy listener: its `proxy_addr` stays unspecified).
    pub fn launch(dir: &Path, args: &[&str], command: &str, env: &[(&str, &str)]) -> Binary {
        Binary::launch_through(&[], dir, args, command, env)
    }

    /// [`Binary::launch`] through a wrapper that runs the binary (such as
    /// `nsenter --net=… --`), which must exec it in place.
    pub fn launch_through(
        wrapper: &[&str],
        dir: &Path,
        args: &[&str],
        command: &str,
        env: &[(&str, &str)],
    ) -> Binary {
        use std::io::BufRead;
        let exe = env!("CARGO_BIN_EXE_airlock");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = std::process::Command::new(require_tool(program));
                c.args(rest).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        let mut child = cmd
            .args(args)
            .args([command, "--config"])
            .arg(dir.join("airlock.toml"))
            .env("RUST_LOG", "info")
            .env_remove("AIRLOCK_CONFIG")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let addr_after = |line: &str, marker: &str| -> Option<SocketAddr> {
            if !line.contains(marker) {
                return None;
            }
            // `--log-format json` writes "listen":"addr".
            if let Some(rest) = line.split("\"listen\":\"").nth(1) {
                return rest.split('"').next()?.parse().ok();
            }
            line.split("listen=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        let unspecified: SocketAddr = ([0, 0, 0, 0], 0).into();
        let (mut proxy, mut review) = ((command != "run").then_some(unspecified), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while (proxy.is_none() || review.is_none()) && std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
                proxy = proxy.or_else(|| addr_after(&line, "airlock proxy listening"));
                review = review.or_else(|| addr_after(&line, "review server listening"));
            }
        }
        let mut b = Binary {
            child,
            proxy_addr: ([0, 0, 0, 0], 0).into(),
            review_addr: ([0, 0, 0, 0], 0).into(),
            log,
        };
        match (proxy, review) {
            (Some(p), Some(r)) => {
                b.proxy_addr = p;
                b.review_addr = r;
                b
            }
            _ => panic!("airlock did not start: {:#?}", b.log.lock().unwrap()),
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new(require_tool("kill"))
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(mut self, within: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no shutdown, no flush beyond what was already durable.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether a logged line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id of the hold a held answer names.
pub fn hold_id(res: &reqwest::Response) -> String {
    res.headers()["airlock-hold"].to_str().unwrap().to_owned()
}
