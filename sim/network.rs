//! The simulated network between members, on madsim's TCP: links cut one way or both, loss,
//! and latency. A cut link stalls what is sent on it (TCP retransmits) and refuses new
//! connections, so members must rely on their own timeouts, as on a real network.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::task::NodeId;

/// Latency of a healthy link.
pub const LATENCY: Range<Duration> = Duration::from_micros(200)..Duration::from_millis(5);

#[derive(Clone, Default)]
pub struct Network {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Each member's machine.
    machines: BTreeMap<u64, NodeId>,
    /// Directed links (from, to) cut now.
    cut: BTreeSet<(u64, u64)>,
}

impl Network {
    /// The network of the current simulation, with healthy links.
    pub fn new() -> Network {
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = LATENCY;
        });
        Network::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, member: u64, machine: NodeId) {
        self.state().machines.insert(member, machine);
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        let mut state = self.state();
        if let (Some(&a), Some(&b)) = (state.machines.get(&from), state.machines.get(&to)) {
            if a != b {
                NetSim::current().clog_link(a, b);
                state.cut.insert((from, to));
            }
        }
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut(x, y);
                self.cut(y, x);
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        let mut state = self.state();
        for (from, to) in std::mem::take(&mut state.cut) {
            NetSim::current().unclog_link(state.machines[&from], state.machines[&to]);
        }
    }

    /// Loses this share of packets (TCP sends them again, later).
    pub fn set_loss(&self, loss: f64) {
        NetSim::current().update_config(|c| c.packet_loss_rate = loss);
    }

    pub fn set_latency(&self, latency: Range<Duration>) {
        NetSim::current().update_config(|c| c.send_latency = latency);
    }

    /// Healthy links again: no loss, the usual latency (cut links stay cut).
    pub fn calm(&self) {
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = LATENCY;
        });
    }
}
