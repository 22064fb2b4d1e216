//! Helpers for tests that run the real `etcd` binary: free ports, scratch dirs, members and
//! a minimal HTTP/1.1 client.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port no one listens on, from below Linux's ephemeral range (32768–60999): a port the
/// kernel hands out for `:0` can be taken by any outgoing connection before the member binds
/// it, which made tests fail now and then. Ports the README and the Procfile use are skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 15_000;
    const SPAN: u32 = 17_000;
    const FIXED: [u16; 8] = [22379, 22380, 32379, 32380, 14379, 14380, 12379, 12380];
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each test process starts somewhere else in the span, so two at once rarely meet.
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if FIXED.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etcd-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with a form body on a fresh connection; `None` if the server cannot
/// be reached.
pub fn http(method: &str, port: u16, path: &str, form: &str) -> Option<Reply> {
    request(
        method,
        port,
        path,
        Some("application/x-www-form-urlencoded"),
        form,
    )
}

/// One HTTP/1.1 request with a JSON body (the members API's).
pub fn http_json(method: &str, port: u16, path: &str, json: &str) -> Option<Reply> {
    request(method, port, path, Some("application/json"), json)
}

/// One HTTP/1.1 request with the given content type (or none) on a fresh connection.
pub fn request(
    method: &str,
    port: u16,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    let typed = content_type
        .map(|t| format!("Content-Type: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         {typed}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The `etcd` binary started with `args`; its stderr shown only with `TEST_STDERR` set.
pub fn spawn_etcd(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("etcd starts")
}

pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub data_dir: PathBuf,
    pub cluster: String,
    pub child: Option<Child>,
}

impl Member {
    pub fn args(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            self.cluster.clone(),
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
            "--snapshot-count".into(),
            "30".into(),
        ]
    }

    pub fn start(&mut self) {
        self.child = Some(spawn_etcd(&self.args()));
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        None
    }

    pub fn is_leader(&self) -> bool {
        http("GET", self.client, "/v2/stats/self", "")
            .is_some_and(|r| r.body.contains("StateLeader"))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn cluster(name: &str, size: usize) -> Vec<Member> {
    let dir = scratch(name);
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let spec = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, &(client, peer))| Member {
            name: format!("m{i}"),
            client,
            peer,
            data_dir: dir.join(format!("m{i}")),
            cluster: spec.clone(),
            child: None,
        })
        .collect()
}

/// `cluster`, every member started, once it has a leader.
pub fn running_cluster(name: &str, size: usize) -> Vec<Member> {
    let mut members = cluster(name, size);
    for m in members.iter_mut() {
        m.start();
    }
    wait_for("a leader", || leader(&members).is_some());
    members
}

pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn leader(members: &[Member]) -> Option<usize> {
    members
        .iter()
        .position(|m| m.child.is_some() && m.is_leader())
}

pub fn put(port: u16, key: &str, form: &str) -> Reply {
    http("PUT", port, &format!("/v2/keys{key}"), form).expect("the member answers")
}
