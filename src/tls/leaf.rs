//! Per-host leaf certificates for interception, minted from the local CA and
//! kept in a bounded cache of ready `rustls::ServerConfig`s.
//!
//! One leaf key serves every host (minting is then one signature, not a key
//! generation), and one session store and ticketer serve every config, so a
//! client resumes its TLS session whichever host it reconnects to. This
//! module never decides which hosts are intercepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

use super::{Ca, TlsError, provider};

/// Re-mint a cached leaf after this long, well inside its validity.
const LEAF_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// ALPN offered to intercepted clients: h2 first, as most servers do.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

struct Entry {
    minted: Instant,
    config: Arc<ServerConfig>,
}

/// Minted server configs by host name.
pub struct LeafCache {
    ca: Arc<Ca>,
    key: KeyPair,
    cache: Cache<String, Arc<Entry>>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("len", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl LeafCache {
    /// A cache holding at most `capacity` hosts.
    pub fn new(ca: Arc<Ca>, capacity: usize) -> Result<LeafCache, TlsError> {
        Ok(LeafCache {
            ca,
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            cache: Cache::new(capacity.max(1)),
            sessions: ServerSessionMemoryCache::new(4096),
            ticketer: rustls::crypto::ring::Ticketer::new()?,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The server config presenting a leaf for `host`, minted on first use.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(entry) = self.cache.get(host)
            && entry.minted.elapsed() < LEAF_MAX_AGE
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry.config.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            minted: Instant::now(),
            config: self.build(host)?,
        });
        let config = entry.config.clone();
        self.cache.insert(host.to_owned(), entry);
        Ok(config)
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn build(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let cert = self.ca.mint(host, &self.key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lookup_is_a_hit_and_shares_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(dir.path()).unwrap();
        let leaves = LeafCache::new(Arc::new(ca), 8).unwrap();
        let a = leaves.server_config("api.example").unwrap();
        let b = leaves.server_config("api.example").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(leaves.stats(), (1, 1));
    }

    #[test]
    fn cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(dir.path()).unwrap();
        let leaves = LeafCache::new(Arc::new(ca), 4).unwrap();
        for i in 0..50 {
            leaves.server_config(&format!("h{i}.example")).unwrap();
        }
        assert!(leaves.cache.len() <= 4, "{}", leaves.cache.len());
    }
}
