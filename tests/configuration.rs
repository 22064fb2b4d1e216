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
fn unbuilt_features_and_unusable_tls_flags_are_one_clear_line() {
    /// Arguments, environment, and what the one line of stderr says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--cert-file", "/x.pem"],
            &[],
            "--cert-file and --key-file must be given together",
        ),
        (
            &["-proxy=on"],
            &[],
            "--proxy is not supported yet (proxy mode)",
        ),
        (
            &[],
            &[("ETCD_PEER_KEY_FILE", "/x.key")],
            "--peer-cert-file and --peer-key-file must be given together",
        ),
        (
            &["--cert-file", "/nonexistent/x.pem", "--key-file", "/nonexistent/x.key"],
            &[],
            "cannot read certificates from /nonexistent/x.pem",
        ),
        (
            &["--client-cert-auth", "--cert-file", "/x.pem", "--key-file", "/x.key"],
            &[],
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (
            &[],
            &[("ETCD_DISCOVERY", "http://127.0.0.1:1/x")],
            "ETCD_DISCOVERY is set",
        ),
        // Never plaintext where TLS was asked for.
        (
            &["--listen-client-urls", "https://127.0.0.1:2379"],
            &[],
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme",
        ),
        (
            &["--listen-peer-urls", "https://127.0.0.1:2380"],
            &[],
            "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1:2380 with HTTPS scheme",
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
fn features_left_off_as_configuration_files_leave_them_are_accepted() {
    // Distributions' configuration files set these to off or empty; etcd starts with them.
    serve_with(
        "config-features-off",
        |_| {
            [
                "--proxy",
                "off",
                "--debug=false",
                "--cert-file=",
                "--force-new-cluster=false",
                "--enable-v2=true",
                "--proxy-dial-timeout",
                "1000",
            ]
            .map(String::from)
            .to_vec()
        },
        &[
            ("ETCD_PROXY", "off"),
            ("ETCD_CERT_FILE", ""),
            ("ETCD_DISCOVERY_SRV", ""),
            ("ETCD_CLIENT_CERT_AUTH", "false"),
        ],
    );
    // An empty variable for a real flag means its default, and is reported as etcd does.
    let log = serve_with(
        "config-empty-env",
        |_| Vec::new(),
        &[("ETCD_SNAPSHOT_COUNT", ""), ("ETCD_NAME", "")],
    );
    assert!(
        log.contains("unrecognized environment variable ETCD_SNAPSHOT_COUNT="),
        "{log}"
    );
}

#[test]
fn a_stray_word_is_etcds_flag_verification_error() {
    let out = etcd(&["--strict-reconfig-check", "false"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error verifying flags, 'false' is not a valid flag"
    );
    let out = etcd(&["--debug"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--debug is not supported yet"));
}

#[test]
fn unknown_etcd_variables_are_reported_and_the_server_starts() {
    let log = serve_with("config-unknown-env", |_| Vec::new(), &[("ETCD_FOO", "1")]);
    assert!(
        log.contains("unrecognized environment variable ETCD_FOO=1"),
        "{log}"
    );
}

/// Sends raw request text; the whole answer.
fn raw(port: u16, text: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    // Header names are case-insensitive; compare them in lower case.
    answer.to_lowercase()
}

/// Starts a one-member server with extra flags; the member (killed when dropped).
fn server_with(name: &str, extra: &[&str]) -> Member {
    let mut members = cluster(name, 1);
    let mut m = members.remove(0);
    let mut args = m.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    m.child = Some(
        Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = m.client;
    wait_for("the server", || {
        http("GET", port, "/version", "").is_some_and(|r| r.status == 200)
    });
    m
}

#[test]
fn cors_headers_and_preflight_are_etcd_3_4s() {
    const HEADERS: [&str; 2] = [
        "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE",
        "Access-Control-Allow-Headers: accept, content-type, authorization",
    ];
    // The default, `*`: every answer allows every origin.
    let open = server_with("cors-default", &[]);
    let answer = raw(
        open.client,
        "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        answer.contains("access-control-allow-origin: *"),
        "{answer}"
    );
    for header in HEADERS {
        assert!(
            answer.to_lowercase().contains(&header.to_lowercase()),
            "{answer}"
        );
    }
    // A preflight is a bare 200 on any client path.
    let answer = raw(
        open.client,
        "OPTIONS /v2/keys/a HTTP/1.1\r\nHost: x\r\nOrigin: http://any.example:80\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("http/1.1 200 ok"), "{answer}");
    assert!(answer.contains("content-length: 0"), "{answer}");
    assert!(
        answer.contains("access-control-allow-origin: *"),
        "{answer}"
    );

    // A whitelist: a listed origin is echoed, any other gets no CORS headers at all.
    let listed = server_with("cors-listed", &["--cors", "http://a.example:80"]);
    let from = |origin: &str| {
        raw(
            listed.client,
            &format!("GET /v2/keys/ HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"),
        )
    };
    let answer = from("http://a.example:80");
    assert!(
        answer.contains("access-control-allow-origin: http://a.example:80"),
        "{answer}"
    );
    let answer = from("http://b.example:80");
    assert!(!answer.contains("access-control-allow-"), "{answer}");

    // A whitelist entry must be a URL with a port, as etcd checks it.
    let out = etcd(&["--cors", "http://a.example"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains(r#"URL address does not have the form "host:port": http://a.example"#),
        "{}",
        stderr(&out)
    );
}
