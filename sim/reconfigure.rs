//! Membership changes as an operator makes them, through the members API over simulated TCP,
//! in the middle of the faulted workload: a member replaced (removed, sometimes while it is
//! down so that it misses its own removal, and a new one added and started), and a member
//! re-addressed (`member update` to a new peer port, then restarted listening there).
//!
//! A change whose answer was lost may or may not have happened; [`reconcile`] asks the
//! cluster what its members are and makes the machines match, as an operator would.

use std::time::Duration;

use etcd::client::keys::{self, GetOptions};
use etcd::client::members::{self, Member};
use etcd::client::Client;
use etcd::membership::{format_id, parse_id};
use etcd::runtime::sim::SimHost;
use madsim::rand::Rng;

use crate::cluster::{Cluster, PEER_PORT};
use crate::workload;

/// Makes one membership change; says what it did, for the fault log.
pub async fn change(cluster: &Cluster) -> Vec<String> {
    let mut client = workload::connect(cluster);
    let mut done = Vec::new();
    let replace = madsim::rand::thread_rng().gen_bool(0.5);
    let certain = if replace {
        replace_one(cluster, &mut client, &mut done).await
    } else {
        readdress_one(cluster, &mut client, &mut done).await
    };
    if !certain {
        done.extend(reconcile(cluster, &mut client).await);
    }
    done
}

/// `false` when some step's outcome is unknown.
async fn replace_one(
    cluster: &Cluster,
    client: &mut Client<SimHost>,
    done: &mut Vec<String>,
) -> bool {
    let ids = cluster.ids();
    if ids.len() < 3 {
        return true;
    }
    let (victim, missed) = {
        let mut rng = madsim::rand::thread_rng();
        (ids[rng.gen_range(0..ids.len())], rng.gen_bool(0.5))
    };
    replace(cluster, client, victim, missed, done).await
}

/// Replaces a member whose data was damaged and refused to start, as an operator would:
/// removed, and a new, empty member added in its place, which copies the data from its peers.
/// The removal is tried until the cluster takes it (or says the member is gone): a dead
/// member left in the table would count against the quorum for good.
pub async fn replace_damaged(cluster: &Cluster, victim: u64) -> Vec<String> {
    let mut client = workload::connect(cluster);
    let mut done = Vec::new();
    for attempt in 0..20 {
        if attempt > 0 {
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        match members::remove(&mut client, &format_id(victim)).await {
            Ok(()) => done.push(format!("removed {victim:x}")),
            Err(e)
                if ["No such member", "permanently removed"]
                    .iter()
                    .any(|gone| e.to_string().contains(gone)) =>
            {
                done.push(format!("{victim:x} was already removed"))
            }
            Err(e) => {
                done.push(format!("removing {victim:x} failed: {e}"));
                continue;
            }
        }
        cluster.retire(victim);
        if !add_one(cluster, &mut client, &mut done).await {
            done.extend(reconcile(cluster, &mut client).await);
        }
        return done;
    }
    done
}

/// Removes `victim` (killed first if `missed`, so that it misses its removal) and adds a new
/// member; `false` when some step's outcome is unknown.
async fn replace(
    cluster: &Cluster,
    client: &mut Client<SimHost>,
    victim: u64,
    missed: bool,
    done: &mut Vec<String>,
) -> bool {
    let mut certain = true;
    if missed {
        // Down while it is removed: it learns of its removal only when a peer tells it (410).
        cluster.kill(victim);
    }
    match members::remove(client, &format_id(victim)).await {
        Ok(()) => {
            cluster.retire(victim);
            done.push(format!(
                "removed {victim:x}{}",
                if missed { " while down" } else { "" }
            ));
        }
        Err(e) => {
            certain = false;
            done.push(format!("removing {victim:x} failed: {e}"));
        }
    }
    if missed {
        madsim::time::sleep(Duration::from_millis(500)).await;
        cluster.restart(victim);
    }
    add_one(cluster, client, done).await && certain
}

/// Adds a new, empty member and starts it; `false` when the outcome is unknown.
async fn add_one(cluster: &Cluster, client: &mut Client<SimHost>, done: &mut Vec<String>) -> bool {
    let n = (100..)
        .find(|&n| !cluster.has_machine(n))
        .expect("a free name");
    match members::add(client, &[cluster.peer_url(n)]).await {
        Ok(member) => {
            let id = parse_id(&member.id).expect("the cluster names members in hex");
            cluster.join_as(n, id);
            done.push(format!("added member-{n} as {id:x}"));
            true
        }
        Err(e) => {
            done.push(format!("adding member-{n} failed: {e}"));
            false
        }
    }
}

/// `false` when the change's outcome is unknown.
async fn readdress_one(
    cluster: &Cluster,
    client: &mut Client<SimHost>,
    done: &mut Vec<String>,
) -> bool {
    let ids = cluster.ids();
    let (id, port) = {
        let mut rng = madsim::rand::thread_rng();
        (
            ids[rng.gen_range(0..ids.len())],
            PEER_PORT + rng.gen_range(1..1000),
        )
    };
    let url = cluster.peer_url_at(id, port);
    match members::update(client, &format_id(id), std::slice::from_ref(&url)).await {
        Ok(()) => {
            cluster.move_peer_port(id, port);
            cluster.restart(id);
            done.push(format!("moved {id:x} to {url}"));
            true
        }
        Err(e) => {
            done.push(format!("moving {id:x} to {url} failed: {e}"));
            false
        }
    }
}

/// Asks the cluster for its members (for up to 10 s) and makes the machines match: members
/// it no longer lists are retired, admitted members without a machine are started, and a
/// member listening on a peer port other than the one listed is moved there and restarted.
pub async fn reconcile(cluster: &Cluster, client: &mut Client<SimHost>) -> Vec<String> {
    let mut done = Vec::new();
    // The leader's table, once a quorum read has made sure it has applied everything
    // committed: a member still catching up may list fewer members, or old addresses.
    let mut listed: Option<Vec<Member>> = None;
    for attempt in 0..10 {
        if attempt > 0 {
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        if let Ok(leader) = members::leader(client).await {
            if leader.client_urls.is_empty() {
                continue; // not yet published
            }
            let mut direct = workload::connect_to(leader.client_urls);
            let barrier = GetOptions {
                quorum: true,
                ..GetOptions::default()
            };
            let applied = keys::get(&mut direct, "/", &barrier).await.is_ok();
            if let (true, Ok(list)) = (applied, members::list(&mut direct).await) {
                listed = Some(list);
                break;
            }
        }
    }
    let Some(listed) = listed else {
        done.push("the member list could not be read".into());
        return done;
    };
    let listed: Vec<(u64, String)> = listed
        .iter()
        .filter_map(|m| Some((parse_id(&m.id)?, m.peer_urls.first()?.clone())))
        .collect();
    for id in cluster.ids() {
        if !listed.iter().any(|(l, _)| *l == id) {
            cluster.retire(id);
            done.push(format!("{id:x} is no longer a member"));
        }
    }
    for (id, url) in listed {
        let Some((n, port)) = machine_of(&url) else {
            continue; // an address no machine can have
        };
        if !cluster.started(id) {
            if !cluster.has_machine(n) {
                cluster.join_as(n, id);
                done.push(format!("started admitted member {id:x} at {url}"));
            }
        } else if cluster.peer_port(id) != port {
            cluster.move_peer_port(id, port);
            cluster.restart(id);
            done.push(format!("moved {id:x} to its listed {url}"));
        }
    }
    done
}

/// The machine number and port of a peer URL `http(s)://member-<n>:<port>`.
fn machine_of(url: &str) -> Option<(u64, u16)> {
    let rest = url.split_once("://member-")?.1;
    let (n, port) = rest.split_once(':')?;
    Some((n.parse().ok()?, port.parse().ok()?))
}
