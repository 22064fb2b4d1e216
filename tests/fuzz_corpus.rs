//! Replays every file of every fuzz target's corpus (`fuzz/corpus/<target>/`, which holds the
//! minimised crashes the fuzzer found as well) through the same property the target checks,
//! so CI re-checks them without running the fuzzer.
// Reads the corpus files from the real disk.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;

/// A target's property: returns for any input, panics when broken.
type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("wal_segment", etcd::fuzzing::wal_segment),
    ("wal_damage", etcd::fuzzing::wal_damage),
    ("snapshot_file", etcd::fuzzing::snapshot_file),
    ("store_snapshot", etcd::fuzzing::store_snapshot),
    ("membership", etcd::fuzzing::membership),
    ("raft_messages", etcd::fuzzing::raft_messages),
    ("client_request", etcd::fuzzing::client_request),
];

#[test]
fn every_corpus_file_keeps_its_property() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target} has no corpus");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} breaks its property",
                file.display()
            );
        }
    }
}

#[test]
fn every_target_is_built_by_the_fuzz_crate() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join("Cargo.toml"),
    )
    .unwrap();
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target}"
        );
    }
}

#[test]
fn the_seeds_keep_their_properties() {
    for (target, data) in etcd::fuzzing::seeds() {
        let (_, check) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
        check(&data);
    }
}

/// Writes the seeds into the corpus directories: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (i, (target, data)) in etcd::fuzzing::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i:02}")), data).unwrap();
    }
}
