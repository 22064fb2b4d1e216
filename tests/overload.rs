//! A member that falls behind turns clients away at once with a clear answer instead of queuing
//! them without bound, and answers as before once it catches up. The member runs in this
//! process, on real sockets, with an in-memory disk whose syncs the test can hold: a disk that
//! stalls is what makes the raft loop fall behind.
// Tests of the real world: they open sockets, spawn tasks and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd::config::Config;
use etcd::node::COMMAND_CAPACITY;
use etcd::runtime::{DiskOp, Host, SimDisk, TokioHost};
use etcd::server::{Bound, Listeners, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// etcd's v2 error body for an overloaded member (see `Error::too_many_requests`).
const TOO_MANY_REQUESTS: &str = "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\
                                 \"cause\":\"etcdserver: too many requests\",\"index\":0}\n";

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One request on a fresh connection, read to its end.
async fn call(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the member listens");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let raw = String::from_utf8(raw).expect("text");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head[9..12].parse().expect("a status");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn put(port: u16, key: &str) -> Reply {
    let form = "application/x-www-form-urlencoded";
    call(port, "PUT", &format!("/v2/keys/{key}"), form, "value=x").await
}

/// A disk whose syncs wait while the gate is shut; counts the syncs waiting.
struct Gate {
    open: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
}

impl Gate {
    fn on(disk: &SimDisk) -> Gate {
        let (open, opened) = watch::channel(true);
        let held = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::clone(&held);
        disk.set_latency(move |op| {
            let mut opened = opened.clone();
            if op != DiskOp::Sync || *opened.borrow() {
                return None;
            }
            waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = Arc::clone(&waiting);
            Some(Box::pin(async move {
                let _ = opened.wait_for(|open| *open).await;
                waiting.fetch_sub(1, Ordering::SeqCst);
            }))
        });
        Gate { open, held }
    }
}

async fn start_member(disk: SimDisk) -> (Server<TokioHost, SimDisk>, u16) {
    let host = TokioHost::new();
    let clients = host.listen("127.0.0.1:0").await.expect("binds");
    let peers = host.listen("127.0.0.1:0").await.expect("binds");
    let client = clients.local_addr().unwrap().port();
    let peer = format!("http://127.0.0.1:{}", peers.local_addr().unwrap().port());
    let args = [
        "etcd".to_owned(),
        "--name=m".to_owned(),
        "--data-dir=/m".to_owned(),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=m={peer}"),
        // Clients wait 5 s + twice this for an answer: room for the flood below to arrive on
        // a slow, shared machine while the queued clients wait for the disk.
        "--election-timeout=2500".to_owned(),
    ];
    let config = Config::from_args(args).expect("flags").expect("config");
    let listeners = Listeners {
        clients: vec![Bound::plain(clients)],
        peers: vec![Bound::plain(peers)],
        peer_dialer: Default::default(),
    };
    let server = Server::start(config, host, disk, listeners)
        .await
        .expect("starts");
    for _ in 0..1000 {
        if put(client, "warm").await.status == 201 {
            return (server, client);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the member never took a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_member_answers_503_at_once_and_recovers() {
    let disk = SimDisk::new();
    let gate = Gate::on(&disk);
    let (server, port) = start_member(disk).await;

    // The raft loop takes a write and waits for its sync: from now on it takes nothing.
    gate.open.send_replace(false);
    let stalled = tokio::spawn(put(port, "stalled"));
    while gate.held.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A channel-full of clients waits; the rest are turned away at once.
    const TURNED_AWAY: usize = 64;
    let (replies, mut answered) = mpsc::unbounded_channel();
    for i in 0..COMMAND_CAPACITY + TURNED_AWAY {
        let replies = replies.clone();
        tokio::spawn(async move {
            let _ = replies.send(put(port, &format!("flood/{i}")).await);
        });
    }
    for _ in 0..TURNED_AWAY {
        let reply = answered.recv().await.expect("an answer");
        assert_eq!(reply.status, 503, "{}", reply.head);
        assert_eq!(reply.body, TOO_MANY_REQUESTS);
        assert_eq!(reply.header("Retry-After"), Some("1"));
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        assert_eq!(reply.header("X-Etcd-Index"), Some("0"));
    }
    let more = tokio::time::timeout(Duration::from_millis(300), answered.recv()).await;
    assert!(
        more.is_err(),
        "a queued client was answered while the disk was held"
    );

    // Quorum reads and membership changes meet the same full queue.
    let read = call(port, "GET", "/v2/keys/warm?quorum=true", "text/plain", "").await;
    assert_eq!((read.status, read.body.as_str()), (503, TOO_MANY_REQUESTS));
    let json = "application/json";
    let add = r#"{"peerURLs":["http://127.0.0.1:1"]}"#;
    let change = call(port, "POST", "/v2/members", json, add).await;
    assert_eq!(change.status, 503);
    assert_eq!(
        change.body,
        "{\"message\":\"etcdserver: too many requests\"}"
    );
    assert_eq!(change.header("Retry-After"), Some("1"));

    // The disk comes back: every client that waited is answered, and new ones as before.
    gate.open.send_replace(true);
    assert_eq!(stalled.await.expect("answered").status, 201);
    for _ in 0..COMMAND_CAPACITY {
        let reply = answered.recv().await.expect("an answer");
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert_eq!(put(port, "after").await.status, 201);
    let read = call(port, "GET", "/v2/keys/after?quorum=true", "text/plain", "").await;
    assert_eq!(read.status, 200);
    assert!(read.body.contains("\"value\":\"x\""), "{}", read.body);
    server.shutdown().await;
}
