//! Blind tunnels: bytes copied both ways between the agent and the upstream,
//! with no TLS termination and no parsing beyond the ClientHello check.
//!
//! A tunnel only exists for hosts whose rules decided everything at CONNECT
//! time, and only carries TLS whose server name is that host; past the
//! ClientHello it never looks at or alters what it carries.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Large enough that a 1 MiB body moves in few syscalls.
const BUF: usize = 64 * 1024;

/// Checks the agent's ClientHello names `host`, then copies until either
/// side closes; returns (bytes up, bytes down), or why the tunnel was
/// refused before anything reached the upstream.
pub async fn run(
    client: OnUpgrade,
    upstream: TcpStream,
    host: &str,
    patience: std::time::Duration,
) -> Result<(u64, u64), String> {
    let upgraded = match client.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%host, error = %e, "tunnel: client went away before upgrade");
            return Ok((0, 0));
        }
    };
    let mut client = TokioIo::new(upgraded);
    let first = super::hello::check(&mut client, host, true, patience).await?;
    Ok(splice(client, upstream, host, &first).await)
}

/// Sends the checked ClientHello, then copies both ways until either side
/// closes; (bytes up, bytes down).
pub async fn splice<IO: AsyncRead + AsyncWrite + Unpin>(
    mut client: IO,
    mut upstream: TcpStream,
    host: &str,
    first: &[u8],
) -> (u64, u64) {
    if let Err(e) = upstream.write_all(first).await {
        tracing::debug!(%host, error = %e, "tunnel: upstream closed before the ClientHello");
        return (0, 0);
    }
    let sent = first.len() as u64;
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF).await {
        Ok((up, down)) => (up + sent, down),
        Err(e) => {
            tracing::debug!(%host, error = %e, "tunnel closed with an error");
            (sent, 0)
        }
    }
}
