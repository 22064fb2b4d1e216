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
    let reply = send(port, "DELETE", "/v2/members", None, "");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET,POST"));

    // Nothing was added, and the one member still takes writes.
    assert_eq!(member_count(port), 1);
    assert_eq!(put(port, "/still", "value=writable").status, 201);
}
