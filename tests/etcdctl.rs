//! `etcdctl` against real `etcd` processes: every command's output in each format, its exit
//! status and its error text, as etcd's own etcdctl (3.4, `ETCDCTL_API=2`) prints them against
//! this server (`scripts/compare-etcdctl.sh` diffs the two).
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_etcdctl"))
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .env_remove("ETCDCTL_ENDPOINT")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_PEERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command and checks its status, stdout and stderr exactly.
#[track_caller]
fn expect(endpoint: &str, line: &str, code: i32, stdout: &str, stderr: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let run = etcdctl(endpoint, &args, None);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (code, stdout, stderr),
        "etcdctl {line}"
    );
}

fn single(name: &str) -> (Vec<Member>, String) {
    let mut members = cluster(name, 1);
    members[0].start();
    let endpoint = format!("http://127.0.0.1:{}", members[0].client);
    let port = members[0].client;
    wait_for("the member to publish its client URL", || {
        http("GET", port, "/v2/members", "")
            .is_some_and(|r| r.body.contains("clientURLs\":[\"http"))
    });
    (members, endpoint)
}

#[test]
fn key_commands_print_as_etcdctl_in_every_format() {
    let (_members, e) = single("ctl-keys");
    let e = e.as_str();
    expect(e, "set /foo bar", 0, "bar\n", "");
    expect(
        e,
        "-o extended set /foo baz",
        0,
        "Key: /foo\nCreated-Index: 2\nModified-Index: 2\nPrevNode.Value: bar\nTTL: 0\nIndex: 2\n\nbaz\n",
        "",
    );
    expect(
        e,
        "-o json set /foo qux",
        0,
        "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"qux\",\"nodes\":null,\"createdIndex\":3,\"modifiedIndex\":3},\"prevNode\":{\"key\":\"/foo\",\"value\":\"baz\",\"nodes\":null,\"createdIndex\":2,\"modifiedIndex\":2}}\n",
        "",
    );
    expect(e, "get /foo", 0, "qux\n", "");
    expect(
        e,
        "-o extended get /foo",
        0,
        "Key: /foo\nCreated-Index: 3\nModified-Index: 3\nTTL: 0\nIndex: 3\n\nqux\n",
        "",
    );
    expect(
        e,
        "-o json get /foo",
        0,
        "{\"action\":\"get\",\"node\":{\"key\":\"/foo\",\"value\":\"qux\",\"nodes\":null,\"createdIndex\":3,\"modifiedIndex\":3},\"prevNode\":null}\n",
        "",
    );
    expect(
        e,
        "mk /foo x",
        4,
        "",
        "Error:  105: Key already exists (/foo) [3]\n",
    );
    expect(e, "mk /new v", 0, "v\n", "");
    expect(e, "mkdir /dir", 0, "", "");
    expect(
        e,
        "mkdir /dir",
        4,
        "",
        "Error:  105: Key already exists (/dir) [5]\n",
    );
    expect(
        e,
        "-o extended mkdir /dir2",
        0,
        "Key: /dir2\nCreated-Index: 6\nModified-Index: 6\nTTL: 0\nIndex: 6\n\n\n",
        "",
    );
    expect(e, "get /dir", 1, "", "/dir: is a directory\n");
    let unsorted = etcdctl(e, &["ls"], None);
    let mut lines: Vec<&str> = unsorted.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        (unsorted.code, lines),
        (0, vec!["/dir", "/dir2", "/foo", "/new"])
    );
    expect(e, "ls --sort", 0, "/dir\n/dir2\n/foo\n/new\n", "");
    expect(e, "ls --sort -p", 0, "/dir/\n/dir2/\n/foo\n/new\n", "");
    expect(e, "ls /foo", 0, "/foo\n", "");
    expect(
        e,
        "ls /nope",
        4,
        "",
        "Error:  100: Key not found (/nope) [6]\n",
    );
    expect(e, "rm /foo", 0, "PrevNode.Value: qux\n", "");
    expect(
        e,
        "-o extended rm /new",
        0,
        "Key: /new\nCreated-Index: 4\nModified-Index: 8\nPrevNode.Value: v\nTTL: 0\nIndex: 8\n",
        "",
    );
    expect(e, "rmdir /dir", 0, "", "");
    expect(
        e,
        "rm /dir2",
        4,
        "",
        "Error:  102: Not a file (/dir2) [9]\n",
    );
    expect(e, "rm --dir /dir2", 0, "", "");
    expect(
        e,
        "update /nope v",
        4,
        "",
        "Error:  100: Key not found (/nope) [10]\n",
    );
    expect(
        e,
        "updatedir /nope",
        4,
        "",
        "Error:  100: Key not found (/nope) [10]\n",
    );
    expect(e, "setdir /sd", 0, "", "");
    expect(
        e,
        "setdir /sd",
        4,
        "",
        "Error:  102: Not a file (/sd) [11]\n",
    );
    expect(
        e,
        "-o extended updatedir --ttl 100 /sd",
        0,
        "Key: /sd\nCreated-Index: 11\nModified-Index: 12\nPrevNode.Value: \nTTL: 100\nIndex: 12\n\n\n",
        "",
    );
    expect(e, "mk --in-order /q job1", 0, "job1\n", "");
    expect(e, "ls /q", 0, "/q/00000000000000000013\n", "");
    expect(
        e,
        "-o extended set --ttl 100 /t v",
        0,
        "Key: /t\nCreated-Index: 14\nModified-Index: 14\nTTL: 100\nIndex: 14\n\nv\n",
        "",
    );
    expect(
        e,
        "set --swap-with-value wrong /t x",
        4,
        "",
        "Error:  101: Compare failed ([wrong != v]) [14]\n",
    );
    expect(
        e,
        "set --swap-with-index 1 /t x",
        4,
        "",
        "Error:  101: Compare failed ([1 != 14]) [14]\n",
    );
    expect(e, "set --swap-with-value v /t y", 0, "y\n", "");
    expect(
        e,
        "rm --with-value nope /t",
        4,
        "",
        "Error:  101: Compare failed ([nope != y]) [15]\n",
    );
    // A compare-and-delete is not a "delete" to etcdctl: it prints the (empty) value.
    expect(e, "rm --with-index 15 /t", 0, "\n", "");
    expect(e, "mkdir /d/e/f", 0, "", "");
    expect(e, "rm /d", 4, "", "Error:  102: Not a file (/d) [17]\n");
    expect(e, "rm --recursive /d", 0, "", "");
    expect(e, "set /a/b 1", 0, "1\n", "");
    expect(e, "set /a/c 2", 0, "2\n", "");
    expect(e, "ls --recursive --sort /a", 0, "/a/b\n/a/c\n", "");
    expect(
        e,
        "-o json ls --recursive --sort /a",
        0,
        "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"dir\":true,\"value\":\"\",\"nodes\":[{\"key\":\"/a/b\",\"value\":\"1\",\"nodes\":null,\"createdIndex\":19,\"modifiedIndex\":19},{\"key\":\"/a/c\",\"value\":\"2\",\"nodes\":null,\"createdIndex\":20,\"modifiedIndex\":20}],\"createdIndex\":19,\"modifiedIndex\":19},\"prevNode\":null}\n",
        "",
    );
    expect(e, "get --quorum /a/b", 0, "1\n", "");
    expect(e, "ls --quorum /a", 0, "/a/b\n/a/c\n", "");
    expect(
        e,
        "-o extended mk --ttl 30 /ttl/key v",
        0,
        "Key: /ttl/key\nCreated-Index: 21\nModified-Index: 21\nTTL: 30\nIndex: 21\n\nv\n",
        "",
    );
    expect(
        e,
        "-o extended mkdir --ttl 30 /ttl/dir",
        0,
        "Key: /ttl/dir\nCreated-Index: 22\nModified-Index: 22\nTTL: 30\nIndex: 22\n\n\n",
        "",
    );
    expect(
        e,
        "--total-timeout 3s --timeout 500ms get /a/b",
        0,
        "1\n",
        "",
    );
    expect(
        e,
        "-o bogus get /a/b",
        0,
        "",
        "Unsupported output format: bogus\n",
    );
}

#[test]
fn values_come_from_standard_input_when_not_given() {
    let (_members, e) = single("ctl-stdin");
    let run = etcdctl(&e, &["set", "/si"], Some("from stdin\n"));
    assert_eq!((run.code, run.stdout.as_str()), (0, "from stdin\n\n"));
    let run = etcdctl(&e, &["get", "/si"], None);
    assert_eq!(
        run.stdout, "from stdin\n\n",
        "the newline is kept, as etcdctl keeps it"
    );
    let run = etcdctl(&e, &["mk", "/empty"], Some(""));
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "Error:  value required\n")
    );
}

#[test]
fn bad_arguments_connections_and_commands_exit_as_etcdctl() {
    let (_members, e) = single("ctl-errors");
    let e = e.as_str();
    // Flags come before arguments, as Go parses them: an unknown one is a usage error (it was
    // once read as the key `/--bogus`); after the first argument, dashes are arguments.
    expect(
        e,
        "get --bogus /a",
        1,
        "",
        "Incorrect Usage: flag provided but not defined: -bogus\n",
    );
    expect(e, "set /dash -5", 0, "-5\n", "");
    expect(e, "get /dash --bogus", 0, "-5\n", "");
    // A flag the command defines may follow its arguments, as etcd's documentation writes
    // `set /foo "Expiring Soon" --ttl 20`: it was once dropped, and the key never expired.
    expect(e, "set /ttl v --ttl 30", 0, "v\n", "");
    let run = etcdctl(e, &["-o", "extended", "get", "/ttl"], None);
    assert!(
        run.stdout.contains("TTL: 30") || run.stdout.contains("TTL: 29"),
        "{}",
        run.stdout
    );
    expect(e, "set /between --ttl 30 v", 0, "v\n", "");
    expect(e, "mkdir /tree", 0, "", "");
    expect(e, "set /tree/leaf 1", 0, "1\n", "");
    expect(e, "rm /tree --recursive", 0, "", "");
    expect(e, "set /sep -- -x", 0, "-x\n", "");
    let run = etcdctl(e, &["set", "/z", "v", "--ttl=abc"], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for command in [
        "set",
        "get",
        "mk",
        "mkdir",
        "rm",
        "rmdir",
        "update",
        "updatedir",
        "setdir",
        "watch",
    ] {
        expect(e, command, 1, "", "Error:  key required\n");
    }
    expect(
        e,
        "exec-watch /k",
        1,
        "",
        "Error:  key and command to exec required\n",
    );
    expect(e, "frobnicate", 3, "", "No help topic for 'frobnicate'\n");
    expect(
        e,
        "--version",
        0,
        "etcdctl version: 2.3.8\nAPI version: 2\n",
        "",
    );

    let dead = format!("http://127.0.0.1:{}", free_port());
    let refused = format!(
        "dial tcp {}: connect: connection refused",
        dead.trim_start_matches("http://")
    );
    let cluster_error = format!(
        "Error:  client: etcd cluster is unavailable or misconfigured; error #0: {refused}\n\n\
         error #0: {refused}\n\n"
    );
    // Unreachable while syncing: a bad connection (2); with --no-sync, a failed request (4).
    expect(&dead, "get /foo", 2, "", &cluster_error);
    expect(&dead, "--no-sync get /foo", 4, "", &cluster_error);

    // A dead endpoint first: the client moves on to the next.
    let both = format!("{dead},{e}");
    expect(&both, "--no-sync set /failover yes", 0, "yes\n", "");
    expect(&both, "get /failover", 0, "yes\n", "");

    // -C, the old spelling, when --endpoints is not given.
    let out = Command::new(env!("CARGO_BIN_EXE_etcdctl"))
        .args(["-C", e, "get", "/failover"])
        .env_remove("ETCDCTL_ENDPOINT")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_PEERS")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\n");
    // --help, for etcdctl and for each command.
    for args in [
        &["--help"][..],
        &["set", "--help"],
        &["member", "add", "--help"],
    ] {
        let run = etcdctl(e, args, None);
        assert_eq!(run.code, 0, "{args:?}");
        assert!(run.stdout.contains("Usage:"), "{args:?}: {}", run.stdout);
    }

    // The endpoints may come from etcdctl's variables instead of the flag.
    for variable in ["ETCDCTL_ENDPOINT", "ETCDCTL_PEERS"] {
        let out = Command::new(env!("CARGO_BIN_EXE_etcdctl"))
            .args(["get", "/failover"])
            .env_remove("ETCDCTL_ENDPOINT")
            .env_remove("ETCDCTL_ENDPOINTS")
            .env_remove("ETCDCTL_PEERS")
            .env(variable, e)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\n", "{variable}");
    }

    // A bad duration is a usage error.
    let run = etcdctl(e, &["--timeout", "x", "get", "/failover"], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // --debug shows the requests as cURL commands, on stderr.
    let run = etcdctl(
        e,
        &["--debug", "get", "--quorum", "--sort", "/failover"],
        None,
    );
    assert_eq!(run.stdout, "yes\n");
    let expected = format!(
        "start to sync cluster using endpoints({e})\ncURL Command: curl -X GET {e}/v2/members\n\
         got endpoints({e}) after sync\nCluster-Endpoints: {e}\n\
         cURL Command: curl -X GET {e}/v2/keys/failover?quorum=true&recursive=false&sorted=true\n"
    );
    assert_eq!(run.stderr, expected);
}

fn spawn_ctl(endpoint: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_etcdctl"))
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl starts")
}

fn finish(child: Child, within: Duration) -> Run {
    let deadline = Instant::now() + within;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn watch_and_exec_watch_follow_changes() {
    let (_members, e) = single("ctl-watch");
    let e = e.as_str();
    expect(e, "set /w/x 0", 0, "0\n", "");
    expect(e, "set /w/a 1", 0, "1\n", "");
    // From history: the first change to the key after index 1.
    expect(e, "watch --after-index 1 /w/a", 0, "1\n", "");
    expect(
        e,
        "-o extended watch --after-index 1 /w/a",
        0,
        "Key: /w/a\nCreated-Index: 2\nModified-Index: 2\nTTL: 0\nIndex: 2\n\n1\n",
        "",
    );

    let once = spawn_ctl(e, &["watch", "/w/a"]);
    let recursive = spawn_ctl(e, &["watch", "--recursive", "--forever", "/w"]);
    let script =
        "echo \"$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_MODIFIED_INDEX\"";
    let exec = spawn_ctl(
        e,
        &["exec-watch", "--recursive", "/w", "--", "sh", "-c", script],
    );
    // From history: the change after index 1 (the set of /w/a at 2), then it waits.
    let from_history = spawn_ctl(
        e,
        &[
            "exec-watch",
            "--after-index",
            "1",
            "/w/a",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    expect(e, "set /w/a 2", 0, "2\n", "");
    expect(e, "mkdir /w/d", 0, "", "");
    expect(e, "set /w/b 3", 0, "3\n", "");
    std::thread::sleep(Duration::from_millis(700));

    let once = finish(once, Duration::from_secs(5));
    assert_eq!(
        (once.code, once.stdout.as_str()),
        (0, "2\n"),
        "{}",
        once.stderr
    );
    let recursive = finish(recursive, Duration::ZERO);
    assert_eq!(recursive.stdout, "[set] /w/a\n2\n[set] /w/b\n3\n");
    let exec = finish(exec, Duration::ZERO);
    assert_eq!(exec.stdout, "set /w/a 2 3\nset /w/b 3 5\n");
    assert_eq!(exec.stderr, "Ignored dir /w/d change\n");
    let from_history = finish(from_history, Duration::ZERO);
    assert_eq!(from_history.stdout, "set /w/a 1 2\nset /w/a 2 3\n");
}

#[test]
fn members_round_trip_through_etcdctl_with_the_strict_refusal() {
    let members = running_cluster("ctl-members", 3);
    let e = format!("http://127.0.0.1:{}", members[0].client);
    let e = e.as_str();
    // Each member answers from the table it has applied, so wait until any of them shows all.
    let expected: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "name={} peerURLs=http://127.0.0.1:{} clientURLs=http://127.0.0.1:{} isLeader=",
                m.name, m.peer, m.client
            )
        })
        .collect();
    wait_for("every member to publish, seen through etcdctl", || {
        let list = etcdctl(e, &["member", "list"], None);
        list.code == 0
            && list.stdout.matches("isLeader=true").count() == 1
            && expected.iter().all(|line| list.stdout.contains(line))
    });
    let run = etcdctl(e, &["cluster-health"], None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout
            .matches("is healthy: got healthy result from")
            .count(),
        3
    );
    assert!(
        run.stdout.ends_with("cluster is healthy\n"),
        "{}",
        run.stdout
    );

    // Two unstarted members are admitted; the third would wedge the cluster and is refused.
    let mut added = Vec::new();
    for i in 0..2 {
        let url = format!("http://127.0.0.1:{}", free_port());
        let run = etcdctl(e, &["member", "add", &format!("new{i}"), &url], None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let id = run
            .stdout
            .strip_prefix(&format!("Added member named new{i} with ID "))
            .and_then(|rest| rest.split(' ').next())
            .expect("the confirmation")
            .to_string();
        let mut expected_cluster: Vec<String> = Vec::new();
        assert!(run.stdout.contains(&format!(
            "\n\nETCD_NAME=\"new{i}\"\nETCD_INITIAL_CLUSTER=\""
        )));
        for m in &members {
            expected_cluster.push(format!("{}=http://127.0.0.1:{}", m.name, m.peer));
        }
        for part in expected_cluster.iter().chain([&format!("new{i}={url}")]) {
            assert!(
                run.stdout.contains(part.as_str()),
                "{part} in {}",
                run.stdout
            );
        }
        assert!(run
            .stdout
            .ends_with("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"));
        added.push((id, url));
    }
    // Members answer from their own applied tables: a follower may be a moment behind.
    wait_for("both unstarted members listed", || {
        let list = etcdctl(e, &["member", "list"], None);
        added.iter().all(|(id, url)| {
            list.stdout
                .contains(&format!("{id}[unstarted]: peerURLs={url}\n"))
        })
    });
    wait_for("cluster-health to call the cluster degraded", || {
        let health = etcdctl(e, &["cluster-health"], None);
        health.code == 5
            && health
                .stdout
                .matches("is unreachable: no available published client urls")
                .count()
                == 2
            && health.stdout.ends_with("cluster is degraded\n")
    });

    let url = format!("http://127.0.0.1:{}", free_port());
    let refused = etcdctl(e, &["member", "add", "new2", &url], None);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        "etcdserver: re-configuration failed due to not enough started members: 3 of 6 members \
         would be started, but a quorum of 4 is needed (--strict-reconfig-check)\n"
    );
    // The cluster still takes writes.
    expect(e, "set /still writable", 0, "writable\n", "");

    // Update one, then remove both unstarted members.
    let (first, _) = &added[0];
    let moved = format!("http://127.0.0.1:{}", free_port());
    expect(
        e,
        &format!("member update {first} {moved}"),
        0,
        &format!("Updated member with ID {first} in cluster\n"),
        "",
    );
    wait_for("the new peer URL listed", || {
        etcdctl(e, &["member", "list"], None)
            .stdout
            .contains(&format!("{first}[unstarted]: peerURLs={moved}\n"))
    });
    for (id, _) in &added {
        expect(
            e,
            &format!("member remove {id}"),
            0,
            &format!("Removed member {id} from cluster\n"),
            "",
        );
    }
    expect(
        e,
        "member remove m1",
        1,
        "",
        &format!(
            "Found a member named m1; if this is correct, please use its ID, eg:\n\tetcdctl member \
             remove {}\nFor more details, read the documentation at \
             https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n\n\
             Couldn't find a member in the cluster with an ID of m1.\n",
            member_id_of(e, "m1")
        ),
    );
    expect(
        e,
        "member add",
        1,
        "",
        "Provide a name and a single member peerURL\n",
    );
    expect(e, "member remove", 1, "", "Provide a single member ID\n");
    expect(e, "member list extra", 1, "", "No arguments accepted\n");
    expect(
        e,
        "member update abc http://127.0.0.1:1",
        1,
        "",
        "No such member: abc\n",
    );
    wait_for("three members again", || {
        etcdctl(e, &["member", "list"], None).stdout.lines().count() == 3
    });
}

fn member_id_of(endpoint: &str, name: &str) -> String {
    etcdctl(endpoint, &["member", "list"], None)
        .stdout
        .lines()
        .find(|l| l.contains(&format!("name={name} ")))
        .and_then(|l| l.split(':').next())
        .expect("the member is listed")
        .to_string()
}
