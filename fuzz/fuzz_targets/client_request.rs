//! See `etcd::fuzzing::client_request` for the property this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd::fuzzing::client_request(data));
