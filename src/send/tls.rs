//! TLS for the client: rustls with Mozilla's roots, the operating system's store, or both
//! (`--trust`), plus `--ca-cert`; or `--insecure`.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Which root certificates are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Trust {
    /// Mozilla's roots, built in.
    Webpki,
    /// The operating system's store (`SSL_CERT_FILE` or `SSL_CERT_DIR` when set), as a
    /// TLS-inspecting proxy needs.
    System,
    /// Both.
    Both,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum TlsSetupError {
    #[error("--trust system: no usable certificate in the system's trust store{0}")]
    NoSystemRoots(String),
    #[error("cannot read CA certificate file {path}: {source}")]
    CaFile {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate found in CA certificate file {0}")]
    CaEmpty(String),
    #[error("CA certificate in {path} was rejected: {source}")]
    CaRejected { path: String, source: rustls::Error },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

pub(super) fn client_config(
    trust: Trust,
    ca_cert: Option<&Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if trust != Trust::System {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if trust != Trust::Webpki {
        add_system_roots(&mut roots, trust == Trust::System)?;
    }
    if let Some(path) = ca_cert {
        let shown = path.display().to_string();
        let mut found = false;
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| TlsSetupError::CaFile {
            path: shown.clone(),
            source,
        })? {
            let cert = cert.map_err(|source| TlsSetupError::CaFile {
                path: shown.clone(),
                source,
            })?;
            roots
                .add(cert)
                .map_err(|source| TlsSetupError::CaRejected {
                    path: shown.clone(),
                    source,
                })?;
            found = true;
        }
        if !found {
            return Err(TlsSetupError::CaEmpty(shown));
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if insecure {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )));
    }
    Ok(config)
}

/// The operating system's roots; with `required`, finding none is an error rather than a
/// warning.
fn add_system_roots(
    roots: &mut rustls::RootCertStore,
    required: bool,
) -> Result<(), TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    if added == 0 && required {
        let why = if errors.is_empty() {
            String::new()
        } else {
            format!(": {}", errors.join("; "))
        };
        return Err(TlsSetupError::NoSystemRoots(why));
    }
    if !errors.is_empty() {
        tracing::warn!(
            "the system's trust store was read in part: {}",
            errors.join("; ")
        );
    }
    Ok(())
}

/// `--insecure`: skips certificate checks but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Whether a failure to connect was rustls refusing (a certificate, a handshake) rather than
/// the connection itself (refused, unreachable, DNS, the connect timeout).
pub(super) fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        // rustls's errors reach us wrapped in an io::Error, whose source() skips them.
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if error.is::<rustls::Error>() || wrapped.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        cause = error.source();
    }
    false
}
