//! What a benchmark run reports: throughput, latency percentiles, errors, and whether the
//! server's index agrees with the writes acknowledged.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Options;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub workload: String,
    pub clients: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub acknowledged_writes: u64,
    pub index_advance: u64,
    /// Why the run does not count, if it does not.
    pub invalid: Option<String>,
}

impl Report {
    pub fn new(
        options: &Options,
        elapsed: Duration,
        requests: u64,
        errors: u64,
        latency_us: &Histogram<u64>,
    ) -> Report {
        let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64();
        Report {
            workload: format!("{:?}", options.workload).to_lowercase(),
            clients: options.clients,
            requests,
            errors,
            seconds,
            throughput: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: latency_us.max() as f64 / 1000.0,
            acknowledged_writes: 0,
            index_advance: 0,
            invalid: None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} with {} clients: {} requests in {:.2} s, {:.0}/s, {} errors",
            self.workload, self.clients, self.requests, self.seconds, self.throughput, self.errors
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )?;
        writeln!(
            f,
            "index advanced by {} for {} acknowledged writes",
            self.index_advance, self.acknowledged_writes
        )?;
        match &self.invalid {
            Some(why) => writeln!(f, "INVALID RUN: {why}"),
            None => writeln!(f, "valid run"),
        }
    }
}
