//! The acceptor: serves HTTP/1 on a listener, one task per connection, with a cap on open
//! connections and hyper's header read timeout on the host's clock.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::prefixed::Prefixed;
use super::slots::{Slot, Slots};
use super::{Body, HostTimer};
use crate::runtime::{timeout, Host, Listener};
use crate::tls::ServerTls;

/// A connection that is not in the middle of a request and has not sent a whole request head
/// within this time is closed: slow or stalled headers (slowloris), and keep-alive connections
/// left idle. A request in progress (a long-poll watch, say) is never cut short by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections one listener keeps open; beyond it new connections are closed at once
/// (with a log line), so that a flood of connections cannot exhaust the process's files.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimit {
    pub max: usize,
    /// What the listener serves, for the log line.
    pub what: &'static str,
}

pub const CLIENT_CONNECTIONS: ConnectionLimit = ConnectionLimit {
    max: 8192,
    what: "client",
};
pub const PEER_CONNECTIONS: ConnectionLimit = ConnectionLimit {
    max: 1024,
    what: "peer",
};

/// A TLS handshake that has not finished within this time is given up: a half-open or stalled
/// handshake holds its place among the pending ones no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` on every connection `listener` accepts, for ever; over TLS when `tls` is
/// given (an `https://` listen URL), so that nothing is ever served in plaintext there.
pub async fn serve<H, S, F>(
    host: H,
    listener: H::Listener,
    limit: ConnectionLimit,
    tls: Option<ServerTls>,
    service: S,
) where
    H: Host,
    S: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<hyper::Response<Body>, Infallible>> + Send + 'static,
{
    let slots = Arc::new(Slots::default());
    // Handshakes in progress, in slots of their own: none is ever busy, so when all are taken
    // the oldest gives way.
    let handshakes = Arc::new(Slots::default());
    let refusals = Arc::new(Refusals::default());
    let mut http = http1::Builder::new();
    http.timer(HostTimer::new(host.clone()))
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Header names as Go writes them (`X-Etcd-Index`), for scripts that grep `curl -i`.
        .title_case_headers(true);
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, say: wait rather than spin.
                host.sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(tls) = &tls else {
            let Some(slot) = slots.take(limit.max) else {
                refusals.note(&host, || all_busy(limit));
                continue;
            };
            host.spawn(serve_connection(
                http.clone(),
                TokioIo::new(stream),
                slot,
                Arc::clone(&slots),
                service.clone(),
            ));
            continue;
        };
        // The handshake runs in the connection's own task, so that a slow or silent client
        // holds up nobody else; it holds no connection slot until it is done, and when too
        // many are pending the oldest is cut short, so that idle sockets cannot crowd out
        // clients that handshake at once.
        let Some((pending, cut)) = handshakes.take(limit.max) else {
            continue;
        };
        let (acceptor, http, clock, service) =
            (tls.acceptor(), http.clone(), host.clone(), service.clone());
        let (slots, handshakes, refusals) = (
            Arc::clone(&slots),
            Arc::clone(&handshakes),
            Arc::clone(&refusals),
        );
        host.spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = cut.closed() => None,
                outcome = timeout(&clock, HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)) => Some(outcome),
            };
            handshakes.give_back(pending);
            let why = match outcome {
                Some(Ok(Ok(stream))) => {
                    let Some(slot) = slots.take(limit.max) else {
                        refusals.note(&clock, || all_busy(limit));
                        return;
                    };
                    serve_connection(http, TokioIo::new(stream), slot, slots, service).await;
                    return;
                }
                Some(Ok(Err(e))) => crate::tls::describe(&e),
                Some(Err(())) => {
                    format!("the TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}")
                }
                None => format!(
                    "{} TLS handshakes were pending, the most allowed; the oldest was cut short",
                    limit.max
                ),
            };
            refusals.note(&clock, || {
                format!("rejected {} connection from {from}: {why}", limit.what)
            });
        });
    }
}

/// Serves HTTP/1 on one connection until it ends or its slot is taken back for a newer one;
/// every answer counts the connection busy until it is sent.
async fn serve_connection<I, S, F>(
    http: http1::Builder,
    io: I,
    (id, slot): (u64, Arc<Slot>),
    slots: Arc<Slots>,
    service: S,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<hyper::Response<Body>, Infallible>> + Send + 'static,
{
    let tracked = {
        let slot = Arc::clone(&slot);
        service_fn(move |request| {
            let (slot, answer) = (Arc::clone(&slot), service(request));
            async move { answer.await.map(|response| slot.track(response)) }
        })
    };
    let connection = http.serve_connection(io, tracked);
    tokio::select! {
        biased;
        () = slot.closed() => {}
        _ = connection => {}
    }
    slots.give_back(id);
}

/// Why a connection was closed at once: every slot is taken by a busy connection.
fn all_busy(limit: ConnectionLimit) -> String {
    format!(
        "{} {} connections are open and busy, the most allowed; closing new ones",
        limit.max, limit.what
    )
}

/// The server side of a TLS handshake. Plain HTTP is told apart by its first bytes and closed
/// without a word, as etcd 3.4's TLS listener does (no TLS alert either).
async fn handshake<S>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
) -> std::io::Result<tokio_rustls::server::TlsStream<Prefixed<S>>>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (head, mut stream) = read_head(stream).await?;
    if looks_like_http(&head) {
        let _ = stream.shutdown().await;
        return Err(std::io::Error::other(
            "client sent an HTTP request to an HTTPS server",
        ));
    }
    acceptor.accept(Prefixed::new(head, stream)).await
}

/// The first five bytes of a connection: a TLS record header, or the start of an HTTP request.
async fn read_head<S: AsyncRead + Unpin>(mut stream: S) -> std::io::Result<(Vec<u8>, S)> {
    let mut head = vec![0u8; 5];
    stream.read_exact(&mut head).await?;
    Ok((head, stream))
}

/// Go's test for a plain HTTP request where a TLS handshake was expected.
fn looks_like_http(head: &[u8]) -> bool {
    [&b"GET /"[..], b"HEAD ", b"POST ", b"PUT /", b"OPTIO"].contains(&head)
}

/// One listener's refused handshakes: each logged, but at most [`Refusals::BURST`] lines a
/// minute, so that a flood of bad connections cannot flood the log; how many went unlogged is
/// said when the minute is over.
#[derive(Default)]
struct Refusals {
    /// The minute's start, the lines written in it, and the refusals not written.
    state: std::sync::Mutex<(Option<Duration>, u64, u64)>,
}

impl Refusals {
    const BURST: u64 = 20;

    fn note<H: Host>(&self, host: &H, line: impl FnOnce() -> String) {
        let now = host.elapsed();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (window, logged, unlogged) = &mut *state;
        if window.is_none_or(|start| now >= start + Duration::from_secs(60)) {
            if *unlogged > 0 {
                eprintln!("etcd: {unlogged} more connections were refused in the last minute without a line each");
            }
            *window = Some(now);
            *logged = 0;
            *unlogged = 0;
        }
        if *logged >= Self::BURST {
            *unlogged += 1;
            return;
        }
        *logged += 1;
        eprintln!("etcd: {}", line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TokioHost;

    /// Idle sockets filling every slot do not keep a client out: the oldest gives way.
    #[tokio::test]
    async fn idle_connections_at_the_limit_make_room_for_a_new_client() {
        let host = TokioHost::new();
        let listener = host.listen("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("an address");
        let limit = ConnectionLimit {
            max: 3,
            what: "test",
        };
        host.spawn(serve(host, listener, limit, None, |_| async {
            Ok::<_, Infallible>(hyper::Response::new(crate::net::full("ok")))
        }));
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(host.connect(&address.to_string()).await.expect("connects"));
        }
        let uri: hyper::Uri = format!("http://{address}/").parse().unwrap();
        let mut sender: crate::net::Sender<http_body_util::Empty<bytes::Bytes>> =
            crate::net::Connector::plain()
                .dial(&host, &uri, Duration::from_secs(2))
                .await
                .expect("dials");
        let request = hyper::Request::get("/")
            .body(http_body_util::Empty::new())
            .unwrap();
        let answer = timeout(&host, Duration::from_secs(5), sender.send_request(request)).await;
        assert!(
            matches!(answer, Ok(Ok(ref r)) if r.status() == 200),
            "the client was kept out by idle sockets"
        );
    }

    #[test]
    fn the_oldest_pending_handshake_makes_room_for_a_new_one() {
        let handshakes = Slots::default();
        let (first, cut_first) = handshakes.take(2).expect("room");
        let (_, cut_second) = handshakes.take(2).expect("room");
        handshakes.give_back(first);
        let (_, cut_third) = handshakes.take(2).expect("room");
        assert!(!cut_first.is_closed() && !cut_second.is_closed());
        let (_, cut_fourth) = handshakes.take(2).expect("a pending handshake gives way");
        assert!(cut_second.is_closed(), "the oldest pending was not cut");
        assert!(!cut_third.is_closed() && !cut_fourth.is_closed());
    }
}
