//! The production disk: the real file system, with blocking calls moved off the async workers.
// The one place that may touch the file system directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Disk;

#[derive(Clone, Debug, Default)]
pub struct FsDisk;

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| io::Error::other(format!("disk task failed: {e}")))?,
        // Outside a tokio runtime (plain unit tests), just do it here.
        Err(_) => work(),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl Disk for FsDisk {
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || fs::create_dir_all(dir)).await
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let mut names = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = path.to_path_buf();
        blocking(move || fs::read(path)).await
    }

    async fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (path, data) = (path.to_path_buf(), data.to_vec());
        blocking(move || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(&data)
        })
        .await
    }

    async fn sync(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            File::open(&path)?.sync_data()?;
            sync_dir(&parent(&path))
        })
        .await
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (path, data) = (path.to_path_buf(), data.to_vec());
        blocking(move || {
            let aside = path.with_extension("tmp");
            let mut file = File::create(&aside)?;
            file.write_all(&data)?;
            file.sync_all()?;
            fs::rename(&aside, &path)?;
            sync_dir(&parent(&path))
        })
        .await
    }

    async fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(len)?;
            file.sync_all()
        })
        .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking(move || {
            fs::rename(&from, &to)?;
            sync_dir(&parent(&to))
        })
        .await
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::remove_file(path)).await
    }
}
