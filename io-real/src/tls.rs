//! TLS for `quill serve`, with rustls (its `ring` provider): the server's certificate chain and
//! key from PEM files, and optionally a CA whose certificates clients must present. The
//! handshake and the record layer stay in the socket loop (`peer.rs`); the sans-I/O server only
//! ever sees plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Where the certificates are, named as in Redis's configuration.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `tls-cert-file`: the server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// `tls-key-file`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `tls-ca-cert-file`: if given, clients must present a certificate this CA signed.
    pub ca_cert_file: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read a PEM certificate from it: {source}")]
    Certificate { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{path}: holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: cannot read a PEM private key from it: {source}")]
    Key { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{path}: a CA certificate rustls refuses: {source}")]
    CaCertificate { path: PathBuf, source: rustls::Error },
    #[error("the client-certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls server configuration for `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = match &files.ca_cert_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(path)? {
                roots.add(certificate).map_err(|source| TlsError::CaCertificate { path: path.clone(), source })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|source| TlsError::Key { path: files.key_file.clone(), source })?;
    Ok(Arc::new(builder.with_single_cert(certificates(&files.cert_file)?, key)?))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate { path: path.into(), source })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certificates)
}
