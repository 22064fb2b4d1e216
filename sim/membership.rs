//! The randomised membership property (issue 5): with `--strict-reconfig-check` on, no
//! sequence of adds, removes, starts and minority crashes takes a healthy cluster to a member
//! table whose started members are below its quorum — apart from etcd's deliberate exception,
//! one started member grown to two. And once every admitted member is started and every
//! crashed one restarted, the cluster commits again: reconfiguration never wedged it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd::membership::rules::quorum;
use etcd::membership::MembershipError;
use etcd::node::MemberChange;
use etcd::request::Op;
use madsim::rand::Rng;

use crate::cluster::{Cluster, Member, Options};
use crate::seeds::for_each_seed;

const STEPS: usize = 40;

/// What the run did, so the test can insist the seeds exercised every path.
#[derive(Default, Debug)]
struct Tally {
    admitted: usize,
    refused: usize,
    removed: usize,
    started: usize,
    crashes: usize,
    tables_checked: usize,
}

/// `SIM_TRACE=1` prints each step of a replayed seed.
fn trace() -> bool {
    std::env::var_os("SIM_TRACE").is_some()
}

/// Whether a member table is one reconfiguration may produce under the check.
fn safe(members: usize, started: usize) -> bool {
    started >= quorum(members) || (started == 1 && members == 2)
}

fn run(seed: u64) -> Tally {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(3_600));
    rt.block_on(async move {
        let mut rng = madsim::rand::thread_rng();
        let initial = [1u64, 3, 5][rng.gen_range(0..3)];
        let options = Options {
            members: initial,
            unsafe_skip_fsync: false,
            snapshot_count: 50,
            strict_reconfig_check: true,
            tls: false,
        };
        let cluster = Cluster::start_settled(&options).await;

        // Members whose node runs and has not been removed: the ones the driver talks to and
        // the checker reads.
        let live: Arc<Mutex<BTreeSet<u64>>> =
            Arc::new(Mutex::new(cluster.ids().iter().copied().collect()));
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let checked = Arc::new(Mutex::new(0usize));
        let checker = {
            let (cluster, live, violations, checked) = (
                cluster.clone(),
                Arc::clone(&live),
                Arc::clone(&violations),
                Arc::clone(&checked),
            );
            madsim::task::spawn(async move {
                loop {
                    let ids: Vec<u64> = live.lock().unwrap().iter().copied().collect();
                    for id in ids {
                        let Some(member) = cluster.member(id) else {
                            continue;
                        };
                        let table = member.members();
                        if table.is_empty() {
                            continue; // a joiner that has not heard from the cluster yet
                        }
                        let started = table.iter().filter(|m| !m.name.is_empty()).count();
                        *checked.lock().unwrap() += 1;
                        if !safe(table.len(), started) {
                            violations.lock().unwrap().push(format!(
                                "member {id} applied a table of {} members with {started} started: {:?}",
                                table.len(),
                                table.iter().map(|m| (m.id, m.name.clone())).collect::<Vec<_>>()
                            ));
                        }
                    }
                    madsim::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        let mut tally = Tally::default();
        let mut next_id = 100u64;
        let mut crashed: Option<(u64, usize)> = None; // (member, step to restart at)
        // A running member that has not been removed (a removal that timed out for its caller
        // may still have committed later).
        let pick = |live: &Arc<Mutex<BTreeSet<u64>>>, cluster: &Cluster| -> Option<Member> {
            let ids: Vec<u64> = live.lock().unwrap().iter().copied().collect();
            let mut rng = madsim::rand::thread_rng();
            (0..8).find_map(|_| {
                let id = ids.get(rng.gen_range(0..ids.len().max(1)))?;
                let member = cluster.member(*id)?;
                if member.status().stopped.is_some() {
                    live.lock().unwrap().remove(id);
                    return None;
                }
                Some(member)
            })
        };
        // Members in the table that have no process yet: admitted, but not started.
        let unstarted = |cluster: &Cluster, table: &[etcd::membership::Member]| -> Vec<u64> {
            table
                .iter()
                .map(|m| m.id)
                .filter(|id| !cluster.started(*id))
                .collect()
        };

        for step in 0..STEPS {
            if let Some((id, at)) = crashed {
                if step >= at {
                    cluster.restart(id);
                    live.lock().unwrap().insert(id);
                    crashed = None;
                }
            }
            let Some(via) = pick(&live, &cluster) else {
                madsim::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let table = via.members();
            let action = rng.gen_range(0..10);
            if trace() {
                eprintln!(
                    "step {step} action {action} via {} table {:?} crashed {crashed:?}",
                    via.status().id,
                    table.iter().map(|m| (m.id, !m.name.is_empty())).collect::<Vec<_>>()
                );
            }
            match action {
                0..=2 => {
                    // Sometimes two adds at once through different members: each may pass the
                    // check before proposing, so only the check at apply keeps them honest.
                    let concurrent = rng.gen_bool(0.5);
                    let mut adds = Vec::new();
                    for proposer in 0..1 + usize::from(concurrent) {
                        let via = if proposer == 0 {
                            via.clone()
                        } else {
                            match pick(&live, &cluster) {
                                Some(other) => other,
                                None => break,
                            }
                        };
                        let id = next_id;
                        next_id += 1;
                        let add = MemberChange::Add {
                            id,
                            peer_urls: vec![format!("http://member-{id}:2380")],
                        };
                        adds.push(madsim::task::spawn(async move {
                            via.change_members(add).await
                        }));
                    }
                    for add in adds {
                        match add.await.expect("the add ran") {
                            Ok(()) => tally.admitted += 1,
                            Err(MembershipError::NotEnoughStarted { .. }) => tally.refused += 1,
                            Err(_) => {} // a timeout while a crash or an unstarted member stalls it
                        }
                    }
                }
                3 | 4 => {
                    let Some(target) = table
                        .get(rng.gen_range(0..table.len().max(1)))
                        .map(|m| m.id)
                    else {
                        continue;
                    };
                    let remove = MemberChange::Remove { id: target };
                    match via.change_members(remove).await {
                        Ok(()) => {
                            tally.removed += 1;
                            live.lock().unwrap().remove(&target);
                            if crashed.is_some_and(|(id, _)| id == target) {
                                crashed = None; // a removed member is not brought back
                            }
                        }
                        Err(MembershipError::NotEnoughStarted { .. }) => tally.refused += 1,
                        Err(_) => {}
                    }
                }
                5 | 6 => {
                    let waiting = unstarted(&cluster, &table);
                    if let Some(&id) = waiting.get(rng.gen_range(0..waiting.len().max(1))) {
                        cluster.join(id);
                        live.lock().unwrap().insert(id);
                        tally.started += 1;
                    }
                }
                7 => {
                    // A power cut on one started member, while it is a minority of the table.
                    let started: Vec<u64> = table
                        .iter()
                        .filter(|m| !m.name.is_empty())
                        .map(|m| m.id)
                        .filter(|id| live.lock().unwrap().contains(id))
                        .collect();
                    if crashed.is_none() && table.len() >= 3 && !started.is_empty() {
                        let id = started[rng.gen_range(0..started.len())];
                        live.lock().unwrap().remove(&id);
                        cluster.crash(id);
                        crashed = Some((id, step + rng.gen_range(1..4)));
                        tally.crashes += 1;
                    }
                }
                _ => {
                    let _ = via
                        .write(Op::Set {
                            key: format!("/step/{step}"),
                            value: Some("v".into()),
                            ttl: None,
                            refresh: false,
                        })
                        .await;
                }
            }
            let pause = Duration::from_millis(rng.gen_range(0..1_500));
            madsim::time::sleep(pause).await;
        }

        // Heal: bring back the crashed member and start every admitted one still in the table.
        if let Some((id, _)) = crashed.take() {
            cluster.restart(id);
            live.lock().unwrap().insert(id);
        }
        let via = loop {
            if let Some(via) = pick(&live, &cluster) {
                break via;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        };
        let mut healed = false;
        for attempt in 0..20 {
            // Start whatever any live member's table admits but has no process: a member
            // removed while it was not listening never hears of it, so one stale table is
            // not enough, and a restarted member may commit an add it had in its log.
            let ids: Vec<u64> = live.lock().unwrap().iter().copied().collect();
            let mut waiting = BTreeSet::new();
            for &id in &ids {
                if let Some(member) = cluster.member(id) {
                    waiting.extend(unstarted(&cluster, &member.members()));
                }
            }
            for id in waiting {
                cluster.join(id);
                live.lock().unwrap().insert(id);
            }
            let Some(via) = pick(&live, &cluster) else {
                madsim::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let write = Op::Set {
                key: format!("/healed/{attempt}"),
                value: Some("v".into()),
                ttl: None,
                refresh: false,
            };
            match via.write(write).await {
                Ok(_) => {
                    healed = true;
                    break;
                }
                Err(e) => {
                    if trace() {
                        eprintln!("heal {attempt}: {e:?} {:?}", via.status());
                    }
                }
            }
        }
        if !healed && trace() {
            for id in cluster.ids() {
                let status = cluster.member(id).map(|m| m.status());
                eprintln!("end: member {id}: {status:?}");
            }
        }
        checker.abort();
        let violations = violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "unsafe tables: {violations:#?}");
        assert!(
            healed,
            "the cluster commits nothing once all its members run: {:?}",
            via.members()
        );
        tally.tables_checked = *checked.lock().unwrap();
        tally
    })
}

#[test]
fn strict_reconfiguration_never_leaves_started_members_below_quorum() {
    let name = "strict_reconfiguration_never_leaves_started_members_below_quorum";
    let total = Mutex::new(Tally::default());
    for_each_seed(name, 100, |seed| {
        let tally = run(seed);
        let mut t = total.lock().unwrap();
        t.admitted += tally.admitted;
        t.refused += tally.refused;
        t.removed += tally.removed;
        t.started += tally.started;
        t.crashes += tally.crashes;
        t.tables_checked += tally.tables_checked;
    })
    .unwrap_or_else(|failed| panic!("{failed}"));
    let t = total.into_inner().unwrap();
    eprintln!("{name}: {t:?}");
    // With the default seeds every kind of step happened; a single replayed seed may not.
    if std::env::var("SIM_SEED").is_err() {
        assert!(
            t.admitted > 0 && t.refused > 0 && t.removed > 0 && t.started > 0 && t.crashes > 0,
            "the seeds did not exercise every step: {t:?}"
        );
    }
}

/// A leader that removes itself must tell the others that the removal committed before it
/// stops: in a 2-member cluster the survivor otherwise stays in the old configuration, waiting
/// for the vote of a member that is gone. And the survivor must not forget it in a power cut
/// right after applying it. Found by the property above; this pins both bugs without depending
/// on its seeds.
#[test]
fn the_survivor_of_a_leader_removing_itself_takes_over() {
    for (seed, power_cut) in [(1u64, false), (2, false), (3, true), (4, true)] {
        let mut rt =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(Duration::from_secs(600));
        rt.block_on(async move {
            let options = Options {
                members: 2,
                unsafe_skip_fsync: false,
                snapshot_count: 1_000,
                strict_reconfig_check: true,
                tls: false,
            };
            let cluster = Cluster::start_settled(&options).await;
            let leader_id = cluster.leader().expect("a leader");
            let survivor_id = cluster
                .ids()
                .iter()
                .copied()
                .find(|&id| id != leader_id)
                .expect("two members");
            let leader = cluster.member(leader_id).expect("it runs");
            let survivor = cluster.member(survivor_id).expect("it runs");
            // Writes in flight while the leader goes: their answers reach a leader that is
            // leaving, which must not trip raft-rs.
            let writes: Vec<_> = (0..20)
                .map(|i| {
                    let leader = leader.clone();
                    madsim::task::spawn(async move {
                        let _ = leader.write(set(&format!("/before/{i}"))).await;
                    })
                })
                .collect();
            let removal = leader
                .change_members(MemberChange::Remove { id: leader_id })
                .await;
            assert_eq!(removal, Ok(()), "seed {seed}");
            for write in writes {
                write.await.expect("the write task ran");
            }
            if power_cut {
                // Once the old leader has gone (it lingers to tell the survivor), and before the
                // survivor's election syncs anything else.
                for _ in 0..10_000 {
                    if survivor.members().len() == 1 && leader.status().stopped.is_some() {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(
                    survivor.members().len(),
                    1,
                    "seed {seed}: the survivor applied it"
                );
                assert_ne!(
                    survivor.status().role,
                    etcd::node::Role::Leader,
                    "seed {seed}: too late"
                );
                cluster.crash(survivor_id);
                cluster.restart(survivor_id);
            }
            let mut last = None;
            for attempt in 0..10 {
                let Some(survivor) = cluster.member(survivor_id) else {
                    madsim::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                match survivor.write(set(&format!("/after/{attempt}"))).await {
                    Ok(_) => return,
                    Err(e) => last = Some(e),
                }
            }
            let status = cluster.member(survivor_id).map(|m| m.status());
            panic!("seed {seed}: the survivor never took over: {last:?}, {status:?}");
        });
    }
}

fn set(key: &str) -> Op {
    Op::Set {
        key: key.into(),
        value: Some("v".into()),
        ttl: None,
        refresh: false,
    }
}
