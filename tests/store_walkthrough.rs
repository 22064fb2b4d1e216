//! etcd's classic v2 walk-through, at the store level, through the crate's public API only.
//! The HTTP version of this file arrives with the server; the JSON bodies must not change.

use etcd::store::{Condition, Content, Next, Store, TtlOptions};
use etcd::{ErrorCode, Timestamp};

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_764_000_000)
}

#[test]
fn the_classic_walkthrough_answers_with_etcds_json() {
    let mut store = Store::new();
    let t = now();
    let perm = TtlOptions::PERMANENT;

    // curl -X PUT /v2/keys/message -d value="Hello world"
    let set = store
        .set("/message", Content::Value("Hello world"), perm, t)
        .unwrap();
    assert_eq!(
        set.to_json(),
        r#"{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}"#
    );

    // curl /v2/keys/message
    let got = store.get("/message", false, t).unwrap();
    assert_eq!(
        got.to_json(),
        r#"{"action":"get","node":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}"#
    );

    // curl -X PUT /v2/keys/message -d value="Hello etcd"
    let changed = store
        .set("/message", Content::Value("Hello etcd"), perm, t)
        .unwrap();
    assert_eq!(
        changed.prev_node.unwrap().value.as_deref(),
        Some("Hello world")
    );

    // curl -X DELETE /v2/keys/message
    let deleted = store.delete("/message", false, false, t).unwrap();
    assert_eq!(
        deleted.to_json(),
        r#"{"action":"delete","node":{"key":"/message","modifiedIndex":3,"createdIndex":2},"prevNode":{"key":"/message","value":"Hello etcd","modifiedIndex":2,"createdIndex":2}}"#
    );

    // curl -X PUT /v2/keys/foo -d value=bar -d ttl=5, and five seconds later it is gone.
    let expiring = TtlOptions::expiring(t.checked_add_secs(5).unwrap());
    let ttl = store
        .set("/foo", Content::Value("bar"), expiring, t)
        .unwrap();
    assert_eq!(ttl.node.ttl, 5);
    assert_eq!(
        ttl.node.expiration.unwrap().to_rfc3339(),
        "2025-11-24T16:00:05Z"
    );
    let later = t.checked_add_secs(5).unwrap();
    assert_eq!(store.expire(later).len(), 1);
    let gone = store.get("/foo", false, later).unwrap_err();
    assert_eq!(
        gone.to_json(),
        r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":5}"#
    );
    assert_eq!(gone.http_status(), 404);

    // curl /v2/keys/foo?wait=true, then a change wakes it.
    let mut watcher = store.watch("/foo", false, false, 0).unwrap();
    assert_eq!(watcher.try_next(), Next::Pending);
    store
        .set("/foo", Content::Value("bar"), perm, later)
        .unwrap();
    match watcher.try_next() {
        Next::Event(e) => assert_eq!(
            e.to_json(),
            r#"{"action":"set","node":{"key":"/foo","value":"bar","modifiedIndex":6,"createdIndex":6}}"#
        ),
        other => panic!("the watcher was not woken: {other:?}"),
    }

    // Atomic compare-and-swap: prevValue=one fails on "bar".
    let cond = Condition {
        prev_value: Some("one"),
        prev_index: None,
    };
    let failed = store
        .compare_and_swap("/foo", cond, "two", perm, later)
        .unwrap_err();
    assert_eq!(failed.code, ErrorCode::TestFailed);
    assert_eq!(failed.cause, "[one != bar]");
    assert_eq!(failed.http_status(), 412);

    // In-order keys: curl -X POST /v2/keys/queue -d value=Job1
    let job = store
        .create_in_order("/queue", Content::Value("Job1"), perm, later)
        .unwrap();
    assert_eq!(job.node.key, "/queue/00000000000000000007");
    assert_eq!(job.action, etcd::store::Action::Create);

    // Statistics as /v2/stats/store shows them.
    let stats = store.stats();
    assert_eq!(
        (
            stats.sets_success,
            stats.expire_count,
            stats.compare_and_swap_fail
        ),
        (4, 1, 1)
    );
}
