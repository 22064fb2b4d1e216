//! TLS configurations read from PEM files, and read again when the files change, so that a
//! certificate rotates without a restart: each new handshake looks at the files' modification
//! time, size and inode (a stat each, as etcd 3.x reads its files for every handshake), and a
//! change builds the configuration anew. Files that do not make a configuration (a rotation
//! caught half-written) keep the last good one, with a log line.
// Reading certificate files is this production module's job; the simulator builds its
// configurations in memory.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::config::{self, BuildError, Trust};
use super::{ClientTls, Current, ServerTls};

/// A listener's files: etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth` and `--client-crl-file` (or their `--peer-*` twins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    /// Refuse, at the handshake, a client without a certificate the trusted CA signed.
    pub client_cert_auth: bool,
    pub crl: Option<PathBuf>,
}

impl ServerFiles {
    /// Reads the files now (a start-up error names the file that is wrong) and again whenever
    /// they change.
    pub fn load(&self, what: &'static str) -> Result<ServerTls, String> {
        let files = self.clone();
        let watched = [
            Some(&self.cert),
            Some(&self.key),
            self.trusted_ca.as_ref(),
            self.crl.as_ref(),
        ];
        watch(what, watched, move || files.build())
    }

    fn build(&self) -> Result<ServerConfig, String> {
        let client_roots = match &self.trusted_ca {
            Some(ca) if self.client_cert_auth => Some(Arc::new(read_roots(ca)?)),
            // Checked with the flags: client-cert auth needs a CA to check against.
            None if self.client_cert_auth => {
                return Err("client certificate authentication needs a trusted CA file".into())
            }
            _ => None,
        };
        let crls = match (&client_roots, &self.crl) {
            (Some(_), Some(crl)) => read_crls(crl)?,
            _ => Vec::new(),
        };
        let identity = (read_certs(&self.cert)?, read_key(&self.key)?);
        config::server(identity, client_roots, crls).map_err(|e| match e {
            BuildError::Verifier(why) => why,
            BuildError::Identity(why) => {
                format!("{} and {}: {why}", self.cert.display(), self.key.display())
            }
        })
    }
}

/// What an outgoing connection shows and trusts: the client side of `--peer-*` for the peer
/// transport, etcdctl's `--cert-file`, `--key-file` and `--ca-file`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// The certificate (and its key) shown when the server asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Whom to trust; the system's roots when absent.
    pub trusted_ca: Option<PathBuf>,
    /// Trust any server certificate: only for peers on self-signed `--peer-auto-tls`
    /// certificates, as etcd does.
    pub skip_verify: bool,
}

impl ClientFiles {
    pub fn load(&self, what: &'static str) -> Result<ClientTls, String> {
        let files = self.clone();
        let watched = [
            self.cert.as_ref(),
            self.key.as_ref(),
            self.trusted_ca.as_ref(),
            None,
        ];
        watch(what, watched, move || files.build())
    }

    fn build(&self) -> Result<ClientConfig, String> {
        let trust = if self.skip_verify {
            Trust::AnyServer
        } else {
            Trust::Roots(Arc::new(match &self.trusted_ca {
                Some(ca) => read_roots(ca)?,
                None => system_roots(),
            }))
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read_certs(cert)?, read_key(key)?)),
            (None, None) => None,
            _ => {
                return Err("a client certificate needs both its cert file and its key file".into())
            }
        };
        config::client(trust, identity).map_err(|e| match (e, &self.cert, &self.key) {
            (BuildError::Identity(why), Some(cert), Some(key)) => {
                format!("{} and {}: {why}", cert.display(), key.display())
            }
            (BuildError::Identity(why) | BuildError::Verifier(why), _, _) => why,
        })
    }
}

/// A configuration built by `build` from the `watched` files now, and again whenever they
/// change.
fn watch<C: Send + Sync + 'static>(
    what: &'static str,
    watched: [Option<&PathBuf>; 4],
    build: impl Fn() -> Result<C, String> + Send + Sync + 'static,
) -> Result<Current<C>, String> {
    let paths = watched.into_iter().flatten().cloned().collect();
    let reloading = Reloading::new(what, paths, build)?;
    Ok(Current::from_fn(move || reloading.current()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read certificates from {}: {}",
                path.display(),
                pem_error(e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "cannot read a private key from {}: {}",
            path.display(),
            pem_error(e)
        )
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The CRLs in `path`, PEM or DER. A file that holds none is an error, never "nothing is
/// revoked": the verifier built from them refuses what does not parse.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read a CRL from {}: {e}", path.display()))?;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if !pem.is_empty() {
        return Ok(pem);
    }
    if bytes.is_empty() {
        return Err(format!("{} holds no CRL", path.display()));
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

/// A PEM reader's error in words (the reader's own Debug form lists raw bytes).
fn pem_error(error: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match error {
        E::Io(e) => e.to_string(),
        E::NoItemsFound => "no PEM data found".into(),
        E::MissingSectionEnd { .. } | E::IllegalSectionStart { .. } | E::Base64Decode(_) => {
            "tls: failed to find any PEM data in input (damaged or truncated PEM)".into()
        }
        other => format!("{other:?}"),
    }
}

/// The operating system's trusted roots, as Go's client uses when given no CA file.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// What identifies a file's content cheaply: a rotation by rename changes the inode, one in
/// place the modification time or the size.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len(), meta.ino()))
        })
        .collect()
}

/// A configuration built from files, rebuilt when they change.
struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    state: Mutex<Loaded<T>>,
}

struct Loaded<T> {
    /// The files as they were when `current` was built, or when a rebuild last failed (so
    /// that a bad file is reported once, not at every handshake).
    stamps: Vec<Stamp>,
    current: Arc<T>,
}

impl<T> Reloading<T> {
    fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, String> {
        let stamps = stamps(&paths);
        let current = Arc::new(build().map_err(|e| format!("{what} TLS: {e}"))?);
        Ok(Reloading {
            what,
            paths,
            build: Box::new(build),
            state: Mutex::new(Loaded { stamps, current }),
        })
    }

    fn current(&self) -> Arc<T> {
        let now = stamps(&self.paths);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.stamps {
            state.stamps = now;
            match (self.build)() {
                Ok(config) => {
                    state.current = Arc::new(config);
                    eprintln!("etcd: {} TLS: certificate files changed; reloaded", self.what);
                }
                Err(why) => eprintln!(
                    "etcd: {} TLS: certificate files changed but cannot be used ({why}); keeping the previous ones",
                    self.what
                ),
            }
        }
        Arc::clone(&state.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRL file that holds no usable list stops the start; it never means "nothing revoked".
    #[test]
    fn an_unusable_crl_is_an_error_and_der_is_read() {
        let dir = std::env::temp_dir().join(format!("etcd-crl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, &key);
        let now = time::OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let write = |name: &str, data: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, data).unwrap();
            path
        };
        let files = |crl: PathBuf| ServerFiles {
            cert: write("cert.pem", cert.pem().as_bytes()),
            key: write("key.pem", key.serialize_pem().as_bytes()),
            trusted_ca: Some(dir.join("cert.pem")),
            client_cert_auth: true,
            crl: Some(crl),
        };
        assert!(files(write("crl.pem", crl.pem().unwrap().as_bytes()))
            .load("t")
            .is_ok());
        assert!(files(write("crl.der", crl.der())).load("t").is_ok());
        for junk in [
            &b""[..],
            b"not a crl at all",
            b"-----BEGIN X509 CRL-----\nAAAA",
        ] {
            assert!(
                files(write("junk", junk)).load("t").is_err(),
                "{junk:?} was taken"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
