//! The one seam between the node and the world: clock and timers, task spawning, the peer
//! network, the disk and randomness. Production implements it on tokio and the real file
//! system (`TokioRuntime`); the simulator on madsim, an in-memory disk and an in-memory
//! network (`SimRuntime`, feature `sim`). Node code sees only these traits.

mod fs_disk;
#[cfg(all(feature = "sim", madsim))]
pub mod sim;
mod sim_disk;
mod tokio_rt;

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use raft::eraftpb::Message;

use crate::timestamp::Timestamp;

pub use fs_disk::{create_private_dir, FsDisk, PRIVATE_DIR, PRIVATE_FILE};
pub use sim_disk::SimDisk;
pub use tokio_rt::{NoPeers, TokioRuntime};

/// Everything a node needs from the world.
pub trait Runtime: Clone + Send + Sync + 'static {
    type Disk: Disk;
    type Net: Transport;

    /// Wall-clock time, for TTLs.
    fn now(&self) -> Timestamp;
    /// Time since an arbitrary fixed start that never goes back, for timers.
    fn elapsed(&self) -> Duration;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static;
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static;
    /// Randomness; seeded (and so repeatable) in simulation.
    fn random_u64(&self) -> u64;
    fn disk(&self) -> &Self::Disk;
    fn net(&self) -> &Self::Net;
}

/// Raft messages to other members. Sending never blocks and may silently lose messages (raft
/// retries); what arrives is handed to the receiving node's inbox.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, message: Message);

    /// A member joined the cluster at these peer URLs (a network that routes by id ignores it).
    fn add_peer(&self, _id: u64, _peer_urls: &[String]) {}
}

/// Durable storage as the WAL and snapshots need it. Writes and length changes are not durable
/// until `sync`; a crash may keep any subset of the 512-byte sectors written since then, and may
/// lose a length change. `write_atomic` and `truncate` are durable when they return.
pub trait Disk: Clone + Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// The names of the plain files in `dir`, sorted.
    fn list(&self, dir: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send;
    /// The whole file; bytes never written within its length read as zeros.
    fn read(&self, path: &Path) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
    /// Writes `data` at byte `offset`, creating the file when missing and growing it when the
    /// data ends past its length.
    fn write_at(
        &self,
        path: &Path,
        offset: u64,
        data: &[u8],
    ) -> impl Future<Output = io::Result<()>> + Send;
    /// Grows the file to at least `len` bytes of zeros (never shrinks it), creating it when
    /// missing.
    fn allocate(&self, path: &Path, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    /// Makes everything written to `path` so far, its length and its existence durable.
    fn sync(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn write_atomic(&self, path: &Path, data: &[u8])
        -> impl Future<Output = io::Result<()>> + Send;
    fn truncate(&self, path: &Path, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn remove(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
}
