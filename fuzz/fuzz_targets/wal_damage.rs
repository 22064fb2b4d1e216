//! See `etcd::fuzzing::wal_damage` for the property this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd::fuzzing::wal_damage(data));
