//! A webhook receiver on 127.0.0.1 for the notification tests: it records
//! every delivery, and can be taken down (its port closed, open connections
//! cut), brought back on the same port, made to fail with 500 or refuse
//! with 400, or made to hang without ever answering.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("delivery is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;
const REFUSE: u8 = 3;

pub struct Webhook {
    pub port: u16,
    got: Arc<Mutex<Vec<Delivery>>>,
    mode: Arc<AtomicU8>,
    /// Requests that reached the handler, answered or not.
    arrived: Arc<AtomicUsize>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.down();
    }
}

impl Webhook {
    pub async fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Webhook {
            port: listener.local_addr().unwrap().port(),
            got: Arc::default(),
            mode: Arc::new(AtomicU8::new(OK)),
            arrived: Arc::default(),
            server: Mutex::new(None),
        };
        hook.serve(listener);
        hook
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let (got, mode, arrived) = (self.got.clone(), self.mode.clone(), self.arrived.clone());
        let task = tokio::spawn(async move {
            // Owned here, so taking the receiver down cuts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (got, mode, arrived) = (got.clone(), mode.clone(), arrived.clone());
                connections.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (got, mode, arrived) = (got.clone(), mode.clone(), arrived.clone());
                        async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            match mode.load(Ordering::SeqCst) {
                                HANG => std::future::pending::<()>().await,
                                m @ (FAIL | REFUSE) => {
                                    let status = if m == FAIL {
                                        StatusCode::INTERNAL_SERVER_ERROR
                                    } else {
                                        StatusCode::BAD_REQUEST
                                    };
                                    return Ok::<_, Infallible>(
                                        Response::builder()
                                            .status(status)
                                            .body(Full::new(Bytes::from_static(b"no")))
                                            .unwrap(),
                                    );
                                }
                                _ => {}
                            }
                            got.lock().unwrap().push(Delivery {
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Closes the port and every open connection.
    pub fn down(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        self.down();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on port {} again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    pub fn fail(&self) {
        self.mode.store(FAIL, Ordering::SeqCst);
    }

    /// Answer 400, as a receiver does to a payload it will never accept.
    pub fn refuse(&self) {
        self.mode.store(REFUSE, Ordering::SeqCst);
    }

    pub fn hang(&self) {
        self.mode.store(HANG, Ordering::SeqCst);
    }

    pub fn answer(&self) {
        self.mode.store(OK, Ordering::SeqCst);
    }

    /// Requests that reached the receiver, answered or not.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Deliveries answered with 200.
    pub fn received(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the deliveries, or panics saying what came.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                let events: Vec<String> = got
                    .iter()
                    .map(|d| d.header("airlock-event").unwrap_or("?").to_owned())
                    .collect();
                panic!("waited {within:?} for {what}; received events {events:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Deliveries of one event, in arrival order.
    pub fn events(got: &[Delivery], event: &str) -> Vec<Delivery> {
        got.iter()
            .filter(|d| d.header("airlock-event") == Some(event))
            .cloned()
            .collect()
    }
}
