//! The connector: one HTTP/1 connection to a peer or a member, on the host's sockets, over
//! TLS for `https://` URLs.

use std::fmt;
use std::time::Duration;

use hyper_util::rt::TokioIo;

use rustls::pki_types::ServerName;

use crate::runtime::{timeout, Host};
use crate::tls::ClientTls;

/// A connection's sending half; its driving half runs as a task of the host.
pub type Sender<B> = hyper::client::conn::http1::SendRequest<B>;

/// Why a connection could not be made. Nothing was sent on it, so whatever the request was,
/// it may be sent elsewhere.
#[derive(Debug)]
pub enum DialError {
    TimedOut,
    Refused,
    Failed(String),
    /// The TLS handshake failed: the server's certificate is not trusted, or the server
    /// refused ours.
    Tls(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Go's words, which etcdctl's users see.
        match self {
            DialError::TimedOut => f.write_str("i/o timeout"),
            DialError::Refused => f.write_str("connect: connection refused"),
            DialError::Failed(why) | DialError::Tls(why) => f.write_str(why),
        }
    }
}

/// The `host:port` to dial for `uri` (port 80 or 443 when it names none).
pub fn address_of(uri: &hyper::Uri) -> Result<String, String> {
    let authority = uri.authority().ok_or("no host")?;
    Ok(match authority.port_u16() {
        Some(_) => authority.to_string(),
        None if uri.scheme_str() == Some("https") => format!("{}:443", authority.host()),
        None => format!("{}:80", authority.host()),
    })
}

/// Dials members and peers: plain TCP for `http://` URLs, TLS for `https://` ones. The one
/// place outgoing connections are made, for the peer transport, a joining member, the client
/// library (and so etcdctl) and the benchmark.
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<ClientTls>,
}

impl Connector {
    /// Plain HTTP only: an `https://` URL is refused, never dialled in plaintext.
    pub fn plain() -> Connector {
        Connector::default()
    }

    pub fn with_tls(tls: ClientTls) -> Connector {
        Connector { tls: Some(tls) }
    }

    /// Connects to the server of `url` (its scheme, host and port; the path is the request's)
    /// within `limit` and starts HTTP/1 on the connection.
    pub async fn dial<H, B>(
        &self,
        host: &H,
        url: &hyper::Uri,
        limit: Duration,
    ) -> Result<Sender<B>, DialError>
    where
        H: Host,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let address = address_of(url).map_err(DialError::Failed)?;
        let secure = match url.scheme_str() {
            Some("https") => {
                let tls = self.tls.as_ref().ok_or_else(|| {
                    DialError::Failed(format!(
                        "{url}: https needs TLS settings (a CA file), and none were given"
                    ))
                })?;
                let name = url.host().unwrap_or_default().trim_matches(['[', ']']);
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| DialError::Failed(format!("{url}: {e}")))?;
                Some((tls.connector(), name))
            }
            _ => None,
        };
        let stream = match timeout(host, limit, host.connect(&address)).await {
            Err(()) => return Err(DialError::TimedOut),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(DialError::Refused)
            }
            Ok(Err(e)) => return Err(DialError::Failed(e.to_string())),
            Ok(Ok(stream)) => stream,
        };
        match secure {
            None => start_http(host, stream).await,
            Some((connector, name)) => {
                let stream = match timeout(host, limit, connector.connect(name, stream)).await {
                    Err(()) => return Err(DialError::TimedOut),
                    Ok(Err(e)) => return Err(DialError::Tls(crate::tls::describe(&e))),
                    Ok(Ok(stream)) => stream,
                };
                start_http(host, stream).await
            }
        }
    }
}

/// Starts HTTP/1 on a connected stream; its driving half runs as a task of the host.
async fn start_http<H, S, B>(host: &H, stream: S) -> Result<Sender<B>, DialError>
where
    H: Host,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| DialError::Failed(e.to_string()))?;
    host.spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}
