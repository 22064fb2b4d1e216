//! The acceptor: serves HTTP/1 on a listener, one task per connection, with a cap on open
//! connections and hyper's header read timeout on the host's clock.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::{Body, HostTimer};
use crate::runtime::{Host, Listener};

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

/// Serves `service` on every connection `listener` accepts, for ever.
pub async fn serve<H, S, F>(host: H, listener: H::Listener, limit: ConnectionLimit, service: S)
where
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
        let stream = match listener.accept().await {
            Ok(stream) => stream,
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
        let connection = http.serve_connection(TokioIo::new(stream), service_fn(service.clone()));
        host.spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
}
