//! The local certificate authority: loaded from `ca_dir`, or created there on
//! first use (`ca.pem`, and `ca-key.pem` written with mode 0600).
//!
//! It signs leaf certificates and hands out its own certificate for clients to
//! trust. It never overwrites an existing key and never logs key material.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::TlsError;

pub const CERT_FILE: &str = "ca.pem";
pub const KEY_FILE: &str = "ca-key.pem";

/// How long a minted leaf is valid on either side of now. Leaves live only
/// in memory and are re-minted well before this (see `leaf`).
const LEAF_VALIDITY_DAYS: i64 = 30;

/// The loaded CA, ready to sign.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// Makes serial numbers unique even when two leaves are minted in the
    /// same nanosecond; browsers reject two certificates from one issuer
    /// with the same serial.
    serial: AtomicU64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, creating it first if neither file exists.
    /// Returns whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Ca, bool), TlsError> {
        // An existing CA is only read: it may sit on a read-only mount
        // (a Kubernetes Secret), where no lock file can be made.
        if dir.join(CERT_FILE).exists() && dir.join(KEY_FILE).exists() {
            return Ok((Ca::load(dir)?, false));
        }
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_owned(),
            source,
        })?;
        // Two processes starting on one directory (sidecar restarts, a
        // test suite) must agree on one CA: decide under a file lock.
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|source| TlsError::Io {
                path: lock_path,
                source,
            })?;
        let result = Ca::load_or_create_locked(dir);
        drop(lock);
        result
    }

    fn load_or_create_locked(dir: &Path) -> Result<(Ca, bool), TlsError> {
        let cert = dir.join(CERT_FILE);
        let key = dir.join(KEY_FILE);
        match (cert.exists(), key.exists()) {
            (true, true) => Ok((Ca::load(dir)?, false)),
            (false, false) => Ok((Ca::create(dir)?, true)),
            (true, false) => Err(TlsError::BadFile {
                path: key,
                message: format!(
                    "missing while {} exists; restore it or remove both to create a new CA",
                    cert.display()
                ),
            }),
            (false, true) => Err(TlsError::BadFile {
                path: cert,
                message: format!(
                    "missing while {} exists; restore it or remove both to create a new CA",
                    key.display()
                ),
            }),
        }
    }

    /// Loads an existing CA (one made by airlock or any other PEM CA).
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::BadFile {
            path: key_path.clone(),
            message: format!("not a usable private key: {e}"),
        })?;
        let parsed = pem::parse(&cert_pem).map_err(|e| TlsError::BadFile {
            path: cert_path.clone(),
            message: format!("not a PEM certificate: {e}"),
        })?;
        let cert_der = CertificateDer::from(parsed.contents().to_vec());
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| TlsError::BadFile {
            path: cert_path.clone(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
        Ok(Ca {
            cert_pem,
            cert_der,
            issuer,
            serial: AtomicU64::new(0),
        })
    }

    fn create(dir: &Path) -> Result<Ca, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "airlock local CA");
        dn.push(DnType::OrganizationName, "airlock");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        // The key goes first and exclusively: if two processes race, one
        // fails here instead of both writing different keys.
        write_new(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        let cert_der = cert.der().clone();
        Ok(Ca {
            cert_pem,
            cert_der,
            issuer: Issuer::new(params, key),
            serial: AtomicU64::new(0),
        })
    }

    /// The CA certificate, PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Signs a certificate for `host` (a DNS name or an IP address) over the
    /// public half of `leaf_key`.
    pub fn mint(
        &self,
        host: &str,
        leaf_key: &KeyPair,
    ) -> Result<CertificateDer<'static>, TlsError> {
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
        params.serial_number = Some(self.next_serial());
        let cert = params.signed_by(leaf_key, &self.issuer)?;
        Ok(cert.der().clone())
    }

    fn next_serial(&self) -> SerialNumber {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = self.serial.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
        // A positive INTEGER: clear the top bit.
        bytes[0] &= 0x7f;
        SerialNumber::from_slice(&bytes)
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: PathBuf::from(path),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_ca_is_reloaded_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_pem(), again.cert_pem());
    }

    #[test]
    fn concurrent_starts_agree_on_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pems: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        Ca::load_or_create(dir.path())
                            .unwrap()
                            .0
                            .cert_pem()
                            .to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(pems.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca-key.pem"), "{err}");
    }

    #[test]
    fn minted_leaves_have_distinct_serials() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(dir.path()).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let a = ca.mint("a.example", &key).unwrap();
        let b = ca.mint("a.example", &key).unwrap();
        assert_ne!(a, b);
        ca.mint("127.0.0.1", &key).unwrap();
    }
}
