//! `etcd-bench` against a real server: each workload runs without errors and the server's
//! index agrees with the writes it acknowledged.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Command;

use common::*;

fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-bench"))
        .args(["--endpoints", endpoint, "--json"])
        .args(args)
        .output()
        .expect("etcd-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "etcd-bench {args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("a JSON report")
}

#[test]
fn every_workload_runs_clean_and_the_index_matches_the_writes() {
    let mut members = cluster("bench", 1);
    members[0].start();
    let port = members[0].client;
    wait_for("the member to publish its client URL", || {
        http("GET", port, "/v2/members", "")
            .is_some_and(|r| r.body.contains("clientURLs\":[\"http"))
    });
    let endpoint = format!("http://127.0.0.1:{port}");

    let put = bench(
        &endpoint,
        &["--workload", "put", "--clients", "8", "--total", "400"],
    );
    assert_eq!(put["requests"], 400);
    assert_eq!(put["errors"], 0);
    assert_eq!(put["acknowledged_writes"], 400);
    assert_eq!(put["index_advance"], 400);
    assert!(put["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(put["p99_ms"].as_f64() >= put["p50_ms"].as_f64());

    for workload in ["get", "qget", "mixed"] {
        let args = [
            "--workload",
            workload,
            "--clients",
            "8",
            "--total",
            "400",
            "--keys",
            "50",
        ];
        let report = bench(&endpoint, &args);
        assert_eq!(report["requests"], 400, "{workload}");
        assert_eq!(report["errors"], 0, "{workload}");
        assert!(report["invalid"].is_null(), "{workload}: {report}");
    }

    // Ten watchers, each seeing every one of 50 writes.
    let watch = bench(
        &endpoint,
        &["--workload", "watch", "--clients", "10", "--total", "50"],
    );
    assert_eq!(watch["requests"], 500);
    assert_eq!(watch["errors"], 0);
    assert_eq!(watch["acknowledged_writes"], 51);

    // An open-loop rate: 200 requests at 1000/s take about 0.2 s.
    let paced = bench(
        &endpoint,
        &[
            "--workload",
            "get",
            "--clients",
            "4",
            "--total",
            "200",
            "--rate",
            "1000",
            "--keys",
            "10",
        ],
    );
    assert!(paced["seconds"].as_f64().unwrap() >= 0.18, "{paced}");
}
