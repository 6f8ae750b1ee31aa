//! TLS for every listener that is not loopback: the certificate (made on first start and kept,
//! or given by the owner) and the rustls configuration that `connections` serves it with.
//!
//! Clients do not use certificate authorities on a LAN: they pin the certificate's SHA-256
//! fingerprint, so a self-signed certificate is as good as a bought one.
//!
//! Invariant: the private key is written readable by the owner only, before the certificate,
//! and a half-written pair is never used (the key and certificate are written to temporary
//! names and renamed).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use wire::Fingerprint;

use crate::CoordinatorError;

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// A certificate and its key, ready to serve, with the fingerprint clients pin.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
    fingerprint: Fingerprint,
    cert_path: PathBuf,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn tls_error(path: &Path, message: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Tls(format!("{}: {message}", path.display()))
}

impl TlsIdentity {
    /// The self-signed certificate kept in `dir` (`cert.pem`, `key.pem`), made on first use.
    /// It names `crowdcloud` and `localhost`; clients pin its fingerprint, not its names.
    pub fn self_signed_in(dir: &Path) -> Result<Self, CoordinatorError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            std::fs::create_dir_all(dir).map_err(|error| tls_error(dir, error))?;
            let made = rcgen::generate_simple_self_signed(vec![
                "crowdcloud".into(),
                "localhost".into(),
            ])
            .map_err(|error| tls_error(dir, format!("cannot make a certificate: {error}")))?;
            write_new(
                &key_path,
                made.signing_key.serialize_pem().as_bytes(),
                0o600,
            )?;
            write_new(&cert_path, made.cert.pem().as_bytes(), 0o600)?;
            tracing::info!(cert = %cert_path.display(), "made a self-signed TLS certificate");
        }
        Self::from_pem_files(&cert_path, &key_path)
    }

    /// A certificate chain and key in PEM files, e.g. from a certificate authority for a
    /// coordinator on the internet.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, CoordinatorError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .map_err(|error| tls_error(cert_path, format!("cannot read: {error}")))?
            .collect::<Result<_, _>>()
            .map_err(|error| tls_error(cert_path, format!("not a PEM certificate: {error}")))?;
        let Some(end_entity) = chain.first() else {
            return Err(tls_error(cert_path, "holds no certificate"));
        };
        let fingerprint = Fingerprint::of_der(end_entity.as_ref());
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|error| tls_error(key_path, format!("not a PEM private key: {error}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(cert_path, error))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            tls_error(
                cert_path,
                format!("the certificate and key do not make a usable pair: {error}"),
            )
        })?;
        // HTTP/2 for clients that offer it (browsers); agents and the CLI ask for HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            fingerprint,
            cert_path: cert_path.to_owned(),
        })
    }

    /// SHA-256 of the end-entity certificate: what clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The configuration to serve this certificate elsewhere (the relay's address discovery,
    /// which sets its own protocols).
    pub fn rustls_config(&self) -> rustls::ServerConfig {
        rustls::ServerConfig::clone(&self.config)
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CoordinatorError> {
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&partial).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|error| tls_error(path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsIdentity::self_signed_in(dir.path()).unwrap();
        let again = TlsIdentity::self_signed_in(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "no one but the owner may read the key");
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            TlsIdentity::self_signed_in(other.path())
                .unwrap()
                .fingerprint(),
            first.fingerprint()
        );
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        TlsIdentity::self_signed_in(dir.path()).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
        let error =
            TlsIdentity::from_pem_files(&dir.path().join(CERT_FILE), &dir.path().join("bad.pem"))
                .unwrap_err()
                .to_string();
        assert!(error.contains("bad.pem"), "{error}");
    }
}
