//! Blind tunnels: bytes copied both ways between the agent and the upstream,
//! with no TLS termination and no parsing.
//!
//! A tunnel only exists for hosts whose rules decided everything at CONNECT
//! time; it must never look at or alter what it carries.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Large enough that a 1 MiB body moves in few syscalls.
const BUF: usize = 64 * 1024;

/// Copies until either side closes; returns (bytes up, bytes down).
pub async fn run(client: OnUpgrade, mut upstream: TcpStream, host: &str) -> (u64, u64) {
    let upgraded = match client.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%host, error = %e, "tunnel: client went away before upgrade");
            return (0, 0);
        }
    };
    let mut client = TokioIo::new(upgraded);
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::debug!(%host, error = %e, "tunnel closed with an error");
            (0, 0)
        }
    }
}
