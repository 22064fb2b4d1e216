//! TTL keys, checked against the true clock: a key is never gone before its TTL has run,
//! whatever the members' wall clocks do (they jump and drift in the swarm). The cluster's
//! time may run at most 1% fast while it catches up with a leader's wall clock (see
//! `node::cluster_clock`), so that much is allowed, and no more.

use std::time::Duration;

use etcd::client::keys::{self, GetOptions, SetOptions};
use etcd::client::{Client, ClientError};
use etcd::runtime::sim::SimHost;
use etcd::ErrorCode;

use crate::clock;
use crate::history::History;
use crate::workload::ending;

/// Besides the 1% slew: timing the check cannot see (a Sync's own round trip).
const MARGIN: Duration = Duration::from_millis(100);

/// One client's TTL keys: each set writes a new key, so no two sets' deadlines mix.
#[derive(Default)]
pub struct TtlKeys {
    last: Option<Written>,
}

struct Written {
    key: String,
    /// When the set was sent: its TTL runs from some moment after this.
    sent: Duration,
    ttl: u64,
}

impl TtlKeys {
    /// Writes a new TTL key (`ttl` seconds).
    pub async fn set(
        &mut self,
        http: &mut Client<SimHost>,
        key: String,
        value: &str,
        ttl: u64,
        history: &History,
    ) {
        let options = SetOptions {
            ttl,
            ..SetOptions::default()
        };
        let sent = clock::now();
        let result = keys::set(http, &key, value, &options).await;
        history.count("ttl-set", ending(&result));
        if result.is_ok() {
            history.acknowledge();
            self.last = Some(Written { key, sent, ttl });
        }
    }

    /// Reads the last key written (a quorum read): gone before its TTL ran is a violation.
    pub async fn check(&mut self, http: &mut Client<SimHost>, history: &History) {
        let Some(written) = &self.last else {
            return;
        };
        let options = GetOptions {
            quorum: true,
            ..GetOptions::default()
        };
        let result = keys::get(http, &written.key, &options).await;
        history.count("ttl-get", ending(&result));
        let answered = clock::now();
        let ttl = Duration::from_secs(written.ttl);
        let earliest = written.sent + ttl - ttl / 100 - MARGIN;
        if let Err(ClientError::Etcd(e)) = &result {
            if e.code == u64::from(ErrorCode::KeyNotFound.number()) && answered < earliest {
                history.violation(format!(
                    "TTL key {} ({} s, sent at {:?}) was gone at {answered:?}, before {earliest:?}",
                    written.key, written.ttl, written.sent
                ));
            }
        }
    }
}
