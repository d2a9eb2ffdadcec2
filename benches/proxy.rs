//! A one-minute proxy benchmark: the real airlock binary beside a direct
//! connection, in one run, on loopback. An origin (hyper, HTTP and HTTPS)
//! and a load generator (hyper client, keep-alive, 32 connections) run in
//! this process; airlock runs as a child process.
//!
//! `cargo bench --bench proxy` — set `SECS` (per cell, default 3) and `CONC`
//! (default 32). Figures are ratios to direct measured in the same run, and
//! airlock's CPU per request (from /proc): on a shared 2-core machine
//! absolute throughput moves from run to run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    DirectPlain,
    Forward,
    Tunnel,
    Intercept,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn origin(size: usize) -> (SocketAddr, SocketAddr, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let body = Bytes::from(vec![b'x'; size]);
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    for (listener, acceptor) in [(plain, None), (secure, Some(acceptor))] {
        let body = body.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let _ = s.set_nodelay(true);
                let (body, acceptor) = (body.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                    let h1 = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(s).await {
                                let _ = h1.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = h1.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                });
            }
        });
    }
    (addrs.0, addrs.1, cert.pem())
}

fn client_tls(roots_pem: &[&str]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        use rustls::pki_types::pem::PemObject;
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect_via(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "proxy closed during CONNECT"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Where the load goes: the proxy under test and the origin's two ports.
#[derive(Clone, Copy)]
struct Endpoints {
    proxy: SocketAddr,
    plain: SocketAddr,
    secure: SocketAddr,
}

/// A client connection of any kind: plain, TLS, TLS inside a tunnel.
trait Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin {}
impl<T: hyper::rt::Read + hyper::rt::Write + Send + Unpin> Io for T {}

/// One keep-alive connection sending GETs until `until`.
async fn worker(
    mode: Mode,
    at: Endpoints,
    tls: tokio_rustls::TlsConnector,
    until: Instant,
    done: Arc<AtomicU64>,
) {
    let Endpoints {
        proxy,
        plain,
        secure,
    } = at;
    let uri = match mode {
        Mode::Forward => format!("http://{plain}/"),
        _ => "/".to_owned(),
    };
    let io: Box<dyn Io> = match mode {
        Mode::Forward => Box::new(TokioIo::new(TcpStream::connect(proxy).await.unwrap())),
        Mode::DirectPlain => Box::new(TokioIo::new(TcpStream::connect(plain).await.unwrap())),
        Mode::Direct => {
            let s = TcpStream::connect(secure).await.unwrap();
            s.set_nodelay(true).unwrap();
            let name = ServerName::IpAddress(secure.ip().into());
            Box::new(TokioIo::new(tls.connect(name, s).await.unwrap()))
        }
        Mode::Tunnel | Mode::Intercept => {
            let s = connect_via(proxy, secure).await;
            let name = ServerName::IpAddress(secure.ip().into());
            Box::new(TokioIo::new(tls.connect(name, s).await.unwrap()))
        }
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    while Instant::now() < until {
        let req = Request::get(uri.as_str())
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Ok(res) = send.send_request(req).await else {
            return;
        };
        if res.into_body().collect().await.is_err() {
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests per second, and airlock's CPU per request in microseconds
/// when `pid` names it.
async fn measure_cpu(
    mode: Mode,
    at: Endpoints,
    roots: &[&str],
    conc: usize,
    secs: f64,
    pid: u32,
) -> (f64, f64) {
    let before = cpu_us(pid);
    let start = Instant::now();
    let rps = measure(mode, at, roots, conc, secs).await;
    let requests = rps * start.elapsed().as_secs_f64();
    (rps, (cpu_us(pid) - before) / requests.max(1.0))
}

async fn measure(mode: Mode, at: Endpoints, roots: &[&str], conc: usize, secs: f64) -> f64 {
    let tls = client_tls(roots);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conc)
        .map(|_| tokio::spawn(worker(mode, at, tls.clone(), until, done.clone())))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// CPU time (user + system) the process has used so far, from
/// `/proc/PID/stat`, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`.
    (ticks(11) + ticks(12)) * 1e6 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Kills the airlock child however the bench ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_airlock(
    dir: &std::path::Path,
    port: u16,
    origin_ca: &str,
    intercept: bool,
    credential: bool,
) -> KillOnDrop {
    let rules = dir.join(if intercept { "rules-mitm" } else { "rules-fwd" });
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("00-bench.toml"),
        format!(
            "[[rule]]\nname = \"bench\"\naction = \"automatic\"\nhost = [\"127.0.0.1\"]\n{}",
            if intercept {
                "method = [\"GET\"]\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    std::fs::write(dir.join("origin.pem"), origin_ca).unwrap();
    std::fs::write(dir.join("secret"), "bench-secret-0123456789abcdef\n").unwrap();
    let d = dir.display();
    // The credential variant sets Authorization on every request.
    let credential = if credential {
        format!(
            "[[credential]]\nname = \"bench\"\nhost = [\"127.0.0.1\"]\nheader = \"Authorization\"\n\
             value = \"Bearer {{secret}}\"\nsecret_file = \"{d}/secret\"\n"
        )
    } else {
        String::new()
    };
    let config = dir.join(format!("airlock-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream_ca = [\"{d}/origin.pem\"]\n\
             [review]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{d}/data-{port}\"\n\
             [tls]\nca_dir = \"{d}/certs\"\n[rules]\ndir = \"{}\"\n[defaults]\nunmatched = \"deny\"\n\
             {credential}",
            rules.display()
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("start airlock")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("airlock did not start on port {port}");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let conc: usize = std::env::var("CONC")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut table = Vec::new();
        for size in [1024usize, 1024 * 1024] {
            let (plain, secure, origin_ca) = origin(size).await;
            let (fwd_port, mitm_port, cred_port) = (free_port(), free_port(), free_port());
            let fwd = spawn_airlock(dir.path(), fwd_port, &origin_ca, false, false);
            let mitm = spawn_airlock(dir.path(), mitm_port, &origin_ca, true, false);
            let cred = spawn_airlock(dir.path(), cred_port, &origin_ca, true, true);
            wait_for(fwd_port).await;
            wait_for(mitm_port).await;
            wait_for(cred_port).await;
            let airlock_ca = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
            let fwd_addr: SocketAddr = ([127, 0, 0, 1], fwd_port).into();
            let mitm_addr: SocketAddr = ([127, 0, 0, 1], mitm_port).into();
            let cred_addr: SocketAddr = ([127, 0, 0, 1], cred_port).into();
            let at = |proxy| Endpoints {
                proxy,
                plain,
                secure,
            };
            let direct = measure(Mode::Direct, at(fwd_addr), &[&origin_ca], conc, secs).await;
            let direct_plain = measure(Mode::DirectPlain, at(fwd_addr), &[], conc, secs).await;
            let (fwd_pid, mitm_pid, cred_pid) = (fwd.0.id(), mitm.0.id(), cred.0.id());
            let cells = [
                ("plain HTTP forward", Mode::Forward, fwd_addr, vec![origin_ca.as_str()], direct_plain, fwd_pid),
                ("blind tunnel", Mode::Tunnel, fwd_addr, vec![origin_ca.as_str()], direct, fwd_pid),
                ("intercepted", Mode::Intercept, mitm_addr, vec![airlock_ca.as_str()], direct, mitm_pid),
                ("intercepted+cred", Mode::Intercept, cred_addr, vec![airlock_ca.as_str()], direct, cred_pid),
            ];
            for (name, mode, proxy, roots, baseline, pid) in cells {
                let (rps, cpu) = measure_cpu(mode, at(proxy), &roots, conc, secs, pid).await;
                table.push((size, name, rps, baseline, cpu));
            }
            drop((fwd, mitm, cred));
        }
        println!("\nairlock vs direct (plain HTTP vs direct HTTP; the rest vs direct HTTPS), keep-alive, c={conc}, {secs}s per cell");
        println!("{:<8} {:<20} {:>12} {:>12} {:>8} {:>14}", "body", "path", "req/s", "direct", "ratio", "cpu us/req");
        for (size, name, rps, direct, cpu) in table {
            let size = if size >= 1024 * 1024 { "1 MiB" } else { "1 KiB" };
            println!("{size:<8} {name:<20} {rps:>12.0} {direct:>12.0} {:>7.2}x {cpu:>14.1}", rps / direct);
        }
    });
}
