//! See `etcd::fuzzing::store_snapshot` for the property this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd::fuzzing::store_snapshot(data));
