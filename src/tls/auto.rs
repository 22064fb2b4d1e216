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
    let generated = rcgen::generate_simple_self_signed(hosts)
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert_path, generated.cert.pem().as_bytes())?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(crate::runtime::PRIVATE_FILE)
        .open(path)
        .and_then(|mut file| {
            file.write_all(data)
                .and_then(|()| file.sync_all())
                .map(|()| file)
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.flush().map_err(|e| e.to_string())
}
