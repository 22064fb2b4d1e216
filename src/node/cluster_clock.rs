//! The cluster's time, which TTLs are measured on.
//!
//! etcd 2.x stamps a write with the wall clock of whichever member took it, and the leader
//! expires keys by its own wall clock: one member whose clock jumps an hour ahead (a bad NTP
//! step, a VM resumed) expires every TTL key in the cluster at once, and one an hour behind
//! makes keys it takes live an hour too long. Here only the leader stamps (it re-stamps
//! proposals that reach it), and the time it stamps is carried forward from the last time
//! the cluster agreed on, by the leader's monotonic clock, which no wall-clock step moves.
//! The wall clock may pull that time forward only slowly ([`SLEW`]), so the cluster follows
//! a correct clock over time without letting a jumped one in; it never goes back.
//!
//! A member trusts its wall clock once, when it starts (as etcd does; nothing else knows how
//! long it was down), and from then on learns the cluster's time from the stamps of the
//! entries it applies (the newest wins), so a new leader carries on from where the last one
//! was. What this guards against is a clock that steps or drifts while the member runs.

use std::time::Duration;

use crate::Timestamp;

/// How much faster than its monotonic clock the cluster's time may run to catch up with the
/// leader's wall clock: one part in a hundred. A wall clock jumped forward by an hour moves
/// the cluster's time 36 s in the hour it stays wrong.
const SLEW: u32 = 100;

#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterClock {
    /// The newest cluster time known here and the monotonic instant it was known at; `None`
    /// until this member has applied or stamped a time.
    base: Option<(Timestamp, Duration)>,
}

impl ClusterClock {
    /// A member starting now, which takes its wall clock as the cluster's time.
    pub fn starting_at(wall: Timestamp, elapsed: Duration) -> ClusterClock {
        ClusterClock {
            base: Some((wall, elapsed)),
        }
    }

    /// The cluster's time now, as this member reckons it (its wall clock until it knows
    /// better).
    pub fn now(&self, elapsed: Duration, wall: Timestamp) -> Timestamp {
        match self.base {
            Some((time, at)) => carried(time, elapsed.saturating_sub(at)),
            None => wall,
        }
    }

    /// The time the leader stamps on a proposal now, and from which it is carried forward:
    /// never behind the cluster's time, never ahead of it by more than the slew allows.
    pub fn stamp(&mut self, elapsed: Duration, wall: Timestamp) -> Timestamp {
        let time = match self.base {
            None => wall,
            Some((time, at)) => {
                let since = elapsed.saturating_sub(at);
                let floor = carried(time, since);
                let ceiling = carried(floor, since / SLEW);
                wall.clamp(floor, ceiling)
            }
        };
        self.base = Some((time, elapsed));
        time
    }

    /// An applied entry was stamped `time`: the cluster's time is at least that.
    pub fn observe(&mut self, time: Timestamp, elapsed: Duration) {
        if self.base.is_none() || time > self.now(elapsed, time) {
            self.base = Some((time, elapsed));
        }
    }
}

fn carried(time: Timestamp, by: Duration) -> Timestamp {
    time.saturating_add_nanos(i64::try_from(by.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(unix: u64) -> Timestamp {
        Timestamp::from_unix_secs(unix as i64)
    }

    #[test]
    fn a_wall_clock_that_jumps_forward_barely_moves_the_cluster_time() {
        let mut clock = ClusterClock::default();
        assert_eq!(clock.stamp(secs(0), at(1000)), at(1000));
        // An hour ahead, ten seconds later: only the slew's tenth of a second gets in.
        let t = clock.stamp(secs(10), at(1000 + 10 + 3600));
        assert_eq!(t, at(1010).saturating_add_nanos(100_000_000));
    }

    #[test]
    fn a_wall_clock_that_jumps_back_does_not_take_the_cluster_time_back() {
        let mut clock = ClusterClock::default();
        clock.stamp(secs(0), at(5000));
        assert_eq!(clock.stamp(secs(20), at(5000 + 20 - 3600)), at(5020));
    }

    #[test]
    fn a_correct_wall_clock_is_followed() {
        let mut clock = ClusterClock::default();
        clock.stamp(secs(0), at(100));
        for s in 1..50 {
            assert_eq!(clock.stamp(secs(s), at(100 + s)), at(100 + s));
        }
        assert_eq!(clock.now(secs(60), at(0)), at(160));
    }

    #[test]
    fn a_cluster_time_behind_the_wall_clock_catches_up_at_the_slew_rate() {
        let mut clock = ClusterClock::default();
        clock.observe(at(1000), secs(0));
        // The wall clock says an hour later (the cluster was down): 1% faster until caught up.
        let t = clock.stamp(secs(100), at(1000 + 100 + 3600));
        assert_eq!(t, at(1101));
    }

    #[test]
    fn the_newest_applied_stamp_wins_and_an_older_one_changes_nothing() {
        let mut clock = ClusterClock::default();
        clock.observe(at(500), secs(10));
        clock.observe(at(400), secs(11));
        assert_eq!(clock.now(secs(12), at(0)), at(502));
        clock.observe(at(600), secs(12));
        assert_eq!(clock.now(secs(13), at(0)), at(601));
    }

    #[test]
    fn a_member_starts_from_its_wall_clock_and_older_stamps_do_not_pull_it_back() {
        let mut clock = ClusterClock::starting_at(at(9000), secs(1));
        clock.observe(at(100), secs(2));
        assert_eq!(clock.now(secs(3), at(0)), at(9002));
    }

    #[test]
    fn before_any_stamp_the_wall_clock_is_all_there_is() {
        let clock = ClusterClock::default();
        assert_eq!(clock.now(secs(5), at(77)), at(77));
    }
}
