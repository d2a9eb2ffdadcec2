//! TLS material: the local certificate authority (`ca`) and the per-host leaf
//! certificates minted from it for interception (`leaf`), and what an
//! agent's ClientHello says before anything is decrypted (`hello`).
//!
//! This module owns key files and certificate minting. It never opens
//! network connections and never decides which hosts are intercepted (that
//! is the rules' job, applied by the proxy).

pub mod ca;
pub mod hello;
pub mod leaf;

pub use ca::Ca;
pub use leaf::LeafCache;

/// What can go wrong with TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("certificate generation failed: {0}")]
    Mint(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider airlock uses, so no process-wide default is
/// needed and client and server sides agree.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
