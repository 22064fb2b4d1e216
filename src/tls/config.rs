//! rustls configurations from certificates in memory: the one place they are assembled, for
//! the file-backed ones of production (`files`) and the simulator's alike.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{provider, verify};

/// A certificate chain and its private key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Why a configuration could not be made: its client verifier (the CA, the CRLs), or the
/// certificate and key it shows.
#[derive(Debug)]
pub enum BuildError {
    Verifier(String),
    Identity(String),
}

/// Whom a client trusts.
pub enum Trust {
    Roots(Arc<RootCertStore>),
    /// Any server: only for peers on self-signed `--peer-auto-tls` certificates, as etcd does.
    AnyServer,
}

/// What a listener shows (`identity`) and, with `client_roots`, the certificate it demands of
/// every client: one those roots signed and no CRL of `crls` revoked. As etcd checks, every
/// certificate of the verified chain is looked up, and one whose issuer has no list is taken.
/// No ALPN is set: a client offering only h2, or a protocol nobody knows, is served HTTP/1.1
/// rather than refused, as Go's server does.
pub fn server(
    identity: Identity,
    client_roots: Option<Arc<RootCertStore>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig, BuildError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Verifier(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let mut verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
            if !crls.is_empty() {
                verifier = verifier.with_crls(crls).allow_unknown_revocation_status();
            }
            let verifier = verifier
                .build()
                .map_err(|e| BuildError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        // As Go's server without client auth: no certificate is asked for.
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(identity.0, identity.1)
        .map_err(|e| BuildError::Identity(e.to_string()))
}

/// What a connection trusts, and the certificate it shows when the server asks for one.
pub fn client(trust: Trust, identity: Option<Identity>) -> Result<ClientConfig, BuildError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Verifier(e.to_string()))?;
    let builder = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots),
        Trust::AnyServer => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::AnyServer::new(provider()))),
    };
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| BuildError::Identity(e.to_string())),
        None => Ok(builder.with_no_client_auth()),
    }
}
