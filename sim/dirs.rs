//! Directory operations with TTLs, on directories of their own that each hold at most one key.
//! Their histories are checked against `lincheck::dir::DirModel`, which lets a directory with a
//! TTL vanish at any moment: when it expires follows the leader's clock, which the simulator
//! jumps, so expiry timing is not checked, only that nothing else contradicts the answers.

use std::time::Duration;

use etcd::client::keys::{self, DeleteOptions, GetOptions, PrevExist, SetOptions};
use etcd::client::{Client, ClientError};
use etcd::lincheck::dir::{DirInput, DirOutput};
use etcd::lincheck::Operation;
use etcd::runtime::sim::SimHost;
use madsim::rand::Rng;

use crate::history::History;
use crate::workload::{ending, is_store_error, nanos_since};

/// Directories every client fights over, apart from the plain keys.
pub const DIRS: [&str; 2] = ["/d0", "/d1"];

/// The one key a directory holds.
pub fn child(dir: &str) -> String {
    format!("{dir}/c")
}

/// One random directory operation, sent and recorded; `value` is unique to this write.
pub async fn operation(
    http: &mut Client<SimHost>,
    client: u64,
    value: &str,
    history: &History,
    start: Duration,
) {
    let (dir, input, ttl) = {
        let mut rng = madsim::rand::thread_rng();
        let dir = DIRS[rng.gen_range(0..DIRS.len())];
        let with_ttl = rng.gen_range(0..10) < 8;
        let input = match rng.gen_range(0..100) {
            0..=24 => DirInput::Mkdir { ttl: with_ttl },
            25..=44 => DirInput::UpdateDir { ttl: with_ttl },
            45..=59 => DirInput::Rmdir {
                recursive: rng.gen_bool(0.5),
            },
            60..=79 => DirInput::SetChild(value.to_owned()),
            _ => DirInput::List,
        };
        (dir, input, rng.gen_range(1..=3))
    };
    perform(http, client, dir, input, ttl, history, start).await;
}

/// A quorum listing of `dir`, recorded.
pub async fn checked_list(
    http: &mut Client<SimHost>,
    client: u64,
    dir: &str,
    history: &History,
    start: Duration,
) {
    perform(http, client, dir, DirInput::List, 0, history, start).await;
}

/// Sends `input` (a TTL is `ttl` seconds) and records it.
async fn perform(
    http: &mut Client<SimHost>,
    client: u64,
    dir: &str,
    input: DirInput,
    ttl: u64,
    history: &History,
    start: Duration,
) {
    let call = nanos_since(start);
    let result = send(http, dir, &input, ttl).await;
    // Never sent: certainly changed nothing.
    if matches!(result, Err(ClientError::Unreachable(_))) {
        return;
    }
    history.count(kind_of(&input), ending(&result));
    let output = outcome(dir, &input, &result);
    // A read that was not answered tells nothing.
    if output.is_none() && input == DirInput::List {
        return;
    }
    if output.is_some() {
        history.acknowledge();
    }
    history.record_dir(
        dir,
        client,
        Operation {
            call,
            ret: output.as_ref().map(|_| nanos_since(start)),
            input,
            output,
        },
    );
}

async fn send(
    http: &mut Client<SimHost>,
    dir: &str,
    input: &DirInput,
    ttl_secs: u64,
) -> Result<keys::Response, ClientError> {
    let dir_options = |prev_exist, ttl: bool| SetOptions {
        dir: true,
        prev_exist,
        ttl: if ttl { ttl_secs } else { 0 },
        ..SetOptions::default()
    };
    match input {
        DirInput::Mkdir { ttl } => {
            keys::set(http, dir, "", &dir_options(PrevExist::NoExist, *ttl)).await
        }
        DirInput::UpdateDir { ttl } => {
            keys::set(http, dir, "", &dir_options(PrevExist::Exist, *ttl)).await
        }
        DirInput::Rmdir { recursive } => {
            let options = DeleteOptions {
                dir: true,
                recursive: *recursive,
                ..DeleteOptions::default()
            };
            keys::delete(http, dir, &options).await
        }
        DirInput::SetChild(value) => {
            keys::set(http, &child(dir), value, &SetOptions::default()).await
        }
        DirInput::List => {
            let options = GetOptions {
                quorum: true,
                ..GetOptions::default()
            };
            keys::get(http, dir, &options).await
        }
    }
}

/// The model's view of an answer; `None` when the outcome is unknown.
fn outcome(
    dir: &str,
    input: &DirInput,
    result: &Result<keys::Response, ClientError>,
) -> Option<DirOutput> {
    match result {
        Ok(response) if *input == DirInput::List => {
            let child = child(dir);
            let nodes = response.node().nodes.unwrap_or_default();
            let value = nodes.into_iter().find(|n| n.key == child).map(|n| n.value);
            Some(DirOutput::Listing(value))
        }
        Ok(_) => Some(DirOutput::Done),
        Err(ClientError::Etcd(e)) if is_store_error(e.code) => Some(DirOutput::Failed(e.code)),
        Err(_) => None,
    }
}

/// The name an operation is tallied under.
fn kind_of(input: &DirInput) -> &'static str {
    match input {
        DirInput::Mkdir { ttl: true } => "mkdir-ttl",
        DirInput::Mkdir { ttl: false } => "mkdir",
        DirInput::UpdateDir { ttl: true } => "updatedir-ttl",
        DirInput::UpdateDir { ttl: false } => "updatedir-permanent",
        DirInput::Rmdir { recursive: true } => "rmdir-recursive",
        DirInput::Rmdir { recursive: false } => "rmdir",
        DirInput::SetChild(_) => "set-child",
        DirInput::List => "list-dir",
    }
}
