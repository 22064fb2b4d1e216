//! One simulated run: start a cluster, run clients and faults, heal, and check everything.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use etcd::lincheck::{self, dir::DirModel, kv::KvModel, Model, Verdict};
use etcd::node::Role;

use crate::cluster::{Cluster, Options};
use crate::dirs::DIRS;
use crate::history::{History, Recorded, Tally};
use crate::nemesis::{self, Fault, FaultLog};
use crate::workload::{self, KEYS};

#[derive(Clone, Debug)]
pub struct Plan {
    pub options: Options,
    pub clients: u64,
    /// Simulated time the clients and faults run for.
    pub duration: Duration,
    /// `None`: a random subset chosen by the seed.
    pub faults: Option<Vec<Fault>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// A digest of the whole run: client history, fault log and final stores.
    pub trace: u64,
    pub checked_ops: usize,
    pub acknowledged: u64,
    pub faults: usize,
    /// Faults injected, by kind.
    pub fault_kinds: BTreeMap<String, usize>,
    /// Client operations sent, by kind, and how they ended.
    pub op_kinds: BTreeMap<String, Tally>,
    pub simulated: Duration,
}

/// Runs `plan` under `seed`; `Err` says which check failed and why.
pub fn run(seed: u64, plan: &Plan) -> Result<Report, String> {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(plan.duration * 4 + Duration::from_secs(300));
    let plan = plan.clone();
    // A panic inside the simulation (a node's assertion, raft's own checks) fails the run
    // like any other check.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async move { simulate(plan).await })
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("the simulation panicked: {why}"))
    })
}

pub async fn simulate(plan: Plan) -> Result<Report, String> {
    let start = clock::now();
    let cluster = Cluster::start(&plan.options);
    let history = History::default();
    let log: FaultLog = Arc::new(Mutex::new(Vec::new()));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let kinds = plan.faults.clone().unwrap_or_else(nemesis::swarm);
    log.lock()
        .unwrap()
        .push(format!("faults enabled: {kinds:?}"));

    let until = clock::now() + plan.duration;
    let driver = madsim::runtime::Handle::current()
        .create_node()
        .name("clients")
        .ip(crate::cluster::CLIENTS_IP)
        .build();
    let mut tasks = Vec::new();
    for client in 0..plan.clients {
        tasks.push(driver.spawn(workload::client(
            cluster.clone(),
            history.clone(),
            client,
            start,
            until,
        )));
    }
    tasks.push(driver.spawn(nemesis::run(
        cluster.clone(),
        kinds,
        until,
        Arc::clone(&log),
    )));
    let monitor = driver.spawn(watch_invariants(cluster.clone(), Arc::clone(&violations)));
    for task in tasks {
        task.await
            .map_err(|e| format!("a simulation task failed: {e}"))?;
    }

    // Heal and let the cluster catch up; then read every key once more.
    cluster.net.heal();
    cluster.net.calm();
    for id in cluster.ids() {
        if cluster.member(id).is_none() {
            cluster.restart(id);
        }
    }
    // A membership change whose answer was lost is settled now, as an operator would; one
    // that commits late (its proposal was in flight) is caught by the next round.
    let mut settled = Err(String::new());
    for _ in 0..3 {
        let reconciled = driver.spawn({
            let cluster = cluster.clone();
            async move {
                let mut client = workload::connect(&cluster);
                crate::reconfigure::reconcile(&cluster, &mut client).await
            }
        });
        for what in reconciled
            .await
            .map_err(|e| format!("reconciling failed: {e}"))?
        {
            log.lock()
                .unwrap()
                .push(format!("{:?} heal: {what}", clock::now()));
        }
        settled = cluster.settle(Duration::from_secs(30)).await;
        if settled.is_ok() {
            break;
        }
    }
    if let Err(why) = settled {
        return Err(format!("{why}\nfaults: {:#?}", log.lock().unwrap()));
    }
    if let Err(why) = removed_members_stop(&cluster).await {
        return Err(format!("{why}\nfaults: {:#?}", log.lock().unwrap()));
    }
    live_after_healing(&cluster, &driver).await?;
    let mut client = workload::connect(&cluster);
    // The final reader is one more client, after the workload's.
    let reader = plan.clients;
    let reads = driver.spawn({
        let history = history.clone();
        async move {
            for key in KEYS {
                workload::checked_read(&mut client, reader, key, &history, start).await;
            }
            for dir in DIRS {
                crate::dirs::checked_list(&mut client, reader, dir, &history, start).await;
            }
        }
    });
    reads
        .await
        .map_err(|e| format!("the final reads failed: {e}"))?;
    monitor.abort();

    if history.acknowledged() == 0 {
        return Err("no client was ever answered: the run proves nothing".into());
    }
    let failed = cluster.failed_starts();
    if !failed.is_empty() {
        return Err(format!(
            "members could not start: {failed:?}\nfaults: {:#?}",
            log.lock().unwrap()
        ));
    }
    let mut problems = violations.lock().unwrap().clone();
    problems.extend(history.violations());
    problems.extend(
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("VIOLATION"))
            .cloned(),
    );
    if !problems.is_empty() {
        return Err(format!("invariants broken: {problems:?}"));
    }

    // Linearizability, object by object.
    let ops = history.ops();
    let dir_ops = history.dir_ops();
    let checking = wall_clock();
    let checked =
        check_objects(&KvModel, &ops, &log).and_then(|()| check_objects(&DirModel, &dir_ops, &log));
    CHECKING_NANOS.fetch_add(
        checking.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    checked?;

    // Every member applied the same entries, so every store is the same. Images are taken
    // in one simulated instant; TTL expiry may still be committing, so wait for a moment
    // when every member has applied the same index.
    let mut first = None;
    for _ in 0..100 {
        let mut images = BTreeMap::new();
        for id in &cluster.ids() {
            let member = cluster
                .member(*id)
                .ok_or(format!("member {id} is down after settling"))?;
            images.insert(*id, member.store_image());
        }
        let applied: Vec<u64> = images.values().map(|(applied, _)| *applied).collect();
        if applied.windows(2).any(|w| w[0] != w[1]) {
            madsim::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let reference = images.values().next().cloned().unwrap_or_default();
        if let Some((id, (applied, image))) = images.iter().find(|(_, image)| **image != reference)
        {
            let (a, b) = (
                String::from_utf8_lossy(&reference.1),
                String::from_utf8_lossy(image),
            );
            let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            let around = |s: &str| {
                s.get(at.saturating_sub(150)..(at + 150).min(s.len()))
                    .unwrap_or("")
                    .to_owned()
            };
            return Err(format!(
                "member {id}'s store differs from member 1's at applied index {applied}:\n  member 1: ...{}...\n  member {id}: ...{}...",
                around(&a),
                around(&b)
            ));
        }
        first = Some(reference);
        break;
    }
    let first = first.ok_or("members never reached the same applied index")?;

    let mut trace = DefaultHasher::new();
    history.digest().hash(&mut trace);
    log.lock().unwrap().hash(&mut trace);
    first.hash(&mut trace);
    let faults = log.lock().unwrap().len() - 1;
    let mut fault_kinds = BTreeMap::new();
    for line in log.lock().unwrap().iter().skip(1) {
        if let Some(kind) = line.split_whitespace().nth(1) {
            *fault_kinds
                .entry(kind.trim_end_matches(':').to_owned())
                .or_default() += 1;
        }
    }
    Ok(Report {
        trace: trace.finish(),
        checked_ops: ops.len() + dir_ops.len(),
        acknowledged: history.acknowledged(),
        faults,
        fault_kinds,
        op_kinds: history.tally(),
        simulated: clock::now() - start,
    })
}

/// Wall time spent checking histories for linearizability, in nanoseconds, so that the
/// coverage line can tell the checker's time from the simulation's.
static CHECKING_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The wall time spent checking histories so far, by every thread.
pub fn checking_wall_time() -> Duration {
    Duration::from_nanos(CHECKING_NANOS.load(std::sync::atomic::Ordering::Relaxed))
}

/// The real clock, to time the checker (never the simulation, which runs on madsim's).
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// Checks the history of each object (a key, a directory) on its own against `model`.
fn check_objects<M>(
    model: &M,
    recorded: &[Recorded<M::Input, M::Output>],
    log: &FaultLog,
) -> Result<(), String>
where
    M: Model,
    M::Input: Clone + std::fmt::Debug + std::fmt::Display,
    M::Output: Clone + std::fmt::Debug + std::fmt::Display,
{
    let mut by_key: BTreeMap<&str, (Vec<u64>, Vec<_>)> = BTreeMap::new();
    for r in recorded {
        let (clients, key_ops) = by_key.entry(r.key.as_str()).or_default();
        clients.push(r.client);
        key_ops.push(r.op.clone());
    }
    let max_steps = std::env::var("SIM_LINCHECK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    for (key, (clients, key_ops)) in &by_key {
        let verdict = lincheck::check(model, key_ops, max_steps);
        match &verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { longest, stuck, .. } => {
                let timeline = crate::timeline_file::write(key, clients, key_ops, &verdict);
                return Err(format!(
                    "history of {key} is not linearizable ({} ops; longest order found: {longest:?}; none of {stuck:?} could follow it)\n{timeline}\n{key_ops:#?}\nfaults: {:#?}",
                    key_ops.len(),
                    log.lock().unwrap()
                ));
            }
            Verdict::GaveUp { steps } => {
                let unknown = key_ops.iter().filter(|op| op.ret.is_none()).count();
                if std::env::var_os("SIM_DUMP").is_some() {
                    eprintln!("{key_ops:#?}");
                }
                return Err(format!(
                    "checking {key} gave up after {steps} steps ({} ops, {unknown} of unknown outcome)",
                    key_ops.len()
                ));
            }
        }
    }
    Ok(())
}

/// A member removed from the cluster stops once it hears of it, even when it was down or
/// cut off when its removal committed: its peers tell it (410) when it comes back.
async fn removed_members_stop(cluster: &Cluster) -> Result<(), String> {
    let running = || {
        cluster
            .removed()
            .into_iter()
            .filter(|&id| {
                cluster
                    .member(id)
                    .is_some_and(|m| m.status().stopped.is_none())
            })
            .collect()
    };
    clock::wait_until_none(Duration::from_secs(10), Duration::from_millis(100), running)
        .await
        .map_err(|running: Vec<u64>| {
            format!("removed members {running:x?} still run 10 s after healing")
        })
}

/// Liveness: once the faults are healed, a new write is answered within 10 s and every
/// member applies it within 5 s more.
async fn live_after_healing(
    cluster: &Cluster,
    driver: &madsim::runtime::NodeHandle,
) -> Result<(), String> {
    let mut client = workload::connect(cluster);
    let written = driver.spawn(async move {
        let options = etcd::client::keys::SetOptions::default();
        let mut last = String::new();
        for _ in 0..10 {
            match etcd::client::keys::set(&mut client, "/healed", "yes", &options).await {
                Ok(response) => return Ok(response.node().modified_index),
                Err(e) => last = e.to_string(),
            }
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!(
            "no write was answered in 10 s after healing: {last}"
        ))
    });
    let index = written
        .await
        .map_err(|e| format!("the liveness write failed: {e}"))??;
    let behind = || {
        cluster
            .ids()
            .iter()
            .map(|&id| (id, cluster.member(id).map_or(0, |m| m.status().applied)))
            .filter(|&(_, applied)| applied < index)
            .collect()
    };
    clock::wait_until_none(Duration::from_secs(5), Duration::from_millis(50), behind)
        .await
        .map_err(|behind: Vec<(u64, u64)>| {
            format!(
                "members (id, applied) {behind:?} did not apply the write at index {index} within 5 s after healing"
            )
        })
}

/// Watches, throughout the run: no two members lead in the same term; no committed entry
/// ever changes (every member reports the same term for it); members at the same applied
/// index hold the same store.
async fn watch_invariants(cluster: Cluster, violations: Arc<Mutex<Vec<String>>>) {
    let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
    let mut committed: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // index -> (term, seen on)
    let mut round = 0u64;
    loop {
        round += 1;
        // Members already seen this round, to compare stores with.
        let mut seen: Vec<(u64, crate::cluster::Member)> = Vec::new();
        for id in cluster.up() {
            let Some(member) = cluster.member(id) else {
                continue;
            };
            let status = member.status();
            let broken = |what: String| violations.lock().unwrap().push(what);
            if status.role == Role::Leader {
                let first = *leaders.entry(status.term).or_insert(id);
                if first != id {
                    broken(format!(
                        "members {first} and {id} both led term {}",
                        status.term
                    ));
                }
            }
            if round.is_multiple_of(10) {
                for (index, term) in member.committed_terms() {
                    let (seen_term, seen_on) = *committed.entry(index).or_insert((term, id));
                    if seen_term != term {
                        broken(format!(
                            "committed entry {index} has term {seen_term} on member {seen_on} but {term} on member {id}"
                        ));
                    }
                }
            }
            // Comparing stores is the costly part: every half second is plenty.
            if round.is_multiple_of(100) {
                if let Some((other, _)) = seen
                    .iter()
                    .find(|(_, m)| member.same_store_image(m) == Some(false))
                {
                    broken(format!(
                        "members {other} and {id} hold different stores at applied index {}",
                        status.applied
                    ));
                }
                seen.push((id, member));
            }
        }
        madsim::time::sleep(Duration::from_millis(5)).await;
    }
}
