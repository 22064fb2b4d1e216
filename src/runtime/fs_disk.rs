//! The production disk: the real file system, with blocking calls moved off the async workers.
// The one place that may touch the file system directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Disk;

/// What the data dir holds is the cluster's data: only its owner may read it, as with etcd
/// (which makes directories 0700 and files 0600).
pub const PRIVATE_DIR: u32 = 0o700;
pub const PRIVATE_FILE: u32 = 0o600;

/// `mkdir -p` with private directories (those that already exist are left as they are).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// The real file system. Files written to stay open (the log's tail is written many times a
/// second) and are written at explicit offsets; a file's directory is synced once after the file
/// is created, not on every sync.
#[derive(Clone, Debug, Default)]
pub struct FsDisk {
    state: Arc<Mutex<Handles>>,
}

#[derive(Debug, Default)]
struct Handles {
    open: HashMap<PathBuf, Arc<File>>,
    /// Files created since their directory was last synced.
    created: HashSet<PathBuf>,
}

impl FsDisk {
    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets an open handle: the file is about to be renamed, truncated or removed.
    fn forget(&self, path: &Path) {
        self.handles().open.remove(path);
    }

    /// The open handle for `path`, opening (and creating) the file the first time. Never in
    /// append mode: Linux ignores the offset of a positional write to an `O_APPEND` file.
    fn handle(&self, path: &Path) -> io::Result<Arc<File>> {
        let mut handles = self.handles();
        if let Some(file) = handles.open.get(path) {
            return Ok(Arc::clone(file));
        }
        let existed = path.exists();
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(PRIVATE_FILE)
                .open(path)?,
        );
        if !existed {
            handles.created.insert(path.to_path_buf());
        }
        handles.open.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }
}

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
        blocking(move || create_private_dir(&dir)).await
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

    async fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        // Done here, not on the blocking pool: a write to the page cache takes microseconds,
        // less than the hand-off to another thread would.
        self.handle(path)?.write_all_at(data, offset)
    }

    async fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = self.handle(path)?;
        blocking(move || {
            // Sparse: the blocks are found when written. fallocate would find them now (and
            // report a full disk early) but needs unsafe code or another dependency.
            if file.metadata()?.len() < len {
                file.set_len(len)?;
            }
            Ok(())
        })
        .await
    }

    async fn sync(&self, path: &Path) -> io::Result<()> {
        let (file, created) = {
            let mut handles = self.handles();
            (
                handles.open.get(path).cloned(),
                handles.created.remove(path),
            )
        };
        let owned = path.to_path_buf();
        let result = blocking(move || {
            match file {
                Some(file) => file.sync_data()?,
                None => File::open(&owned)?.sync_data()?,
            }
            if created {
                sync_dir(&parent(&owned))?;
            }
            Ok(())
        })
        .await;
        if result.is_err() && created {
            // The directory entry may not be durable yet: the next sync tries again.
            self.handles().created.insert(path.to_path_buf());
        }
        result
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.forget(path);
        let (path, data) = (path.to_path_buf(), data.to_vec());
        blocking(move || {
            let aside = path.with_extension("tmp");
            let written = (|| {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(PRIVATE_FILE)
                    .open(&aside)?;
                file.write_all(&data)?;
                file.sync_all()
            })();
            if let Err(e) = written {
                // Half a file on a full disk would keep it full.
                let _ = fs::remove_file(&aside);
                return Err(e);
            }
            fs::rename(&aside, &path)?;
            sync_dir(&parent(&path))
        })
        .await
    }

    async fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.forget(path);
        let path = path.to_path_buf();
        blocking(move || {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(len)?;
            file.sync_all()
        })
        .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking(move || {
            fs::rename(&from, &to)?;
            sync_dir(&parent(&to))
        })
        .await
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        self.handles().created.remove(path);
        let path = path.to_path_buf();
        blocking(move || fs::remove_file(path)).await
    }
}
