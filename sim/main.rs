//! Deterministic simulation tests (`cargo test --features sim`).
//!
//! The real node code runs on madsim: whole clusters in one thread, virtual time, one seed
//! steering every choice (scheduling, message delays and loss, faults, client operations).
//! Every run's history is checked for linearizability, and its stores for equality.

#![cfg(madsim)]

mod clock;
mod cluster;
mod dirs;
mod history;
mod membership;
mod nemesis;
mod network;
mod plumbing;
mod reconfigure;
mod run;
mod scenarios;
mod seeds;
mod store_replay;
mod timeline_file;
mod tls;
mod ttl;
mod versions;
mod workload;
