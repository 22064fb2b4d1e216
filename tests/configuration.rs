//! The command line and environment as etcd reads them, on the real binary: Go's flag rules,
//! `ETCD_*` variables, and a clear refusal of what this etcd does not do yet.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Command, Output};

use common::*;

fn etcd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_etcd"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[test]
fn command_line_mistakes_are_one_go_style_line_and_status_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "flag provided but not defined: -bogus"),
        (&["-bogus=1"], "flag provided but not defined: -bogus"),
        (
            &["--snapshot-count", "abc"],
            r#"invalid value "abc" for flag -snapshot-count: parse error"#,
        ),
        (&["-name"], "flag needs an argument: -name"),
    ];
    for (args, said) in cases {
        let out = etcd(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), *said, "{args:?}");
    }
}

#[test]
fn features_not_built_yet_are_refused_never_ignored() {
    /// Arguments, environment, and what the one line of stderr says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--cert-file", "/x.pem"],
            &[],
            "--cert-file is not supported yet (TLS)",
        ),
        (
            &["-proxy=on"],
            &[],
            "--proxy is not supported yet (proxy mode)",
        ),
        (
            &[],
            &[("ETCD_CERT_FILE", "/x.pem")],
            "ETCD_CERT_FILE is set, but --cert-file",
        ),
        (
            &[],
            &[("ETCD_DISCOVERY", "http://127.0.0.1:1/x")],
            "ETCD_DISCOVERY is set",
        ),
        (
            &["--listen-client-urls", "https://127.0.0.1:2379"],
            &[],
            "--listen-client-urls: https://127.0.0.1:2379 asks for TLS",
        ),
        (
            &["--advertise-client-urls", "https://127.0.0.1:2379"],
            &[],
            "asks for TLS",
        ),
        (
            &[
                "--initial-advertise-peer-urls",
                "https://127.0.0.1:2380",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
            ],
            &[],
            "asks for TLS",
        ),
    ];
    for (args, env, said) in cases {
        let out = etcd(args, env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}");
        let text = stderr(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(said), "{args:?} {env:?}: {text}");
    }
}

/// Starts a one-member server with `args` on fresh ports and `env`; its stderr once it
/// serves, after a clean stop.
fn serve_with(name: &str, extra: impl Fn(&Member) -> Vec<String>, env: &[(&str, &str)]) -> String {
    let mut members = cluster(name, 1);
    let m = members.remove(0);
    let log = m.data_dir.with_extension("stderr");
    let mut args = m.args();
    args.extend(extra(&m));
    let mut command = Command::new(env!("CARGO_BIN_EXE_etcd"));
    command
        .args(&args)
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let port = m.client;
    wait_for("the server to take a write", || {
        http("PUT", port, "/v2/keys/up", "value=1").is_some_and(|r| r.status == 201)
    });
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn a_flag_given_twice_keeps_its_last_value() {
    // python-etcd's test helper passes -initial-cluster twice; Go keeps the last.
    serve_with(
        "config-twice",
        |m| {
            let wrong = format!("{}=http://127.0.0.1:1", m.name);
            vec![
                "-initial-cluster".into(),
                wrong,
                "-initial-cluster".into(),
                m.cluster.clone(),
            ]
        },
        &[],
    );
}

#[test]
fn unknown_etcd_variables_are_reported_and_the_server_starts() {
    let log = serve_with("config-unknown-env", |_| Vec::new(), &[("ETCD_FOO", "1")]);
    assert!(
        log.contains("unrecognized environment variable ETCD_FOO=1"),
        "{log}"
    );
}
