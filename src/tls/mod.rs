//! TLS for the client and peer listeners and for every outgoing connection, on rustls (ring's
//! cryptography; no OpenSSL).
//!
//! The acceptor and the connector (`crate::net`) see only [`ServerTls`] and [`ClientTls`]: a
//! source of the rustls configuration to use for the *next* handshake. Where that comes from is
//! decided where the process is assembled: certificate files that are re-read when they change
//! ([`files`], so certificates rotate without a restart), or certificates generated into the
//! data dir ([`auto`], etcd 3.x's `--auto-tls`).

pub mod auto;
pub mod config;
pub mod files;
mod verify;

use std::sync::Arc;

pub use files::{ClientFiles, ServerFiles};

/// Where TLS takes its configuration for each new handshake from: one for ever, or one that
/// a source gives anew each time (files re-read when they change).
pub struct Current<C>(Arc<dyn Fn() -> Arc<C> + Send + Sync>);

impl<C> Clone for Current<C> {
    fn clone(&self) -> Self {
        Current(Arc::clone(&self.0))
    }
}

impl<C: Send + Sync + 'static> Current<C> {
    pub fn fixed(config: C) -> Current<C> {
        let config = Arc::new(config);
        Current(Arc::new(move || Arc::clone(&config)))
    }

    pub fn from_fn(current: impl Fn() -> Arc<C> + Send + Sync + 'static) -> Current<C> {
        Current(Arc::new(current))
    }
}

/// What a TLS listener serves with.
pub type ServerTls = Current<rustls::ServerConfig>;

/// What a connection to an `https://` URL uses: the roots that decide whom to trust, and the
/// certificate to show when the server asks for one.
pub type ClientTls = Current<rustls::ClientConfig>;

impl ServerTls {
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from((self.0)())
    }
}

impl ClientTls {
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from((self.0)())
    }
}

/// The cryptography every configuration uses: ring's, chosen explicitly rather than through a
/// process-wide default, so that nothing depends on which crate installed one first.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Go's words for a handshake that failed, which etcdctl's users and log readers know:
/// `x509: certificate signed by unknown authority`, `remote error: tls: bad certificate`.
pub fn describe(error: &std::io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        // The other side closed during the handshake (a plain-HTTP server, say): Go's `EOF`.
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return "EOF".into();
        }
        return error.to_string();
    };
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    match tls {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "x509: certificate signed by unknown authority".into()
        }
        E::InvalidCertificate(Cert::Expired)
        | E::InvalidCertificate(Cert::ExpiredContext { .. }) => {
            "x509: certificate has expired or is not yet valid".into()
        }
        E::InvalidCertificate(Cert::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let expected = expected.to_str();
            let is_ip = expected.parse::<std::net::IpAddr>().is_ok();
            let presented_ip = presented
                .iter()
                .any(|p| p.starts_with("IpAddress") || p.parse::<std::net::IpAddr>().is_ok());
            if is_ip && !presented_ip {
                format!("x509: cannot validate certificate for {expected} because it doesn't contain any IP SANs")
            } else {
                // rustls lists the names as `DnsName("example.com")`; Go names them bare.
                let bare: Vec<&str> = presented
                    .iter()
                    .map(|p| {
                        p.split_once('(')
                            .map_or(p.as_str(), |(_, rest)| rest.trim_end_matches(')'))
                            .trim_matches('"')
                    })
                    .collect();
                format!(
                    "x509: certificate is valid for {}, not {expected}",
                    bare.join(", ")
                )
            }
        }
        E::InvalidCertificate(Cert::NotValidForName) => {
            "x509: certificate is not valid for the name dialled".into()
        }
        E::InvalidCertificate(Cert::Revoked) => "x509: certificate revoked".into(),
        E::NoCertificatesPresented => "tls: client didn't provide a certificate".into(),
        // The server refused our certificate (or its absence): Go's server says so with one
        // alert, and etcdctl's users know its words.
        E::AlertReceived(
            Alert::BadCertificate
            | Alert::CertificateRequired
            | Alert::UnknownCA
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate,
        ) => "remote error: tls: bad certificate".into(),
        E::InvalidMessage(_) => "tls: first record does not look like a TLS handshake".into(),
        other => format!("tls: {other}"),
    }
}

/// The TLS failure somewhere in `error`'s chain of causes, in Go's words, if there is one: a
/// refusal of our certificate reaches a TLS 1.3 client only on its first read, as an error of
/// the HTTP request rather than of the handshake.
pub fn find_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Some(describe(io));
            }
        }
        cause = e.source();
    }
    None
}

/// Whether a client's error line is a TLS failure rather than a failure to connect (etcdctl's
/// exit status 4, not 2: Go counts only dial and read errors as connection errors).
pub fn is_failure_text(line: &str) -> bool {
    line.starts_with("x509: ")
        || line.starts_with("remote error: tls: ")
        || line.starts_with("tls: ")
}
