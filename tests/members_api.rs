//! The members API answered exactly as etcd 3.4 answers it (checked side by side), on a real
//! member: content types, etcd's messages, statuses, `Allow` and the cluster header.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::*;

fn send(port: u16, method: &str, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    request(method, port, path, content_type, body).expect("an answer")
}

fn member_count(port: u16) -> usize {
    let reply = http("GET", port, "/v2/members", "").unwrap();
    reply.body.matches("\"id\"").count()
}

#[test]
fn members_writes_answer_as_etcd_does() {
    let mut members = cluster("members-api", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());
    let own_peer = format!("http://127.0.0.1:{}", members[0].peer);
    let json = Some("application/json");
    /// Method, path, content type, body; then the status and body etcd answers with.
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, String, u16, String);
    let cases: Vec<Case> = vec![
        // A text/plain add once added a member and wedged a one-member cluster for good.
        (
            "POST",
            "/v2/members",
            Some("text/plain"),
            r#"{"peerURLs":["http://127.0.0.1:1"]}"#.into(),
            415,
            r#"{"message":"Bad Content-Type text/plain, accept application/json"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            None,
            r#"{"peerURLs":["http://127.0.0.1:1"]}"#.into(),
            415,
            r#"{"message":"Bad Content-Type , accept application/json"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            Some("application/x-www-form-urlencoded"),
            r#"{"peerURLs":["http://127.0.0.1:1"]}"#.into(),
            415,
            r#"{"message":"Bad Content-Type application/x-www-form-urlencoded, accept application/json"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            Some("application/json; charset=utf-8"),
            format!(r#"{{"peerURLs":["{own_peer}"]}}"#),
            409,
            r#"{"message":"membership: peerURL exists"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            json,
            r#"{"peerURLs":[]}"#.into(),
            400,
            r#"{"message":"no valid URLs given"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            json,
            r#"{"peerURLs":["foo"]}"#.into(),
            400,
            r#"{"message":"URL scheme must be http, https, unix, or unixs: foo"}"#.into(),
        ),
        (
            "POST",
            "/v2/members",
            json,
            r#"{"peerURLs":["http://1.2.3.4"]}"#.into(),
            400,
            r#"{"message":"URL address does not have the form \"host:port\": http://1.2.3.4"}"#
                .into(),
        ),
        (
            "POST",
            "/v2/members",
            json,
            r#"{"peerURLs":["http://1.2.3.4:5/path"]}"#.into(),
            400,
            r#"{"message":"URL must not contain a path: http://1.2.3.4:5/path"}"#.into(),
        ),
        (
            "PUT",
            "/v2/members/8e9e05c52164694d",
            Some("text/plain"),
            "{}".into(),
            415,
            r#"{"message":"Bad Content-Type text/plain, accept application/json"}"#.into(),
        ),
        (
            "DELETE",
            "/v2/members/abc",
            None,
            String::new(),
            404,
            r#"{"message":"No such member: abc"}"#.into(),
        ),
        (
            "DELETE",
            "/v2/members/1234",
            None,
            String::new(),
            404,
            r#"{"message":"No such member: 1234"}"#.into(),
        ),
        (
            "GET",
            "/v2/members/8e9e05c52164694d",
            None,
            String::new(),
            404,
            r#"{"message":"Not found"}"#.into(),
        ),
    ];
    for (method, path, content_type, body, status, answer) in &cases {
        let reply = send(port, method, path, *content_type, body);
        assert_eq!(
            (reply.status, reply.body.trim()),
            (*status, answer.as_str()),
            "{method} {path} {content_type:?} {body}"
        );
        assert!(
            reply.header("X-Etcd-Cluster-ID").is_some(),
            "{method} {path}: no cluster id"
        );
    }
    let reply = send(port, "PATCH", "/v2/members/8e9e05c52164694d", None, "");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET,POST,DELETE,PUT"));
    // As etcd: a DELETE or PUT without an id is a bare 405, without `Allow`.
    let reply = send(port, "DELETE", "/v2/members", None, "");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), None);
    let reply = send(port, "HEAD", "/v2/members", None, "");
    assert_eq!(reply.status, 405);
    // The list, with or without a trailing slash, ends with a newline as etcd's does.
    for path in ["/v2/members", "/v2/members/"] {
        let reply = send(port, "GET", path, None, "");
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.body.starts_with(r#"{"members":["#) && reply.body.ends_with("]}\n"));
    }
    // A body without peerURLs is an empty list.
    let reply = send(port, "POST", "/v2/members", json, "{}");
    assert_eq!(
        (reply.status, reply.body.trim()),
        (400, r#"{"message":"no valid URLs given"}"#)
    );
    // /v2/machines lists client URLs sorted, as etcd does (python-etcd reads the first).
    let reply = send(port, "GET", "/v2/machines", None, "");
    assert_eq!(reply.status, 200);
    let reply = send(port, "POST", "/v2/machines", None, "");
    assert_eq!(reply.header("Allow"), Some("GET,HEAD"));
    let reply = send(port, "POST", "/version", None, "");
    assert_eq!(reply.header("Allow"), Some("GET"));

    // Nothing was added, and the one member still takes writes.
    assert_eq!(member_count(port), 1);
    assert_eq!(put(port, "/still", "value=writable").status, 201);
}

#[test]
fn stats_report_latency_counts_and_leader_info_as_etcd_does() {
    let members = running_cluster("stats", 3);
    let lead = leader(&members).unwrap();
    let follower = (lead + 1) % 3;
    for i in 0..20 {
        let reply = put(members[lead].client, &format!("/s{i}"), "value=1");
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let json = |port: u16, path: &str| -> serde_json::Value {
        let reply = http("GET", port, path, "").unwrap();
        serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("{path}: {}", reply.body))
    };
    let stats = json(members[lead].client, "/v2/stats/leader");
    let followers = stats["followers"].as_object().expect("followers");
    assert_eq!(followers.len(), 2, "{stats}");
    for (_, f) in followers {
        for field in [
            "current",
            "average",
            "standardDeviation",
            "minimum",
            "maximum",
        ] {
            assert!(f["latency"][field].is_number(), "{field}: {f}");
        }
        assert!(f["counts"]["success"].as_u64().unwrap() > 0, "{f}");
        assert!(f["counts"]["fail"].is_u64(), "{f}");
    }
    let own = json(members[lead].client, "/v2/stats/self");
    assert_eq!(own["state"], "StateLeader");
    assert_eq!(own["leaderInfo"]["leader"], own["id"]);
    assert!(
        own["leaderInfo"]["uptime"].as_str().unwrap().ends_with('s'),
        "{own}"
    );
    assert!(own["leaderInfo"]["startTime"].is_string(), "{own}");
    assert!(own["sendAppendRequestCnt"].as_u64().unwrap() > 0, "{own}");
    let theirs = json(members[follower].client, "/v2/stats/self");
    assert_eq!(theirs["state"], "StateFollower");
    assert_eq!(theirs["leaderInfo"]["leader"], own["id"]);
    assert!(
        theirs["recvAppendRequestCnt"].as_u64().unwrap() > 0,
        "{theirs}"
    );
    // /v2/machines: every client URL, sorted as etcd sorts them (python-etcd takes the first).
    let port = members[follower].client;
    wait_for("every member published", || {
        http("GET", port, "/v2/machines", "").is_some_and(|r| r.body.matches("http").count() == 3)
    });
    let machines = http("GET", port, "/v2/machines", "").unwrap().body;
    let urls: Vec<&str> = machines.split(", ").collect();
    let mut sorted = urls.clone();
    sorted.sort();
    assert_eq!((urls.len(), &urls), (3, &sorted));
    let refused = http("GET", members[follower].client, "/v2/stats/leader", "").unwrap();
    assert_eq!(
        (refused.status, refused.body.trim()),
        (403, r#"{"message":"not current leader"}"#)
    );
}

#[test]
fn the_leader_during_an_election_is_etcds_503() {
    let mut members = running_cluster("leader-election", 3);
    let survivor = members.pop().unwrap();
    // A member serves clients only once its own publish is applied, which needs a quorum:
    // the survivor must be serving before the others go, or it never will.
    let port = survivor.client;
    wait_for("the survivor to serve", || {
        http("GET", port, "/v2/members/leader", "").is_some_and(|r| r.status == 200)
    });
    for m in members.iter_mut() {
        m.kill9();
    }
    // Alone, the survivor loses its leader (check-quorum) and cannot elect another.
    wait_for("no leader", || {
        http("GET", port, "/v2/members/leader", "").is_some_and(|r| r.status == 503)
    });
    let reply = http("GET", port, "/v2/members/leader", "").unwrap();
    assert_eq!(reply.body.trim(), r#"{"message":"During election"}"#);
    // And an invalid refresh is etcd's unquoted cause.
    let reply = http("PUT", port, "/v2/keys/a?refresh=maybe", "value=1").unwrap();
    assert!(
        reply
            .body
            .contains(r#""cause":"invalid value for refresh""#),
        "{}",
        reply.body
    );
}

#[test]
fn json_escapes_what_gos_encoder_escapes() {
    let members = running_cluster("go-json", 1);
    let port = members[0].client;
    // `<`, `>` and `&` as Go's encoding/json writes them (etcd answers through it).
    let reply = put(port, "/html", "value=%3Cb%3E%26%3C%2Fb%3E");
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(
        reply
            .body
            .contains(r#""value":"\u003cb\u003e\u0026\u003c/b\u003e""#),
        "{}",
        reply.body
    );
    // Header names as Go writes them, for scripts that grep `curl -i`.
    let names: Vec<&str> = reply.headers.iter().map(|(k, _)| k.as_str()).collect();
    for name in [
        "X-Etcd-Index",
        "X-Raft-Index",
        "X-Etcd-Cluster-Id",
        "Content-Type",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let missing = http("GET", port, "/nowhere", "").unwrap();
    assert_eq!(missing.header("X-Content-Type-Options"), Some("nosniff"));
}
