//! Pinning the coordinator's certificate: the TLS connection is accepted only if the server's
//! end-entity certificate has the SHA-256 fingerprint the client was given (by discovery, by
//! `crowdcloud join`, or by hand). No certificate authority and no host name is involved, which
//! is what a self-signed LAN server needs; the handshake's signatures are still checked with
//! the ring provider's algorithms, so only the holder of the certificate's key gets through.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

use wire::Fingerprint;

/// What the client pins, and the fingerprint the server last presented (to explain a refusal).
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    /// `None` only while learning a fingerprint to pin next (see `Client::learn_fingerprint`).
    pub(crate) pinned: Option<Fingerprint>,
    pub(crate) presented: Arc<Mutex<Option<Fingerprint>>>,
}

impl Pin {
    pub(crate) fn presented(&self) -> Option<Fingerprint> {
        *self
            .presented
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented = Fingerprint::of_der(end_entity.as_ref());
        *self
            .pin
            .presented
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(presented);
        match self.pin.pinned {
            Some(pinned) if pinned != presented => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verifier that trusts exactly the certificate with `fingerprint`, for TLS this crate does
/// not make itself (the remote path's relay).
pub fn verifier(
    fingerprint: Fingerprint,
    provider: &rustls::crypto::CryptoProvider,
) -> Arc<dyn ServerCertVerifier> {
    let pin = Pin {
        pinned: Some(fingerprint),
        presented: Arc::default(),
    };
    Arc::new(PinnedVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    })
}

/// A rustls client configuration that trusts exactly the pinned certificate.
pub(crate) fn client_config(pin: Pin) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, algorithms }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
