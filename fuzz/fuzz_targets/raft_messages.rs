//! See `etcd::fuzzing::raft_messages` for the property this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd::fuzzing::raft_messages(data));
