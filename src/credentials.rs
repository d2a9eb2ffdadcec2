//! Credentials the agent never holds (`[[credential]]`): for a request to a
//! matching host that airlock forwards or releases, the named header is set
//! from a template and a secret kept in a file or the environment,
//! replacing whatever the agent sent. The agent can be given a placeholder
//! (`Bearer airlock`) and the real key never enters its process.
//!
//! A secret file is read again when it changes (checked at most once a
//! second, by its metadata through any symlinks, so Kubernetes' swap of a
//! mounted Secret's `..data` link is seen). A secret that is missing or
//! empty fails the request closed.
//!
//! This module must never log, store or return a secret: values leave it
//! only as sensitive `HeaderValue`s set on a request about to go upstream,
//! and its errors name the credential, never its value.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwapOption;
use globset::GlobSet;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{CredentialConfig, SecretSource};

/// How often a secret file's metadata is looked at, at most.
const RECHECK_MS: i64 = 1000;

/// Why a credential could not be set: names it, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the credential {name:?} is not available: {why}; nothing was sent")]
    Unavailable { name: String, why: String },
    #[error(
        "the credential {name:?} is only sent over https; this request is plain http, and nothing was sent"
    )]
    Plaintext { name: String },
}

/// The configured credentials, matched by host.
#[derive(Debug, Default)]
pub struct Credentials {
    list: Vec<Credential>,
}

#[derive(Debug)]
struct Credential {
    name: String,
    hosts: Vec<String>,
    /// `hosts`, compiled: matched without allocating, per request.
    matcher: GlobSet,
    header: HeaderName,
    value: String,
    source: SecretSource,
    loaded: ArcSwapOption<Loaded>,
    /// When the file was last looked at (ms since the epoch).
    checked_ms: AtomicI64,
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<Stamp>,
    value: HeaderValue,
}

/// What tells a file's contents changed without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        },
    })
}

/// A credential's header value from its template and secret.
fn render(template: &str, secret: &str) -> Option<HeaderValue> {
    use base64::Engine;
    let text = template
        .replace(
            "{secret_base64}",
            &base64::engine::general_purpose::STANDARD.encode(secret),
        )
        .replace("{secret}", secret);
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Credential {
    fn unavailable(&self, why: impl Into<String>) -> CredentialError {
        CredentialError::Unavailable {
            name: self.name.clone(),
            why: why.into(),
        }
    }

    /// The header value now, reading the secret again if it changed.
    fn value(&self) -> Result<HeaderValue, CredentialError> {
        let loaded = self.loaded.load();
        let path = match &self.source {
            SecretSource::Env(var) => {
                return match &*loaded {
                    Some(l) => Ok(l.value.clone()),
                    None => Err(self.unavailable(format!(
                        "the environment variable {var} is not set or empty"
                    ))),
                };
            }
            SecretSource::File(path) => path,
        };
        let now = now_ms();
        if let Some(l) = &*loaded
            && now - self.checked_ms.load(Ordering::Relaxed) < RECHECK_MS
        {
            return Ok(l.value.clone());
        }
        self.checked_ms.store(now, Ordering::Relaxed);
        let current = stamp(path).ok();
        if let Some(l) = &*loaded
            && current.is_some()
            && l.stamp == current
        {
            return Ok(l.value.clone());
        }
        let fresh = self.read_file(path)?;
        let value = fresh.value.clone();
        self.loaded.store(Some(Arc::new(fresh)));
        Ok(value)
    }

    fn read_file(&self, path: &std::path::Path) -> Result<Loaded, CredentialError> {
        let before = stamp(path).ok();
        let secret = crate::config::read_secret_file(path).map_err(|e| {
            self.unavailable(format!(
                "its secret file {} cannot be read ({e})",
                path.display()
            ))
        })?;
        if secret.is_empty() {
            return Err(self.unavailable(format!("its secret file {} is empty", path.display())));
        }
        let value = render(&self.value, &secret).ok_or_else(|| {
            self.unavailable(format!(
                "the secret in {} cannot be sent in a header (it holds control characters)",
                path.display()
            ))
        })?;
        tracing::info!(credential = %self.name, "credential secret loaded");
        Ok(Loaded {
            stamp: before,
            value,
        })
    }
}

impl Credentials {
    /// The credentials a configuration names. Secrets in the environment
    /// are read now; secret files when first needed and when they change.
    pub fn new(configs: &[CredentialConfig]) -> Result<Credentials, String> {
        let mut list = Vec::with_capacity(configs.len());
        for c in configs {
            let mut builder = globset::GlobSetBuilder::new();
            for host in &c.hosts {
                builder.add(
                    crate::rules::host_glob(host)
                        .map_err(|e| format!("[[credential]] {:?} host {host:?}: {e}", c.name))?,
                );
            }
            let loaded = match &c.source {
                SecretSource::Env(var) => std::env::var(var)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .and_then(|s| render(&c.value, &s))
                    .map(|value| Arc::new(Loaded { stamp: None, value })),
                SecretSource::File(_) => None,
            };
            if loaded.is_none()
                && let SecretSource::Env(var) = &c.source
            {
                tracing::warn!(credential = %c.name, variable = %var, "credential secret not in the environment: requests to its hosts fail until it is");
            }
            let matcher = builder
                .build()
                .map_err(|e| format!("[[credential]] {:?} hosts: {e}", c.name))?;
            list.push(Credential {
                name: c.name.clone(),
                hosts: c.hosts.clone(),
                matcher,
                header: c.header.clone(),
                value: c.value.clone(),
                source: c.source.clone(),
                loaded: ArcSwapOption::new(loaded),
                checked_ms: AtomicI64::new(i64::MIN),
            });
        }
        Ok(Credentials { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The credential for `host` (lower case, no port), if any: the first
    /// configured one that matches.
    /// The credential for `host`, read as the rules read hosts (any case,
    /// one trailing dot dropped), whoever asks.
    fn find(&self, host: &str) -> Option<&Credential> {
        if self.list.is_empty() {
            return None;
        }
        let folded = crate::rules::Folded::host(host);
        let candidate = globset::Candidate::from_bytes(folded.as_bytes());
        self.list
            .iter()
            .find(|c| c.matcher.is_match_candidate(&candidate))
    }

    /// Whether a credential applies to `host`: such a host is always
    /// intercepted, never tunnelled blind.
    pub fn covers(&self, host: &str) -> bool {
        self.find(host).is_some()
    }

    /// Sets the credential for `host` on a request about to go upstream,
    /// replacing every value the agent sent for that header. `Ok(None)`
    /// when no credential applies.
    pub fn apply(
        &self,
        host: &str,
        https: bool,
        headers: &mut HeaderMap,
    ) -> Result<Option<&str>, CredentialError> {
        let Some(c) = self.find(host) else {
            return Ok(None);
        };
        if !https {
            return Err(CredentialError::Plaintext {
                name: c.name.clone(),
            });
        }
        let value = c.value()?;
        headers.insert(c.header.clone(), value);
        Ok(Some(&c.name))
    }

    /// Name, header and host globs of each credential, for `rules check`.
    pub fn describe(&self) -> Vec<(&str, &str, &[String])> {
        self.list
            .iter()
            .map(|c| (c.name.as_str(), c.header.as_str(), c.hosts.as_slice()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, hosts: &[&str], source: SecretSource) -> CredentialConfig {
        CredentialConfig {
            name: name.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            header: HeaderName::from_static("authorization"),
            value: "Bearer {secret}".into(),
            source,
        }
    }

    #[test]
    fn templates_put_the_secret_in_a_sensitive_value() {
        let v = render("Bearer {secret}", "abc").unwrap();
        assert_eq!(v, "Bearer abc");
        assert!(v.is_sensitive());
        assert_eq!(
            render("Basic {secret_base64}", "user:pass").unwrap(),
            "Basic dXNlcjpwYXNz"
        );
        assert!(render("{secret}", "line\nbreak").is_none());
    }

    #[test]
    fn the_first_credential_whose_host_matches_applies_and_replaces_the_agents() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "first\n").unwrap();
        std::fs::write(&b, "second\r\n").unwrap();
        let creds = Credentials::new(&[
            config("a", &["api.example.com"], SecretSource::File(a)),
            config("b", &["*.example.com", "other.test"], SecretSource::File(b)),
        ])
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("authorization", HeaderValue::from_static("Bearer mine"));
        headers.append("authorization", HeaderValue::from_static("Bearer also"));
        assert_eq!(
            creds.apply("api.example.com", true, &mut headers),
            Ok(Some("a"))
        );
        let all: Vec<_> = headers.get_all("authorization").iter().collect();
        assert_eq!(all, ["Bearer first"]);
        assert_eq!(
            creds.apply("x.example.com", true, &mut headers),
            Ok(Some("b"))
        );
        assert_eq!(headers["authorization"], "Bearer second");
        assert_eq!(creds.apply("other.test", true, &mut headers), Ok(Some("b")));
        assert_eq!(creds.apply("example.org", true, &mut headers), Ok(None));
        // Hosts are read as the rules read them: any case, one trailing dot.
        assert!(creds.covers("API.example.com"));
        assert!(creds.covers("api.EXAMPLE.com."));
        assert!(matches!(
            creds.apply("API.example.com.", false, &mut headers),
            Err(CredentialError::Plaintext { .. })
        ));
        assert!(matches!(
            creds.apply("api.example.com", false, &mut headers),
            Err(CredentialError::Plaintext { .. })
        ));
    }

    #[test]
    fn a_missing_or_empty_secret_names_the_credential_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "\n").unwrap();
        let creds = Credentials::new(&[config(
            "mail",
            &["m.test"],
            SecretSource::File(path.clone()),
        )])
        .unwrap();
        let mut headers = HeaderMap::new();
        let err = creds.apply("m.test", true, &mut headers).unwrap_err();
        assert!(err.to_string().contains("\"mail\"") && err.to_string().contains("empty"));
        std::fs::remove_file(&path).unwrap();
        let env = Credentials::new(&[config(
            "env",
            &["e.test"],
            SecretSource::Env("AIRLOCK_TEST_UNSET_SECRET_VAR".into()),
        )])
        .unwrap();
        let err = env.apply("e.test", true, &mut headers).unwrap_err();
        assert!(
            err.to_string().contains("AIRLOCK_TEST_UNSET_SECRET_VAR"),
            "{err}"
        );
        assert!(headers.is_empty());
    }
}
