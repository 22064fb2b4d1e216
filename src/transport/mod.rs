//! Raft messages between members over HTTP/1 (hyper).
//!
//! Each peer has two lanes, each a task with its own connection: snapshots travel alone so a
//! large one never holds up heartbeats and appends. A lane sends whatever has queued up as
//! one POST (a batch of length-prefixed protobuf messages): messages to `/raft`, snapshots to
//! `/raft/snapshot`. When a peer cannot be reached the batch and the backlog are dropped (raft
//! sends again) and the lane backs off. A peer removed from the cluster loses its lanes at
//! once, whatever they were doing. Every request carries the cluster id; a member of another
//! cluster is refused with 412. What this owes the node is the `Transport` contract.
//!
//! What a peer request may cost the receiver is bounded, because anyone who can reach the
//! peer port can send one: each lane has a body limit sized to the largest batch a real peer
//! sends and a deadline, a batch holds at most [`BATCH`] messages and no empty frame (an empty
//! frame would be a whole decoded message made of four bytes), message bodies being read share
//! one memory budget, and snapshots are read one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, Semaphore};

mod outgoing;
pub mod stats;

use crate::body::{BodyError, BodyRead};
use crate::membership::{format_id, parse_id};
use crate::net::{full, method_not_allowed, text_response, Body, Connector};
use crate::node::PeerReport;
use crate::runtime::{timeout, Host, Transport};
use crate::sync::{Flag, RaiseOnDrop};
use outgoing::CountedBody;
pub use stats::TrafficStats;

const CLUSTER_HEADER: &str = "X-Etcd-Cluster-ID";
const FROM_HEADER: &str = "X-Server-From";
/// Where the sender listens for peers now (etcd's header too). A member that is behind may not
/// yet know that a peer moved; the peer's own messages tell it where to answer.
const PEER_URLS_HEADER: &str = "X-PeerURLs";
/// Messages sent in one request at most.
pub const BATCH: usize = 512;
/// A message batch stops growing once it passes this many bytes.
const BATCH_BYTES: usize = 4 << 20;
/// The largest single message a member sends besides a snapshot: an append of up to raft's
/// 1 MiB per message, or one entry as large as the largest client request
/// (`--max-request-bytes`), with room to spare.
fn max_message_bytes(max_request_bytes: usize) -> usize {
    (2 * max_request_bytes + (1 << 20)).max(8 << 20)
}

/// The largest message batch a member accepts: a full batch and one more message.
pub fn max_messages_body(max_request_bytes: usize) -> usize {
    BATCH_BYTES + max_message_bytes(max_request_bytes)
}
/// The largest snapshot a member accepts (the whole store, serialised).
pub const MAX_SNAPSHOT_BODY: usize = 1 << 30;
/// Bytes of message batches held at once across every peer connection, at least (twice the
/// largest batch when that is more). Taken as bytes arrive, so a connection that stalls holds
/// only what it sent, and what peers can make this member hold is bounded by the bytes they
/// really send; beyond it a batch waits for room.
const MESSAGE_BYTES_IN_FLIGHT: usize = 64 << 20;
/// A batch must arrive whole within this: a real peer's lane gives up after 5 s.
const MESSAGE_BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Snapshots read at once: only a leader sends them, one at a time.
const CONCURRENT_SNAPSHOT_BODIES: usize = 1;
/// A snapshot may take long to arrive, but not stall: no byte for this long ends it.
const SNAPSHOT_STALL: Duration = Duration::from_secs(10);
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(600);

/// Messages waiting to go to one peer; beyond it they are dropped (see `HttpTransport::send`).
/// etcd's stream buffer holds as many.
const LANE_MESSAGES: usize = 4096;
/// Snapshots waiting to go to one peer (raft sends one at a time).
const LANE_SNAPSHOTS: usize = 2;

/// The two kinds of peer request, each with its own path and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Messages,
    Snapshots,
}

impl Lane {
    pub fn path(self) -> &'static str {
        match self {
            Lane::Messages => "/raft",
            Lane::Snapshots => "/raft/snapshot",
        }
    }

    fn of(path: &str) -> Option<Lane> {
        match path {
            "/raft" => Some(Lane::Messages),
            "/raft/snapshot" => Some(Lane::Snapshots),
            _ => None,
        }
    }

    /// Whether a message of this type travels on this lane.
    fn carries(self, message: &Message) -> bool {
        (message.get_msg_type() == MessageType::MsgSnapshot) == (self == Lane::Snapshots)
    }
}

struct Lanes {
    messages: mpsc::Sender<Message>,
    snapshots: mpsc::Sender<Message>,
    /// Where the peer is; the lanes read it before each connection.
    address: Arc<Mutex<Address>>,
    /// Dropped with the lanes: tells their tasks to end now, mid-send or mid-backoff, instead
    /// of sending what is still queued to a member that is gone.
    _retire: RaiseOnDrop,
}

/// Where a peer listens, as far as this member knows.
struct Address {
    /// From the member table, as applied here: authoritative, but late on a member that is
    /// behind on its log.
    table: String,
    /// What the peer last said of itself (see [`PEER_URLS_HEADER`]): tried when the table's
    /// address does not answer.
    heard: Option<String>,
}

/// Where the lanes report what they learn about peers (the member, once it runs).
type Report = Box<dyn Fn(PeerReport) + Send + Sync>;

#[derive(Clone, Default)]
struct Reporter(Arc<std::sync::OnceLock<Report>>);

impl Reporter {
    fn report(&self, report: PeerReport) {
        if let Some(reporter) = self.0.get() {
            reporter(report);
        }
    }
}

pub struct HttpTransport<H> {
    host: H,
    from: u64,
    /// This member's own peer URLs (`--initial-advertise-peer-urls`, which an operator changes
    /// with `member update` before restarting the member), sent with every batch as etcd does.
    advertised: Arc<str>,
    cluster_id: u64,
    peers: Arc<Mutex<BTreeMap<u64, Lanes>>>,
    /// Peers removed from the cluster: never given lanes again, whatever they say of
    /// themselves (ids are never reused). Only ids the node removed, so as large as the member
    /// table's own list of removed members, which the node keeps for ever too. Whether an
    /// incoming sender gets 410 Gone is the node's table's to say (`Inbound::receive`), which
    /// is updated before a removal reaches here.
    removed: Arc<Mutex<BTreeSet<u64>>>,
    /// How peers are dialled: plain, or TLS for `https://` peer URLs.
    connector: Connector,
    reporter: Reporter,
    stats: Arc<TrafficStats>,
}

impl<H: Clone> Clone for HttpTransport<H> {
    fn clone(&self) -> Self {
        HttpTransport {
            host: self.host.clone(),
            from: self.from,
            advertised: Arc::clone(&self.advertised),
            cluster_id: self.cluster_id,
            peers: Arc::clone(&self.peers),
            removed: Arc::clone(&self.removed),
            connector: self.connector.clone(),
            reporter: self.reporter.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<H: Host> HttpTransport<H> {
    /// The transport of member `from` of `cluster_id`, which listens for peers at
    /// `advertised`.
    pub fn new(host: H, from: u64, cluster_id: u64, advertised: &[String]) -> HttpTransport<H> {
        let clock = host.clone();
        HttpTransport {
            host,
            from,
            advertised: advertised.join(",").into(),
            cluster_id,
            peers: Arc::default(),
            removed: Arc::default(),
            connector: Connector::plain(),
            reporter: Reporter::default(),
            stats: Arc::new(TrafficStats::new(move || clock.elapsed())),
        }
    }

    /// Dials peers with `connector` (TLS for `https://` peer URLs) instead of plain TCP.
    pub fn with_connector(mut self, connector: Connector) -> HttpTransport<H> {
        self.connector = connector;
        self
    }

    /// Asks every known peer, with an empty batch, whether this member was removed: a peer
    /// answers 410 if so, and the member is told (`PeerReport::RemovedByPeer`). A member that
    /// missed its removal and knows no configuration sends raft nothing, so no 410 would ever
    /// reach it otherwise (etcd's streams dial peers even when raft has nothing to say).
    pub async fn ask_whether_removed(&self) {
        let addresses: Vec<String> = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|lanes| {
                lanes
                    .address
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .table
                    .clone()
            })
            .collect();
        for url in addresses {
            let asked = async {
                let mut sender = connect(&self.host, &self.connector, &url).await?;
                let request = batch_request(
                    &url,
                    Lane::Messages,
                    (self.cluster_id, self.from),
                    None,
                    CountedBody::new(Bytes::new()).0,
                )?;
                sender
                    .send_request(request)
                    .await
                    .map(|response| response.status())
                    .map_err(|e| e.to_string())
            };
            if let Ok(Ok(StatusCode::GONE)) =
                timeout(&self.host, Duration::from_secs(2), asked).await
            {
                self.reporter.report(PeerReport::RemovedByPeer);
                return;
            }
        }
    }

    /// The traffic figures etcd's stats endpoints report, shared with the receiving side.
    pub fn stats(&self) -> Arc<TrafficStats> {
        Arc::clone(&self.stats)
    }

    /// Sends what the lanes learn about peers (unreachable, snapshot delivered or not) to
    /// `report`; until it is set, such news is dropped.
    pub fn set_reporter(&self, report: impl Fn(PeerReport) + Send + Sync + 'static) {
        let _ = self.reporter.0.set(Box::new(report));
    }

    /// A peer says where it listens: kept as the address to try when the table's does not
    /// answer (a member behind on its log may not know yet that a peer moved). It never
    /// replaces the table's: a process about to restart elsewhere still speaks of its old
    /// address. A peer not known at all is reached there until the table says otherwise.
    fn learn_address(&self, id: u64, urls: &str) {
        let Some(url) = urls
            .split(',')
            .find(|u| crate::config::Url::parse(u).is_ok())
        else {
            return;
        };
        let known = self.update_address(id, |address| {
            if address.heard.as_deref() != Some(url) {
                address.heard = Some(url.to_owned());
            }
        });
        // A sender this member has not heard of yet: a member added in entries it has not
        // applied (it may even be the leader, which can only bring it up to date if it
        // answers). etcd's transport adds such a "remote" too. The member table takes over
        // once the member applies the addition.
        if !known && id != self.from {
            self.connect_peer(id, &[url.to_owned()]);
        }
    }

    /// Changes a known peer's address; `false` when the peer is not known.
    fn update_address(&self, id: u64, change: impl FnOnce(&mut Address)) -> bool {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lanes) = peers.get(&id) else {
            return false;
        };
        change(&mut lanes.address.lock().unwrap_or_else(|e| e.into_inner()));
        true
    }

    /// Starts sending to a peer at the first of its URLs, or, for a peer already known, moves
    /// its lanes to that URL (a member re-addressed with `member update`): they drop the
    /// connection to the old address and dial the new one. A removed peer is not connected.
    pub fn connect_peer(&self, id: u64, urls: &[String]) {
        let Some(url) = urls.first().cloned() else {
            return;
        };
        if self.was_removed(id) || self.update_address(id, |address| address.table = url.clone()) {
            return;
        }
        let (messages, message_rx) = mpsc::channel(LANE_MESSAGES);
        let (snapshots, snapshot_rx) = mpsc::channel(LANE_SNAPSHOTS);
        let retired = Arc::new(Flag::new());
        let address = Arc::new(Mutex::new(Address {
            table: url,
            heard: None,
        }));
        let peer = Peer {
            host: self.host.clone(),
            advertised: Arc::clone(&self.advertised),
            id,
            address: Arc::clone(&address),
            from: self.from,
            cluster_id: self.cluster_id,
            reporter: self.reporter.clone(),
            stats: Arc::clone(&self.stats),
            connector: self.connector.clone(),
        };
        self.host.spawn(lane(
            peer.clone(),
            Lane::Messages,
            message_rx,
            Arc::clone(&retired),
        ));
        self.host.spawn(lane(
            peer,
            Lane::Snapshots,
            snapshot_rx,
            Arc::clone(&retired),
        ));
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            Lanes {
                messages,
                snapshots,
                address,
                _retire: RaiseOnDrop(retired),
            },
        );
    }

    /// The peers this member has lanes to.
    pub fn peer_ids(&self) -> Vec<u64> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.keys().copied().collect()
    }

    fn was_removed(&self, id: u64) -> bool {
        let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        removed.contains(&id)
    }
}

impl<H: Host> Transport for HttpTransport<H> {
    fn add_peer(&self, id: u64, peer_urls: &[String]) {
        if id != self.from {
            self.connect_peer(id, peer_urls);
        }
    }

    /// Drops the peer's lanes: their tasks end at once (see `lane`), and what they still held
    /// is dropped, a snapshot among it reported failed. That report is not needed for raft's
    /// sake — the node removes a peer only once raft has applied its removal and no longer
    /// tracks it (raft ignores snapshot news of a peer it does not track, and ids are never
    /// reused) — but it keeps the rule "every snapshot handed over is reported" without an
    /// exception for anyone to reason about.
    fn remove_peer(&self, id: u64) {
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        let lanes = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        drop(lanes);
    }

    /// Queues a message on its peer's lane. A lane that is full (its peer is slow or away)
    /// drops the message and says the peer is unreachable, as etcd's transport does; raft
    /// sends again, and a dropped snapshot is reported failed so that raft does not wait for
    /// it. A message for a peer with no lanes (never added, or removed) is dropped too, a
    /// snapshot reported failed, without dialling anyone.
    fn send(&self, message: Message) {
        let (to, snapshot) = (
            message.to,
            message.get_msg_type() == MessageType::MsgSnapshot,
        );
        let (known, full) = {
            let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            match peers.get(&to) {
                None => (false, false),
                Some(lanes) => {
                    let lane = if snapshot {
                        &lanes.snapshots
                    } else {
                        &lanes.messages
                    };
                    let full = matches!(
                        lane.try_send(message),
                        Err(mpsc::error::TrySendError::Full(_))
                    );
                    (true, full)
                }
            }
        };
        if full {
            self.reporter.report(PeerReport::Unreachable(to));
        }
        if (full || !known) && snapshot {
            self.reporter.report(PeerReport::SnapshotFailed(to));
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

/// Decodes a batch that arrived on `lane`; any damage refuses the whole batch. What it
/// returns is bounded by the input: at most [`BATCH`] messages, none from an empty frame, so
/// the memory a batch takes grows with the bytes that were really sent.
pub fn decode(lane: Lane, mut bytes: &[u8]) -> Result<Vec<Message>, String> {
    let original = bytes;
    let mut entries = 0;
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if out.len() == BATCH {
            return Err(format!("more than {BATCH} messages in one batch"));
        }
        let (len, rest) = bytes.split_at_checked(4).ok_or("a cut-off length")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Err("an empty message".into());
        }
        let (body, rest) = rest.split_at_checked(len).ok_or("a cut-off message")?;
        // Counted before parsing: two bytes of wire format make a whole decoded entry, so
        // a message of millions of empty entries is refused before it takes any memory.
        entries += count_entries(body).ok_or("a malformed message")?;
        if entries > ENTRY_ALLOWANCE + consumed_bytes(original, rest) / 8 {
            return Err(format!("{entries} entries in {} bytes", original.len()));
        }
        let message = Message::parse_from_bytes(body).map_err(|e| e.to_string())?;
        if !lane.carries(&message) {
            return Err(format!(
                "a {:?} does not travel on {}",
                message.get_msg_type(),
                lane.path()
            ));
        }
        out.push(message);
        bytes = rest;
    }
    Ok(out)
}

/// Entries a batch may hold beyond one per eight bytes received: real entries carry a
/// proposal of tens of bytes, and only a new leader's no-op is smaller.
const ENTRY_ALLOWANCE: usize = 4096;

fn consumed_bytes(original: &[u8], rest: &[u8]) -> usize {
    original.len() - rest.len()
}

/// How many `entries` (field 7) a raft message's wire bytes hold, walking its top-level fields
/// without decoding them; `None` for bytes that are not protobuf.
fn count_entries(mut bytes: &[u8]) -> Option<usize> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut count = 0;
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let skip = match tag & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut bytes)?).ok()?,
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
        if tag >> 3 == 7 {
            count += 1;
        }
    }
    Some(count)
}

type Sender = crate::net::Sender<CountedBody>;

/// A batch's request to the peer at `url`, from `(cluster, member)`; with the sender's
/// advertised URLs when given.
fn batch_request(
    url: &str,
    lane: Lane,
    (cluster_id, from): (u64, u64),
    advertised: Option<&str>,
    body: CountedBody,
) -> Result<Request<CountedBody>, String> {
    let mut request = Request::post(format!("{url}{}", lane.path()))
        .header(CLUSTER_HEADER, format_id(cluster_id))
        .header(FROM_HEADER, format_id(from));
    if let Some(advertised) = advertised {
        request = request
            .header(PEER_URLS_HEADER, advertised)
            .header("Content-Type", "application/octet-stream");
    }
    request.body(body).map_err(|e| e.to_string())
}

async fn connect<H: Host>(host: &H, connector: &Connector, url: &str) -> Result<Sender, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    connector
        .dial(host, &uri, Duration::from_secs(1))
        .await
        .map_err(|e| e.to_string())
}

/// One peer, as a lane sees it.
#[derive(Clone)]
struct Peer<H> {
    host: H,
    advertised: Arc<str>,
    id: u64,
    address: Arc<Mutex<Address>>,
    from: u64,
    cluster_id: u64,
    reporter: Reporter,
    stats: Arc<TrafficStats>,
    connector: Connector,
}

impl<H: Host> Peer<H> {
    /// A message's encoded size, counted in the stats when it is an append.
    fn sized(&self, message: &Message) -> usize {
        let bytes = message.compute_size() as usize;
        if message.get_msg_type() == MessageType::MsgAppend {
            self.stats.append_sent(bytes);
        }
        bytes
    }

    fn report(&self, report: PeerReport) {
        self.reporter.report(report);
    }
}

/// A message batch must be answered within this.
const MESSAGES_DEADLINE: Duration = Duration::from_secs(5);
/// A snapshot goes on as long as it moves: it fails when no byte has gone for this long...
const SNAPSHOT_SEND_STALL: Duration = Duration::from_secs(5);
/// ...or when every byte has gone and no answer came within this, plus a second per MiB: the
/// last bytes may still sit in socket buffers (and a proxy's) on a slow link, and the
/// receiver decodes the snapshot before it answers.
const SNAPSHOT_ANSWER: Duration = Duration::from_secs(30);

fn snapshot_answer(bytes: usize) -> Duration {
    SNAPSHOT_ANSWER + Duration::from_secs((bytes >> 20) as u64)
}

/// One peer's lane: sends what queues up, in order. Its contract with raft: every snapshot
/// handed to it is reported, delivered or failed, within a bounded time of its last progress;
/// raft sends a follower nothing more until it hears, so an unreported snapshot stalls that
/// follower for good. The node has no guess of its own to fall back on. It ends when the peer
/// is removed (its `Lanes` dropped, which raises `retired`), reporting what it still held.
async fn lane<H: Host>(
    peer: Peer<H>,
    kind: Lane,
    mut rx: mpsc::Receiver<Message>,
    retired: Arc<Flag>,
) {
    let Peer {
        from, cluster_id, ..
    } = peer.clone();
    // The connection, and the address it was made to.
    let mut sender: Option<(Sender, String)> = None;
    let mut backoff = Duration::from_millis(50);
    // After a failure, the next attempt goes to the other address, if the peer has one.
    let mut try_heard = false;
    loop {
        // `biased`, here and below: removal first, and an unbiased select draws from a
        // thread-local RNG that would make simulation runs differ.
        let first = tokio::select! {
            biased;
            () = retired.raised() => break,
            first = rx.recv() => match first {
                Some(first) => first,
                None => break,
            },
        };
        // Sizes are taken here, off the raft loop, once: for the batch's limit and the stats.
        let mut bytes = peer.sized(&first);
        let mut batch = vec![first];
        // A snapshot goes alone; messages fill a batch up to the receiver's limits.
        while kind == Lane::Messages && batch.len() < BATCH && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(message) => {
                    bytes += peer.sized(&message);
                    batch.push(message);
                }
                Err(_) => break,
            }
        }
        let url = {
            let address = peer.address.lock().unwrap_or_else(|e| e.into_inner());
            match &address.heard {
                Some(heard) if try_heard => heard.clone(),
                _ => address.table.clone(),
            }
        };
        let attempt = async {
            if sender
                .as_ref()
                .is_none_or(|(s, to)| s.is_closed() || *to != url)
            {
                sender = Some((
                    connect(&peer.host, &peer.connector, &url).await?,
                    url.clone(),
                ));
            }
            let (body, taken) = CountedBody::new(Bytes::from(encode(&batch)));
            let request =
                batch_request(&url, kind, (cluster_id, from), Some(&peer.advertised), body)?;
            let (sender, _) = sender.as_mut().expect("connected");
            let started = peer.host.elapsed();
            let sending = async {
                // hyper refuses a request on a connection that is not ready for the next one.
                sender.ready().await?;
                sender.send_request(request).await
            };
            let response = match kind {
                Lane::Messages => timeout(&peer.host, MESSAGES_DEADLINE, sending)
                    .await
                    .map_err(|()| "timed out".to_owned())?,
                Lane::Snapshots => tokio::select! {
                    biased;
                    response = sending => response,
                    () = taken.stalled(&peer.host, SNAPSHOT_SEND_STALL, snapshot_answer(bytes)) => {
                        return Err("the snapshot stalled".to_owned())
                    }
                },
            }
            .map_err(|e| e.to_string())?;
            match response.status() {
                StatusCode::NO_CONTENT => {
                    if kind == Lane::Messages {
                        let rtt = peer.host.elapsed().saturating_sub(started);
                        peer.stats.delivered(peer.id, rtt);
                    }
                    Ok(())
                }
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
        let outcome = tokio::select! {
            biased;
            () = retired.raised() => None,
            outcome = attempt => Some(outcome),
        };
        let Some(outcome) = outcome else {
            // Removed mid-send: the peer is gone, and so is this batch.
            for _ in 0..snapshots {
                peer.report(PeerReport::SnapshotFailed(peer.id));
            }
            break;
        };
        match outcome {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                for _ in 0..snapshots {
                    peer.report(PeerReport::SnapshotSent(peer.id));
                }
            }
            Err(why) => {
                if snapshots > 0 {
                    eprintln!(
                        "etcd: a snapshot ({bytes} bytes) to {} failed: {why}",
                        format_id(peer.id)
                    );
                }
                peer.stats.failed(peer.id);
                peer.report(PeerReport::Unreachable(peer.id));
                try_heard = !try_heard;
                for _ in 0..snapshots {
                    peer.report(PeerReport::SnapshotFailed(peer.id));
                }
                sender = None;
                // Raft will send again.
                drop_backlog(&peer, &mut rx);
                tokio::select! {
                    biased;
                    () = retired.raised() => break,
                    () = peer.host.sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    // Removed (or the transport is gone): nothing more goes out, and what was still queued is
    // dropped, a snapshot reported failed as always.
    rx.close();
    drop_backlog(&peer, &mut rx);
}

/// Drops what waits in a lane; a snapshot among it is reported failed, or raft waits for it.
fn drop_backlog<H: Host>(peer: &Peer<H>, rx: &mut mpsc::Receiver<Message>) {
    while let Ok(dropped) = rx.try_recv() {
        if dropped.get_msg_type() == MessageType::MsgSnapshot {
            peer.report(PeerReport::SnapshotFailed(peer.id));
        }
    }
}

/// The peer listener's side: `POST /raft` and `POST /raft/snapshot` deliver a batch to this
/// member's inbox.
pub struct Inbound<H> {
    host: H,
    transport: HttpTransport<H>,
    cluster_id: u64,
    member_id: u64,
    inbox: mpsc::Sender<Message>,
    max_messages_body: usize,
    message_bytes: Semaphore,
    snapshot_bodies: Semaphore,
    /// Messages dropped because the member's inbox was full.
    dropped: std::sync::atomic::AtomicU64,
    stats: Arc<TrafficStats>,
}

impl<H: Host> Inbound<H> {
    /// `max_request_bytes` is the cluster's client request limit: the largest entry a peer
    /// can send follows from it.
    pub fn new(
        transport: &HttpTransport<H>,
        inbox: mpsc::Sender<Message>,
        max_request_bytes: usize,
    ) -> Inbound<H> {
        let (host, cluster_id, member_id, stats) = (
            transport.host.clone(),
            transport.cluster_id,
            transport.from,
            transport.stats(),
        );
        let max_messages_body = max_messages_body(max_request_bytes);
        Inbound {
            host,
            transport: transport.clone(),
            cluster_id,
            member_id,
            inbox,
            max_messages_body,
            message_bytes: Semaphore::new(MESSAGE_BYTES_IN_FLIGHT.max(2 * max_messages_body)),
            snapshot_bodies: Semaphore::new(CONCURRENT_SNAPSHOT_BODIES),
            dropped: Default::default(),
            stats,
        }
    }

    pub async fn receive(
        &self,
        request: Request<hyper::body::Incoming>,
        is_removed: impl Fn(u64) -> bool,
    ) -> Response<Body> {
        let Some(lane) = Lane::of(request.uri().path()) else {
            return text_response(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        if request.method() != hyper::Method::POST {
            return method_not_allowed("POST");
        }
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_id)
        };
        if header(CLUSTER_HEADER) != Some(self.cluster_id) {
            return text_response(StatusCode::PRECONDITION_FAILED, "cluster ID mismatch\n");
        }
        // A removed member that missed its removal still talks; tell it, as etcd does, so it
        // stops instead of campaigning forever in a configuration that no longer exists.
        let sender = header(FROM_HEADER);
        if sender.is_some_and(is_removed) {
            return text_response(StatusCode::GONE, "removed member\n");
        }
        let peer_urls = request
            .headers()
            .get(PEER_URLS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max_body = match lane {
            Lane::Messages => self.max_messages_body,
            Lane::Snapshots => MAX_SNAPSHOT_BODY,
        };
        if declared.is_some_and(|n| n > max_body as u64) {
            return text_response(StatusCode::PAYLOAD_TOO_LARGE, "too many raft messages\n");
        }
        // Held until the batch is in the inbox: what peers can make this member hold.
        let _snapshot_slot = match lane {
            Lane::Messages => None,
            Lane::Snapshots => match self.snapshot_bodies.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return text_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "already receiving a snapshot\n",
                    )
                }
            },
        };
        let reading = match lane {
            Lane::Messages => BodyRead {
                max: max_body,
                budget: Some(&self.message_bytes),
                deadline: MESSAGE_BODY_DEADLINE,
                stall: MESSAGE_BODY_DEADLINE,
            },
            Lane::Snapshots => BodyRead {
                max: max_body,
                budget: None,
                deadline: SNAPSHOT_DEADLINE,
                stall: SNAPSHOT_STALL,
            },
        };
        let host = &self.host;
        let (body, _held) = match reading.read(request.into_body(), |d| host.sleep(d)).await {
            Ok(read) => read,
            Err(BodyError::TooLarge) => {
                return text_response(StatusCode::PAYLOAD_TOO_LARGE, "too many raft messages\n")
            }
            Err(BodyError::TooSlow) => {
                return text_response(StatusCode::REQUEST_TIMEOUT, "raft messages too slow\n")
            }
            Err(BodyError::Broken) => {
                return text_response(StatusCode::BAD_REQUEST, "unreadable body\n")
            }
        };
        match decode(lane, &body) {
            Ok(messages) => {
                // A batch for another member reached this one: the sender has a wrong address
                // for its peer (swapped URLs, or a stale fallback now taken by someone else).
                // Refused, so that its lane fails and tries elsewhere; never stepped here.
                if messages.iter().any(|m| m.to != self.member_id) {
                    return text_response(StatusCode::PRECONDITION_FAILED, "to field mismatch\n");
                }
                let from_sender = |id: u64| messages.iter().all(|m| m.from == id);
                if let (Some(from), Some(urls)) = (sender, peer_urls.as_deref()) {
                    if from_sender(from) {
                        self.transport.learn_address(from, urls);
                    }
                }
                for message in messages {
                    self.deliver(message);
                }
                let mut response = Response::new(full(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            Err(_) => text_response(StatusCode::BAD_REQUEST, "undecodable raft messages\n"),
        }
    }

    /// Hands a message to the member, or drops it when the member's inbox is full (raft
    /// sends again), saying so at the 1st, 2nd, 4th, 8th… drop.
    fn deliver(&self, message: Message) {
        if message.get_msg_type() == MessageType::MsgAppend {
            self.stats.append_received(message.compute_size() as usize);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inbox.try_send(message) {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                eprintln!("etcd: the raft inbox is full; {dropped} peer messages dropped so far");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's lane is bounded: past it messages are dropped and the peer reported
    /// unreachable, instead of piling up in memory while the peer is away.
    #[tokio::test]
    async fn a_full_lane_drops_and_reports_the_peer_unreachable() {
        use crate::runtime::TokioHost;
        let transport = HttpTransport::new(TokioHost::new(), 1, 7, &["http://127.0.0.1:1".into()]);
        let (reports, mut heard) = mpsc::unbounded_channel();
        transport.set_reporter(move |report| {
            let _ = reports.send(report);
        });
        transport.connect_peer(2, &["http://127.0.0.1:9".into()]);
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.set_to(2);
        // The lane cannot run until this test yields: it takes nothing from its queue.
        for _ in 0..LANE_MESSAGES {
            transport.send(heartbeat.clone());
        }
        assert!(
            heard.try_recv().is_err(),
            "nothing is dropped while there is room"
        );
        transport.send(heartbeat);
        assert_eq!(heard.try_recv(), Ok(PeerReport::Unreachable(2)));
    }

    /// The lane's contract with raft: a snapshot that cannot be delivered is reported failed
    /// (and the peer unreachable), or raft may wait for it.
    #[tokio::test]
    async fn a_snapshot_that_cannot_be_delivered_is_reported_failed() {
        use crate::runtime::{Host, TokioHost};
        let host = TokioHost::new();
        // A port nothing listens on: bound, then closed.
        let closed = host.listen("127.0.0.1:0").await.expect("binds");
        let address = closed.local_addr().expect("an address");
        drop(closed);
        let transport = HttpTransport::new(host, 1, 7, &["http://127.0.0.1:1".into()]);
        let clock = TokioHost::new();
        let (reports, mut heard) = mpsc::unbounded_channel();
        transport.set_reporter(move |report| {
            let _ = reports.send(report);
        });
        transport.connect_peer(2, &[format!("http://{address}")]);
        let mut snapshot = Message::default();
        snapshot.set_msg_type(MessageType::MsgSnapshot);
        snapshot.set_to(2);
        transport.send(snapshot);
        let mut seen = Vec::new();
        let waited = crate::runtime::timeout(&clock, Duration::from_secs(5), async {
            while !seen.contains(&PeerReport::SnapshotFailed(2)) {
                match heard.recv().await {
                    Some(report) => seen.push(report),
                    None => break,
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "no SnapshotFailed report; heard {seen:?}");
        assert!(seen.contains(&PeerReport::Unreachable(2)), "{seen:?}");
        assert!(!seen.contains(&PeerReport::SnapshotSent(2)), "{seen:?}");
    }

    fn message(to: u64, kind: MessageType) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.set_to(to);
        message
    }

    /// Every report the transport makes, as it makes them.
    fn listen_to(transport: &HttpTransport<impl Host>) -> mpsc::UnboundedReceiver<PeerReport> {
        let (reports, heard) = mpsc::unbounded_channel();
        transport.set_reporter(move |report| {
            let _ = reports.send(report);
        });
        heard
    }

    /// Waits until nothing holds the peer's address any more: both its lanes have ended.
    async fn lanes_end(host: &impl Host, address: std::sync::Weak<Mutex<Address>>) -> bool {
        let ended = timeout(host, Duration::from_secs(5), async {
            while address.upgrade().is_some() {
                host.sleep(Duration::from_millis(5)).await;
            }
        });
        ended.await.is_ok()
    }

    fn address_of(
        transport: &HttpTransport<impl Host>,
        id: u64,
    ) -> std::sync::Weak<Mutex<Address>> {
        let peers = transport.peers.lock().unwrap();
        Arc::downgrade(&peers[&id].address)
    }

    /// The transport's side of a removal: nothing more goes to the peer, not even what was
    /// queued for it, its lane tasks end, and a snapshot that will now never go is reported
    /// failed.
    #[tokio::test]
    async fn a_removed_peer_is_never_dialled_and_its_lanes_end() {
        use crate::runtime::{Host, TokioHost};
        let host = TokioHost::new();
        let peer = host.listen("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}", peer.local_addr().expect("an address"));
        let transport = HttpTransport::new(host, 1, 7, &["http://127.0.0.1:1".into()]);
        let mut heard = listen_to(&transport);
        transport.connect_peer(2, std::slice::from_ref(&url));
        let address = address_of(&transport, 2);
        // The lanes cannot run until this test yields: these wait in their queues.
        transport.send(message(2, MessageType::MsgHeartbeat));
        transport.send(message(2, MessageType::MsgSnapshot));
        Transport::remove_peer(&transport, 2);
        transport.send(message(2, MessageType::MsgAppend));
        transport.send(message(2, MessageType::MsgSnapshot));
        // Neither the member table's news nor the removed member's own word brings it back.
        transport.connect_peer(2, std::slice::from_ref(&url));
        transport.learn_address(2, &url);
        assert_eq!(transport.peer_ids(), Vec::<u64>::new());

        assert!(lanes_end(&host, address).await, "a lane outlived its peer");
        // A connection made at any time would be waiting in the listener's backlog.
        let dialled = timeout(&host, Duration::from_millis(200), peer.accept());
        assert!(dialled.await.is_err(), "a removed peer was dialled");
        let mut reports = Vec::new();
        while let Ok(report) = heard.try_recv() {
            reports.push(report);
        }
        // One for the snapshot dropped from its lane, one for the snapshot sent after.
        assert_eq!(reports, [PeerReport::SnapshotFailed(2); 2]);
    }

    /// A lane in the middle of sending a snapshot to a peer that is removed gives up at once,
    /// and says the snapshot failed, instead of waiting out the send.
    #[tokio::test]
    async fn a_snapshot_on_its_way_to_a_removed_peer_is_reported_failed() {
        use crate::runtime::{Host, TokioHost};
        let host = TokioHost::new();
        // A peer that takes the connection and never answers.
        let peer = host.listen("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}", peer.local_addr().expect("an address"));
        let transport = HttpTransport::new(host, 1, 7, &["http://127.0.0.1:1".into()]);
        let mut heard = listen_to(&transport);
        transport.connect_peer(2, &[url]);
        let address = address_of(&transport, 2);
        transport.send(message(2, MessageType::MsgSnapshot));
        let _connection = peer.accept().await.expect("the lane dials");
        Transport::remove_peer(&transport, 2);
        assert!(lanes_end(&host, address).await, "a lane outlived its peer");
        assert_eq!(heard.try_recv(), Ok(PeerReport::SnapshotFailed(2)));
        assert!(heard.try_recv().is_err());
    }

    #[test]
    fn batches_round_trip() {
        let mut a = Message::default();
        a.set_to(2);
        a.set_term(7);
        let mut b = Message::default();
        b.set_msg_type(MessageType::MsgHeartbeat);
        let batch = vec![a, b];
        assert_eq!(decode(Lane::Messages, &encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn damaged_batches_are_refused() {
        let mut m = Message::default();
        m.set_to(3);
        let bytes = encode(&[m]);
        assert!(decode(Lane::Messages, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode(Lane::Messages, &[1, 0]).is_err());
        assert!(decode(Lane::Messages, &[0xff, 0xff, 0xff, 0x7f, 1, 2]).is_err());
        assert_eq!(decode(Lane::Messages, &[]).unwrap(), Vec::<Message>::new());
    }

    #[test]
    fn empty_frames_are_refused_not_decoded_into_messages() {
        // Four zero bytes would otherwise be a whole default message each: 20 MB of zeros
        // became five million messages.
        assert!(decode(Lane::Messages, &[0; 4]).is_err());
        assert!(decode(Lane::Messages, &vec![0; 1 << 20]).is_err());
    }

    #[test]
    fn messages_of_countless_empty_entries_are_refused_before_parsing() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.set_to(2);
        m.set_entries(vec![raft::eraftpb::Entry::default(); 100_000].into());
        assert!(decode(Lane::Messages, &encode(&[m])).is_err());
    }

    #[test]
    fn appends_of_real_entries_pass() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.set_to(2);
        let entries: Vec<raft::eraftpb::Entry> = (1..20_000u64)
            .map(|i| {
                let mut e = raft::eraftpb::Entry::default();
                e.set_index(i);
                e.set_term(3);
                e.set_data(vec![7u8; 20].into());
                e
            })
            .collect();
        m.set_entries(entries.into());
        assert_eq!(decode(Lane::Messages, &encode(&[m])).unwrap().len(), 1);
    }

    #[test]
    fn entry_counting_walks_the_wire_format() {
        let mut m = Message::default();
        m.set_to(2);
        m.set_commit(9);
        m.set_entries(vec![raft::eraftpb::Entry::default(); 3].into());
        let bytes = m.write_to_bytes().unwrap();
        assert_eq!(count_entries(&bytes), Some(3));
        assert_eq!(count_entries(&[0x0f]), None);
    }

    #[test]
    fn a_batch_holds_at_most_batch_messages() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.set_to(2);
        let full = vec![m.clone(); BATCH];
        assert_eq!(decode(Lane::Messages, &encode(&full)).unwrap().len(), BATCH);
        let over = vec![m; BATCH + 1];
        assert!(decode(Lane::Messages, &encode(&over)).is_err());
    }

    #[test]
    fn snapshots_and_messages_keep_to_their_lanes() {
        let mut snapshot = Message::default();
        snapshot.set_msg_type(MessageType::MsgSnapshot);
        snapshot.set_to(2);
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.set_to(2);
        assert!(decode(Lane::Snapshots, &encode(&[snapshot.clone()])).is_ok());
        assert!(decode(Lane::Messages, &encode(&[snapshot])).is_err());
        assert!(decode(Lane::Snapshots, &encode(&[heartbeat])).is_err());
    }
}
