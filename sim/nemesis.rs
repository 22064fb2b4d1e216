//! The fault schedule. Each run enables a random subset of fault kinds (swarm testing: some
//! bugs need one fault often and others never), then injects one fault at a time, holds it,
//! and undoes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use madsim::rand::Rng;

use crate::cluster::Cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Members split into two sides that cannot talk.
    Partition,
    /// One direction of one link is cut.
    OneWay,
    /// The leader is cut off from everyone.
    IsolateLeader,
    /// Messages are lost at random.
    Loss,
    /// Messages are slow (and so reordered more).
    Delay,
    /// A member's process dies; the OS keeps what it wrote.
    Kill,
    /// A member loses power: unsynced writes are lost or torn.
    Crash,
    /// Every member loses power at once.
    CrashAll,
    /// A member stops being scheduled for a while.
    Pause,
    /// A member's disk starts failing every operation.
    DiskError,
    /// A member's wall clock jumps forward or back, by a second to an hour, and is put right
    /// later (as NTP would).
    ClockJump,
    /// A member is replaced or re-addressed through the members API.
    Membership,
    /// A member's connections (to peers and clients) are reset, again and again, whatever
    /// they are in the middle of: a batch, a snapshot, a client's request.
    Reset,
    /// A member's connections break once they have carried a few KiB: large batches and
    /// snapshots fail in the middle, again and again.
    ResetLarge,
    /// A member's disk fills up (after up to 16 KB more): writes are refused, the member must
    /// keep serving local reads and not stop, and go on when there is room again.
    DiskFull,
    /// A member's fsyncs stall for up to two seconds each.
    SlowDisk,
    /// A member's wall clock runs fast or slow, by up to a fifth, and is then put right.
    ClockDrift,
    /// A bit flips in a down member's log or snapshot files. It must start and serve nothing
    /// damaged, or refuse to start; then it is replaced by an empty member (repaired from its
    /// peers).
    BitRot,
}

pub const ALL: [Fault; 18] = [
    Fault::Partition,
    Fault::OneWay,
    Fault::IsolateLeader,
    Fault::Loss,
    Fault::Delay,
    Fault::Kill,
    Fault::Crash,
    Fault::CrashAll,
    Fault::Pause,
    Fault::DiskError,
    Fault::ClockJump,
    Fault::Membership,
    Fault::Reset,
    Fault::ResetLarge,
    Fault::DiskFull,
    Fault::SlowDisk,
    Fault::BitRot,
    Fault::ClockDrift,
];

/// The fault kinds a run uses, drawn from the run's seed.
pub fn swarm() -> Vec<Fault> {
    let mut rng = madsim::rand::thread_rng();
    let chosen: Vec<Fault> = ALL.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    if chosen.is_empty() {
        vec![ALL[rng.gen_range(0..ALL.len())]]
    } else {
        chosen
    }
}

pub type FaultLog = Arc<Mutex<Vec<String>>>;

fn pick(ids: &[u64]) -> u64 {
    ids[madsim::rand::thread_rng().gen_range(0..ids.len())]
}

pub async fn run(cluster: Cluster, kinds: Vec<Fault>, until: Duration, log: FaultLog) {
    // Each line names its fault kind first, for the coverage line: `<time> <Kind>: <what>`.
    let note = |fault: Fault, what: String| {
        log.lock()
            .unwrap()
            .push(format!("{:?} {fault:?}: {what}", clock::now()))
    };
    while clock::now() < until {
        let (wait, hold, fault) = {
            let mut rng = madsim::rand::thread_rng();
            (
                Duration::from_millis(rng.gen_range(200..1500)),
                Duration::from_millis(rng.gen_range(300..3000)),
                kinds[rng.gen_range(0..kinds.len())],
            )
        };
        madsim::time::sleep(wait).await;
        let ids = cluster.ids();
        match fault {
            Fault::Partition => {
                let mut side = ids.clone();
                let cut = madsim::rand::thread_rng().gen_range(1..side.len());
                for i in (1..side.len()).rev() {
                    side.swap(i, madsim::rand::thread_rng().gen_range(0..=i));
                }
                let (a, b) = side.split_at(cut);
                note(fault, format!("partition {a:?} | {b:?}"));
                cluster.net.partition(a, b);
                madsim::time::sleep(hold).await;
                cluster.net.heal();
            }
            Fault::OneWay => {
                let (from, to) = (pick(&ids), pick(&ids));
                note(fault, format!("cut {from} -> {to}"));
                cluster.net.cut(from, to);
                madsim::time::sleep(hold).await;
                cluster.net.heal();
            }
            Fault::IsolateLeader => {
                if let Some(leader) = cluster.leader() {
                    let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
                    note(fault, format!("isolate leader {leader}"));
                    cluster.net.partition(&[leader], &rest);
                    madsim::time::sleep(hold).await;
                    cluster.net.heal();
                }
            }
            Fault::Loss => {
                let loss = madsim::rand::thread_rng().gen_range(0.05..0.4);
                note(fault, format!("loss {loss:.2}"));
                cluster.net.set_loss(loss);
                madsim::time::sleep(hold).await;
                cluster.net.calm();
            }
            Fault::Delay => {
                let max = Duration::from_millis(madsim::rand::thread_rng().gen_range(20..400));
                note(fault, format!("delay up to {max:?}"));
                cluster.net.set_latency(Duration::from_millis(1)..max);
                madsim::time::sleep(hold).await;
                cluster.net.calm();
            }
            Fault::Kill => {
                let id = pick(&ids);
                note(fault, format!("kill {id}"));
                cluster.kill(id);
                madsim::time::sleep(hold).await;
                cluster.restart(id);
            }
            Fault::Crash => {
                let id = pick(&ids);
                note(fault, format!("crash {id}"));
                cluster.crash(id);
                madsim::time::sleep(hold).await;
                cluster.restart(id);
            }
            Fault::CrashAll => {
                note(fault, "crash all".into());
                for &id in &ids {
                    cluster.crash(id);
                }
                madsim::time::sleep(hold).await;
                for &id in &ids {
                    cluster.restart(id);
                }
            }
            Fault::Pause => {
                let id = pick(&ids);
                note(fault, format!("pause {id}"));
                cluster.pause(id);
                madsim::time::sleep(hold).await;
                cluster.resume(id);
            }
            Fault::Reset => {
                let id = pick(&ids);
                note(fault, format!("connections of {id} reset for {hold:?}"));
                let end = clock::now() + hold;
                while clock::now() < end {
                    cluster.reset_connections(id);
                    let gap = madsim::rand::thread_rng().gen_range(20..300);
                    madsim::time::sleep(Duration::from_millis(gap)).await;
                }
            }
            Fault::ResetLarge => {
                let id = pick(&ids);
                let limit = madsim::rand::thread_rng().gen_range(1_000..32_000);
                note(
                    fault,
                    format!("connections of {id} break after {limit} bytes for {hold:?}"),
                );
                cluster.reset_connections_after(id, limit);
                madsim::time::sleep(hold).await;
                cluster.reset_connections_after(id, 0);
            }
            Fault::Membership => {
                for what in crate::reconfigure::change(&cluster).await {
                    note(fault, what);
                }
            }
            Fault::ClockJump => {
                let id = pick(&ids);
                let (seconds, forward) = {
                    let mut rng = madsim::rand::thread_rng();
                    (rng.gen_range(1..=3600i64), rng.gen_bool(0.5))
                };
                let by = seconds * 1_000_000_000 * if forward { 1 } else { -1 };
                note(fault, format!("clock of {id} jumps {by} ns"));
                cluster.jump_clock(id, by);
                madsim::time::sleep(hold).await;
                cluster.jump_clock(id, -by);
            }
            Fault::SlowDisk => {
                let id = pick(&ids);
                note(fault, format!("fsyncs of {id} stall for {hold:?}"));
                cluster.slow_disk(id, true);
                madsim::time::sleep(hold).await;
                cluster.slow_disk(id, false);
            }
            Fault::DiskFull => {
                let id = pick(&ids);
                let room = madsim::rand::thread_rng().gen_range(0..16_000);
                note(
                    fault,
                    format!("disk of {id} full after {room} more bytes for {hold:?}"),
                );
                cluster.disk(id).set_room(Some(room));
                madsim::time::sleep(hold).await;
                if let Some(trouble) = full_disk_trouble(&cluster, id).await {
                    note(fault, format!("VIOLATION member {id} {trouble}"));
                }
                cluster.disk(id).set_room(None);
            }
            Fault::ClockDrift => {
                let id = pick(&ids);
                let ppm = {
                    let mut rng = madsim::rand::thread_rng();
                    rng.gen_range(10_000..200_000) * if rng.gen_bool(0.5) { 1 } else { -1 }
                };
                note(
                    fault,
                    format!("clock of {id} drifts {ppm} ppm for {hold:?}"),
                );
                let before = cluster.clock_error(id);
                cluster.drift_clock(id, ppm);
                madsim::time::sleep(hold).await;
                cluster.drift_clock(id, 0);
                cluster.jump_clock(id, before - cluster.clock_error(id));
            }
            Fault::BitRot => {
                // A member whose data is damaged is gone for good: only a cluster that keeps a
                // quorum without it can replace it. Two members (a membership change that
                // removed one and failed to add its successor) cannot, and etcd's answer
                // there is an operator's --force-new-cluster, not something to wait for.
                if ids.len() < 3 {
                    continue;
                }
                let id = pick(&ids);
                cluster.kill(id);
                let Some(where_) = cluster.damage_at_rest(id) else {
                    cluster.restart(id);
                    continue;
                };
                note(fault, format!("a bit of {id} flips at {where_}"));
                cluster.restart(id);
                madsim::time::sleep(hold).await;
                if cluster.member(id).is_none() {
                    if let Some(why) = cluster.failed_start(id) {
                        note(fault, format!("{id} refused to start: {why}"));
                        for what in crate::reconfigure::replace_damaged(&cluster, id).await {
                            note(fault, what);
                        }
                    }
                }
            }
            Fault::DiskError => {
                let id = pick(&ids);
                note(fault, format!("disk errors on {id}"));
                let refused_before = cluster.disk(id).refused_count();
                cluster.disk(id).set_failing(true);
                madsim::time::sleep(hold).await;
                // A member whose disk failed must have stopped rather than go on without it.
                if cluster.disk(id).refused_count() > refused_before {
                    if let Some(member) = cluster.member(id) {
                        if member.status().stopped.is_none() {
                            note(
                                fault,
                                format!("VIOLATION member {id} kept running on a failed disk"),
                            );
                        }
                    }
                }
                cluster.kill(id);
                cluster.disk(id).set_failing(false);
                cluster.restart(id);
            }
        }
    }
}

/// What is wrong with member `id` while its disk is full, if anything: a full disk is no
/// reason to stop, and what the member holds can still be read from it.
async fn full_disk_trouble(cluster: &Cluster, id: u64) -> Option<String> {
    let member = cluster.member(id)?;
    let status = member.status();
    if let Some(why) = status.stopped {
        return why
            .contains("ENOSPC")
            .then(|| format!("stopped on a full disk: {why}"));
    }
    // A member whose disk filled before it caught up has never answered clients, and must
    // not start to now.
    if !status.disk_full || !member.is_ready() {
        return None;
    }
    let mut client = crate::workload::connect_to(vec![cluster.client_url_of(id)]);
    let options = etcd::client::keys::GetOptions::default();
    let read = etcd::client::keys::get(&mut client, "/", &options);
    match madsim::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("refused a local read while its disk was full: {e}")),
        Err(_) => Some("answered no local read while its disk was full".into()),
    }
}
