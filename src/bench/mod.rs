//! `etcd-bench`: a load generator for the v2 API, in the spirit of etcd's own `benchmark`
//! tool. N clients, each with one keep-alive connection, spread over the members with the
//! leader first; a workload run for a fixed count or duration; throughput and latency
//! percentiles measured per request, errors counted (a valid run has none), and the server's
//! index checked against the writes acknowledged.
//!
//! Latency is measured from when a request was *due*: closed-loop clients send the next request
//! when the last one is answered (due = sent), and with `--rate` each client's requests are due
//! on a fixed schedule, so a stall is charged to every request it delayed (no coordinated
//! omission).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod conn;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

pub use report::Report;

use crate::net::Connector;
use conn::Conn;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Writes to unique keys.
    Put,
    /// Reads of keys written before the run.
    Get,
    /// Reads with `quorum=true` (linearizable).
    Qget,
    /// One writer, every client a watcher of the key it writes: event fan-out.
    Watch,
    /// Nine reads to one write.
    Mixed,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "etcd-bench", about = "A load generator for etcd's v2 API")]
pub struct Options {
    /// Comma-separated client URLs of the cluster's members.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub endpoints: String,
    #[arg(long, value_enum, default_value = "put")]
    pub workload: Workload,
    /// Concurrent clients, each with its own connection (watchers, for `watch`).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Requests in all (writes, for `watch`); ignored when --duration is given.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this long instead of a fixed count (Go syntax: 10s, 1m).
    #[arg(long, value_parser = crate::ctl::parse_go_duration)]
    pub duration: Option<Duration>,
    /// Bytes in each value written.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Keys written before a read workload, and read at random.
    #[arg(long, default_value_t = 1_000)]
    pub keys: u64,
    /// Requests per second over all clients, on a fixed schedule (default: as fast as answered).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Where the keys live.
    #[arg(long, default_value = "/bench")]
    pub prefix: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Verify `https://` members with this CA (the system's roots when absent).
    #[arg(long)]
    pub cacert: Option<String>,
    /// Show this client certificate (with --key) to members that ask for one.
    #[arg(long)]
    pub cert: Option<String>,
    #[arg(long)]
    pub key: Option<String>,
    /// How members are dialled, made from the flags above when the run starts.
    #[arg(skip)]
    pub connector: Connector,
}

impl Options {
    fn make_connector(&self) -> Result<Connector, String> {
        let files = crate::tls::ClientFiles {
            cert: self.cert.as_ref().map(Into::into),
            key: self.key.as_ref().map(Into::into),
            trusted_ca: self.cacert.as_ref().map(Into::into),
            skip_verify: false,
        };
        if files == crate::tls::ClientFiles::default() && !self.endpoints.contains("https://") {
            return Ok(Connector::plain());
        }
        Ok(Connector::with_tls(files.load("client")?))
    }
}

/// Runs a benchmark; `Err` for a run that could not start.
pub async fn run(mut options: Options) -> Result<Report, String> {
    options.connector = options.make_connector()?;
    let endpoints = leader_first(&options).await?;
    let value: String = "x".repeat(options.value_size);
    if matches!(
        options.workload,
        Workload::Get | Workload::Qget | Workload::Mixed
    ) {
        prepare_keys(&endpoints[0], &options, &value).await?;
    }
    let before = current_index(&endpoints[0], &options.connector).await?;
    let (report, acked_writes) = match options.workload {
        Workload::Watch => run_watch(&endpoints, &options, &value).await?,
        _ => run_requests(&endpoints, &options, &value).await?,
    };
    // Every acknowledged write took one index; nothing else writes during a run.
    let after = current_index(&endpoints[0], &options.connector).await?;
    let mut report = report;
    report.index_advance = after.saturating_sub(before);
    report.acknowledged_writes = acked_writes;
    if report.index_advance != acked_writes {
        report.invalid = Some(format!(
            "the index advanced by {} for {} acknowledged writes",
            report.index_advance, acked_writes
        ));
    } else if report.errors > 0 {
        report.invalid = Some(format!("{} requests failed", report.errors));
    }
    Ok(report)
}

/// The endpoints, the leader's first (so client 0 and every N-th talk to the leader).
async fn leader_first(options: &Options) -> Result<Vec<String>, String> {
    let mut endpoints: Vec<String> = options
        .endpoints
        .split(',')
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err("no endpoints".into());
    }
    for endpoint in endpoints.clone() {
        let Ok(mut conn) = Conn::open(&endpoint, &options.connector).await else {
            continue;
        };
        let Ok(reply) = conn.request("GET", "/v2/members/leader", None).await else {
            continue;
        };
        let leader: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let urls: Vec<String> = leader["clientURLs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str())
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(at) = endpoints.iter().position(|e| urls.contains(e)) {
            endpoints.swap(0, at);
        }
        return Ok(endpoints);
    }
    Err(format!("no endpoint answered: {}", endpoints.join(",")))
}

async fn current_index(endpoint: &str, connector: &Connector) -> Result<u64, String> {
    let mut conn = Conn::open(endpoint, connector).await?;
    // A quorum read gives the index after everything committed so far.
    let reply = conn.request("GET", "/v2/keys/?quorum=true", None).await?;
    Ok(reply.etcd_index)
}

async fn prepare_keys(endpoint: &str, options: &Options, value: &str) -> Result<(), String> {
    let mut conn = Conn::open(endpoint, &options.connector).await?;
    let body = form_value(value);
    for k in 0..options.keys {
        let path = format!("/v2/keys{}/read/{k}", options.prefix);
        let reply = conn.request("PUT", &path, Some(&body)).await?;
        if reply.status >= 300 {
            return Err(format!("preparing {path}: status {}", reply.status));
        }
    }
    Ok(())
}

fn form_value(value: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("value", value)
        .finish()
        .into_bytes()
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// When the run stops: after a count of requests, or at a time.
struct Budget {
    issued: AtomicU64,
    total: u64,
    until: Option<Instant>,
}

impl Budget {
    /// Takes the next request's number, or `None` when the run is over.
    fn take(&self) -> Option<u64> {
        if let Some(until) = self.until {
            if Instant::now() >= until {
                return None;
            }
            return Some(self.issued.fetch_add(1, Ordering::Relaxed));
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then_some(n)
    }
}

async fn run_requests(
    endpoints: &[String],
    options: &Options,
    value: &str,
) -> Result<(Report, u64), String> {
    let budget = Arc::new(Budget {
        issued: AtomicU64::new(0),
        total: options.total,
        until: options.duration.map(|d| Instant::now() + d),
    });
    let totals = Arc::new(Mutex::new((new_histogram(), 0u64, 0u64, 0u64))); // latency, ok, errors, writes
    let mut conns = Vec::new();
    for client in 0..options.clients {
        conns.push(Conn::open(&endpoints[client % endpoints.len()], &options.connector).await?);
    }
    let per_client_interval = options
        .rate
        .map(|rate| Duration::from_secs_f64(options.clients as f64 / rate));
    let body = Arc::new(form_value(value));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        let (budget, totals, body, options) = (
            Arc::clone(&budget),
            Arc::clone(&totals),
            Arc::clone(&body),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let (mut ok, mut errors, mut writes) = (0u64, 0u64, 0u64);
            let mut rng_state = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut due = Instant::now();
            let mut seq = 0u64;
            while let Some(n) = budget.take() {
                if per_client_interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    due = Instant::now();
                }
                rng_state = xorshift(rng_state);
                let write = match options.workload {
                    Workload::Put => true,
                    Workload::Mixed => n % 10 == 0,
                    _ => false,
                };
                let result = if write {
                    seq += 1;
                    let path = format!("/v2/keys{}/put/{client}-{seq}", options.prefix);
                    conn.request("PUT", &path, Some(&body)).await
                } else {
                    let key = rng_state % options.keys.max(1);
                    let quorum = if options.workload == Workload::Qget {
                        "?quorum=true"
                    } else {
                        ""
                    };
                    let path = format!("/v2/keys{}/read/{key}{quorum}", options.prefix);
                    conn.request("GET", &path, None).await
                };
                let latency = due.elapsed();
                match result {
                    Ok(reply) if reply.status < 300 => {
                        ok += 1;
                        writes += u64::from(write);
                        let _ = histogram.record(latency.as_micros().max(1) as u64);
                    }
                    Ok(_) | Err(_) => errors += 1,
                }
                if let Some(interval) = per_client_interval {
                    due += interval;
                }
            }
            let mut t = totals.lock().unwrap();
            let _ = t.0.add(&histogram);
            t.1 += ok;
            t.2 += errors;
            t.3 += writes;
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let (histogram, ok, errors, writes) = Arc::try_unwrap(totals)
        .map_err(|_| "a client is still running")?
        .into_inner()
        .unwrap();
    Ok((
        Report::new(options, elapsed, ok, errors, &histogram),
        writes,
    ))
}

/// Watch fan-out: every client long-polls the same key from the index after the last event
/// it saw; one writer sets it `total` times, each value carrying when it was written. The
/// latency is from the write being sent to each watcher receiving it.
async fn run_watch(
    endpoints: &[String],
    options: &Options,
    value: &str,
) -> Result<(Report, u64), String> {
    let key = format!("/v2/keys{}/watched", options.prefix);
    let mut writer = Conn::open(&endpoints[0], &options.connector).await?;
    let first = writer
        .request("PUT", &key, Some(&form_value("start")))
        .await?;
    let start_index = first.etcd_index;
    let writes = options.total;
    let epoch = Instant::now();
    let totals = Arc::new(Mutex::new((new_histogram(), 0u64, 0u64)));
    let mut tasks = Vec::new();
    for client in 0..options.clients {
        let mut conn = Conn::open(&endpoints[client % endpoints.len()], &options.connector).await?;
        let (key, totals) = (key.clone(), Arc::clone(&totals));
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let (mut seen, mut errors) = (0u64, 0u64);
            let mut next = start_index + 1;
            while seen < writes && errors < 100 {
                let path = format!("{key}?wait=true&waitIndex={next}");
                match conn.request("GET", &path, None).await {
                    Ok(reply) if reply.status == 200 => {
                        let event: serde_json::Value =
                            serde_json::from_slice(&reply.body).unwrap_or_default();
                        let sent_at: u64 = event["node"]["value"]
                            .as_str()
                            .and_then(|v| v.split(':').next())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let now = epoch.elapsed().as_micros() as u64;
                        let _ = histogram.record(now.saturating_sub(sent_at).max(1));
                        next = event["node"]["modifiedIndex"].as_u64().unwrap_or(next) + 1;
                        seen += 1;
                    }
                    _ => errors += 1,
                }
            }
            let mut t = totals.lock().unwrap();
            let _ = t.0.add(&histogram);
            t.1 += seen;
            t.2 += errors + (writes - seen.min(writes));
        }));
    }
    // Give the watchers a moment to be waiting, then write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut acked = 1u64; // the first set
    let mut write_errors = 0u64;
    for _ in 0..writes {
        let stamp = epoch.elapsed().as_micros();
        let body = form_value(&format!("{stamp}:{value}"));
        match writer.request("PUT", &key, Some(&body)).await {
            Ok(reply) if reply.status < 300 => acked += 1,
            _ => write_errors += 1,
        }
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let (histogram, seen, errors) = Arc::try_unwrap(totals)
        .map_err(|_| "a watcher is still running")?
        .into_inner()
        .unwrap();
    Ok((
        Report::new(options, elapsed, seen, errors + write_errors, &histogram),
        acked,
    ))
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
