//! One HTTP/1.1 request to one endpoint, with the error texts etcd's Go client gives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Body;

/// A response: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A numeric header such as `X-Etcd-Index`, 0 when absent.
    pub fn header_u64(&self, name: &str) -> u64 {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

pub(super) async fn send(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&Body>,
    credentials: Option<&(String, String)>,
    dial_timeout: Duration,
    header_timeout: Option<Duration>,
) -> Result<Reply, String> {
    let authority = endpoint.trim_start_matches("http://");
    let stream = match tokio::time::timeout(dial_timeout, TcpStream::connect(authority)).await {
        Err(_) => return Err(format!("dial tcp {authority}: i/o timeout")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(format!("dial tcp {authority}: connect: connection refused"))
        }
        Ok(Err(e)) => return Err(format!("dial tcp {authority}: {e}")),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });

    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, authority);
    if let Some((user, password)) = credentials {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let payload = match body {
        Some(body) => {
            request = request.header(hyper::header::CONTENT_TYPE, body.content_type);
            Bytes::from(body.bytes.clone())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(payload))
        .map_err(|e| format!("{endpoint}: {e}"))?;

    let response = sender.send_request(request);
    let response = match header_timeout {
        Some(limit) => match tokio::time::timeout(limit, response).await {
            Err(_) => {
                return Err(format!(
                    "client: endpoint {endpoint} exceeded header timeout"
                ))
            }
            Ok(r) => r,
        },
        None => response.await,
    }
    .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Go's `http.StatusText` for the statuses a server error can carry.
pub(super) fn status_text(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}
