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

/// A TLS handshake that has not finished within this time is given up (half-open or stalled
/// handshakes hold a connection slot no longer than this).
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
    let open = Arc::new(tokio::sync::Semaphore::new(limit.max));
    let mut last_refusal_logged: Option<Duration> = None;
    let mut refused = 0u64;
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
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            refused += 1;
            let now = host.elapsed();
            if last_refusal_logged.is_none_or(|at| now >= at + Duration::from_secs(10)) {
                last_refusal_logged = Some(now);
                eprintln!(
                    "etcd: {} {} connections are open, the most allowed; closing new ones ({refused} so far)",
                    limit.max, limit.what
                );
            }
            continue;
        };
        let service = service_fn(service.clone());
        match &tls {
            None => {
                let connection = http.serve_connection(TokioIo::new(stream), service);
                host.spawn(async move {
                    let _ = connection.await;
                    drop(permit);
                });
            }
            Some(tls) => {
                // The handshake runs in the connection's own task, so that a slow or silent
                // client holds up nobody else.
                let (acceptor, http, what, clock) =
                    (tls.acceptor(), http.clone(), limit.what, host.clone());
                host.spawn(async move {
                    let handshake = async {
                        let (head, mut stream) = read_head(stream).await?;
                        if looks_like_http(&head) {
                            // Go's answer to plain HTTP on a TLS port, which curl shows.
                            let _ = stream.write_all(HTTP_ON_TLS_PORT).await;
                            let _ = stream.shutdown().await;
                            return Err(std::io::Error::other("client sent an HTTP request to an HTTPS server"));
                        }
                        acceptor.accept(Prefixed::new(head, stream)).await
                    };
                    let stream = match timeout(&clock, HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            REFUSALS.note(&clock, || format!("rejected {what} connection from {from}: {}", crate::tls::describe(&e)));
                            return;
                        }
                        Err(()) => {
                            REFUSALS.note(&clock, || format!("rejected {what} connection from {from}: the TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}"));
                            return;
                        }
                    };
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    drop(permit);
                });
            }
        }
    }
}

/// What Go's server writes to a plain HTTP request on a TLS port before closing it.
const HTTP_ON_TLS_PORT: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

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

/// Refused handshakes, logged each but at most [`Refusals::BURST`] a minute per process, so
/// that a flood of bad connections cannot flood the log; the rest are counted in the next line
/// that is written.
struct Refusals {
    state: std::sync::Mutex<(Option<Duration>, u64, u64)>,
}

static REFUSALS: Refusals = Refusals {
    state: std::sync::Mutex::new((None, 0, 0)),
};

impl Refusals {
    const BURST: u64 = 20;

    fn note<H: Host>(&self, host: &H, line: impl FnOnce() -> String) {
        let now = host.elapsed();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (window, logged, unlogged) = &mut *state;
        if window.is_none_or(|start| now >= start + Duration::from_secs(60)) {
            *window = Some(now);
            *logged = 0;
        }
        if *logged >= Self::BURST {
            *unlogged += 1;
            return;
        }
        *logged += 1;
        let more = std::mem::take(unlogged);
        if more > 0 {
            eprintln!("etcd: {} (and {more} more refused without a line)", line());
        } else {
            eprintln!("etcd: {}", line());
        }
    }
}
