//! The raft loop's second way in, beside the bounded command channel: what must reach it
//! however busy the member is — the transport's news of peers, and the request to stop.
//!
//! Client commands may be turned away when the loop falls behind (the member answers "too many
//! requests"); these may not. A lost snapshot outcome stalls that follower for ever (raft sends
//! it nothing more until it hears), and a lost stop leaves the process hanging. So they do not
//! queue at all: a report is a member of a set and a stop is a flag. Reporting again what is
//! already waiting changes nothing, which is what bounds it: at most three reports per peer
//! (unreachable, snapshot failed, snapshot delivered) and one "removed by a peer", however fast
//! the transport reports.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::PeerReport;

#[derive(Default)]
pub(crate) struct Control {
    waiting: Mutex<Waiting>,
    /// Wakes the raft loop. `notify_one` keeps a permit when the loop is not waiting, so news
    /// that comes while it is busy is seen when it next waits.
    wake: Notify,
}

#[derive(Default)]
struct Waiting {
    unreachable: BTreeSet<u64>,
    snapshot_failed: BTreeSet<u64>,
    snapshot_sent: BTreeSet<u64>,
    removed_by_peer: bool,
    stop: bool,
}

/// What the raft loop takes in one go.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub reports: Vec<PeerReport>,
    pub stop: bool,
}

impl Control {
    /// Never blocks and never loses the report.
    pub fn report(&self, report: PeerReport) {
        {
            let mut waiting = self.lock();
            match report {
                PeerReport::Unreachable(id) => waiting.unreachable.insert(id),
                PeerReport::SnapshotFailed(id) => waiting.snapshot_failed.insert(id),
                PeerReport::SnapshotSent(id) => waiting.snapshot_sent.insert(id),
                PeerReport::RemovedByPeer => std::mem::replace(&mut waiting.removed_by_peer, true),
            };
        }
        self.wake.notify_one();
    }

    pub fn request_stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    /// Returns once something may be waiting (perhaps already taken).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Everything waiting, emptied. Failures come before deliveries: both outcomes for one peer
    /// can wait together only when raft already stopped waiting for one of the snapshots (raft
    /// sends a follower one snapshot and then nothing until it hears or the follower answers),
    /// and taking the failure first is the safe reading — raft probes the follower again
    /// instead of assuming it holds the snapshot.
    pub fn take(&self) -> Taken {
        let waiting = std::mem::take(&mut *self.lock());
        let mut reports: Vec<PeerReport> = Vec::new();
        reports.extend(waiting.unreachable.into_iter().map(PeerReport::Unreachable));
        reports.extend(
            waiting
                .snapshot_failed
                .into_iter()
                .map(PeerReport::SnapshotFailed),
        );
        reports.extend(
            waiting
                .snapshot_sent
                .into_iter()
                .map(PeerReport::SnapshotSent),
        );
        if waiting.removed_by_peer {
            reports.push(PeerReport::RemovedByPeer);
        }
        Taken {
            reports,
            stop: waiting.stop,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_given_twice_waits_once() {
        let control = Control::default();
        for _ in 0..10_000 {
            control.report(PeerReport::Unreachable(2));
            control.report(PeerReport::SnapshotFailed(3));
        }
        assert_eq!(
            control.take().reports,
            [PeerReport::Unreachable(2), PeerReport::SnapshotFailed(3)]
        );
        assert_eq!(control.take(), Taken::default(), "taking empties it");
    }

    #[test]
    fn a_failed_snapshot_is_taken_before_a_delivered_one() {
        let control = Control::default();
        control.report(PeerReport::SnapshotSent(2));
        control.report(PeerReport::SnapshotFailed(2));
        control.report(PeerReport::RemovedByPeer);
        assert_eq!(
            control.take().reports,
            [
                PeerReport::SnapshotFailed(2),
                PeerReport::SnapshotSent(2),
                PeerReport::RemovedByPeer
            ]
        );
    }

    #[tokio::test]
    async fn news_that_comes_while_the_loop_is_busy_still_wakes_it() {
        let control = Control::default();
        control.request_stop();
        // Nobody was waiting when the stop came: the permit is kept for the next wait.
        control.woken().await;
        assert!(control.take().stop);
    }
}
