//! The production paths (tokio, the real file system) of the replicated node: a single member
//! writes, is stopped dead, restarts from its data dir and has everything it acknowledged.
// A test of the real world: it may look at the real file system.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd::node::{Node, NodeConfig, Role};
use etcd::request::Op;
use etcd::runtime::{NoPeers, TokioRuntime};
use etcd::ErrorCode;

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etcd-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(dir: &Path) -> NodeConfig {
    let mut config = NodeConfig::new(1, vec![1], dir);
    config.tick = Duration::from_millis(10);
    config.snapshot_count = 50;
    config.catch_up_entries = 10;
    config.segment_bytes = 4096;
    config
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        key: key.into(),
        value: Some(value.into()),
        ttl: None,
        refresh: false,
    }
}

async fn start(dir: &Path) -> Node<TokioRuntime> {
    let (_tx, inbox) = tokio::sync::mpsc::channel(1);
    let node = Node::start(TokioRuntime::new(NoPeers), config(dir), inbox)
        .await
        .expect("the member starts");
    for _ in 0..500 {
        if node.status().role == Role::Leader {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a single member never became leader: {:?}", node.status());
}

#[test]
fn acknowledged_writes_survive_a_crash_and_restart() {
    let dir = data_dir("restart");
    let acknowledged = {
        // The runtime is dropped with the member running: its tasks stop wherever they are.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let node = start(&dir).await;
            let mut acknowledged = Vec::new();
            for i in 0..120 {
                let key = format!("/k{i}");
                let event = node.write(set(&key, &format!("v{i}"))).await.unwrap();
                acknowledged.push((key, event.index()));
            }
            // A few writes in flight when the process dies; they may or may not survive.
            for i in 0..5 {
                let node = node.clone();
                tokio::spawn(async move { node.write(set(&format!("/late{i}"), "x")).await });
            }
            acknowledged
        })
    };

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let node = start(&dir).await;
        for (key, index) in &acknowledged {
            let got = node.quorum_get(key, false).await.expect("a quorum read");
            assert_eq!(got.node.modified_index, *index, "{key}");
        }
        // It keeps working after the restart, with the index carrying on.
        let next = node.write(set("/after", "restart")).await.unwrap();
        assert!(next.index() > acknowledged.last().unwrap().1);
        let names: Vec<String> = std::fs::read_dir(dir.join("member/snap"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with(".snap")),
            "snapshots were taken: {names:?}"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ttl_keys_expire_through_the_leaders_sync() {
    let dir = data_dir("ttl");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cfg = config(&dir);
        cfg.sync_interval = Duration::from_millis(20);
        let (_tx, inbox) = tokio::sync::mpsc::channel(1);
        let node = Node::start(TokioRuntime::new(NoPeers), cfg, inbox)
            .await
            .unwrap();
        while node.status().role != Role::Leader {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ttl = Op::Set {
            key: "/t".into(),
            value: Some("v".into()),
            ttl: Some(1),
            refresh: false,
        };
        node.write(ttl).await.unwrap();
        assert!(node.get("/t", false).is_ok());
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let gone = node.quorum_get("/t", false).await.unwrap_err();
        assert_eq!(gone.code, ErrorCode::KeyNotFound);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let dir = data_dir("broken-snap");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acknowledged = rt.block_on(async {
        let node = start(&dir).await;
        let mut acknowledged = Vec::new();
        for i in 0..160 {
            let key = format!("/k{i}");
            acknowledged.push((
                key.clone(),
                node.write(set(&key, "v")).await.unwrap().index(),
            ));
        }
        acknowledged
    });
    drop(rt);
    let snap_dir = dir.join("member/snap");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&snap_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    assert!(snaps.len() >= 2, "several snapshots were taken: {snaps:?}");
    let newest = snaps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(newest, bytes).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let node = start(&dir).await;
        for (key, index) in &acknowledged {
            let got = node.quorum_get(key, false).await.expect("a quorum read");
            assert_eq!(got.node.modified_index, *index, "{key}");
        }
    });
    let broken = std::fs::read_dir(&snap_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".broken")
        })
        .count();
    assert_eq!(broken, 1, "the damaged snapshot was set aside");
    let _ = std::fs::remove_dir_all(&dir);
}
