//! The simulation host: madsim's virtual clock, tasks, seeded randomness and simulated TCP;
//! and `SimNet`, an in-memory raft network that loses, delays, reorders and partitions
//! messages as a node-level test directs. Everything is driven by the simulation seed.
// A runtime implementation. Time comes from madsim's own clock handle, never from std's
// clocks: madsim virtualises those only when its libc interposition takes, which is not
// guaranteed on every toolchain.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::rand::{Rng, RngCore};
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use super::{Host, Listener, Parts, SimDisk, Transport};
use crate::timestamp::Timestamp;

/// A simulated member: madsim's host, an in-memory disk and, for raft, the network `N`
/// (the in-memory [`SimNet`] for node-level tests, or the real HTTP transport over simulated
/// TCP for the whole member).
pub type SimRuntime<N = SimEndpoint> = Parts<SimHost, SimDisk, N>;

impl Parts<SimHost, SimDisk, SimEndpoint> {
    /// The runtime of member `id` on a `SimNet`; call it inside that member's madsim node.
    pub fn new(id: u64, disk: SimDisk, net: SimNet, skew: Duration) -> SimRuntime {
        Parts {
            host: SimHost::new(skew),
            disk,
            net: Arc::new(SimEndpoint { from: id, net }),
        }
    }
}

/// One simulated machine: madsim's virtual clock (plus this machine's clock error), its tasks,
/// its seeded randomness and its simulated TCP.
#[derive(Clone)]
pub struct SimHost {
    /// This machine's clock error, added to the simulation's wall clock; shared so that a
    /// fault can move the clock while the member runs.
    skew_nanos: Arc<AtomicI64>,
}

impl SimHost {
    pub fn new(skew: Duration) -> SimHost {
        SimHost {
            skew_nanos: Arc::new(AtomicI64::new(i64::try_from(skew.as_nanos()).unwrap_or(0))),
        }
    }

    /// Moves this machine's wall clock by `by` nanoseconds (either way); timers, which run on
    /// the monotonic clock, are not affected, as on a real machine.
    pub fn jump_clock(&self, by: i64) {
        self.skew_nanos.fetch_add(by, Ordering::Relaxed);
    }

    pub fn skew_nanos(&self) -> i64 {
        self.skew_nanos.load(Ordering::Relaxed)
    }
}

impl Host for SimHost {
    type Stream = madsim::net::TcpStream;
    type Listener = madsim::net::TcpListener;

    fn now(&self) -> Timestamp {
        let wall = madsim::time::TimeHandle::current().now_time();
        #[allow(clippy::disallowed_types)] // madsim's virtual wall clock comes as a SystemTime
        let nanos = wall
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Timestamp::from_unix_nanos(nanos).saturating_add_nanos(self.skew_nanos())
    }

    fn elapsed(&self) -> Duration {
        madsim::time::TimeHandle::current().elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        madsim::time::sleep(duration)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        madsim::task::spawn(task);
    }

    fn random_u64(&self) -> u64 {
        madsim::rand::thread_rng().next_u64()
    }

    async fn listen(&self, address: &str) -> io::Result<madsim::net::TcpListener> {
        madsim::net::TcpListener::bind(address).await
    }

    async fn connect(&self, address: &str) -> io::Result<madsim::net::TcpStream> {
        madsim::net::TcpStream::connect(address).await
    }
}

impl Listener for madsim::net::TcpListener {
    type Stream = madsim::net::TcpStream;

    async fn accept(&self) -> io::Result<madsim::net::TcpStream> {
        madsim::net::TcpListener::accept(self)
            .await
            .map(|(stream, _)| stream)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        madsim::net::TcpListener::local_addr(self)
    }
}

/// How the simulated network treats messages.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub loss: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            loss: 0.0,
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(5),
        }
    }
}

/// The network between simulated members: who is listening, which links are cut, and how
/// lossy and slow the rest is.
#[derive(Clone, Default)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    inboxes: BTreeMap<u64, mpsc::Sender<Message>>,
    /// Directed links (from, to) that drop everything.
    cut: BTreeSet<(u64, u64)>,
    config: NetConfig,
    delivered: u64,
    dropped: u64,
}

impl SimNet {
    pub fn new() -> SimNet {
        SimNet::default()
    }

    fn state(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or, after a restart, replaces) a member's inbox.
    pub fn listen(&self, id: u64) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(crate::node::INBOX_CAPACITY);
        self.state().inboxes.insert(id, tx);
        rx
    }

    pub fn set_config(&self, config: NetConfig) {
        self.state().config = config;
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        self.state().cut.insert((from, to));
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        let mut state = self.state();
        for &x in a {
            for &y in b {
                state.cut.insert((x, y));
                state.cut.insert((y, x));
            }
        }
    }

    pub fn heal(&self) {
        self.state().cut.clear();
    }

    /// (delivered, dropped) message counts so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.delivered, state.dropped)
    }

    fn send(&self, from: u64, message: Message) {
        let to = message.to;
        let delay = {
            let mut state = self.state();
            let mut rng = madsim::rand::thread_rng();
            let lost = state.config.loss > 0.0 && rng.gen_bool(state.config.loss.min(1.0));
            if lost || state.cut.contains(&(from, to)) || !state.inboxes.contains_key(&to) {
                state.dropped += 1;
                return;
            }
            let (lo, hi) = (
                state.config.min_delay,
                state.config.max_delay.max(state.config.min_delay),
            );
            lo + Duration::from_nanos(rng.gen_range(0..=(hi - lo).as_nanos() as u64))
        };
        let net = self.clone();
        // Each message travels on its own, so random delays also reorder them.
        madsim::task::spawn(async move {
            madsim::time::sleep(delay).await;
            let mut state = net.state();
            // The link may have been cut while the message was in flight.
            let delivered = !state.cut.contains(&(from, to))
                && state
                    .inboxes
                    .get(&to)
                    .is_some_and(|inbox| inbox.try_send(message).is_ok());
            if delivered {
                state.delivered += 1;
            } else {
                state.dropped += 1;
            }
        });
    }
}

/// One member's side of the `SimNet`.
#[derive(Clone)]
pub struct SimEndpoint {
    from: u64,
    net: SimNet,
}

impl Transport for SimEndpoint {
    fn send(&self, message: Message) {
        self.net.send(self.from, message);
    }
}
