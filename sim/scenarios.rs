//! The seeded scenarios `cargo test --features sim` runs.

use std::time::Duration;

use crate::cluster::Options;
use crate::history::Tally;
use crate::nemesis::Fault;
use crate::run::{run, Plan};
use crate::seeds::for_each_seed;

pub fn plan(members: u64) -> Plan {
    Plan {
        options: Options {
            members,
            unsafe_skip_fsync: false,
            snapshot_count: 40,
            strict_reconfig_check: true,
            tls: false,
        },
        clients: 4,
        duration: Duration::from_secs(20),
        faults: None,
    }
}

fn must_pass(seed: u64, plan: &Plan) -> crate::run::Report {
    run(seed, plan).unwrap_or_else(|why| panic!("{why}"))
}

/// Runs the scenario's seeds and prints what they covered (shown with `--nocapture`).
// Wall-clock time here measures the simulator itself, not the simulated cluster.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn run_seeds(name: &str, seed_base: u64, default_runs: u64, plan: &Plan) {
    use std::sync::Mutex;
    let wall = std::time::Instant::now();
    let checking = crate::run::checking_wall_time();
    let totals = Mutex::new((0u64, Duration::ZERO, 0usize, 0usize));
    let kinds = Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let op_kinds = Mutex::new(std::collections::BTreeMap::<String, Tally>::new());
    let outcome = for_each_seed(name, default_runs, |seed| {
        let report = must_pass(seed_base + seed, plan);
        let mut t = totals.lock().unwrap();
        t.0 += 1;
        t.1 += report.simulated;
        t.2 += report.checked_ops;
        t.3 += report.faults;
        for (kind, n) in report.fault_kinds {
            *kinds.lock().unwrap().entry(kind).or_default() += n;
        }
        for (kind, tally) in report.op_kinds {
            op_kinds.lock().unwrap().entry(kind).or_default().add(tally);
        }
    });
    let (runs, simulated, ops, faults) = *totals.lock().unwrap();
    let wall = wall.elapsed();
    let checking = crate::run::checking_wall_time() - checking;
    let kinds: Vec<String> = kinds
        .lock()
        .unwrap()
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let op_kinds: Vec<String> = op_kinds
        .lock()
        .unwrap()
        .iter()
        .map(|(kind, t)| format!("{kind} {}/{}/{}", t.done, t.refused, t.unknown))
        .collect();
    eprintln!(
        "{name}: {runs} runs, {:.0} simulated s, {ops} checked ops, {faults} faults in {:.1} s wall, \
         {:.2} s of it checking histories ({:.0} runs/min, {:.0} simulated s per wall s); \
         faults by kind: {}; ops by kind (done/refused/unknown): {}",
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        checking.as_secs_f64(),
        runs as f64 * 60.0 / wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64(),
        kinds.join(", "),
        op_kinds.join(", ")
    );
    outcome.unwrap_or_else(|failed| panic!("{failed}"));
}

#[test]
fn three_members_under_faults_stay_linearizable_and_durable() {
    let name = "three_members_under_faults_stay_linearizable_and_durable";
    run_seeds(name, 0, 100, &plan(3));
}

#[test]
fn five_members_under_faults_stay_linearizable_and_durable() {
    let name = "five_members_under_faults_stay_linearizable_and_durable";
    run_seeds(name, 1_000_000, 100, &plan(5));
}

/// The same faulted workload with clients and peers on TLS: the production acceptor and
/// connector over simulated TCP, every peer link authenticated by certificate both ways.
#[test]
fn three_members_on_tls_stay_linearizable_and_durable() {
    let name = "three_members_on_tls_stay_linearizable_and_durable";
    let mut plan = plan(3);
    plan.options.tls = true;
    run_seeds(name, 2_000_000, 30, &plan);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let plan = plan(3);
    let first = run(42, &plan).expect("seed 42 passes");
    let second = run(42, &plan).expect("seed 42 passes");
    assert_eq!(first, second);
    let other = run(43, &plan).expect("seed 43 passes");
    assert_ne!(first.trace, other.trace, "the seed does not steer the run");
}

/// A seed must run the same whatever ran before it in the process, or a failing seed from a
/// batch would not replay alone: tokio's `watch` once picked the order in which it woke its
/// waiters with a thread-local RNG seeded by a process-wide counter, and a member stopping on a
/// failed disk woke them in another order after other seeds. madsim's own check runs a seed
/// twice in this process and stops at the first random draw that differs. Seeds 1 and 6 (disk
/// errors alone) and 1,000,116 (the 5-member swarm) diverged before the fix.
#[test]
fn a_seed_runs_the_same_after_other_seeds() {
    for seed in [1, 6] {
        madsim::runtime::Runtime::check_determinism(seed, madsim::Config::default(), || async {
            let mut plan = plan(5);
            plan.faults = Some(vec![Fault::DiskError]);
            crate::run::simulate(plan).await.map(|report| report.trace)
        })
        .expect("the seed passes");
    }
    madsim::runtime::Runtime::check_determinism(1_000_116, madsim::Config::default(), || async {
        crate::run::simulate(plan(5))
            .await
            .map(|report| report.trace)
    })
    .expect("the seed passes");
    // TLS draws its randomness outside madsim; the run must not depend on it.
    madsim::runtime::Runtime::check_determinism(2_000_001, madsim::Config::default(), || async {
        let mut plan = plan(3);
        plan.options.tls = true;
        crate::run::simulate(plan).await.map(|report| report.trace)
    })
    .expect("the seed passes");
}

#[test]
// This test is about the real clock: it must see that simulated time is not real time.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn simulated_time_is_virtual() {
    let wall = std::time::Instant::now();
    let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.block_on(async { madsim::time::sleep(Duration::from_secs(1000)).await });
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "madsim is not simulating time"
    );
}

/// A node that acknowledges writes without fsync loses them when power fails; the checks
/// must notice within the default number of seeds.
#[test]
fn a_node_that_skips_fsync_is_caught() {
    let mut plan = plan(3);
    plan.options.unsafe_skip_fsync = true;
    plan.faults = Some(vec![Fault::CrashAll, Fault::Crash]);
    let caught = (1..=20).find(|seed| run(*seed, &plan).is_err());
    assert!(
        caught.is_some(),
        "20 seeds of power failures never noticed the missing fsync"
    );
}

/// Three members, one of them down while the other two write 300 entries over `keys` keys
/// (values of `value_bytes`), snapshot and compact their logs past it: the cluster, the member
/// left behind, and the leader.
async fn one_member_left_behind(
    keys: usize,
    value_bytes: usize,
) -> (crate::cluster::Cluster, u64, crate::cluster::Member) {
    use etcd::request::Op;
    let options = Options {
        members: 3,
        unsafe_skip_fsync: false,
        snapshot_count: 40,
        strict_reconfig_check: true,
        tls: false,
    };
    let cluster = crate::cluster::Cluster::start_settled(&options).await;
    let behind = cluster.ids()[2];
    cluster.kill(behind);
    let leader = cluster.leading_member().await;
    for i in 0..300 {
        let op = Op::Set {
            key: format!("/k{}", i % keys),
            value: Some("v".repeat(value_bytes)),
            ttl: None,
            refresh: false,
        };
        if let Err(e) = leader.write(op).await {
            for id in cluster.ids() {
                eprintln!("{id}: {:?}", cluster.member(id).map(|m| m.status()));
            }
            panic!("a write with two of three members up: {e:?}");
        }
    }
    (cluster, behind, leader)
}

/// A member that was down while the others snapshotted and compacted their logs past it is
/// brought up to date with a snapshot, and ends with the same store.
#[test]
fn a_member_that_fell_behind_catches_up_by_snapshot() {
    let rt = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
    rt.block_on(async {
        let (cluster, third, leader) = one_member_left_behind(7, 4).await;
        cluster.restart(third);
        cluster
            .settle(Duration::from_secs(60))
            .await
            .expect("the cluster settles");
        let behind = cluster.member(third).expect("member 3 is up");
        assert!(
            behind.status().snapshots_installed >= 1,
            "member 3 caught up without a snapshot"
        );
        assert_eq!(behind.store_image(), leader.store_image());
    });
}

/// A snapshot that breaks in transit is sent again, and the member catches up once snapshots
/// get through.
#[test]
fn a_snapshot_that_breaks_in_transit_is_sent_again() {
    for seed in 1..=3 {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {
            let (cluster, lagging, _) = one_member_left_behind(300, 100).await;
            // Every snapshot sent to it breaks in the middle, for a while.
            cluster.reset_connections_after(lagging, 4_000);
            cluster.restart(lagging);
            madsim::time::sleep(Duration::from_secs(3)).await;
            cluster.reset_connections_after(lagging, 0);
            cluster
                .settle(Duration::from_secs(30))
                .await
                .expect("the member catches up once snapshots get through");
            let caught_up = cluster.member(lagging).expect("it runs");
            assert!(caught_up.status().snapshots_installed >= 1);
        });
    }
}

/// Seeds of the three-member scenario that once found a bug, kept so it stays fixed:
/// - 1291: the leader's snapshot to a lagging follower was lost; raft-rs waited forever to
///   hear how it went and the follower never caught up.
const KNOWN_BAD_SEEDS: &[u64] = &[1291];

#[test]
fn known_bad_seeds_stay_fixed() {
    for &seed in KNOWN_BAD_SEEDS {
        must_pass(seed, &plan(3));
    }
}

/// Writes that arrive while an fsync is under way go to disk together: a hundred concurrent
/// writes need far fewer than a hundred fsyncs.
#[test]
fn concurrent_writes_share_fsyncs() {
    use crate::cluster::Cluster;
    use etcd::request::Op;

    let rt = madsim::runtime::Runtime::with_seed_and_config(3, madsim::Config::default());
    rt.block_on(async {
        let options = Options {
            members: 1,
            unsafe_skip_fsync: false,
            snapshot_count: 10_000,
            strict_reconfig_check: true,
            tls: false,
        };
        let cluster = Cluster::start_settled(&options).await;
        let only = cluster.ids()[0];
        let member = cluster.member(only).expect("member 1 is up");
        let before = cluster.disk(only).sync_count();
        let writes: Vec<_> = (0..100)
            .map(|i| {
                let member = member.clone();
                madsim::task::spawn(async move {
                    let op = Op::Set {
                        key: format!("/k{i}"),
                        value: Some("v".into()),
                        ttl: None,
                        refresh: false,
                    };
                    member.write(op).await
                })
            })
            .collect();
        for write in writes {
            write
                .await
                .expect("the task ran")
                .expect("the write succeeded");
        }
        let syncs = cluster.disk(only).sync_count() - before;
        assert!(syncs <= 10, "100 concurrent writes took {syncs} fsyncs");
    });
}

/// etcd issue 3477 on the real node: N started members, then N adds of members that never
/// start. With the check off the cluster wedges (no write, no removal can commit); with it on,
/// the first add that would need more started members than there are is refused, writes go
/// on, and the admitted unstarted members can be removed again.
#[test]
fn adding_unstarted_members_wedges_the_cluster_unless_the_check_refuses() {
    use crate::cluster::Cluster;
    use etcd::membership::MembershipError;
    use etcd::node::MemberChange;
    use etcd::request::Op;

    for (n, strict) in [(3u64, false), (3, true), (5, false), (5, true)] {
        let rt = madsim::runtime::Runtime::with_seed_and_config(
            n * 10 + u64::from(strict),
            madsim::Config::default(),
        );
        rt.block_on(async move {
            let options = Options {
                members: n,
                unsafe_skip_fsync: false,
                snapshot_count: 1_000,
                strict_reconfig_check: strict,
                tls: false,
            };
            let cluster = Cluster::start_settled(&options).await;
            let leader = cluster
                .member(cluster.leader().expect("a leader"))
                .expect("it runs");
            let set = |i: u64| Op::Set {
                key: format!("/k{i}"),
                value: Some("v".into()),
                ttl: None,
                refresh: false,
            };
            let mut admitted = Vec::new();
            let mut refused = None;
            for i in 0..n {
                let id = 1_000 + i;
                let change = MemberChange::Add {
                    id,
                    peer_urls: vec![format!("http://unstarted-{i}:2380")],
                };
                match leader.change_members(change).await {
                    Ok(()) => admitted.push(id),
                    Err(e) => {
                        assert!(
                            matches!(e, MembershipError::NotEnoughStarted { .. }),
                            "N={n}: {e}"
                        );
                        refused = Some(i);
                        break;
                    }
                }
            }
            if strict {
                // N started members carry at most 2N-1 members (quorum N): the N-th add is refused.
                assert_eq!(refused, Some(n - 1), "N={n}: admitted {admitted:?}");
                leader.write(set(1)).await.expect("writes go on");
                for id in admitted {
                    leader
                        .change_members(MemberChange::Remove { id })
                        .await
                        .expect("an unstarted member can be removed");
                }
                leader.write(set(2)).await.expect("writes go on");
            } else {
                assert_eq!(
                    admitted.len() as u64,
                    n,
                    "N={n}: with the check off every add is admitted"
                );
                assert!(
                    leader.write(set(1)).await.is_err(),
                    "N={n}: the cluster should be wedged"
                );
                let remove = leader
                    .change_members(MemberChange::Remove { id: admitted[0] })
                    .await;
                assert!(remove.is_err(), "N={n}: not even a removal can commit");
            }
        });
    }
}

/// etcd's deliberate exception: one started member may grow to two (the disaster-recovery
/// path). The add is admitted with the check on; writes then need both, and starting the new
/// member restores them.
#[test]
fn one_started_member_may_grow_to_two_and_starting_it_restores_writes() {
    use crate::cluster::Cluster;
    use etcd::node::MemberChange;
    use etcd::request::Op;

    let rt = madsim::runtime::Runtime::with_seed_and_config(11, madsim::Config::default());
    rt.block_on(async {
        let options = Options {
            members: 1,
            unsafe_skip_fsync: false,
            snapshot_count: 1_000,
            strict_reconfig_check: true,
            tls: false,
        };
        let cluster = Cluster::start_settled(&options).await;
        let first = cluster.member(cluster.ids()[0]).expect("member 1 runs");
        let set = |i: u64| Op::Set {
            key: format!("/k{i}"),
            value: Some("v".into()),
            ttl: None,
            refresh: false,
        };
        first.write(set(0)).await.expect("a single member writes");
        let add = MemberChange::Add {
            id: 2,
            peer_urls: vec!["http://member-2:2380".into()],
        };
        first
            .change_members(add)
            .await
            .expect("the exception admits the second member");
        assert!(
            first.write(set(1)).await.is_err(),
            "two members need both for a quorum"
        );
        cluster.join(2);
        cluster
            .settle(Duration::from_secs(60))
            .await
            .expect("the new member catches up");
        first.write(set(2)).await.expect("writes are back");
        let second = cluster.member(2).expect("member 2 runs");
        assert!(
            second.quorum_get("/k0", false).await.is_ok(),
            "member 2 has the data"
        );
        assert!(
            second.status().snapshots_installed >= 1,
            "it caught up by snapshot"
        );
        // Once member 2 has published itself it counts as started: two may take a third.
        for _ in 0..100 {
            if first.members().iter().all(|m| !m.name.is_empty()) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        let third = MemberChange::Add {
            id: 3,
            peer_urls: vec!["http://member-3:2380".into()],
        };
        let admitted = first.change_members(third).await;
        assert!(
            admitted.is_ok(),
            "two started members may take a third: {admitted:?}"
        );
    });
}
