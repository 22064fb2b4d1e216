//! One test per behaviour of etcd 2.x's store. Expected JSON was checked against etcd 3.4 with
//! `--enable-v2=true` where the behaviour is observable over HTTP.

use super::*;

const T0: i64 = 1_764_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + secs)
}

fn now() -> Timestamp {
    at(0)
}

fn set(store: &mut Store, key: &str, value: &str) -> Event {
    store
        .set(key, Content::Value(value), TtlOptions::PERMANENT, now())
        .unwrap()
}

fn mkdir(store: &mut Store, key: &str) -> Event {
    store
        .set(key, Content::Dir, TtlOptions::PERMANENT, now())
        .unwrap()
}

fn ttl_in(secs: i64) -> TtlOptions {
    TtlOptions::expiring(at(secs))
}

fn err_of<T: std::fmt::Debug>(result: Result<T, Error>) -> (ErrorCode, String, u64) {
    let e = result.unwrap_err();
    (e.code, e.cause, e.index)
}

fn json(event: &Event) -> String {
    event.to_json()
}

fn drain(watcher: &mut Watcher) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    while let Next::Event(e) = watcher.try_next() {
        out.push(e);
    }
    out
}

// --- nodes and keys -------------------------------------------------------------------------

#[test]
fn set_creates_a_key_and_reports_its_indexes() {
    let mut s = Store::new();
    let e = set(&mut s, "/foo", "bar");
    assert_eq!(
        json(&e),
        r#"{"action":"set","node":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}"#
    );
    assert_eq!(e.etcd_index, 1);
    assert_eq!(s.index(), 1);
}

#[test]
fn set_replaces_a_key_and_returns_prev_node() {
    let mut s = Store::new();
    set(&mut s, "/foo", "one");
    let e = set(&mut s, "/foo", "two");
    assert_eq!(
        json(&e),
        r#"{"action":"set","node":{"key":"/foo","value":"two","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/foo","value":"one","modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn empty_value_is_kept_as_an_empty_string() {
    let mut s = Store::new();
    let e = set(&mut s, "/e", "");
    assert_eq!(e.node.value.as_deref(), Some(""));
    assert!(json(&e).contains(r#""value":"""#));
}

#[test]
fn get_reads_a_key() {
    let mut s = Store::new();
    set(&mut s, "/foo", "bar");
    let e = s.get("/foo", false, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"get","node":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}"#
    );
    assert_eq!(e.etcd_index, 1);
}

#[test]
fn get_missing_key_names_the_first_missing_segment() {
    let mut s = Store::new();
    set(&mut s, "/a/b", "1");
    assert_eq!(
        err_of(s.get("/zz/b/c", false, now())),
        (ErrorCode::KeyNotFound, "/zz".into(), 1)
    );
    assert_eq!(
        err_of(s.get("/a/x", false, now())),
        (ErrorCode::KeyNotFound, "/a/x".into(), 1)
    );
}

#[test]
fn get_through_a_file_is_not_a_directory() {
    let mut s = Store::new();
    set(&mut s, "/a/b", "1");
    assert_eq!(
        err_of(s.get("/a/b/c", false, now())),
        (ErrorCode::NotDir, "/a/b".into(), 1)
    );
}

#[test]
fn intermediate_directories_are_created_implicitly() {
    let mut s = Store::new();
    set(&mut s, "/a/b/c", "x");
    let a = s.get("/a", false, now()).unwrap();
    assert_eq!(
        json(&a),
        r#"{"action":"get","node":{"key":"/a","dir":true,"nodes":[{"key":"/a/b","dir":true,"modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn keys_are_normalised() {
    let mut s = Store::new();
    let e = set(&mut s, "a//b/", "1");
    assert_eq!(e.node.key, "/a/b");
    assert_eq!(s.get("/a/./b", false, now()).unwrap().node.key, "/a/b");
    assert_eq!(s.get("/x/../a/b", false, now()).unwrap().node.key, "/a/b");
}

#[test]
fn get_directory_lists_one_level_sorted() {
    let mut s = Store::new();
    set(&mut s, "/d/b", "2");
    set(&mut s, "/d/a", "1");
    set(&mut s, "/d/c/deep", "3");
    let e = s.get("/d", false, now()).unwrap();
    let keys: Vec<_> = e.node.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["/d/a", "/d/b", "/d/c"]);
    assert!(e.node.nodes[2].nodes.is_empty(), "one level only");
}

#[test]
fn get_recursive_lists_the_whole_subtree() {
    let mut s = Store::new();
    set(&mut s, "/d/c/deep", "3");
    let e = s.get("/d", true, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"get","node":{"key":"/d","dir":true,"nodes":[{"key":"/d/c","dir":true,"nodes":[{"key":"/d/c/deep","value":"3","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn get_root_has_no_key_and_no_indexes() {
    let mut s = Store::new();
    assert_eq!(
        json(&s.get("/", false, now()).unwrap()),
        r#"{"action":"get","node":{"dir":true}}"#
    );
    set(&mut s, "/k", "v");
    assert_eq!(
        json(&s.get("", false, now()).unwrap()),
        r#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}]}}"#
    );
}

#[test]
fn empty_directory_has_no_nodes_field() {
    let mut s = Store::new();
    mkdir(&mut s, "/d");
    assert_eq!(
        json(&s.get("/d", false, now()).unwrap()),
        r#"{"action":"get","node":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}"#
    );
}

// --- hidden keys and the root ---------------------------------------------------------------

#[test]
fn hidden_keys_are_left_out_of_listings_but_readable_directly() {
    let mut s = Store::new();
    set(&mut s, "/a/b", "1");
    set(&mut s, "/a/_h", "h");
    set(&mut s, "/_top", "t");
    let listing = s.get("/a", true, now()).unwrap();
    let keys: Vec<_> = listing.node.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["/a/b"]);
    let root = s.get("/", true, now()).unwrap();
    assert!(root.node.nodes.iter().all(|n| n.key != "/_top"));
    assert_eq!(
        s.get("/a/_h", false, now()).unwrap().node.value.as_deref(),
        Some("h")
    );
}

#[test]
fn root_is_read_only() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let root = (ErrorCode::RootReadOnly, "/".to_string(), 1);
    let perm = TtlOptions::PERMANENT;
    assert_eq!(err_of(s.set("/", Content::Value("x"), perm, now())), root);
    assert_eq!(err_of(s.set("", Content::Dir, perm, now())), root);
    assert_eq!(err_of(s.create("/", Content::Dir, perm, now())), root);
    assert_eq!(err_of(s.update("/", "", perm, now())), root);
    assert_eq!(
        err_of(s.compare_and_swap("/", Condition::default(), "x", perm, now())),
        root
    );
    assert_eq!(err_of(s.delete("/", true, true, now())), root);
    assert_eq!(
        err_of(s.compare_and_delete("/", Condition::default(), now())),
        (ErrorCode::NotFile, "".into(), 1),
        "etcd leaves the cause out here"
    );
    assert_eq!(s.index(), 1);
}

// --- set, create, update --------------------------------------------------------------------

#[test]
fn set_dir_creates_a_directory() {
    let mut s = Store::new();
    assert_eq!(
        json(&mkdir(&mut s, "/d")),
        r#"{"action":"set","node":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn set_on_a_directory_is_not_a_file() {
    let mut s = Store::new();
    mkdir(&mut s, "/d");
    let perm = TtlOptions::PERMANENT;
    assert_eq!(
        err_of(s.set("/d", Content::Value("x"), perm, now())),
        (ErrorCode::NotFile, "/d".into(), 1)
    );
    assert_eq!(
        err_of(s.set("/d", Content::Dir, perm, now())),
        (ErrorCode::NotFile, "/d".into(), 1)
    );
}

#[test]
fn set_dir_replaces_a_file() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let e = mkdir(&mut s, "/k");
    assert!(e.node.dir);
    assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("v"));
}

#[test]
fn set_below_a_file_is_not_a_directory() {
    let mut s = Store::new();
    set(&mut s, "/e", "1");
    assert_eq!(
        err_of(s.set("/e/f", Content::Value("1"), TtlOptions::PERMANENT, now())),
        (ErrorCode::NotDir, "/e".into(), 1)
    );
}

#[test]
fn create_makes_a_new_key() {
    let mut s = Store::new();
    let e = s
        .create("/c", Content::Value("1"), TtlOptions::PERMANENT, now())
        .unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"create","node":{"key":"/c","value":"1","modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn create_existing_key_is_key_already_exists() {
    let mut s = Store::new();
    set(&mut s, "/e", "1");
    mkdir(&mut s, "/d");
    let perm = TtlOptions::PERMANENT;
    assert_eq!(
        err_of(s.create("/e", Content::Value("2"), perm, now())),
        (ErrorCode::NodeExist, "/e".into(), 2)
    );
    assert_eq!(
        err_of(s.create("/d", Content::Dir, perm, now())),
        (ErrorCode::NodeExist, "/d".into(), 2)
    );
}

#[test]
fn create_in_order_names_children_by_index() {
    let mut s = Store::new();
    set(&mut s, "/other", "x");
    let perm = TtlOptions::PERMANENT;
    let first = s
        .create_in_order("/queue", Content::Value("job1"), perm, now())
        .unwrap();
    let second = s
        .create_in_order("/queue/", Content::Value("job2"), perm, now())
        .unwrap();
    assert_eq!(
        json(&first),
        r#"{"action":"create","node":{"key":"/queue/00000000000000000002","value":"job1","modifiedIndex":2,"createdIndex":2}}"#
    );
    assert_eq!(second.node.key, "/queue/00000000000000000003");
    let listing = s.get("/queue", false, now()).unwrap();
    let values: Vec<_> = listing
        .node
        .nodes
        .iter()
        .map(|n| n.value.clone().unwrap())
        .collect();
    assert_eq!(values, ["job1", "job2"]);
}

#[test]
fn create_in_order_can_make_directories() {
    let mut s = Store::new();
    let e = s
        .create_in_order("/q", Content::Dir, TtlOptions::PERMANENT, now())
        .unwrap();
    assert!(e.node.dir);
    assert_eq!(e.node.key, "/q/00000000000000000001");
}

#[test]
fn update_changes_an_existing_value() {
    let mut s = Store::new();
    set(&mut s, "/k", "old");
    let e = s.update("/k", "new", TtlOptions::PERMANENT, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"update","node":{"key":"/k","value":"new","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"old","modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn update_missing_key_is_key_not_found() {
    let mut s = Store::new();
    assert_eq!(
        err_of(s.update("/nope", "v", TtlOptions::PERMANENT, now())),
        (ErrorCode::KeyNotFound, "/nope".into(), 0)
    );
}

#[test]
fn update_directory_changes_only_its_ttl() {
    let mut s = Store::new();
    mkdir(&mut s, "/d");
    assert_eq!(
        err_of(s.update("/d", "v", TtlOptions::PERMANENT, now())),
        (ErrorCode::NotFile, "/d".into(), 1)
    );
    let e = s.update("/d", "", ttl_in(100), now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"update","node":{"key":"/d","dir":true,"expiration":"2025-11-24T16:01:40Z","ttl":100,"modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}"#
    );
    // As in etcd, the directory itself keeps its modifiedIndex.
    let got = s.get("/d", false, now()).unwrap();
    assert_eq!(got.node.modified_index, 1);
    assert_eq!(got.node.ttl, 100);
}

#[test]
fn update_without_ttl_makes_a_key_permanent() {
    let mut s = Store::new();
    s.set("/k", Content::Value("v"), ttl_in(5), now()).unwrap();
    let e = s.update("/k", "v", TtlOptions::PERMANENT, now()).unwrap();
    assert_eq!(e.node.expiration, None);
    assert!(s.expire(at(10)).is_empty());
    assert!(s.get("/k", false, at(10)).is_ok());
}

// --- TTLs -----------------------------------------------------------------------------------

#[test]
fn ttl_key_reports_expiration_and_remaining_seconds() {
    let mut s = Store::new();
    let e = s.set("/k", Content::Value("v"), ttl_in(5), now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"set","node":{"key":"/k","value":"v","expiration":"2025-11-24T16:00:05Z","ttl":5,"modifiedIndex":1,"createdIndex":1}}"#
    );
    let later = now().saturating_add_nanos(800_000_000);
    assert_eq!(
        s.get("/k", false, later).unwrap().node.ttl,
        5,
        "4.2 s rounds up"
    );
    assert_eq!(s.get("/k", false, at(4)).unwrap().node.ttl, 1);
}

#[test]
fn expire_removes_due_keys_with_expire_events() {
    let mut s = Store::new();
    s.set("/k", Content::Value("v"), ttl_in(5), now()).unwrap();
    set(&mut s, "/stay", "x");
    assert!(s.expire(at(4)).is_empty());
    let events = s.expire(at(5));
    assert_eq!(events.len(), 1);
    assert_eq!(
        json(&events[0]),
        r#"{"action":"expire","node":{"key":"/k","modifiedIndex":3,"createdIndex":1},"prevNode":{"key":"/k","value":"v","expiration":"2025-11-24T16:00:05Z","modifiedIndex":1,"createdIndex":1}}"#
    );
    assert_eq!(s.index(), 3, "expiry moves the index");
    assert_eq!(err_of(s.get("/k", false, at(5))).0, ErrorCode::KeyNotFound);
    assert!(s.get("/stay", false, at(5)).is_ok());
    assert_eq!(s.stats().expire_count, 1);
}

#[test]
fn expire_goes_in_time_order_one_index_each() {
    let mut s = Store::new();
    s.set("/late", Content::Value("v"), ttl_in(3), now())
        .unwrap();
    s.set("/early", Content::Value("v"), ttl_in(1), now())
        .unwrap();
    s.set("/b", Content::Value("v"), ttl_in(2), now()).unwrap();
    s.set("/a", Content::Value("v"), ttl_in(2), now()).unwrap();
    let events = s.expire(at(10));
    let order: Vec<_> = events
        .iter()
        .map(|e| (e.key().to_owned(), e.index()))
        .collect();
    assert_eq!(
        order,
        [
            ("/early".into(), 5),
            ("/a".into(), 6),
            ("/b".into(), 7),
            ("/late".into(), 8)
        ]
    );
}

#[test]
fn ttl_on_a_directory_expires_the_whole_subtree() {
    let mut s = Store::new();
    s.set("/d", Content::Dir, ttl_in(2), now()).unwrap();
    set(&mut s, "/d/a", "1");
    s.set("/d/b/c", Content::Value("2"), ttl_in(30), now())
        .unwrap();
    let events = s.expire(at(2));
    assert_eq!(events.len(), 1);
    assert!(events[0].node.dir);
    assert_eq!(
        err_of(s.get("/d/a", false, at(2))).0,
        ErrorCode::KeyNotFound
    );
    assert!(
        s.expire(at(100)).is_empty(),
        "children's TTLs went with them"
    );
    assert_eq!(s.next_expiry(), None);
}

#[test]
fn refresh_resets_the_ttl_and_keeps_the_value() {
    let mut s = Store::new();
    s.set("/k", Content::Value("v"), ttl_in(5), now()).unwrap();
    let refresh = TtlOptions {
        expire_at: Some(at(50)),
        refresh: true,
    };
    let e = s.update("/k", "", refresh, now()).unwrap();
    assert_eq!(e.node.value.as_deref(), Some("v"));
    assert_eq!(e.node.ttl, 50);
    assert_eq!(e.node.created_index, 1);
    assert!(s.expire(at(10)).is_empty());
    // Through set, like etcd, refresh re-creates the node with the old value.
    let e = s
        .set("/k", Content::Value("ignored"), refresh, now())
        .unwrap();
    assert_eq!(e.node.value.as_deref(), Some("v"));
    assert_eq!(e.node.created_index, 3);
}

#[test]
fn refresh_of_a_missing_key_is_key_not_found() {
    let mut s = Store::new();
    let refresh = TtlOptions {
        expire_at: Some(at(50)),
        refresh: true,
    };
    assert_eq!(
        err_of(s.set("/k", Content::Value(""), refresh, now())).0,
        ErrorCode::KeyNotFound
    );
}

#[test]
fn refresh_does_not_fire_watchers() {
    let mut s = Store::new();
    s.set("/k", Content::Value("v"), ttl_in(5), now()).unwrap();
    let mut w = s.watch("/k", false, true, 0).unwrap();
    let refresh = TtlOptions {
        expire_at: Some(at(50)),
        refresh: true,
    };
    s.update("/k", "", refresh, now()).unwrap();
    s.set("/k", Content::Value(""), refresh, now()).unwrap();
    s.compare_and_swap("/k", Condition::default(), "", refresh, now())
        .unwrap();
    assert_eq!(w.try_next(), Next::Pending);
    // Nor does a later watcher find refreshes in the history.
    let mut from_history = s.watch("/k", false, false, 2).unwrap();
    assert_eq!(from_history.try_next(), Next::Pending);
    set(&mut s, "/k", "changed");
    assert_eq!(drain(&mut w).len(), 1);
    assert_eq!(
        drain(&mut from_history)[0].node.value.as_deref(),
        Some("changed")
    );
}

#[test]
fn absurd_ttls_get_etcds_error_or_a_permanent_key() {
    assert_eq!(parse_ttl("-1").unwrap_err().code, ErrorCode::TtlNaN);
    assert_eq!(
        parse_ttl("99999999999999999999").unwrap_err().code,
        ErrorCode::TtlNaN
    );
    let huge = parse_ttl("99999999999").unwrap().unwrap();
    let mut s = Store::new();
    let ttl = TtlOptions {
        expire_at: expiry_after(now(), huge),
        refresh: false,
    };
    let e = s.set("/k", Content::Value("v"), ttl, now()).unwrap();
    assert_eq!(
        e.node.expiration, None,
        "etcd's overflow leaves it permanent"
    );
}

// --- compare-and-swap, delete, compare-and-delete -------------------------------------------

#[test]
fn compare_and_swap_by_value_and_index() {
    let mut s = Store::new();
    set(&mut s, "/k", "one");
    let by_value = Condition {
        prev_value: Some("one"),
        prev_index: None,
    };
    let e = s
        .compare_and_swap("/k", by_value, "two", TtlOptions::PERMANENT, now())
        .unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"compareAndSwap","node":{"key":"/k","value":"two","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"one","modifiedIndex":1,"createdIndex":1}}"#
    );
    let by_index = Condition {
        prev_value: None,
        prev_index: Some(2),
    };
    let e = s
        .compare_and_swap("/k", by_index, "three", TtlOptions::PERMANENT, now())
        .unwrap();
    assert_eq!(e.node.modified_index, 3);
}

#[test]
fn compare_and_swap_failure_names_what_differed() {
    let mut s = Store::new();
    for i in 1..=12 {
        set(&mut s, &format!("/pad{i}"), "x");
    }
    set(&mut s, "/a/b", "1");
    let perm = TtlOptions::PERMANENT;
    let cas = |s: &mut Store, v, i| {
        let c = Condition {
            prev_value: v,
            prev_index: i,
        };
        err_of(s.compare_and_swap("/a/b", c, "3", perm, now()))
    };
    assert_eq!(
        cas(&mut s, Some("2"), None),
        (ErrorCode::TestFailed, "[2 != 1]".into(), 13)
    );
    assert_eq!(
        cas(&mut s, None, Some(2)),
        (ErrorCode::TestFailed, "[2 != 13]".into(), 13)
    );
    assert_eq!(
        cas(&mut s, Some("5"), Some(2)),
        (ErrorCode::TestFailed, "[5 != 1] [2 != 13]".into(), 13)
    );
}

#[test]
fn compare_and_swap_on_a_directory_is_not_a_file() {
    let mut s = Store::new();
    mkdir(&mut s, "/d");
    assert_eq!(
        err_of(s.compare_and_swap(
            "/d",
            Condition::default(),
            "x",
            TtlOptions::PERMANENT,
            now()
        )),
        (ErrorCode::NotFile, "/d".into(), 1)
    );
}

#[test]
fn delete_removes_a_file() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let e = s.delete("/k", false, false, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"delete","node":{"key":"/k","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}}"#
    );
    assert_eq!(err_of(s.get("/k", false, now())).0, ErrorCode::KeyNotFound);
}

#[test]
fn delete_directory_needs_dir_and_recursive_unless_empty() {
    let mut s = Store::new();
    set(&mut s, "/a/b", "1");
    mkdir(&mut s, "/empty");
    assert_eq!(
        err_of(s.delete("/a", false, false, now())),
        (ErrorCode::NotFile, "/a".into(), 2)
    );
    assert_eq!(
        err_of(s.delete("/a", true, false, now())),
        (ErrorCode::DirNotEmpty, "/a".into(), 2)
    );
    assert!(s.delete("/empty", true, false, now()).is_ok());
    let e = s.delete("/a", false, true, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"delete","node":{"key":"/a","dir":true,"modifiedIndex":4,"createdIndex":1},"prevNode":{"key":"/a","dir":true,"modifiedIndex":1,"createdIndex":1}}"#
    );
    assert_eq!(
        err_of(s.get("/a/b", false, now())).0,
        ErrorCode::KeyNotFound
    );
}

#[test]
fn delete_recursive_drops_ttls_below() {
    let mut s = Store::new();
    s.set("/d/k", Content::Value("v"), ttl_in(5), now())
        .unwrap();
    s.delete("/d", true, true, now()).unwrap();
    assert!(s.expire(at(10)).is_empty());
    assert_eq!(s.index(), 2);
}

#[test]
fn compare_and_delete_by_value_and_index() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let wrong = Condition {
        prev_value: Some("x"),
        prev_index: None,
    };
    assert_eq!(
        err_of(s.compare_and_delete("/k", wrong, now())),
        (ErrorCode::TestFailed, "[x != v]".into(), 1)
    );
    let right = Condition {
        prev_value: Some("v"),
        prev_index: Some(1),
    };
    let e = s.compare_and_delete("/k", right, now()).unwrap();
    assert_eq!(
        json(&e),
        r#"{"action":"compareAndDelete","node":{"key":"/k","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn compare_and_delete_on_a_directory_is_not_a_file() {
    let mut s = Store::new();
    mkdir(&mut s, "/d");
    assert_eq!(
        err_of(s.compare_and_delete("/d", Condition::default(), now())),
        (ErrorCode::NotFile, "/d".into(), 1)
    );
}

#[test]
fn failed_operations_leave_the_index_alone() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let _ = s.create("/k", Content::Value("x"), TtlOptions::PERMANENT, now());
    let _ = s.update("/missing", "x", TtlOptions::PERMANENT, now());
    let _ = s.delete("/missing", false, false, now());
    assert_eq!(s.index(), 1);
}

// --- watchers -------------------------------------------------------------------------------

#[test]
fn watch_wakes_on_the_next_change() {
    let mut s = Store::new();
    let mut w = s.watch("/k", false, false, 0).unwrap();
    assert_eq!(w.try_next(), Next::Pending);
    set(&mut s, "/other", "x");
    assert_eq!(w.try_next(), Next::Pending);
    set(&mut s, "/k", "v");
    match w.try_next() {
        Next::Event(e) => assert_eq!(e.node.value.as_deref(), Some("v")),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.try_next(), Next::Ended, "one-shot");
}

#[test]
fn recursive_watch_sees_changes_below() {
    let mut s = Store::new();
    let mut plain = s.watch("/d", false, true, 0).unwrap();
    let mut deep = s.watch("/d", true, true, 0).unwrap();
    set(&mut s, "/d/a/b", "1");
    assert_eq!(plain.try_next(), Next::Pending);
    assert_eq!(drain(&mut deep)[0].key(), "/d/a/b");
}

#[test]
fn recursive_watch_does_not_see_hidden_keys_below() {
    let mut s = Store::new();
    let mut w = s.watch("/", true, true, 0).unwrap();
    let mut direct = s.watch("/_h", false, true, 0).unwrap();
    set(&mut s, "/_h", "1");
    set(&mut s, "/a/_b/c", "1");
    set(&mut s, "/a/c", "1");
    let keys: Vec<_> = drain(&mut w).iter().map(|e| e.key().to_owned()).collect();
    assert_eq!(keys, ["/a/c"]);
    assert_eq!(
        drain(&mut direct).len(),
        1,
        "a hidden key's own watcher is told"
    );
}

#[test]
fn watch_with_index_answers_from_history() {
    let mut s = Store::new();
    set(&mut s, "/k", "one");
    set(&mut s, "/k", "two");
    set(&mut s, "/x", "x");
    let mut w = s.watch("/k", false, false, 2).unwrap();
    let got = drain(&mut w);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].node.value.as_deref(), Some("two"));
    assert_eq!(got[0].etcd_index, 3, "answered at the current index");
    assert_eq!(w.try_next(), Next::Ended);
}

#[test]
fn stream_watch_from_history_then_continues_live() {
    let mut s = Store::new();
    set(&mut s, "/k", "one");
    set(&mut s, "/k", "two");
    let mut w = s.watch("/k", false, true, 1).unwrap();
    set(&mut s, "/k", "three");
    let values: Vec<_> = drain(&mut w)
        .iter()
        .map(|e| e.node.value.clone().unwrap())
        .collect();
    assert_eq!(values, ["one", "two", "three"]);
}

#[test]
fn watch_future_index_waits_for_it() {
    let mut s = Store::new();
    let mut w = s.watch("/k", false, false, 3).unwrap();
    set(&mut s, "/k", "1");
    set(&mut s, "/k", "2");
    assert_eq!(w.try_next(), Next::Pending);
    set(&mut s, "/k", "3");
    assert!(matches!(w.try_next(), Next::Event(e) if e.index() == 3));
}

#[test]
fn watch_index_older_than_history_is_event_index_cleared() {
    let mut s = Store::with_history_capacity(5);
    for i in 0..10 {
        set(&mut s, "/churn", &i.to_string());
    }
    let e = s.watch("/x", false, false, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::EventIndexCleared);
    assert_eq!(e.cause, "the requested history has been cleared [6/1]");
    assert_eq!(e.index, 10);
    assert_eq!(
        e.message(),
        "The event in requested index is outdated and cleared"
    );
    assert!(s.watch("/x", false, false, 6).is_ok());
}

#[test]
fn default_history_holds_a_thousand_events() {
    let mut s = Store::new();
    for i in 0..1010 {
        set(&mut s, "/churn", &i.to_string());
    }
    assert_eq!(
        s.watch("/x", false, false, 1).unwrap_err().cause,
        "the requested history has been cleared [11/1]"
    );
}

#[test]
fn deleting_a_directory_notifies_watchers_of_its_children() {
    let mut s = Store::new();
    set(&mut s, "/d/a/b", "1");
    let mut child = s.watch("/d/a/b", false, false, 0).unwrap();
    let mut stream = s.watch("/d/a", false, true, 0).unwrap();
    let mut outside = s.watch("/other", true, true, 0).unwrap();
    s.delete("/d", true, true, now()).unwrap();
    let got = drain(&mut child);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].action, Action::Delete);
    assert_eq!(got[0].key(), "/d");
    assert_eq!(drain(&mut stream).len(), 1, "exactly once");
    assert_eq!(outside.try_next(), Next::Pending);
}

#[test]
fn deleting_a_directory_leaves_watchers_of_keys_it_never_held_alone() {
    let mut s = Store::new();
    set(&mut s, "/d/x", "1");
    let mut missing = s.watch("/d/nonexist", false, false, 0).unwrap();
    let mut deeper = s.watch("/d/x/deeper", false, false, 0).unwrap();
    s.delete("/d", true, true, now()).unwrap();
    assert_eq!(missing.try_next(), Next::Pending);
    assert_eq!(deeper.try_next(), Next::Pending);
    set(&mut s, "/d/nonexist", "2");
    assert!(matches!(missing.try_next(), Next::Event(e) if e.action == Action::Set));
}

#[test]
fn refresh_is_never_shown_to_clients() {
    let mut s = Store::new();
    s.set("/k", Content::Value("7"), ttl_in(40), now()).unwrap();
    let refresh = TtlOptions {
        expire_at: Some(at(60)),
        refresh: true,
    };
    let e = s.set("/k", Content::Value(""), refresh, now()).unwrap();
    assert!(e.refresh);
    assert!(!e.to_json().contains("refresh"), "{}", e.to_json());
    // ...but a snapshot keeps it, so restored history still hides refreshes from watchers.
    let mut r = Store::restore(&s.save()).unwrap();
    let mut w = r.watch("/k", false, false, 2).unwrap();
    assert_eq!(w.try_next(), Next::Pending);
}

#[test]
fn refresh_through_set_dir_makes_a_directory_as_etcd_does() {
    let mut s = Store::new();
    set(&mut s, "/k", "v");
    let refresh = TtlOptions {
        expire_at: Some(at(60)),
        refresh: true,
    };
    let e = s.set("/k", Content::Dir, refresh, now()).unwrap();
    assert!(e.node.dir);
    assert_eq!(e.node.ttl, 60);
}

#[test]
fn a_watch_remembers_the_index_it_started_at() {
    let mut s = Store::new();
    set(&mut s, "/a", "1");
    let w = s.watch("/k", false, false, 0).unwrap();
    set(&mut s, "/k", "2");
    assert_eq!(w.start_index(), 1);
}

#[test]
fn expiring_a_directory_notifies_watchers_of_its_children() {
    let mut s = Store::new();
    s.set("/d", Content::Dir, ttl_in(1), now()).unwrap();
    set(&mut s, "/d/k", "v");
    let mut w = s.watch("/d/k", false, false, 0).unwrap();
    s.expire(at(1));
    let got = drain(&mut w);
    assert_eq!(got[0].action, Action::Expire);
    assert_eq!(got[0].key(), "/d");
}

#[test]
fn history_finds_the_deletion_of_a_watched_keys_directory() {
    let mut s = Store::new();
    set(&mut s, "/d/k", "v");
    s.delete("/d", true, true, now()).unwrap();
    let mut w = s.watch("/d/k", false, false, 2).unwrap();
    assert!(matches!(w.try_next(), Next::Event(e) if e.key() == "/d"));
}

#[test]
fn stream_watcher_gets_every_event_once_in_order() {
    let mut s = Store::new();
    let mut w = s.watch("/", true, true, 0).unwrap();
    set(&mut s, "/a", "1");
    s.update("/a", "2", TtlOptions::PERMANENT, now()).unwrap();
    s.delete("/a", false, false, now()).unwrap();
    let indexes: Vec<_> = drain(&mut w).iter().map(|e| e.index()).collect();
    assert_eq!(indexes, [1, 2, 3]);
}

#[test]
fn slow_stream_watcher_is_dropped_not_waited_for() {
    let mut s = Store::new();
    let mut w = s.watch("/", true, true, 0).unwrap();
    for i in 0..150 {
        set(&mut s, "/k", &i.to_string());
    }
    assert_eq!(s.index(), 150, "the store never blocked");
    assert_eq!(drain(&mut w).len(), 100, "what fitted in its buffer");
    assert_eq!(w.try_next(), Next::Ended);
    assert_eq!(s.stats().watchers, 0);
}

#[test]
fn watchers_whose_clients_left_are_not_counted() {
    let mut s = Store::new();
    let kept = s.watch("/a", false, false, 0).unwrap();
    let gone = s.watch("/b", false, false, 0).unwrap();
    assert_eq!(s.stats().watchers, 2);
    drop(gone);
    assert_eq!(s.stats().watchers, 1);
    drop(kept);
    assert_eq!(s.stats().watchers, 0);
}

#[test]
fn many_abandoned_watchers_are_swept() {
    let mut s = Store::new();
    for i in 0..5000 {
        drop(s.watch(&format!("/k{i}"), false, false, 0).unwrap());
    }
    assert!(s.hub.live_watchers() == 0);
    let registered: usize = s.hub_registrations();
    assert!(registered < 2100, "{registered} registrations kept");
}

impl Store {
    fn hub_registrations(&self) -> usize {
        self.hub.registrations()
    }
}

// --- stats ----------------------------------------------------------------------------------

#[test]
fn stats_count_successes_and_failures() {
    let mut s = Store::new();
    let perm = TtlOptions::PERMANENT;
    set(&mut s, "/k", "v");
    let _ = s.set("/k/x", Content::Value("v"), perm, now());
    let _ = s.get("/k", false, now());
    let _ = s.get("/nope", false, now());
    let _ = s.create("/c", Content::Value("v"), perm, now());
    let _ = s.create("/c", Content::Value("v"), perm, now());
    let _ = s.update("/k", "w", perm, now());
    let _ = s.update("/nope", "w", perm, now());
    let yes = Condition {
        prev_value: Some("w"),
        prev_index: None,
    };
    let _ = s.compare_and_swap("/k", yes, "z", perm, now());
    let _ = s.compare_and_swap("/k", yes, "z", perm, now());
    let z = Condition {
        prev_value: Some("z"),
        prev_index: None,
    };
    let _ = s.compare_and_delete("/k", z, now());
    let _ = s.compare_and_delete("/k", z, now());
    let _ = s.delete("/c", false, false, now());
    let _ = s.delete("/c", false, false, now());
    let _w = s.watch("/w", false, false, 0).unwrap();
    assert_eq!(
        s.stats().to_json(),
        r#"{"getsSuccess":1,"getsFail":1,"setsSuccess":1,"setsFail":1,"deleteSuccess":1,"deleteFail":1,"updateSuccess":1,"updateFail":1,"createSuccess":1,"createFail":1,"compareAndSwapSuccess":1,"compareAndSwapFail":1,"compareAndDeleteSuccess":1,"compareAndDeleteFail":1,"expireCount":0,"watchers":1}"#
    );
}

// --- snapshots ------------------------------------------------------------------------------

#[test]
fn snapshot_restores_tree_ttls_index_history_and_stats() {
    let mut s = Store::with_history_capacity(50);
    set(&mut s, "/a/b", "1");
    s.set("/t", Content::Value("x"), ttl_in(5), now()).unwrap();
    s.set("/d", Content::Dir, ttl_in(9), now()).unwrap();
    set(&mut s, "/_hidden", "h");
    let _ = s.get("/nope", false, now());
    let bytes = s.save();
    let mut r = Store::restore(&bytes).unwrap();
    assert_eq!(r.save(), bytes);
    assert_eq!(r.index(), s.index());
    assert_eq!(r.stats(), s.stats());
    assert_eq!(
        r.get("/", true, now()).unwrap(),
        s.get("/", true, now()).unwrap()
    );
    // TTLs and history came back too.
    assert_eq!(r.expire(at(5)), s.expire(at(5)));
    let mut w = r.watch("/a/b", false, false, 1).unwrap();
    assert!(matches!(w.try_next(), Next::Event(e) if e.index() == 1));
}

fn key_of_depth(depth: usize) -> String {
    (0..depth).map(|i| format!("/n{i}")).collect()
}

#[test]
fn keys_deeper_than_the_limit_are_refused_and_leave_the_store_alone() {
    let mut s = Store::new();
    let too_deep = key_of_depth(MAX_KEY_DEPTH + 1);
    let (code, cause, index) =
        err_of(s.set(&too_deep, Content::Value("v"), TtlOptions::PERMANENT, now()));
    assert_eq!(code, ErrorCode::InvalidField);
    assert!(cause.contains("257 levels deep"), "{cause}");
    assert_eq!(index, 0);
    assert_eq!(s.index(), 0);
    assert!(
        s.get("/n0", false, now()).is_err(),
        "no directory was made on the way"
    );
    // The limit counts the clean key: `..` segments do not add depth.
    let winding = format!("{}/x/..", key_of_depth(MAX_KEY_DEPTH));
    assert!(s
        .set(&winding, Content::Value("v"), TtlOptions::PERMANENT, now())
        .is_ok());
}

#[test]
fn in_order_keys_count_towards_the_depth_limit() {
    let mut s = Store::new();
    let dir = key_of_depth(MAX_KEY_DEPTH);
    let (code, _, _) =
        err_of(s.create_in_order(&dir, Content::Value("v"), TtlOptions::PERMANENT, now()));
    assert_eq!(code, ErrorCode::InvalidField);
}

#[test]
fn keys_longer_than_the_limit_are_refused() {
    let mut s = Store::new();
    let long = format!("/{}", "k".repeat(MAX_KEY_BYTES));
    let (code, cause, _) = err_of(s.set(&long, Content::Value("v"), TtlOptions::PERMANENT, now()));
    assert_eq!(code, ErrorCode::InvalidField);
    assert!(cause.contains("bytes long"), "{cause}");
    let longest = format!("/{}", "k".repeat(MAX_KEY_BYTES - 1));
    assert!(s
        .set(&longest, Content::Value("v"), TtlOptions::PERMANENT, now())
        .is_ok());
}

#[test]
fn the_deepest_tree_allowed_survives_every_walk() {
    // Every operation that walks a subtree, on the deepest one a write can make, on a thread
    // with a small stack: none of them may overflow it.
    let walks = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let mut s = Store::new();
            let deepest = key_of_depth(MAX_KEY_DEPTH);
            set(&mut s, &deepest, "bottom");
            let json = s.get("/", true, now()).unwrap().to_json();
            assert!(json.contains("bottom"));
            let restored = Store::restore(&s.save()).unwrap();
            assert_eq!(restored.save(), s.save());
            let mut w = s.watch("/n0", true, false, 0).unwrap();
            s.delete("/n0", true, true, now()).unwrap();
            assert!(matches!(w.try_next(), Next::Event(_)));
            // A directory expiring takes its subtree with it.
            let dir = key_of_depth(1);
            s.set(&dir, Content::Dir, ttl_in(1), now()).unwrap();
            set(&mut s, &deepest, "again");
            assert_eq!(s.expire(at(10)).len(), 1);
            drop(restored);
        })
        .unwrap();
    walks.join().expect("no walk overflows the stack");
}

#[test]
fn snapshot_of_deep_keys_restores() {
    let mut s = Store::new();
    let deep: String = key_of_depth(MAX_KEY_DEPTH);
    set(&mut s, &deep, "bottom");
    let r = Store::restore(&s.save()).unwrap();
    assert_eq!(
        r.get(&deep, false, now()).unwrap().node.value.as_deref(),
        Some("bottom")
    );
}

#[test]
fn damaged_snapshots_are_refused_with_a_clear_error() {
    let mut s = Store::new();
    set(&mut s, "/a/b", "1");
    let good = String::from_utf8(s.save()).unwrap();
    let cases = [
        String::new(),
        "not json".to_owned(),
        good[..good.len() / 2].to_owned(),
        good.replace(r#""version":1"#, r#""version":7"#),
        good.replace(r#""key":"/a/b""#, r#""key":"/x/b""#),
        good.replace(r#""key":"/a/b""#, r#""key":"/a//b""#),
        good.replace(r#""key":"/a/b""#, r#""key":"/a""#),
        good.replace(r#""index":1,"#, r#""index":0,"#),
        good.replace(r#""history_capacity":1000"#, r#""history_capacity":0"#),
        good.replace(r#""index":1,"#, r#""index":18446744073709551615,"#),
        good.replace(r#""node":{"key":"/a/b""#, r#""node":{"key":"éa""#),
    ];
    for (i, bad) in cases.iter().enumerate() {
        assert_ne!(bad, &good, "case {i} must differ");
        assert!(Store::restore(bad.as_bytes()).is_err(), "case {i}: {bad}");
    }
    assert!(Store::restore(&[0xff, 0xfe, 0x00]).is_err());
}

// --- bad input ------------------------------------------------------------------------------

#[test]
fn bad_keys_never_panic() {
    let mut s = Store::new();
    let long_key: String = "k".repeat(100_000);
    let long_value: String = "v".repeat(1_000_000);
    let lossy = String::from_utf8_lossy(b"/bad\xff\xfekey").into_owned();
    let perm = TtlOptions::PERMANENT;
    for key in [
        "", "/", "..", "/../..", "//", ".", "/./.", "\0", "/a\0b", &long_key, &lossy,
    ] {
        let _ = s.set(key, Content::Value(&long_value), perm, now());
        let _ = s.get(key, true, now());
        let _ = s.create(key, Content::Dir, perm, now());
        let _ = s.create_in_order(key, Content::Value("x"), perm, now());
        let _ = s.update(key, "x", perm, now());
        let _ = s.compare_and_swap(key, Condition::default(), "x", perm, now());
        let _ = s.compare_and_delete(key, Condition::default(), now());
        let _ = s.delete(key, true, true, now());
        let _ = s.watch(key, true, true, 0);
    }
    let r = Store::restore(&s.save()).unwrap();
    assert_eq!(r.index(), s.index());
}

#[test]
fn extreme_times_never_panic() {
    let mut s = Store::new();
    let min = Timestamp::from_unix_nanos(i64::MIN);
    let max = Timestamp::from_unix_nanos(i64::MAX);
    s.set("/a", Content::Value("v"), TtlOptions::expiring(max), min)
        .unwrap();
    s.set("/b", Content::Value("v"), TtlOptions::expiring(min), max)
        .unwrap();
    let _ = s.get("/", true, min);
    let _ = s.get("/", true, max);
    assert_eq!(s.expire(min).len(), 1);
    assert_eq!(s.expire(max).len(), 1);
}

#[test]
fn watchers_move_to_a_store_that_replaces_this_one() {
    let mut old = Store::new();
    let mut w = old.watch("/k", false, false, 0).unwrap();
    let mut replacement = Store::restore(&old.save()).unwrap();
    replacement.adopt_watchers(&mut old);
    assert_eq!(old.stats().watchers, 0);
    assert_eq!(replacement.stats().watchers, 1);
    set(&mut replacement, "/k", "v");
    assert!(matches!(w.try_next(), Next::Event(e) if e.node.value.as_deref() == Some("v")));
}

mod deep_trees {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Set(usize, bool),
        Dir(usize, u8),
        Delete(usize),
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let depth = 1..MAX_KEY_DEPTH + 60;
        prop_oneof![
            (depth.clone(), any::<bool>()).prop_map(|(d, b)| Op::Set(d, b)),
            (depth.clone(), 0u8..4).prop_map(|(d, t)| Op::Dir(d, t)),
            depth.prop_map(Op::Delete),
            (0u8..6).prop_map(Op::Expire),
        ]
    }

    /// Keys along two branches, so writes meet files and directories on the way.
    fn key(depth: usize, branch: bool) -> String {
        (0..depth)
            .map(|i| if branch && i > depth / 2 { "/b" } else { "/a" })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Deep trees in every shape: a write past the depth limit is refused and changes
        /// nothing; everything that walks the tree (recursive reads, snapshots, recursive
        /// deletes, directories expiring) works on a thread with a modest stack.
        #[test]
        fn deep_trees_never_overflow_and_never_pass_the_limit(ops in proptest::collection::vec(op(), 1..30)) {
            let outcome = std::thread::Builder::new().stack_size(1 << 20).spawn(move || {
                let mut s = Store::new();
                for op in ops {
                    let before = s.index();
                    let (depth, result) = match op {
                        Op::Set(d, b) => (d, s.set(&key(d, b), Content::Value("v"), TtlOptions::PERMANENT, now()).map(|_| ())),
                        Op::Dir(d, t) => (d, s.set(&key(d, false), Content::Dir, if t == 0 { TtlOptions::PERMANENT } else { ttl_in(t.into()) }, now()).map(|_| ())),
                        Op::Delete(d) => (0, s.delete(&key(d, false), true, true, now()).map(|_| ())),
                        Op::Expire(t) => { s.expire(at(t.into())); (0, Ok(())) }
                    };
                    if depth > MAX_KEY_DEPTH {
                        // Refused: for the limit, or for a file standing on the way.
                        assert!(result.is_err());
                        assert_eq!(s.index(), before);
                    }
                    let listing = s.get("/", true, now()).unwrap().to_json();
                    assert!(listing.len() > 2);
                    let restored = Store::restore(&s.save()).unwrap();
                    assert_eq!(restored.save(), s.save());
                }
            }).unwrap().join();
            prop_assert!(outcome.is_ok(), "a walk overflowed or panicked");
        }
    }
}
