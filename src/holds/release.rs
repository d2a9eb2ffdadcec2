//! Sending an approved hold: claim it durably, send it once through the
//! shared upstream client, record the answer (`released`, any status) or the
//! failure (`failed`). There is no retry, ever: a send that failed stays
//! failed, and a send cut short by a crash becomes `interrupted` at start-up.
//!
//! This is the only code that sends a held request; it never decides whether
//! one may be sent (the store's `claim` does). A `[[credential]]` for the
//! hold's host is set here, on the way up: the hold itself never has it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::BodyExt;

use super::store::{Outcome, Store, StoreError};
use super::{Hold, StoredResponse};
use crate::credentials::Credentials;
use crate::upstream::Upstream;

/// Sends approved holds.
#[derive(Debug, Clone)]
pub struct Releaser {
    store: Store,
    upstream: Upstream,
    credentials: Arc<Credentials>,
    /// The most of an upstream answer that is stored.
    max_body: u64,
    /// How long the upstream may take to answer a released request.
    timeout: Duration,
}

impl Releaser {
    pub fn new(
        store: Store,
        upstream: Upstream,
        credentials: Arc<Credentials>,
        max_body: u64,
        timeout: Duration,
    ) -> Releaser {
        Releaser {
            store,
            upstream,
            credentials,
            max_body,
            timeout,
        }
    }

    /// Sends in the background.
    pub fn spawn(self: &Arc<Self>, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.release(&id).await {
                tracing::error!(hold = %id, error = %e, "release failed in the store");
            }
        });
    }

    /// Claims and sends one hold; `None` if it was not there to claim.
    pub async fn release(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let Some((hold, body)) = self.store.claim(id).await? else {
            return Ok(None);
        };
        let outcome = match build_request(&hold, body, &self.credentials) {
            Err(e) => Outcome::Failed(e),
            Ok(req) => match tokio::time::timeout(self.timeout, self.upstream.send(req)).await {
                Err(_) => Outcome::Failed(format!(
                    "the upstream did not answer within {} s",
                    self.timeout.as_secs()
                )),
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Ok(Ok(res)) => Outcome::Released(self.read(res).await),
            },
        };
        self.store.finish(id, outcome).await.map(Some)
    }

    /// Stores the answer, up to `max_body` of its body.
    async fn read(&self, res: http::Response<hyper::body::Incoming>) -> StoredResponse {
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = res.into_body();
        let mut bytes = Vec::new();
        let mut truncated = false;
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                truncated = true;
                break;
            };
            if let Ok(data) = frame.into_data() {
                let room = limit.saturating_sub(bytes.len());
                if data.len() > room {
                    bytes.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                bytes.extend_from_slice(&data);
            }
        }
        StoredResponse {
            status,
            headers,
            body: bytes,
            truncated,
        }
    }
}

fn build_request(
    hold: &Hold,
    body: Bytes,
    credentials: &Credentials,
) -> Result<Request<crate::upstream::Body>, String> {
    let method = Method::from_bytes(hold.method.as_bytes()).map_err(|e| e.to_string())?;
    let uri: Uri = hold.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let mut req = Request::new(crate::upstream::full(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    for (k, v) in &hold.headers {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            continue;
        };
        // The body may have been edited: its length is the new one.
        if k == http::header::CONTENT_LENGTH {
            continue;
        }
        req.headers_mut().append(k, v);
    }
    let host = req.uri().host().unwrap_or("").to_ascii_lowercase();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let https = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
    credentials
        .apply(host, https, req.headers_mut())
        .map_err(|e| e.to_string())?;
    Ok(req)
}
