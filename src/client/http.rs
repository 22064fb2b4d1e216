//! One HTTP/1.1 request to one endpoint, with the error texts etcd's Go client gives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;

use super::Body;
use crate::net::{Connector, DialError};
use crate::runtime::{timeout, Host};

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

/// Why a request got no answer.
pub(super) enum Failure {
    /// No connection: the request was never sent, so it may be sent elsewhere.
    NotSent(String),
    /// The request may have reached the member (and a write may yet take effect).
    Unknown(String),
}

impl Failure {
    pub(super) fn into_message(self) -> String {
        match self {
            Failure::NotSent(why) | Failure::Unknown(why) => why,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn send<H: Host>(
    host: &H,
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&Body>,
    credentials: Option<&(String, String)>,
    connector: &Connector,
    dial_timeout: Duration,
    header_timeout: Option<Duration>,
) -> Result<Reply, Failure> {
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|e| Failure::NotSent(format!("{endpoint}: {e}")))?;
    let authority = uri.authority().map_or(endpoint, |a| a.as_str());
    let mut sender = match connector.dial(host, &uri, dial_timeout).await {
        Ok(sender) => sender,
        // Go's words: a TLS failure is said alone, a connection failure as the dial's.
        Err(DialError::Tls(why)) => return Err(Failure::NotSent(why)),
        Err(e) => return Err(Failure::NotSent(format!("dial tcp {authority}: {e}"))),
    };

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
        .map_err(|e| Failure::NotSent(format!("{endpoint}: {e}")))?;

    // `try_send_request` gives the request back when it never reached the connection (a
    // member that closes the connection at once, at its connection limit): that one was not
    // sent, and may go elsewhere.
    let response = sender.try_send_request(request);
    let response = match header_timeout {
        Some(limit) => match timeout(host, limit, response).await {
            Err(()) => {
                return Err(Failure::Unknown(format!(
                    "client: endpoint {endpoint} exceeded header timeout"
                )))
            }
            Ok(r) => r,
        },
        None => response.await,
    }
    .map_err(|e| {
        if let Some(tls) = crate::tls::find_failure(e.error()) {
            return Failure::NotSent(tls);
        }
        if e.error().is_parse() {
            // Not HTTP at all (a TLS port dialled as http://): Go's words.
            return Failure::NotSent("malformed HTTP response".into());
        }
        let why = format!("{endpoint}: {}", e.error());
        if e.message().is_some() {
            Failure::NotSent(why)
        } else {
            Failure::Unknown(why)
        }
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::Unknown(format!("{endpoint}: {e}")))?
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
