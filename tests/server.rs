//! The `etcd` binary as users run it: real processes on 127.0.0.1, free ports chosen at run
//! time, plain HTTP/1.1 requests.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn the_readme_walkthrough_answers_as_etcd_does() {
    let mut members = cluster("walkthrough", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());

    let set = put(port, "/message", "value=Hello%20world");
    assert_eq!(set.status, 201);
    assert_eq!(
        set.body,
        "{\"action\":\"set\",\"node\":{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":1,\"createdIndex\":1}}\n"
    );
    assert_eq!(set.header("X-Etcd-Index"), Some("1"));
    assert!(set.header("X-Raft-Index").is_some() && set.header("X-Raft-Term").is_some());
    assert!(set.header("X-Etcd-Cluster-ID").is_some());
    assert_eq!(set.header("Content-Type"), Some("application/json"));

    let get = http("GET", port, "/v2/keys/message", "").unwrap();
    assert_eq!(get.status, 200);
    assert!(get.body.contains("\"action\":\"get\""));

    let changed = put(port, "/message", "value=Hello%20etcd");
    assert_eq!(changed.status, 200);
    assert!(changed
        .body
        .contains("\"prevNode\":{\"key\":\"/message\",\"value\":\"Hello world\""));

    let deleted = http("DELETE", port, "/v2/keys/message", "").unwrap();
    assert_eq!(
        deleted.body,
        "{\"action\":\"delete\",\"node\":{\"key\":\"/message\",\"modifiedIndex\":3,\"createdIndex\":2},\"prevNode\":{\"key\":\"/message\",\"value\":\"Hello etcd\",\"modifiedIndex\":2,\"createdIndex\":2}}\n"
    );

    let ttl = put(port, "/foo", "value=bar&ttl=1");
    assert!(ttl.body.contains("\"ttl\":1"), "{}", ttl.body);
    wait_for("the TTL to expire", || {
        http("GET", port, "/v2/keys/foo", "").is_some_and(|r| r.status == 404)
    });
    let gone = http("GET", port, "/v2/keys/foo", "").unwrap();
    assert!(gone
        .body
        .starts_with("{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/foo\""));

    let queued = http("POST", port, "/v2/keys/queue", "value=Job1").unwrap();
    assert_eq!(queued.status, 201);
    assert!(queued.body.contains("\"key\":\"/queue/000000000000000000"));

    let exists = http("PUT", port, "/v2/keys/queue?prevExist=false", "dir=true").unwrap();
    assert_eq!(exists.status, 412);
    let bad = put(port, "/x", "value=1&ttl=abc");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("\"errorCode\":202"));

    // Keys may hold characters that mean something in a query string.
    let odd = put(port, "/a%26b%3Dc+d", "value=1");
    // (Go's encoder, and so etcd, writes the `&` as `\u0026`.)
    assert!(
        odd.body.contains(r#""key":"/a\u0026b=c+d""#),
        "{}",
        odd.body
    );

    let version = http("GET", port, "/version", "").unwrap();
    assert_eq!(
        version.body,
        "{\"etcdserver\":\"2.3.8\",\"etcdcluster\":\"2.3.0\"}"
    );
    assert_eq!(
        http("GET", port, "/health", "").unwrap().body,
        "{\"health\":\"true\"}"
    );
    let patch = http("PATCH", port, "/v2/keys/x", "").unwrap();
    assert_eq!(patch.status, 405);
    assert_eq!(patch.header("Allow"), Some("HEAD,GET,PUT,POST,DELETE"));
    let members_json = http("GET", port, "/v2/members", "").unwrap().body;
    assert!(
        members_json.starts_with("{\"members\":[{\"id\":\""),
        "{members_json}"
    );
    assert!(http("GET", port, "/v2/stats/store", "")
        .unwrap()
        .body
        .contains("\"setsSuccess\":"));
}

#[test]
fn a_watch_wakes_on_the_next_change() {
    let mut members = cluster("watch", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());
    let waiter = std::thread::spawn(move || http("GET", port, "/v2/keys/w?wait=true", ""));
    std::thread::sleep(Duration::from_millis(300));
    put(port, "/w", "value=woken");
    let woken = waiter.join().unwrap().expect("the watch answers");
    assert!(woken.body.contains("\"value\":\"woken\""), "{}", woken.body);
}

#[test]
fn bad_configuration_is_one_line_and_a_nonzero_exit() {
    let cases: &[&[&str]] = &[
        &["--listen-client-urls", "not a url"],
        &["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"],
        &["--election-timeout", "50"],
        &[
            "--initial-cluster",
            "a=http://127.0.0.1:1,a=http://127.0.0.1:1",
        ],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_data_dir_in_use_is_refused_and_sigterm_exits_cleanly() {
    let mut members = cluster("lock", 1);
    members[0].start();
    wait_for("a leader", || members[0].is_leader());
    // The very same command line again: the data dir is locked before anything is bound.
    let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(members[0].args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another etcd"), "{stderr}");
    let status = members[0].terminate().expect("etcd exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_flag_beats_its_environment_variable() {
    let port = free_port();
    let peer = free_port();
    let dir = scratch("env");
    let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .env("ETCD_NAME", "from-env")
        .env(
            "ETCD_LISTEN_CLIENT_URLS",
            format!("http://127.0.0.1:{port}"),
        )
        .env("ETCD_DATA_DIR", dir.join("d").display().to_string())
        .args([
            "--name",
            "from-flag",
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut member = Member {
        name: "from-flag".into(),
        client: port,
        peer,
        data_dir: dir,
        cluster: String::new(),
        child: Some(child),
    };
    wait_for("the member", || {
        http("GET", port, "/v2/stats/self", "").is_some()
    });
    let stats = http("GET", port, "/v2/stats/self", "").unwrap().body;
    assert!(stats.contains("\"name\":\"from-flag\""), "{stats}");
    member.kill9();
}

#[test]
fn a_three_member_cluster_survives_its_leader_and_a_full_restart() {
    let mut members = running_cluster("three", 3);

    // Written on one member, read with quorum=true on the others.
    assert!(put(members[0].client, "/a", "value=1").status < 300);
    for m in &members[1..] {
        let got = http("GET", m.client, "/v2/keys/a?quorum=true", "").unwrap();
        assert!(got.body.contains("\"value\":\"1\""), "{}", got.body);
    }

    // Enough writes for every member to snapshot and compact.
    let mut acknowledged = vec![("/a".to_owned(), "1".to_owned())];
    for i in 0..60 {
        let key = format!("/k{i}");
        let value = format!("v{i}");
        let port = members[i % 3].client;
        if put(port, &key, &format!("value={value}")).status < 300 {
            acknowledged.push((key, value));
        }
    }

    // kill -9 the leader: another is elected and writes go on.
    let old = leader(&members).expect("a leader");
    members[old].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    wait_for("a new leader", || leader(&members).is_some());
    // A hundred writes against --snapshot-count 30: the others snapshot and compact far past
    // the dead member, so it can only catch up by receiving a snapshot.
    for i in 0..100 {
        let key = format!("/after{i}");
        let port = members[others[i % 2]].client;
        let reply = put(port, &key, "value=x");
        assert!(
            reply.status < 300,
            "write after the leader died: {} {}",
            reply.status,
            reply.body
        );
        acknowledged.push((key, "x".into()));
    }

    // The old leader comes back and catches up, through a snapshot if it must.
    members[old].start();
    wait_for("the old leader to catch up", || {
        http(
            "GET",
            members[old].client,
            "/v2/keys/after99?quorum=true",
            "",
        )
        .is_some_and(|r| r.status == 200)
    });

    // Stop everyone, start everyone: every acknowledged write is there.
    for m in members.iter_mut() {
        assert_eq!(m.terminate().and_then(|s| s.code()), Some(0));
    }
    for m in members.iter_mut() {
        m.start();
    }
    wait_for("a leader after the restart", || leader(&members).is_some());
    for (key, value) in &acknowledged {
        let got = http(
            "GET",
            members[1].client,
            &format!("/v2/keys{key}?quorum=true"),
            "",
        )
        .unwrap();
        assert!(
            got.body.contains(&format!("\"value\":\"{value}\"")),
            "{key}: {}",
            got.body
        );
    }
}

/// The repository's Procfile starts a working 3-member cluster. The test runs it with honcho
/// (what CI installs; goreman reads the same file) or, where honcho is missing, runs each
/// line with `sh` as honcho would, against the binary under test.
#[test]
fn the_procfile_starts_a_working_three_member_cluster() {
    let procfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Procfile")).unwrap();
    let procfile = procfile.replace("target/release/etcd", env!("CARGO_BIN_EXE_etcd"));
    let dir = scratch("procfile");
    std::fs::write(dir.join("Procfile"), &procfile).unwrap();
    let honcho = Command::new("honcho")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut children: Vec<Child> = if honcho {
        vec![Command::new("honcho")
            .args(["start", "-f", "Procfile"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()]
    } else {
        procfile
            .lines()
            .filter_map(|l| l.split_once(": ").filter(|_| !l.starts_with('#')))
            .map(|(_, command)| {
                Command::new("sh")
                    .args(["-c", &format!("exec {command}")])
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect()
    };
    let ports = [12379, 22379, 32379];
    let result = std::panic::catch_unwind(|| {
        wait_for("a leader", || {
            ports.iter().any(|p| {
                http("GET", *p, "/v2/stats/self", "")
                    .is_some_and(|r| r.body.contains("StateLeader"))
            })
        });
        // Every member publishes its client URLs through raft.
        wait_for("every member's client URLs", || {
            http("GET", 12379, "/v2/machines", "").is_some_and(|r| r.body.split(", ").count() == 3)
        });
        let members = http("GET", 22379, "/v2/members", "").unwrap().body;
        for port in ports {
            assert!(
                members.contains(&format!("\"clientURLs\":[\"http://127.0.0.1:{port}\"]")),
                "{members}"
            );
        }
        let set = put(12379, "/procfile", "value=works");
        assert!(set.status < 300, "{}", set.body);
        for port in [22379, 32379] {
            let got = http("GET", port, "/v2/keys/procfile?quorum=true", "").unwrap();
            assert!(got.body.contains("\"value\":\"works\""), "{}", got.body);
        }
    });
    for child in children.iter_mut() {
        // honcho passes SIGTERM on to its processes.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    let _ = Command::new("pkill")
        .args([
            "-f",
            &format!("{} --name infra", env!("CARGO_BIN_EXE_etcd")),
        ])
        .status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn garbage_requests_get_a_4xx_never_a_crash() {
    let mut members = cluster("garbage", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());
    // One byte past the 10 MiB form limit etcd's v2 API has.
    let huge = format!("value={}", "x".repeat((10 << 20) - 5));
    let cases: &[(&str, &str, &str, u64)] = &[
        ("PUT", "/v2/keys/a?prevExist=maybe", "value=1", 209),
        ("PUT", "/v2/keys/a?prevIndex=-3", "value=1", 203),
        ("PUT", "/v2/keys/a?prevValue=", "value=1", 201),
        ("GET", "/v2/keys/a?wait=yes", "", 209),
        ("PUT", "/v2/keys/a?refresh=true", "value=1&ttl=5", 211),
        ("PUT", "/v2/keys/a?refresh=true", "", 212),
        ("PUT", "/v2/keys/a", &huge, 210),
        ("GET", "/v2/keys/%ff%fe?recursive=1", "", 209),
        ("PUT", "/v2/keys/a?prevIndex=", "value=1", 203),
        ("GET", "/v2/keys/a?recursive=", "", 209),
        ("PUT", "/v2/keys/a", "value=1&prevExist=", 209),
        ("PUT", "/v2/keys/a?wait=true", "value=1", 209),
        ("PUT", "/v2/keys/a?value=%zz", "", 210),
    ];
    for (method, path, form, code) in cases {
        let reply = http(method, port, path, form).expect("the server answers");
        assert!(
            (400..500).contains(&reply.status),
            "{method} {path}: {}",
            reply.status
        );
        assert!(
            reply.body.contains(&format!("\"errorCode\":{code}")),
            "{method} {path}: {}",
            reply.body
        );
    }
    assert!(members[0].is_leader(), "the server survived");
}

#[test]
fn a_restarted_member_ignores_the_bootstrap_flags_and_says_so() {
    let mut members = cluster("other-cluster", 1);
    members[0].start();
    wait_for("a leader", || members[0].is_leader());
    assert_eq!(put(members[0].client, "/kept", "value=1").status, 201);
    members[0].terminate();
    // As etcd: once a data dir holds a member, --initial-cluster* only bootstrap new ones.
    let mut args = members[0].args();
    args.extend([
        "--initial-cluster-token".into(),
        "a-different-cluster".into(),
        "--initial-cluster-state".into(),
        "existing".into(),
    ]);
    let log = members[0].data_dir.with_extension("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(&args)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port = members[0].client;
    wait_for("the member to serve again", || {
        http("GET", port, "/v2/keys/kept", "").is_some_and(|r| r.status == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("already holds member"), "{stderr}");
    assert!(stderr.contains("are ignored"), "{stderr}");
}

#[test]
fn a_failed_start_leaves_nothing_that_refuses_the_next_and_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let members = cluster("failed-start", 1);
    let m = &members[0];
    // The client port is taken: the start fails, and makes no data dir.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", m.client)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(m.args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(
        !m.data_dir.exists(),
        "a failed start left a data dir behind"
    );
    drop(squatter);
    // The corrected start, under another name, works on the same data dir.
    let peer = format!("http://127.0.0.1:{}", m.peer);
    let mut args = m.args();
    args.extend([
        "--name".into(),
        "renamed".into(),
        "--initial-cluster".into(),
        format!("renamed={peer}"),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let port = m.client;
    wait_for("the corrected start", || {
        http("PUT", port, "/v2/keys/up", "value=1").is_some_and(|r| r.status == 201)
    });
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&m.data_dir), 0o700);
    assert_eq!(mode(&m.data_dir.join("member")), 0o700);
    assert_eq!(mode(&m.data_dir.join("member/identity")), 0o600);
    for dir in ["member/wal", "member/snap"] {
        assert_eq!(mode(&m.data_dir.join(dir)), 0o700, "{dir}");
        for file in std::fs::read_dir(m.data_dir.join(dir)).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn requests_are_read_the_way_etcd_reads_them() {
    let mut members = cluster("forms", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());
    put(port, "/d", "value=3");
    // DELETE bodies are not read (Go's ParseForm reads PUT and POST bodies only).
    let deleted = http("DELETE", port, "/v2/keys/d", "prevValue=9").unwrap();
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    // The form media type is matched without regard to case.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = "value=x";
    let request = format!(
        "PUT /v2/keys/ct HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
         Content-Type: Application/X-WWW-Form-Urlencoded; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut stream, &mut reply).unwrap();
    assert!(reply.contains("\"value\":\"x\""), "{reply}");
    // Unclean paths are redirected to the clean one, as Go's ServeMux does.
    let moved = http("GET", port, "/v2/keys/a//b?recursive=true", "").unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.header("Location"),
        Some("/v2/keys/a/b?recursive=true")
    );
    // HEAD says how long the answer would be.
    let get = http("GET", port, "/v2/keys/ct", "").unwrap();
    let head = http("HEAD", port, "/v2/keys/ct", "").unwrap();
    assert_eq!(
        head.header("Content-Length"),
        Some(get.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
    // noValueOnSuccess: just the action, with the status of the whole answer.
    let brief = http("PUT", port, "/v2/keys/nv?noValueOnSuccess=true", "value=1").unwrap();
    assert_eq!(
        (brief.status, brief.body.as_str()),
        (201, "{\"action\":\"set\"}\n")
    );
    // Watches answer 200, from the history as live.
    let index = put(port, "/w", "value=1")
        .header("X-Etcd-Index")
        .unwrap()
        .to_owned();
    let past = http(
        "GET",
        port,
        &format!("/v2/keys/w?wait=true&waitIndex={index}"),
        "",
    )
    .unwrap();
    assert_eq!(past.status, 200, "{}", past.body);
    assert!(past.body.contains("\"value\":\"1\""));
}

#[test]
fn a_stream_watcher_is_released_when_its_client_leaves() {
    let mut members = cluster("stream-leak", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("a leader", || members[0].is_leader());
    let watchers = || {
        let stats = http("GET", port, "/v2/stats/store", "").unwrap().body;
        stats.contains("\"watchers\":1")
    };
    {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = "GET /v2/keys/s?wait=true&stream=true HTTP/1.1\r\nHost: a\r\n\r\n";
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut stream, &mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "the headers come before any event");
        wait_for("the watcher to be counted", watchers);
    } // the client goes away
    wait_for("the watcher to be released", || {
        http("GET", port, "/v2/stats/store", "")
            .unwrap()
            .body
            .contains("\"watchers\":0")
    });
}
