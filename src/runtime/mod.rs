//! The one seam between a member and the world: clock and timers, task spawning, sockets,
//! the disk, randomness and the raft peer network.
//!
//! A [`Host`] is what a process gets from the machine it runs on: clocks, timers, tasks,
//! randomness, and TCP listeners and connections. A [`Runtime`] is a host with a [`Disk`] and a
//! raft [`Transport`] besides, assembled as [`Parts`]. Production runs on tokio, real sockets
//! and the real file system (`TokioHost`, `FsDisk`); the simulator on madsim's clock, tasks and
//! simulated TCP, and the in-memory `SimDisk` (`sim::SimHost`, feature `sim`). Member code sees
//! only these traits, so the same server runs in both.

mod fs_disk;
#[cfg(all(feature = "sim", madsim))]
pub mod sim;
mod sim_disk;
mod tokio_rt;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::timestamp::Timestamp;

pub use fs_disk::{create_private_dir, FsDisk, PRIVATE_DIR, PRIVATE_FILE};
pub use sim_disk::{Delay, DiskOp, SimDisk};
pub use tokio_rt::{NoPeers, TokioHost, TokioRuntime};

/// What a process gets from the machine: clocks, timers, tasks, randomness and sockets.
pub trait Host: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Listener: Listener<Stream = Self::Stream>;

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
    /// Listens for TCP connections on `address` (`host:port`).
    fn listen(&self, address: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Opens a TCP connection to `address` (`host:port`).
    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// A bound TCP listener.
pub trait Listener: Send + Sync + 'static {
    type Stream;
    /// The next connection, and where it comes from.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// `future`, or `Err(())` when `limit` passes first on the host's clock.
pub async fn timeout<H: Host, F: Future>(
    host: &H,
    limit: Duration,
    future: F,
) -> Result<F::Output, ()> {
    let deadline = host.sleep(limit);
    // `biased`: an unbiased select draws from a thread-local RNG that would make simulation
    // runs differ.
    tokio::select! {
        biased;
        output = future => Ok(output),
        _ = deadline => Err(()),
    }
}

/// Everything a member needs from the world: a host, a disk and the raft peer network.
pub trait Runtime: Host {
    type Disk: Disk;
    type Net: Transport;

    fn disk(&self) -> &Self::Disk;
    fn net(&self) -> &Self::Net;
}

/// A runtime assembled from its parts.
pub struct Parts<H, D, N> {
    pub host: H,
    pub disk: D,
    pub net: Arc<N>,
}

impl<H: Clone, D: Clone, N> Clone for Parts<H, D, N> {
    fn clone(&self) -> Self {
        Parts {
            host: self.host.clone(),
            disk: self.disk.clone(),
            net: Arc::clone(&self.net),
        }
    }
}

impl<H: Host, D: Disk, N: Transport> Host for Parts<H, D, N> {
    type Stream = H::Stream;
    type Listener = H::Listener;

    fn now(&self) -> Timestamp {
        self.host.now()
    }

    fn elapsed(&self) -> Duration {
        self.host.elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.host.sleep(duration)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.host.spawn(task)
    }

    fn random_u64(&self) -> u64 {
        self.host.random_u64()
    }

    fn listen(&self, address: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        self.host.listen(address)
    }

    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        self.host.connect(address)
    }
}

impl<H: Host, D: Disk, N: Transport> Runtime for Parts<H, D, N> {
    type Disk = D;
    type Net = N;

    fn disk(&self) -> &D {
        &self.disk
    }

    fn net(&self) -> &N {
        &self.net
    }
}

/// The raft peer network: the one contract between a member's node and its transport. Part of
/// it is these methods, which the node calls; the rest is wired where the member is assembled
/// (`server::Server::start`): the inbox the transport delivers into, the reporter it reports
/// through, and the node's answer to "was this sender removed?".
///
/// What the node promises:
/// - It hands over every message raft wants sent (`send`), from its raft loop, never waiting
///   for the network.
/// - It says who the peers are, as it applies the membership: `add_peer` when a member joins or
///   moves (and for every member of a snapshot it installs), `remove_peer` once a member's
///   removal is applied — after which raft no longer tracks that peer and sends it nothing.
/// - It takes every report, however busy it is (`Node::report`): reports never queue behind
///   clients and are never lost, and the same report twice counts once.
/// - It takes raft messages from peers through a bounded inbox (`node::INBOX_CAPACITY`).
/// - It answers, for any sender, whether that member was removed (`Node::is_removed`, from
///   the replicated member table, which remembers removed ids for ever).
///
/// What the transport promises:
/// - `send` never blocks. What it cannot queue it drops, and raft sends again: a peer's queue
///   that is full means the peer is reported unreachable (as etcd's transport does); a message
///   for a peer it does not know (never added, or removed) is dropped without dialling.
/// - Every snapshot handed to `send` is reported through the reporter, delivered
///   (`SnapshotSent`) or failed (`SnapshotFailed`), within a bounded time of its last
///   progress, whatever becomes of it — dropped, undeliverable, or its peer removed. Raft sends
///   a follower nothing more until it hears, and the node has no guess of its own.
/// - A peer that cannot be reached is reported `Unreachable`, so raft slows down to probing.
/// - What peers send is handed to the node's inbox whole and only if it is for this member,
///   and dropped when the inbox is full; a sender the node says was removed is answered 410
///   Gone and never stepped.
/// - A peer's 410 Gone is reported as `RemovedByPeer`: this member missed its own removal.
/// - After `remove_peer` nothing more goes to that peer: no dialling, its queues emptied and
///   its tasks ended, and nothing the removed member says brings it back.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, message: Message);

    /// A member joined the cluster, or moved, at these peer URLs (this member's own id: where
    /// it now listens). A network that routes by id ignores it.
    fn add_peer(&self, _id: u64, _peer_urls: &[String]) {}

    /// A member left the cluster for good: drop everything kept for it. No default, so that
    /// every network decides what removing a peer means for it.
    fn remove_peer(&self, id: u64);
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
