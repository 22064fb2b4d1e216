//! etcd 3.x's `--auto-tls` and `--peer-auto-tls`: a self-signed certificate generated into the
//! data dir (`fixtures/client`, `fixtures/peer`, as etcd names them) the first time, and used
//! again on later starts, for an encrypted link without a CA. Nobody can verify such a
//! certificate: clients must skip verification, and peers do.
// Writing the generated files is this production module's job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The certificate and key in `dir`, made for `hosts` (names or IP addresses) if missing.
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    crate::runtime::create_private_dir(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut hosts: Vec<String> = hosts.to_vec();
    hosts.sort();
    hosts.dedup();
    let failed = |e: rcgen::Error| format!("cannot generate a self-signed certificate: {e}");
    // As etcd makes its own: organisation etcd, valid for a year, for serving and dialling.
    let mut params = rcgen::CertificateParams::new(hosts).map_err(failed)?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    write_file(
        &key_path,
        key.serialize_pem().as_bytes(),
        crate::runtime::PRIVATE_FILE,
    )?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| {
            file.write_all(data)
                .and_then(|()| file.sync_all())
                .map(|()| file)
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.flush().map_err(|e| e.to_string())
}
