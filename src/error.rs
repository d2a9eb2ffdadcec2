//! Errors at the proxy's boundary with agents, and the one place that maps
//! each to the HTTP status an agent sees.
//!
//! Configuration and rule errors live with their modules (they are reported
//! to a person at start-up, not to an agent); this enum is what can go wrong
//! while serving one request. It never carries request bodies or credentials.

use http::StatusCode;

use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The agent sent something airlock cannot act on.
    #[error("{0}")]
    BadRequest(String),
    /// A body a rule must inspect is larger than `[proxy] max_body`.
    #[error("the request body is larger than the {limit} bytes airlock inspects")]
    BodyTooLarge { limit: u64 },
    /// The agent's body stream broke while airlock read it.
    #[error("reading the request body failed: {0}")]
    ClientBody(String),
    /// A reviewed request could not be held: it is refused, never sent.
    #[error("the request needs review and could not be held: {0}")]
    Hold(String),
    /// `[[agent]]` entries are configured and the request did not prove one.
    #[error(
        "airlock needs proxy credentials: Proxy-Authorization: Basic base64(name:token), as a proxy URL http://name:token@host:port sends. Nothing was sent or held."
    )]
    ProxyAuthRequired,
    /// The agent's `Idempotency-Key` already named a different request.
    #[error(
        "This request was NOT sent or held: its Idempotency-Key was already used for a different request. A new request needs a new key."
    )]
    IdempotencyKeyReused,
    /// The agent already has `[defaults] max_pending_per_agent` pending holds.
    #[error(
        "This request was NOT sent or held: this agent already has {max} requests waiting for review. Retry after {retry_after} seconds, once one is decided."
    )]
    TooManyHolds { max: u64, retry_after: u64 },
    /// A `[[credential]]` for the host could not be set: nothing was sent.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// The upstream could not be reached or did not answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl ProxyError {
    /// The status an agent receives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Hold(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProxyError::TooManyHolds { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Upstream(
                UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout(_),
            ) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) | ProxyError::Credential(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `airlock` field of the JSON answer: a stable name for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BodyTooLarge { .. } => "too_large",
            ProxyError::ClientBody(_) => "bad_request",
            ProxyError::Hold(_) => "unavailable",
            ProxyError::ProxyAuthRequired => "proxy_auth_required",
            ProxyError::IdempotencyKeyReused => "idempotency_key_reused",
            ProxyError::TooManyHolds { .. } => "too_many_holds",
            ProxyError::Credential(_) => "credential_unavailable",
            ProxyError::Upstream(_) => "bad_gateway",
        }
    }
}
