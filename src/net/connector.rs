//! The connector: one HTTP/1 connection to a peer or a member, on the host's sockets.

use std::fmt;
use std::time::Duration;

use hyper_util::rt::TokioIo;

use crate::runtime::{timeout, Host};

/// A connection's sending half; its driving half runs as a task of the host.
pub type Sender<B> = hyper::client::conn::http1::SendRequest<B>;

/// Why a connection could not be made. Nothing was sent on it, so whatever the request was,
/// it may be sent elsewhere.
#[derive(Debug)]
pub enum DialError {
    TimedOut,
    Refused,
    Failed(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Go's words, which etcdctl's users see.
        match self {
            DialError::TimedOut => f.write_str("i/o timeout"),
            DialError::Refused => f.write_str("connect: connection refused"),
            DialError::Failed(why) => f.write_str(why),
        }
    }
}

/// The `host:port` to dial for `uri` (port 80 when it names none).
pub fn address_of(uri: &hyper::Uri) -> Result<String, String> {
    let authority = uri.authority().ok_or("no host")?;
    Ok(match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    })
}

/// Connects to `authority` (`host:port`) within `limit` and starts HTTP/1 on it.
pub async fn dial<H, B>(host: &H, authority: &str, limit: Duration) -> Result<Sender<B>, DialError>
where
    H: Host,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = match timeout(host, limit, host.connect(authority)).await {
        Err(()) => return Err(DialError::TimedOut),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(DialError::Refused)
        }
        Ok(Err(e)) => return Err(DialError::Failed(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| DialError::Failed(e.to_string()))?;
    host.spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
