//! etcd 2.x, rebuilt in Rust, simulation-first.
//!
//! The deterministic core (the v2 store today; the replicated node, membership rules and log
//! format as they land) never touches the clock, threads, files or sockets directly: the
//! clippy configuration in `clippy.toml` refuses them outside the runtime that owns them.

pub mod api;
pub mod auth;
pub mod bench;
pub mod body;
pub mod client;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fuzzing;
pub mod json;
pub mod lincheck;
pub mod membership;
pub mod net;
pub mod node;
pub mod request;
pub mod runtime;
pub mod server;
pub mod snap;
pub mod state;
pub mod store;
pub mod sync;
pub mod timestamp;
pub mod tls;
pub mod transport;
pub mod wal;

pub use error::{Error, ErrorCode};
pub use timestamp::Timestamp;

/// The version this server reports at `/version`.
pub const SERVER_VERSION: &str = "2.3.8";
/// The cluster version it reports.
pub const CLUSTER_VERSION: &str = "2.3.0";
