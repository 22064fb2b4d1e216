//! Deterministic simulation tests (`cargo test --features sim`).
//!
//! Today: the store as a replicated state machine. Members that apply the same entries with the
//! same timestamps must end in the same state, or replication means nothing. The full cluster
//! simulator (madsim, faults, linearizability) grows here with the replicated node.

mod seeds;
mod store_replay;
