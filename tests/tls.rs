//! TLS on real processes: client-certificate authentication, a cluster on peer TLS through the
//! loss of its leader, certificates rotated while the member runs, generated certificates.
//! Certificates are made here, per run, with rcgen; none are checked in.
// Tests of the real world: they start processes, write files and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{free_port, scratch, wait_for};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A CA that signs certificates into files.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Ca {
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate for localhost and 127.0.0.1, good for serving and for dialling, written
    /// as `<file>.pem` and `<file>.key`.
    fn issue(&self, file: &str) -> (PathBuf, PathBuf) {
        self.issue_numbered(file, None)
    }

    fn issue_numbered(&self, file: &str, serial: Option<u64>) -> (PathBuf, PathBuf) {
        self.issue_with(file, |params| {
            params.serial_number = serial.map(rcgen::SerialNumber::from);
        })
    }

    /// A certificate as `issue` makes it, changed by `adjust` first.
    fn issue_with(
        &self,
        file: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

impl Ca {
    /// A CRL revoking the certificate numbered `serial`, written as `<file>`.
    fn revoke(&self, file: &str, serial: u64) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: now - time::Duration::hours(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        let path = self.dir.join(file);
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd(args: &[String]) -> Process {
    Process(common::spawn_etcd(args))
}

fn etcdctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etcdctl"))
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .output()
        .expect("etcdctl runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// etcdctl with a client certificate and the CA, against `endpoint`.
fn ctl_as(endpoint: &str, ca: &Path, cert: (&Path, &Path), args: &[&str]) -> Output {
    let mut all = vec![
        "--endpoints",
        endpoint,
        "--ca-file",
        path(ca),
        "--cert-file",
        path(cert.0),
        "--key-file",
        path(cert.1),
    ];
    all.extend_from_slice(args);
    etcdctl(&all)
}

/// Waits until `endpoint` takes a write from a client showing `cert` (the member is up).
fn wait_until_served(endpoint: &str, ca: &Path, cert: (&Path, &Path)) {
    wait_for("the member to serve TLS", || {
        ctl_as(endpoint, ca, cert, &["set", "/a", "1"])
            .status
            .success()
    });
}

/// etcdctl failed as etcd 3.4's does for a TLS refusal: status 4, saying `words`.
fn assert_refused(output: &Output, words: &str) {
    assert_eq!(output.status.code(), Some(4), "{}", text(output));
    assert!(text(output).contains(words), "{}", text(output));
}

#[test]
fn client_cert_auth_refuses_strangers_at_the_handshake_and_serves_holders() {
    let dir = scratch("tls-client-auth");
    let ca = Ca::new(&dir, "ca");
    let other = Ca::new(&dir, "other-ca");
    ca.issue("server");
    let (client_cert, client_key) = ca.issue("client");
    let (stranger_cert, stranger_key) = other.issue("stranger");
    let (_member, endpoint) = auth_member(&dir, &ca.cert_file(), &[]);
    let client: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let good = (client_cert.as_path(), client_key.as_path());
    wait_until_served(&endpoint, &ca.cert_file(), good);
    let got = ctl_as(&endpoint, &ca.cert_file(), good, &["get", "/a"]);
    assert_eq!(text(&got), "1\n");
    let listed = ctl_as(&endpoint, &ca.cert_file(), good, &["member", "list"]);
    assert!(
        text(&listed).contains(&format!("clientURLs={endpoint}")),
        "{}",
        text(&listed)
    );

    // No certificate, or one from another CA: refused at the handshake, in etcdctl's words
    // and with its status (4, as etcd 3.4's etcdctl gives).
    let bare = etcdctl(&[
        "--endpoints",
        &endpoint,
        "--ca-file",
        path(&ca.cert_file()),
        "get",
        "/a",
    ]);
    assert_refused(&bare, "remote error: tls: bad certificate");
    let stranger = (stranger_cert.as_path(), stranger_key.as_path());
    let refused = ctl_as(&endpoint, &ca.cert_file(), stranger, &["get", "/a"]);
    assert_refused(&refused, "remote error: tls: bad certificate");
    // A server this client cannot verify.
    let untrusted = ctl_as(&endpoint, &other.cert_file(), good, &["get", "/a"]);
    assert_eq!(untrusted.status.code(), Some(4), "{}", text(&untrusted));
    assert!(
        text(&untrusted).contains("x509: certificate signed by unknown authority"),
        "{}",
        text(&untrusted)
    );
    // Plain HTTP to the TLS port is closed unanswered (as etcd 3.4 does), never served from
    // the store, and the member goes on.
    assert!(common::http("GET", client, "/v2/keys/a", "").is_none());
    let again = ctl_as(&endpoint, &ca.cert_file(), good, &["get", "/a"]);
    assert_eq!(text(&again), "1\n");
}

#[test]
fn an_https_url_without_a_certificate_does_not_start() {
    let dir = scratch("tls-no-cert");
    let client = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args([
            format!("--data-dir={}", dir.join("m").display()),
            format!("--listen-client-urls=https://127.0.0.1:{client}"),
            format!("--advertise-client-urls=https://127.0.0.1:{client}"),
        ])
        .output()
        .expect("etcd runs");
    assert!(!output.status.success());
    assert!(
        text(&output).contains("must be provided for client url https://127.0.0.1"),
        "{}",
        text(&output)
    );
    assert!(!dir.join("m").exists(), "a refused start left a data dir");
}

/// Three members on peer TLS with peer client-cert auth, clients on TLS too.
fn tls_member(dir: &Path, ca: &Ca, i: usize, ports: &[(u16, u16)], cluster: &str) -> Process {
    tls_member_with(dir, ca, i, ports, cluster, "new")
}

fn tls_member_with(
    dir: &Path,
    ca: &Ca,
    i: usize,
    ports: &[(u16, u16)],
    cluster: &str,
    state: &str,
) -> Process {
    let (cert, key) = (dir.join("member.pem"), dir.join("member.key"));
    let (client, peer) = ports[i];
    etcd(&[
        format!("--name=m{i}"),
        format!("--data-dir={}", dir.join(format!("m{i}")).display()),
        format!("--listen-client-urls=https://127.0.0.1:{client}"),
        format!("--advertise-client-urls=https://127.0.0.1:{client}"),
        format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-cluster={cluster}"),
        format!("--initial-cluster-state={state}"),
        "--heartbeat-interval=50".into(),
        "--election-timeout=500".into(),
        format!("--cert-file={}", cert.display()),
        format!("--key-file={}", key.display()),
        format!("--trusted-ca-file={}", ca.cert_file().display()),
        format!("--peer-cert-file={}", cert.display()),
        format!("--peer-key-file={}", key.display()),
        "--peer-client-cert-auth".into(),
        format!("--peer-trusted-ca-file={}", ca.cert_file().display()),
    ])
}

#[test]
fn a_cluster_on_peer_tls_forms_replicates_elects_after_kill_9_and_grows_and_shrinks() {
    let dir = scratch("tls-peers");
    let ca = Ca::new(&dir, "ca");
    ca.issue("member");
    let (client_cert, client_key) = ca.issue("client");
    let good = (client_cert.as_path(), client_key.as_path());
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Option<Process>> = (0..3)
        .map(|i| Some(tls_member(&dir, &ca, i, &ports, &cluster)))
        .collect();
    let endpoint = |i: usize| format!("https://127.0.0.1:{}", ports[i].0);
    let ca_file = ca.cert_file();
    wait_for("a write through member 0", || {
        ctl_as(&endpoint(0), &ca_file, good, &["set", "/k", "v1"])
            .status
            .success()
    });
    // A peer that shows no certificate, or one another CA signed, is refused; a member's is
    // taken.
    let other = Ca::new(&dir, "other-ca");
    let (stranger_cert, stranger_key) = other.issue("stranger");
    let peer_url = format!("https://127.0.0.1:{}/members", ports[0].1);
    assert!(peer_members(&peer_url, &ca_file, None).is_err());
    assert!(peer_members(&peer_url, &ca_file, Some((&stranger_cert, &stranger_key))).is_err());
    let member_cert = (dir.join("member.pem"), dir.join("member.key"));
    let answer = peer_members(&peer_url, &ca_file, Some((&member_cert.0, &member_cert.1)));
    assert_eq!(answer, Ok(200));

    // Replicated: member 2 serves it (a quorum read goes through the leader over peer TLS).
    let read = ctl_as(&endpoint(2), &ca_file, good, &["get", "--quorum", "/k"]);
    assert_eq!(text(&read), "v1\n");

    let leader = (0..3)
        .find(|&i| {
            text(&ctl_as(&endpoint(i), &ca_file, good, &["member", "list"]))
                .lines()
                .any(|l| l.contains(&format!("name=m{i} ")) && l.contains("isLeader=true"))
        })
        .expect("a leader");
    members[leader] = None;
    let survivor = (leader + 1) % 3;
    wait_for("a write after the leader is gone", || {
        ctl_as(
            &endpoint(survivor),
            &ca_file,
            good,
            &["--no-sync", "set", "/k", "v2"],
        )
        .status
        .success()
    });
    let other = 3 - leader - survivor;
    let read = ctl_as(
        &endpoint(other),
        &ca_file,
        good,
        &["--no-sync", "get", "--quorum", "/k"],
    );
    assert_eq!(text(&read), "v2\n");

    // The old leader comes back; a fourth member is added over peer TLS, serves, and leaves.
    members[leader] = Some(tls_member(&dir, &ca, leader, &ports, &cluster));
    wait_for("the old leader to catch up", || {
        text(&ctl_as(
            &endpoint(leader),
            &ca_file,
            good,
            &["--no-sync", "get", "/k"],
        )) == "v2\n"
    });
    let mut grown_ports = ports.clone();
    grown_ports.push((free_port(), free_port()));
    let fourth_client = format!("https://127.0.0.1:{}", grown_ports[3].0);
    let peer_url = format!("https://127.0.0.1:{}", grown_ports[3].1);
    let added = ctl_as(
        &endpoint(survivor),
        &ca_file,
        good,
        &["member", "add", "m3", &peer_url],
    );
    assert!(added.status.success(), "{}", text(&added));
    // `Added member named m3 with ID <id> to cluster`
    let said = text(&added);
    let words: Vec<&str> = said.split_whitespace().collect();
    let id = words
        .iter()
        .position(|w| *w == "ID")
        .and_then(|at| words.get(at + 1))
        .expect("etcdctl names the new member")
        .to_string();
    let grown = format!("{cluster},m3={peer_url}");
    let fourth = tls_member_with(&dir, &ca, 3, &grown_ports, &grown, "existing");
    wait_for("the fourth member to serve", || {
        text(&ctl_as(
            &fourth_client,
            &ca_file,
            good,
            &["--no-sync", "get", "/k"],
        )) == "v2\n"
    });
    let removed = ctl_as(
        &endpoint(survivor),
        &ca_file,
        good,
        &["member", "remove", &id],
    );
    assert!(removed.status.success(), "{}", text(&removed));
    let listed = text(&ctl_as(
        &endpoint(survivor),
        &ca_file,
        good,
        &["member", "list"],
    ));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    drop(fourth);
    drop(members);
}

/// A GET of a peer URL through the project's connector, showing `cert` if given; the status.
fn peer_members(url: &str, ca: &Path, cert: Option<(&PathBuf, &PathBuf)>) -> Result<u16, String> {
    use http_body_util::Empty;
    let files = etcd::tls::ClientFiles {
        cert: cert.map(|c| c.0.clone()),
        key: cert.map(|c| c.1.clone()),
        trusted_ca: Some(ca.to_owned()),
        skip_verify: false,
    };
    let connector = etcd::net::Connector::with_tls(files.load("test")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = etcd::runtime::TokioHost::new();
        let uri: hyper::Uri = url.parse().unwrap();
        let mut sender = connector
            .dial::<_, Empty<bytes::Bytes>>(&host, &uri, Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        let request = hyper::Request::get(uri.path())
            .header("Host", uri.authority().unwrap().as_str())
            .body(Empty::new())
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    })
}

#[test]
fn certificates_rotate_without_a_restart() {
    let dir = scratch("tls-rotation");
    let old = Ca::new(&dir, "old-ca");
    let (server_cert, server_key) = old.issue("server");
    let (client_cert, client_key) = old.issue("client");
    let (_member, endpoint) = single_member(&dir, &[]);
    let good = (client_cert.as_path(), client_key.as_path());
    wait_until_served(&endpoint, &old.cert_file(), good);

    // The operator replaces the files in place with ones from a new CA.
    let new = Ca::new(&dir, "new-ca");
    let (fresh_cert, fresh_key) = new.issue("fresh");
    std::fs::copy(&fresh_cert, &server_cert).unwrap();
    std::fs::copy(&fresh_key, &server_key).unwrap();

    wait_for("the new certificate to be served", || {
        let got = ctl_as(
            &endpoint,
            &new.cert_file(),
            good,
            &["--no-sync", "get", "/a"],
        );
        text(&got) == "1\n"
    });
    let stale = ctl_as(
        &endpoint,
        &old.cert_file(),
        good,
        &["--no-sync", "get", "/a"],
    );
    assert_eq!(stale.status.code(), Some(4), "{}", text(&stale));
    assert!(text(&stale).contains("x509: certificate signed by unknown authority"));
}

#[test]
fn auto_tls_serves_generated_certificates_and_keeps_them() {
    let dir = scratch("tls-auto");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client}");
    let args = vec![
        "--name=m".into(),
        format!("--data-dir={}", dir.join("m").display()),
        format!("--listen-client-urls={endpoint}"),
        format!("--advertise-client-urls={endpoint}"),
        format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-cluster=m=https://127.0.0.1:{peer}"),
        "--auto-tls".into(),
        "--peer-auto-tls".into(),
    ];
    let member = etcd(&args);
    let insecure = |args: &[&str]| {
        let mut all = vec![
            "--endpoints",
            endpoint.as_str(),
            "--insecure-skip-tls-verify",
        ];
        all.extend_from_slice(args);
        etcdctl(&all)
    };
    wait_for("the member to serve TLS", || {
        insecure(&["set", "/a", "1"]).status.success()
    });
    let verified = etcdctl(&["--endpoints", &endpoint, "get", "/a"]);
    assert!(
        !verified.status.success(),
        "a self-signed certificate was trusted"
    );
    let cert = dir.join("m/fixtures/client/cert.pem");
    let first = std::fs::read(&cert).expect("the certificate is in the data dir");
    assert!(dir.join("m/fixtures/peer/cert.pem").exists());
    drop(member);
    let _member = etcd(&args);
    wait_for("the restarted member", || {
        text(&insecure(&["get", "/a"])) == "1\n"
    });
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        first,
        "the certificate changed on restart"
    );
}

/// One member serving clients on TLS with `<dir>/server.pem` and `<dir>/server.key`, and
/// `extra` flags: the process and its client endpoint.
fn single_member(dir: &Path, extra: &[String]) -> (Process, String) {
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client}");
    let mut args = vec![
        "--name=m".into(),
        format!("--data-dir={}", dir.join("m").display()),
        format!("--listen-client-urls={endpoint}"),
        format!("--advertise-client-urls={endpoint}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=m=http://127.0.0.1:{peer}"),
        format!("--cert-file={}", dir.join("server.pem").display()),
        format!("--key-file={}", dir.join("server.key").display()),
    ];
    args.extend_from_slice(extra);
    (etcd(&args), endpoint)
}

/// `single_member` asking clients for a certificate `trusted` signed.
fn auth_member(dir: &Path, trusted: &Path, extra: &[String]) -> (Process, String) {
    let mut flags = vec![
        "--client-cert-auth".to_owned(),
        format!("--trusted-ca-file={}", trusted.display()),
    ];
    flags.extend_from_slice(extra);
    single_member(dir, &flags)
}

#[test]
fn a_revoked_client_certificate_is_refused_and_other_cas_are_not_affected() {
    let dir = scratch("tls-crl");
    let ca = Ca::new(&dir, "ca");
    let second = Ca::new(&dir, "second-ca");
    ca.issue("server");
    let good = ca.issue_numbered("good", Some(7));
    let revoked = ca.issue_numbered("revoked", Some(8));
    let other = second.issue("other");
    let bundle = dir.join("bundle.pem");
    let both = [ca.cert_file(), second.cert_file()].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&bundle, both.concat()).unwrap();
    let crl = ca.revoke("crl.pem", 8);
    let (_member, endpoint) = auth_member(
        &dir,
        &bundle,
        &[format!("--client-crl-file={}", crl.display())],
    );
    let ca_file = ca.cert_file();
    wait_until_served(&endpoint, &ca_file, (&good.0, &good.1));
    let refused = ctl_as(
        &endpoint,
        &ca_file,
        (&revoked.0, &revoked.1),
        &["get", "/a"],
    );
    assert_refused(&refused, "remote error: tls: bad certificate");
    // The CRL lists nothing of the second CA: its certificates are taken, as etcd takes them.
    let taken = ctl_as(&endpoint, &ca_file, (&other.0, &other.1), &["get", "/a"]);
    assert_eq!(text(&taken), "1\n");
}

#[test]
fn half_open_and_truncated_handshakes_do_not_keep_clients_out() {
    let dir = scratch("tls-half-open");
    let ca = Ca::new(&dir, "ca");
    ca.issue("server");
    let client = ca.issue("client");
    let (_member, endpoint) = auth_member(&dir, &ca.cert_file(), &[]);
    let ca_file = ca.cert_file();
    let get = || {
        ctl_as(
            &endpoint,
            &ca_file,
            (&client.0, &client.1),
            &["--no-sync", "get", "/a"],
        )
    };
    wait_until_served(&endpoint, &ca_file, (&client.0, &client.1));
    let address = endpoint.trim_start_matches("https://").to_owned();
    // A thousand connections that never say a word, and a few that stop mid-ClientHello.
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(&address).expect("connects"))
        .collect();
    for _ in 0..10 {
        use std::io::Write;
        let mut truncated = std::net::TcpStream::connect(&address).unwrap();
        let _ = truncated.write_all(&[0x16, 0x03, 0x01, 0x02]);
    }
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(text(&get()), "1\n");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "five gets took {:?} beside the idle connections",
        started.elapsed()
    );
    drop(idle);
    assert_eq!(text(&get()), "1\n");
}

#[test]
fn expired_and_wrong_host_certificates_are_refused_in_gos_words() {
    let dir = scratch("tls-bad-certs");
    let ca = Ca::new(&dir, "ca");
    ca.issue("server");
    let client = ca.issue("client");
    let expired = ca.issue_with("expired", |params| {
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    });
    let (_member, endpoint) = auth_member(&dir, &ca.cert_file(), &[]);
    let ca_file = ca.cert_file();
    wait_until_served(&endpoint, &ca_file, (&client.0, &client.1));
    let refused = ctl_as(
        &endpoint,
        &ca_file,
        (&expired.0, &expired.1),
        &["get", "/a"],
    );
    assert_refused(&refused, "remote error: tls: bad certificate");

    // A server whose certificate names another host.
    let other_dir = dir.join("elsewhere");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (wrong_cert, wrong_key) = ca.issue_with("wrong-host", |params| {
        params.subject_alt_names = vec![rcgen::SanType::DnsName("example.com".try_into().unwrap())];
    });
    std::fs::copy(wrong_cert, other_dir.join("server.pem")).unwrap();
    std::fs::copy(wrong_key, other_dir.join("server.key")).unwrap();
    let (_wrong, wrong_endpoint) = single_member(&other_dir, &[]);
    let wrong = || {
        etcdctl(&[
            "--endpoints",
            &wrong_endpoint,
            "--ca-file",
            path(&ca_file),
            "get",
            "/a",
        ])
    };
    wait_for("the second member to listen", || {
        text(&wrong()).contains("x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs")
    });
    assert_eq!(wrong().status.code(), Some(4));
}

#[test]
fn http_and_https_listeners_side_by_side_each_serve_their_scheme() {
    let dir = scratch("tls-mixed");
    let ca = Ca::new(&dir, "ca");
    ca.issue("server");
    let (plain, secure, peer) = (free_port(), free_port(), free_port());
    let _member = etcd(&[
        "--name=m".into(),
        format!("--data-dir={}", dir.join("m").display()),
        format!("--listen-client-urls=http://127.0.0.1:{plain},https://127.0.0.1:{secure}"),
        format!("--advertise-client-urls=http://127.0.0.1:{plain},https://127.0.0.1:{secure}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=m=http://127.0.0.1:{peer}"),
        format!("--cert-file={}", dir.join("server.pem").display()),
        format!("--key-file={}", dir.join("server.key").display()),
    ]);
    wait_for("the plain listener", || {
        common::http("PUT", plain, "/v2/keys/a", "value=1").is_some_and(|r| r.status == 201)
    });
    let https = format!("https://127.0.0.1:{secure}");
    let got = etcdctl(&[
        "--no-sync",
        "--endpoints",
        &https,
        "--ca-file",
        path(&ca.cert_file()),
        "get",
        "/a",
    ]);
    assert_eq!(text(&got), "1\n");
    // Each scheme only on its own port: TLS to the plain one fails cleanly, status 4.
    let crossed = etcdctl(&[
        "--no-sync",
        "--endpoints",
        &format!("https://127.0.0.1:{plain}"),
        "--ca-file",
        path(&ca.cert_file()),
        "get",
        "/a",
    ]);
    assert_eq!(crossed.status.code(), Some(4), "{}", text(&crossed));
    assert!(common::http("GET", secure, "/v2/keys/a", "").is_none());
}
