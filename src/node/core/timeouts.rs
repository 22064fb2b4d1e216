//! What the raft loop does now and then, each under its own name, counted in ticks (the loop's
//! one clock, `--heartbeat-interval` long).

/// Something done at most once every `period` ticks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Every {
    period: u64,
    last: Option<u64>,
}

impl Every {
    pub(super) fn new(period: u64) -> Every {
        Every {
            period: period.max(1),
            last: None,
        }
    }

    /// Whether a period has passed at `tick` since it was last done (or it never was).
    pub(super) fn due(&self, tick: u64) -> bool {
        self.last.is_none_or(|last| tick >= last + self.period)
    }

    pub(super) fn done(&mut self, tick: u64) {
        self.last = Some(tick);
    }
}

/// The loop's periodic work.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// Read barriers raft dropped (no leader, a leader change) are asked for again.
    pub(super) read_retry: Every,
    /// A member's attributes are proposed again until the member table shows them (etcd's
    /// publish).
    pub(super) publish: Every,
    /// The leader looks for keys whose TTL ran out (etcd's SYNC interval).
    pub(super) expiry: Every,
}

impl Timeouts {
    pub(super) fn new(expiry_ticks: u64) -> Timeouts {
        Timeouts {
            read_retry: Every::new(5),
            publish: Every::new(10),
            expiry: Every::new(expiry_ticks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periodic_task_is_due_at_first_then_once_a_period() {
        let mut every = Every::new(5);
        assert!(every.due(0));
        every.done(0);
        assert!(!every.due(4));
        assert!(every.due(5));
        every.done(7);
        assert!(!every.due(11));
        assert!(every.due(12));
        assert!(Every::new(0).due(0), "a period of zero means every tick");
    }
}
