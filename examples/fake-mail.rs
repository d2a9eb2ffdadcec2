//! A fake email API for trying airlock on a laptop: it listens on
//! 127.0.0.1:8025 (or the port given as the first argument), accepts
//! SendGrid-style `POST /v3/mail/send`, and prints every email it receives.
//! It sends nothing anywhere.
//!
//!     cargo run --example fake-mail
#![allow(
    clippy::print_stdout,
    reason = "the fake mail API prints what it receives for the person following the walkthrough"
)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8025);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "fake mail API on http://127.0.0.1:{port}/v3/mail/send — emails it receives are printed here"
    );
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let res =
                    if parts.method == hyper::Method::POST && parts.uri.path() == "/v3/mail/send" {
                        println!(
                            "\n=== email received ===\n{}\n======================",
                            String::from_utf8_lossy(&body)
                        );
                        Response::builder()
                            .status(StatusCode::ACCEPTED)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(
                                b"{\"message\":\"queued for delivery\"}",
                            )))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found")))
                    };
                Ok::<_, Infallible>(res.unwrap_or_default())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
