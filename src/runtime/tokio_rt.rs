//! The production host: tokio's clock, timers, tasks and sockets.
// The one place that reads the real clocks, the OS random source and the real network.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft::eraftpb::Message;
use tokio::net::{TcpListener, TcpStream};

use super::{FsDisk, Host, Listener, Parts, Transport};
use crate::timestamp::Timestamp;

/// A member on the real machine: its disk and, for raft, the network `N`.
pub type TokioRuntime<N = NoPeers> = Parts<TokioHost, FsDisk, N>;

impl<N: Transport> Parts<TokioHost, FsDisk, N> {
    pub fn new(net: N) -> Self {
        Parts {
            host: TokioHost::new(),
            disk: FsDisk::default(),
            net: Arc::new(net),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TokioHost {
    origin: Instant,
}

impl TokioHost {
    pub fn new() -> TokioHost {
        TokioHost {
            origin: Instant::now(),
        }
    }
}

impl Default for TokioHost {
    fn default() -> Self {
        TokioHost::new()
    }
}

impl Host for TokioHost {
    type Stream = TcpStream;
    type Listener = TcpListener;

    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_nanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
    }

    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn random_u64(&self) -> u64 {
        rand::random()
    }

    async fn listen(&self, address: &str) -> io::Result<TcpListener> {
        // Go's listen backlog (the kernel's somaxconn caps it): a burst of connections waits
        // in the kernel's queue instead of retrying its SYNs for seconds.
        let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
        for addr in tokio::net::lookup_host(address).await? {
            let socket = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            match socket.bind(addr).and_then(|()| socket.listen(4096)) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect(&self, address: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(address).await?;
        // Requests and answers are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, from) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, from))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

/// A network with no other members: a single-member cluster sends nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

/// Raft in a single-member cluster sends nothing and has no peer to report on; a member it
/// never had needs no removing.
impl Transport for NoPeers {
    fn send(&self, _message: Message) {}

    fn remove_peer(&self, _id: u64) {}
}
