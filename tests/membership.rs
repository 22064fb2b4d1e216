//! Runtime membership through the members API of real processes, and etcd issue 3477: adding
//! members that never start must be refused before the cluster loses its quorum.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn add(port: u16, peer_url: &str) -> Reply {
    http_json(
        "POST",
        port,
        "/v2/members",
        &format!(r#"{{"peerURLs":["{peer_url}"]}}"#),
    )
    .expect("an answer")
}

fn member_ids(port: u16) -> Vec<(String, String)> {
    let body = http("GET", port, "/v2/members", "")
        .expect("an answer")
        .body;
    body.split("{\"id\":\"")
        .skip(1)
        .map(|m| {
            let id = m.split('"').next().unwrap().to_owned();
            let name = m
                .split("\"name\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            (id, name)
        })
        .collect()
}

#[test]
fn unstarted_members_are_refused_before_the_cluster_wedges() {
    let members = running_cluster("strict", 3);
    let port = members[0].client;
    wait_for("every member to publish", || {
        member_ids(port).iter().all(|(_, name)| !name.is_empty())
    });

    // Mistyped peer URLs: these members will never start.
    let first = add(port, &format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(
        first.body.contains("\"name\":\"\"") && first.body.contains("\"clientURLs\":[]"),
        "{}",
        first.body
    );
    let second = add(port, &format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(second.status, 201, "{}", second.body);
    // A sixth member would need 4 started of 6; only 3 are. Refused, with the reason.
    let third = add(port, &format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(third.status, 412, "{}", third.body);
    assert!(
        third.body.contains("not enough started members"),
        "{}",
        third.body
    );
    assert_eq!(member_ids(port).len(), 5);

    // The cluster still serves writes.
    assert!(put(port, "/still", "value=writable").status < 300);

    // And the unstarted members can be taken out again.
    for (id, name) in member_ids(port) {
        if name.is_empty() {
            let removed = http("DELETE", port, &format!("/v2/members/{id}"), "").unwrap();
            assert_eq!(removed.status, 204, "{}", removed.body);
        }
    }
    assert_eq!(member_ids(port).len(), 3);
    let gone = http("DELETE", port, "/v2/members/ffff", "").unwrap();
    assert_eq!(gone.status, 404, "{}", gone.body);
    let duplicate = add(port, &format!("http://127.0.0.1:{}", members[1].peer));
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
}

#[test]
fn a_removed_member_stops_and_the_rest_go_on() {
    let mut members = running_cluster("remove", 3);
    let port = members[0].client;
    wait_for("every member to publish", || {
        member_ids(port).iter().all(|(_, name)| !name.is_empty())
    });
    let (id, _) = member_ids(port)
        .into_iter()
        .find(|(_, name)| name == "m2")
        .expect("m2 is a member");
    let removed = http("DELETE", port, &format!("/v2/members/{id}"), "").unwrap();
    assert_eq!(removed.status, 204, "{}", removed.body);

    let mut child = members[2].child.take().expect("m2 runs");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the removed member kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a removed member exits 0, as etcd does"
    );
    assert_eq!(member_ids(port).len(), 2);
    // If the removed member led, the others need an election first; clients retry meanwhile.
    wait_for("a write on the remaining two", || {
        put(port, "/after-removal", "value=ok").status < 300
    });
}

#[test]
fn a_member_added_and_started_with_existing_joins_and_serves() {
    let members = running_cluster("join", 3);
    let port = members[0].client;
    wait_for("every member to publish", || {
        member_ids(port).iter().all(|(_, name)| !name.is_empty())
    });
    assert!(put(port, "/before", "value=1").status < 300);

    let (client, peer) = (free_port(), free_port());
    let peer_url = format!("http://127.0.0.1:{peer}");
    assert_eq!(add(port, &peer_url).status, 201);
    let mut joiner = Member {
        name: "m3".into(),
        client,
        peer,
        data_dir: members[0].data_dir.with_file_name("m3"),
        cluster: format!("{},m3={peer_url}", members[0].cluster),
        child: None,
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(joiner.args())
        .args(["--initial-cluster-state", "existing"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    joiner.child = Some(child);

    // It catches up (through the leader's snapshot) and serves linearizable reads.
    wait_for("the new member to catch up", || {
        http("GET", client, "/v2/keys/before?quorum=true", "")
            .is_some_and(|r| r.body.contains("\"value\":\"1\""))
    });
    wait_for("four started members", || {
        let ids = member_ids(port);
        ids.len() == 4 && ids.iter().all(|(_, name)| !name.is_empty())
    });
    assert!(put(client, "/through-the-new-member", "value=2").status < 300);
}

/// A member removed while it was down restarts without knowing it: its peers answer its
/// messages with 410 Gone, as etcd's do, and it exits instead of campaigning forever in a
/// configuration that no longer exists.
#[test]
fn a_member_removed_while_down_is_told_by_its_peers_and_exits() {
    let mut members = running_cluster("removed-away", 3);
    let port = members[0].client;
    wait_for("every member to publish", || {
        member_ids(port).iter().all(|(_, name)| !name.is_empty())
    });
    let name = members[2].name.clone();
    let (id, _) = member_ids(port)
        .into_iter()
        .find(|(_, n)| *n == name)
        .expect("listed");
    members[2].kill9();
    wait_for("a leader among the other two", || {
        leader(&members[..2]).is_some()
    });
    let removed = http("DELETE", port, &format!("/v2/members/{id}"), "").unwrap();
    assert_eq!(removed.status, 204, "{}", removed.body);

    // Long enough for the others to drop whatever they still had queued for it.
    std::thread::sleep(Duration::from_secs(3));
    // Back from the dead, with a log that never saw its removal.
    members[2].start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let child = members[2].child.as_mut().expect("it runs");
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // (Dropping the members kills the process if this fails.)
        assert!(Instant::now() < deadline, "the removed member kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a removed member exits 0, as etcd does"
    );
    assert!(put(port, "/after", "value=ok").status < 300);
}

/// etcd 3.x's health rule on top of the started-members arithmetic: with a member down, an
/// addition (which would count toward the quorum before it runs) and the removal of a live
/// member (which would leave too few heard from) are refused; removing the dead one is fine.
#[test]
fn with_a_member_down_the_strict_check_refuses_what_would_wedge_the_cluster() {
    let mut members = running_cluster("unhealthy", 3);
    let lead = leader(&members).expect("a leader");
    let port = members[lead].client;
    wait_for("every member to publish", || {
        member_ids(port).iter().all(|(_, name)| !name.is_empty())
    });
    let followers: Vec<usize> = (0..3).filter(|&i| i != lead).collect();
    let (down, live) = (followers[0], followers[1]);
    let id_of = |i: usize, members: &[Member]| {
        member_ids(port)
            .into_iter()
            .find(|(_, name)| *name == members[i].name)
            .expect("listed")
            .0
    };
    let (down_id, live_id) = (id_of(down, &members), id_of(live, &members));
    members[down].kill9();
    // The leader stops counting it as heard from within an election timeout or two.
    std::thread::sleep(Duration::from_millis(1500));

    let added = add(port, &format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(added.status, 412, "{}", added.body);
    assert!(added.body.contains("unhealthy cluster"), "{}", added.body);
    let removed = http("DELETE", port, &format!("/v2/members/{live_id}"), "").unwrap();
    assert_eq!(removed.status, 412, "{}", removed.body);
    assert!(
        removed.body.contains("unhealthy cluster"),
        "{}",
        removed.body
    );
    assert_eq!(member_ids(port).len(), 3);
    assert!(put(port, "/still", "value=writable").status < 300);

    let dead = http("DELETE", port, &format!("/v2/members/{down_id}"), "").unwrap();
    assert_eq!(dead.status, 204, "{}", dead.body);
    assert_eq!(member_ids(port).len(), 2);
    assert!(put(port, "/after", "value=writable").status < 300);
}
