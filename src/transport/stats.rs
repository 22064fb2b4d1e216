//! What etcd's `/v2/stats/self` and `/v2/stats/leader` report about raft traffic: appends sent
//! and received with their rates, and, per peer, the round-trip latency and the count of
//! batches delivered or not. The transport records; the client API reads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// A point on the host's monotonic clock.
type Instant = Duration;

/// Recent appends a rate is computed over (etcd keeps the last 200, within a second).
const RATE_WINDOW: usize = 200;

pub struct TrafficStats {
    inner: Mutex<Traffic>,
    /// The host's monotonic clock (`Host::elapsed`).
    clock: Box<dyn Fn() -> Duration + Send + Sync>,
}

#[derive(Default)]
struct Traffic {
    sent: Appends,
    received: Appends,
    peers: BTreeMap<u64, FollowerStats>,
}

#[derive(Default)]
struct Appends {
    count: u64,
    /// When recent appends happened and how many bytes each carried.
    recent: VecDeque<(Instant, usize)>,
}

impl Appends {
    fn record(&mut self, bytes: usize, now: Instant) {
        self.count += 1;
        if self.recent.len() == RATE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((now, bytes));
    }

    /// (appends a second, bytes a second) over the last second of recent appends.
    fn rates(&self, now: Instant) -> (f64, f64) {
        let in_window: Vec<&(Instant, usize)> = self
            .recent
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) <= Duration::from_secs(1))
            .collect();
        let bytes: usize = in_window.iter().map(|(_, b)| b).sum();
        (in_window.len() as f64, bytes as f64)
    }
}

/// One follower as the leader sees it, in etcd's JSON: latencies in milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FollowerStats {
    pub latency: Latency,
    pub counts: Counts,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub current: f64,
    pub average: f64,
    pub standard_deviation: f64,
    pub minimum: f64,
    pub maximum: f64,
    /// The sum of squares of the round trips, for the standard deviation.
    #[serde(skip)]
    square_sum: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub fail: u64,
    pub success: u64,
}

impl FollowerStats {
    /// A batch delivered after `rtt`, as etcd's `FollowerStats.Succ` counts it.
    fn succeeded(&mut self, rtt: Duration) {
        let ms = rtt.as_secs_f64() * 1000.0;
        self.counts.success += 1;
        let n = self.counts.success as f64;
        let latency = &mut self.latency;
        latency.current = ms;
        if n == 1.0 {
            latency.minimum = ms;
            latency.maximum = ms;
        } else {
            latency.minimum = latency.minimum.min(ms);
            latency.maximum = latency.maximum.max(ms);
        }
        latency.average += (ms - latency.average) / n;
        latency.square_sum += ms * ms;
        let variance = (latency.square_sum / n - latency.average * latency.average).max(0.0);
        latency.standard_deviation = variance.sqrt();
    }
}

impl TrafficStats {
    /// Figures timed by `clock`, the host's monotonic clock.
    pub fn new(clock: impl Fn() -> Duration + Send + Sync + 'static) -> TrafficStats {
        TrafficStats {
            inner: Mutex::default(),
            clock: Box::new(clock),
        }
    }

    /// An append (raft's MsgApp) of `bytes` sent to a peer.
    pub fn append_sent(&self, bytes: usize) {
        let now = (self.clock)();
        self.lock().sent.record(bytes, now);
    }

    /// An append of `bytes` received from the leader.
    pub fn append_received(&self, bytes: usize) {
        let now = (self.clock)();
        self.lock().received.record(bytes, now);
    }

    pub fn delivered(&self, peer: u64, rtt: Duration) {
        self.lock().peers.entry(peer).or_default().succeeded(rtt);
    }

    pub fn failed(&self, peer: u64) {
        self.lock().peers.entry(peer).or_default().counts.fail += 1;
    }

    /// (count, appends a second, bytes a second) of appends sent.
    pub fn sent(&self) -> (u64, f64, f64) {
        let now = (self.clock)();
        let traffic = self.lock();
        let (pkgs, bytes) = traffic.sent.rates(now);
        (traffic.sent.count, pkgs, bytes)
    }

    /// (count, appends a second, bytes a second) of appends received.
    pub fn received(&self) -> (u64, f64, f64) {
        let now = (self.clock)();
        let traffic = self.lock();
        let (pkgs, bytes) = traffic.received.rates(now);
        (traffic.received.count, pkgs, bytes)
    }

    /// A follower's figures (zero until the first batch to it).
    pub fn follower(&self, peer: u64) -> FollowerStats {
        self.lock().peers.get(&peer).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Traffic> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A duration as Go's `time.Duration.String` prints it (etcd's `uptime`): `2.883323304s`,
/// `1m2.5s`, `1h0m0s`, `1.5ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize| {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let secs = nanos / 1_000_000_000;
    let seconds = format!("{}s", trim(secs % 60, nanos % 1_000_000_000, 9));
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let ns = Duration::from_nanos;
        assert_eq!(go_duration(ns(0)), "0s");
        assert_eq!(go_duration(ns(2_883_323_304)), "2.883323304s");
        assert_eq!(go_duration(ns(62_500_000_000)), "1m2.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(ns(1_500_000)), "1.5ms");
        assert_eq!(go_duration(ns(1_500)), "1.5µs");
        assert_eq!(go_duration(ns(7)), "7ns");
    }

    #[test]
    fn follower_latency_keeps_etcds_figures() {
        let mut f = FollowerStats::default();
        for ms in [2, 4, 4, 4, 5, 5, 7, 9] {
            f.succeeded(Duration::from_millis(ms));
        }
        assert_eq!(f.counts.success, 8);
        assert_eq!(f.latency.current, 9.0);
        assert_eq!(f.latency.minimum, 2.0);
        assert_eq!(f.latency.maximum, 9.0);
        assert!((f.latency.average - 5.0).abs() < 1e-9);
        assert!((f.latency.standard_deviation - 2.0).abs() < 1e-9);
    }
}
