//! Raft messages between members over HTTP/1 (hyper).
//!
//! Each peer has two lanes, each a task with its own connection: snapshots travel alone so a
//! large one never holds up heartbeats and appends. A lane sends whatever has queued up as
//! one POST to `/raft` (a batch of length-prefixed protobuf messages). When a peer cannot be
//! reached the batch and the backlog are dropped (raft sends again) and the lane backs off.
//! Every request carries the cluster id; a member of another cluster is refused with 412.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::api::{full, text_response, Body};
use crate::membership::{format_id, parse_id};
use crate::node::PeerReport;
use crate::runtime::Transport;

const CLUSTER_HEADER: &str = "X-Etcd-Cluster-ID";
const FROM_HEADER: &str = "X-Server-From";
/// Messages sent in one request at most.
const BATCH: usize = 512;
/// The largest request a member accepts from a peer (a snapshot of a large store).
const MAX_PEER_BODY: usize = 1 << 30;

struct Lanes {
    messages: mpsc::UnboundedSender<Message>,
    snapshots: mpsc::UnboundedSender<Message>,
}

/// Where the lanes report what they learn about peers (the member, once it runs).
type Reporter = Arc<std::sync::OnceLock<Box<dyn Fn(PeerReport) + Send + Sync>>>;

#[derive(Clone)]
pub struct HttpTransport {
    from: u64,
    cluster_id: u64,
    peers: Arc<Mutex<BTreeMap<u64, Lanes>>>,
    reporter: Reporter,
}

impl HttpTransport {
    pub fn new(from: u64, cluster_id: u64) -> HttpTransport {
        HttpTransport {
            from,
            cluster_id,
            peers: Arc::default(),
            reporter: Arc::default(),
        }
    }

    /// Sends what the lanes learn about peers (unreachable, snapshot delivered or not) to
    /// `report`; until it is set, such news is dropped.
    pub fn set_reporter(&self, report: impl Fn(PeerReport) + Send + Sync + 'static) {
        let _ = self.reporter.set(Box::new(report));
    }

    /// Starts sending to a peer at the first of its URLs (once per peer).
    pub fn connect_peer(&self, id: u64, urls: &[String]) {
        if self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
        {
            return;
        }
        let Some(url) = urls.first().cloned() else {
            return;
        };
        let (messages, message_rx) = mpsc::unbounded_channel();
        let (snapshots, snapshot_rx) = mpsc::unbounded_channel();
        let peer = Peer {
            id,
            url,
            from: self.from,
            cluster_id: self.cluster_id,
            reporter: Arc::clone(&self.reporter),
        };
        tokio::spawn(lane(peer.clone(), message_rx, Duration::from_secs(5)));
        tokio::spawn(lane(peer, snapshot_rx, Duration::from_secs(120)));
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            Lanes {
                messages,
                snapshots,
            },
        );
    }
}

impl Transport for HttpTransport {
    fn add_peer(&self, id: u64, peer_urls: &[String]) {
        if id != self.from {
            self.connect_peer(id, peer_urls);
        }
    }

    fn send(&self, message: Message) {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lanes) = peers.get(&message.to) {
            let lane = if message.get_msg_type() == MessageType::MsgSnapshot {
                &lanes.snapshots
            } else {
                &lanes.messages
            };
            let _ = lane.send(message);
        }
    }
}

/// A batch as one request body: each message length-prefixed.
pub fn encode(batch: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in batch {
        let bytes = message
            .write_to_bytes()
            .expect("raft messages always encode");
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Decodes a batch; any damage refuses the whole batch.
pub fn decode(mut bytes: &[u8]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(4).ok_or("a cut-off length")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (body, rest) = rest.split_at_checked(len).ok_or("a cut-off message")?;
        out.push(Message::parse_from_bytes(body).map_err(|e| e.to_string())?);
        bytes = rest;
    }
    Ok(out)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(url: &str) -> Result<Sender, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One peer, as a lane sees it.
#[derive(Clone)]
struct Peer {
    id: u64,
    url: String,
    from: u64,
    cluster_id: u64,
    reporter: Reporter,
}

impl Peer {
    fn report(&self, report: PeerReport) {
        if let Some(reporter) = self.reporter.get() {
            reporter(report);
        }
    }
}

async fn lane(peer: Peer, mut rx: mpsc::UnboundedReceiver<Message>, timeout: Duration) {
    let Peer {
        url,
        from,
        cluster_id,
        ..
    } = peer.clone();
    let mut sender: Option<Sender> = None;
    let mut backoff = Duration::from_millis(50);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let attempt = async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = Some(connect(&url).await?);
            }
            let request = Request::post(format!("{url}/raft"))
                .header(CLUSTER_HEADER, format_id(cluster_id))
                .header(FROM_HEADER, format_id(from))
                .header("Content-Type", "application/octet-stream")
                .body(Full::new(Bytes::from(encode(&batch))))
                .map_err(|e| e.to_string())?;
            let sender = sender.as_mut().expect("connected");
            let sending = async {
                // hyper refuses a request on a connection that is not ready for the next one.
                sender.ready().await?;
                sender.send_request(request).await
            };
            let response = tokio::time::timeout(timeout, sending)
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            match response.status() {
                StatusCode::NO_CONTENT => Ok(()),
                StatusCode::GONE => {
                    // etcd's answer to a member that was removed while it was away.
                    peer.report(PeerReport::RemovedByPeer);
                    Err("this member was removed from the cluster".to_owned())
                }
                status => Err(format!("peer answered {status}")),
            }
        };
        let snapshots = batch
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .count();
        match attempt.await {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                for _ in 0..snapshots {
                    peer.report(PeerReport::SnapshotSent(peer.id));
                }
            }
            Err(_) => {
                peer.report(PeerReport::Unreachable(peer.id));
                for _ in 0..snapshots {
                    peer.report(PeerReport::SnapshotFailed(peer.id));
                }
                sender = None;
                // Raft will send again; a dropped snapshot must be reported, or raft waits for it.
                while let Ok(dropped) = rx.try_recv() {
                    if dropped.get_msg_type() == MessageType::MsgSnapshot {
                        peer.report(PeerReport::SnapshotFailed(peer.id));
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The peer listener's side: `POST /raft` delivers a batch to this member.
pub async fn receive(
    request: Request<hyper::body::Incoming>,
    cluster_id: u64,
    member_id: u64,
    inbox: &mpsc::UnboundedSender<Message>,
    is_removed: impl Fn(u64) -> bool,
) -> Response<Body> {
    if request.uri().path() != "/raft" {
        return text_response(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if request.method() != hyper::Method::POST {
        return crate::api::method_not_allowed("POST");
    }
    let theirs = request
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_id);
    if theirs != Some(cluster_id) {
        return text_response(StatusCode::PRECONDITION_FAILED, "cluster ID mismatch\n");
    }
    // A removed member that missed its removal still talks; tell it, as etcd does, so it
    // stops instead of campaigning forever in a configuration that no longer exists.
    let sender = request
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_id);
    if sender.is_some_and(is_removed) {
        return text_response(StatusCode::GONE, "removed member\n");
    }
    let body = match Limited::new(request.into_body(), MAX_PEER_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return text_response(StatusCode::BAD_REQUEST, "unreadable body\n"),
    };
    match decode(&body) {
        Ok(messages) => {
            // A peer with this member's URL but another's id (swapped URLs) must not be
            // stepped here.
            for message in messages.into_iter().filter(|m| m.to == member_id) {
                let _ = inbox.send(message);
            }
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(_) => text_response(StatusCode::BAD_REQUEST, "undecodable raft messages\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let mut a = Message::default();
        a.set_to(2);
        a.set_term(7);
        let mut b = Message::default();
        b.set_msg_type(MessageType::MsgHeartbeat);
        let batch = vec![a, b];
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn damaged_batches_are_refused() {
        let mut m = Message::default();
        m.set_to(3);
        let bytes = encode(&[m]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[1, 0]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f, 1, 2]).is_err());
        assert_eq!(decode(&[]).unwrap(), Vec::<Message>::new());
    }
}
