//! See `etcd::fuzzing::snapshot_file` for the property this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd::fuzzing::snapshot_file(data));
