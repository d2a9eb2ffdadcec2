//! The ClientHello check that comes before a CONNECT carries anything: the
//! agent's TLS server name (SNI) must name the CONNECT host, for blind
//! tunnels and interception alike. A front end that serves many names acts
//! on the SNI (and, inside, on `Host`), so a tunnel opened for an automatic
//! host could otherwise reach a reviewed one behind the same front end.
//!
//! This module reads only the ClientHello, keeps its bytes so they can be
//! passed on unchanged, and never sends anything upstream itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::tls::hello::{self, ClientHello, Peek};

/// A fatal `access_denied` alert (TLS 1.2 record framing, which every
/// client reads before its handshake completes).
const ACCESS_DENIED: [u8; 7] = [21, 3, 3, 0, 2, 2, 49];

/// Reads the agent's ClientHello and checks it names `host`. On success,
/// the bytes read so far, which must be passed on first. On refusal the
/// agent is sent a TLS alert and the reason is returned for the log.
pub async fn check<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    host: &str,
    blind: bool,
    patience: Duration,
) -> Result<Vec<u8>, String> {
    let (bytes, hello) = read_within(io, patience).await?;
    match verdict(&hello, host, blind) {
        Ok(()) => Ok(bytes),
        Err(why) => {
            refuse(io).await;
            Err(why)
        }
    }
}

/// Reads a ClientHello within `patience`: its bytes and what it says.
pub async fn read_within<IO: AsyncRead + Unpin>(
    io: &mut IO,
    patience: Duration,
) -> Result<(Vec<u8>, ClientHello), String> {
    match tokio::time::timeout(patience, read(io)).await {
        Ok(read) => read,
        Err(_) => Err("no ClientHello in time".to_owned()),
    }
}

/// Ends a connection whose ClientHello is refused with a TLS alert.
pub async fn refuse<IO: AsyncWrite + Unpin>(io: &mut IO) {
    let _ = io.write_all(&ACCESS_DENIED).await;
    let _ = io.shutdown().await;
}

async fn read<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<(Vec<u8>, ClientHello), String> {
    let mut buf = Vec::with_capacity(2048);
    loop {
        match hello::peek(&buf) {
            Peek::Hello(hello) => return Ok((buf, hello)),
            Peek::Invalid(why) => return Err(why.to_owned()),
            Peek::Incomplete => {}
        }
        let room = hello::MAX_HELLO.saturating_sub(buf.len()).min(16 * 1024);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = io
            .read(buf.get_mut(start..).unwrap_or_default())
            .await
            .map_err(|e| format!("reading the ClientHello: {e}"))?;
        buf.truncate(start + n);
        if n == 0 {
            return Err("the client closed before a whole ClientHello".to_owned());
        }
    }
}

/// Does this ClientHello go to `host`, and only there? An Encrypted Client
/// Hello extension is refused on a blind tunnel, where the front end would
/// act on the hidden name. When airlock intercepts, it terminates TLS
/// itself and ignores the extension (browsers send a placeholder one on
/// every connection), so the request still goes to `host` and no further.
pub fn verdict(hello: &ClientHello, host: &str, blind: bool) -> Result<(), String> {
    if hello.encrypted && blind {
        return Err("an encrypted ClientHello hides the server name".to_owned());
    }
    match &hello.server_name {
        Some(name) if crate::canonical::same_host(name, host) => Ok(()),
        Some(name) => Err(format!(
            "the TLS server name {name:?} is not the CONNECT host {host:?}"
        )),
        None if host.parse::<std::net::IpAddr>().is_ok() => Ok(()),
        None => Err(format!("no TLS server name for the CONNECT host {host:?}")),
    }
}

/// A connection whose first bytes were already read: they are read again
/// first, then the rest of the connection.
pub struct Replayed<IO> {
    first: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Replayed<IO> {
    pub fn new(first: Vec<u8>, io: IO) -> Replayed<IO> {
        Replayed { first, at: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replayed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.first.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replayed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: Option<&str>, encrypted: bool) -> ClientHello {
        ClientHello {
            server_name: name.map(str::to_owned),
            encrypted,
        }
    }

    #[test]
    fn only_the_connect_host_passes() {
        let host = "generativelanguage.googleapis.com";
        for blind in [true, false] {
            let ok = |h: ClientHello, host: &str| verdict(&h, host, blind).is_ok();
            assert!(ok(
                hello(Some("GenerativeLanguage.googleapis.com."), false),
                host
            ));
            assert!(!ok(hello(Some("gmail.googleapis.com"), false), host));
            assert!(!ok(hello(None, false), host));
            assert!(ok(hello(None, false), "127.0.0.1"));
            assert!(ok(hello(None, false), "::1"));
            assert!(!ok(hello(Some("a.example.com"), false), "127.0.0.1"));
        }
        // Encrypted Client Hello: refused blind, ignored where airlock
        // terminates TLS itself (and a mismatched outer name still fails).
        assert!(verdict(&hello(Some(host), true), host, true).is_err());
        assert!(verdict(&hello(Some(host), true), host, false).is_ok());
        assert!(verdict(&hello(Some("gmail.googleapis.com"), true), host, false).is_err());
    }

    #[tokio::test]
    async fn the_hello_is_read_then_replayed_unchanged() {
        let record = crate::tls::hello::tests::hello_record(&[crate::tls::hello::tests::sni(
            "api.example.com",
        )]);
        let (mut agent, mut proxy_side) = tokio::io::duplex(64);
        let sent = record.clone();
        let writer = tokio::spawn(async move {
            // In small pieces, as a slow network would deliver it.
            for chunk in sent.chunks(7) {
                agent.write_all(chunk).await.unwrap();
            }
            agent.write_all(b"after").await.unwrap();
            agent
        });
        let first = check(
            &mut proxy_side,
            "api.example.com",
            true,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let _agent = writer.await.unwrap();
        let mut replayed = Replayed::new(first, proxy_side);
        let mut all = vec![0; record.len() + 5];
        replayed.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[..record.len()], &record[..]);
        assert_eq!(&all[record.len()..], b"after");
    }

    #[tokio::test]
    async fn a_refused_hello_gets_an_alert() {
        let record = crate::tls::hello::tests::hello_record(&[crate::tls::hello::tests::sni(
            "gmail.googleapis.com",
        )]);
        let (mut agent, mut proxy_side) = tokio::io::duplex(4096);
        agent.write_all(&record).await.unwrap();
        let refused = check(
            &mut proxy_side,
            "generativelanguage.googleapis.com",
            true,
            Duration::from_secs(5),
        )
        .await;
        assert!(refused.unwrap_err().contains("gmail.googleapis.com"));
        let mut alert = Vec::new();
        agent.read_to_end(&mut alert).await.unwrap();
        assert_eq!(alert, ACCESS_DENIED);
    }
}
