//! A v2 client, as etcd's Go `client` package behaves: a list of endpoints, one pinned, the
//! next tried when an endpoint cannot be reached or answers 5xx; the member list synced from
//! the cluster; errors that say which endpoint failed and how.
//!
//! Unlike etcd's client, a write that may have reached a member is never sent to another one:
//! a timeout or a broken connection leaves its outcome unknown, and sending it again elsewhere
//! could apply it twice (a compare-and-swap, say, that succeeds and then reports failure). Only
//! a write that was certainly not sent (no connection) moves on to the next endpoint; reads
//! always may.
//!
//! `etcdctl` is built on it, on the real network; the simulator's clients use it on simulated
//! TCP (any [`Host`]).

mod http;
pub mod keys;
pub mod members;

use std::fmt;
use std::time::Duration;

pub use http::Reply;

use crate::net::Connector;
use crate::runtime::{Host, TokioHost};

/// An error the server answered with: etcd's `{errorCode, message, cause, index}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct EtcdError {
    #[serde(rename = "errorCode")]
    pub code: u64,
    pub message: String,
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// No endpoint answered usefully: what each one tried said, in order. A write may have
    /// reached a member and may yet take effect.
    Cluster(Vec<String>),
    /// No endpoint could even be connected to (same words as `Cluster`): nothing was sent, so
    /// nothing was changed.
    Unreachable(Vec<String>),
    /// The server refused the request with an etcd error.
    Etcd(EtcdError),
    /// The members API refused the request; its `message`.
    Members(String),
    /// The cluster publishes no client URLs to sync to.
    NoEndpoints,
    /// An answer this client cannot read.
    Unexpected(String),
}

impl ClientError {
    /// Whether every endpoint failed for a reason of the network (etcdctl's exit status 2).
    pub fn is_connection(&self) -> bool {
        match self {
            ClientError::Cluster(errors) | ClientError::Unreachable(errors) => {
                !errors.iter().any(|e| not_a_connection_error(e))
            }
            _ => false,
        }
    }

    /// The per-endpoint lines etcdctl prints after a cluster error.
    pub fn detail(&self) -> Option<String> {
        match self {
            ClientError::Cluster(errors) | ClientError::Unreachable(errors) => Some(
                errors
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("error #{i}: {e}\n"))
                    .collect(),
            ),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Cluster(errors) | ClientError::Unreachable(errors) => {
                let each: Vec<String> = errors
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("error #{i}: {e}\n"))
                    .collect();
                write!(
                    f,
                    "client: etcd cluster is unavailable or misconfigured; {}",
                    each.join("; ")
                )
            }
            ClientError::Etcd(e) => {
                write!(f, "{}: {} ({}) [{}]", e.code, e.message, e.cause, e.index)
            }
            ClientError::Members(message) => f.write_str(message),
            ClientError::NoEndpoints => f.write_str("client: no endpoints available"),
            ClientError::Unexpected(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

/// What a request carries besides its method and path.
#[derive(Clone, Debug, Default)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn form(pairs: &[(&str, String)]) -> Body {
        Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: encode_pairs(pairs).into_bytes(),
        }
    }

    pub fn json(value: &serde_json::Value) -> Body {
        Body {
            content_type: "application/json",
            bytes: value.to_string().into_bytes(),
        }
    }
}

/// `k=v&k=v`, keys sorted as Go's `url.Values.Encode` sorts them (so `--debug` prints the
/// same cURL lines as etcd's etcdctl).
pub fn encode_pairs(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in sorted {
        out.append_pair(k, v);
    }
    out.finish()
}

#[derive(Clone, Debug)]
pub struct Config {
    pub endpoints: Vec<String>,
    /// How long connecting to one endpoint may take.
    pub dial_timeout: Duration,
    /// How long one endpoint may take to answer (not applied to watches).
    pub header_timeout: Duration,
    /// Print each request as a cURL command on stderr.
    pub debug: bool,
    /// `user[:password]` for HTTP basic authentication.
    pub credentials: Option<(String, String)>,
    /// How endpoints are dialled: plain, or with TLS settings for `https://` ones.
    pub connector: Connector,
}

pub struct Client<H: Host = TokioHost> {
    host: H,
    config: Config,
    endpoints: Vec<String>,
    pinned: usize,
}

impl Client<TokioHost> {
    /// A client on `config.endpoints`, on the real network; a URL that is not
    /// `http://host:port` is refused.
    pub fn new(config: Config) -> Result<Client, String> {
        Client::on(TokioHost::new(), config)
    }
}

impl<H: Host> Client<H> {
    /// A client on `host`'s network.
    pub fn on(host: H, config: Config) -> Result<Client<H>, String> {
        let mut endpoints = Vec::new();
        for raw in &config.endpoints {
            endpoints.push(normalise_endpoint(raw)?);
        }
        if endpoints.is_empty() {
            return Err("no endpoints given".into());
        }
        Ok(Client {
            host,
            endpoints,
            config,
            pinned: 0,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Replaces the endpoints with the client URLs the cluster publishes (etcd's `Sync`).
    pub async fn sync(&mut self) -> Result<(), ClientError> {
        let members = members::list(self).await?;
        let mut urls: Vec<String> = Vec::new();
        for member in members {
            for url in member.client_urls {
                if let Ok(url) = normalise_endpoint(&url) {
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
        }
        if urls.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        // Keep talking to the endpoint that answered, if it is among them.
        let current = self.endpoints[self.pinned].clone();
        self.pinned = urls.iter().position(|u| *u == current).unwrap_or(0);
        self.endpoints = urls;
        Ok(())
    }

    /// Sends a request to the pinned endpoint, moving on to the next when one cannot be
    /// reached, or, for a read, times out or answers 500 or 503 (no leader), as etcd's client
    /// does. A write whose outcome is unknown stops there (see the module's note); the next
    /// request starts at the next endpoint. `wait` requests (watches) have no answer deadline.
    pub async fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        body: Option<&Body>,
        wait: bool,
    ) -> Result<Reply, ClientError> {
        let mut errors = Vec::new();
        let mut sent = false;
        let n = self.endpoints.len();
        let read = method == "GET" || method == "HEAD";
        for k in 0..n {
            let i = (self.pinned + k) % n;
            let endpoint = self.endpoints[i].clone();
            let url = format!("{endpoint}{path_and_query}");
            if self.config.debug {
                let data = body
                    .map(|b| format!(" -d \"{}\"", String::from_utf8_lossy(&b.bytes)))
                    .unwrap_or_default();
                eprintln!("cURL Command: curl -X {method} {url}{data}");
            }
            let header_timeout = (!wait).then_some(self.config.header_timeout);
            let attempt = http::send(
                &self.host,
                &endpoint,
                method,
                path_and_query,
                body,
                self.config.credentials.as_ref(),
                &self.config.connector,
                self.config.dial_timeout,
                header_timeout,
            )
            .await;
            let may_have_applied = match attempt {
                Err(http::Failure::NotSent(why)) => {
                    errors.push(why);
                    false
                }
                Err(failure @ http::Failure::Unknown(_)) => {
                    errors.push(failure.into_message());
                    sent = true;
                    true
                }
                // Refused before it was proposed: certainly not applied, so the next member
                // may take it.
                Ok(reply) if refused_for_no_space(&reply) => {
                    errors.push(format!(
                        "client: etcd member {endpoint} has no space left on its disk"
                    ));
                    false
                }
                Ok(reply) if reply.status == 500 || reply.status == 503 => {
                    errors.push(format!("client: etcd member {endpoint} has no leader"));
                    sent = true;
                    true
                }
                Ok(reply) if reply.status >= 500 => {
                    sent = true;
                    errors.push(format!(
                        "client: etcd member {endpoint} returns server error [{}]",
                        http::status_text(reply.status)
                    ));
                    true
                }
                Ok(reply) => {
                    self.pinned = i;
                    return Ok(reply);
                }
            };
            if may_have_applied && !read {
                self.pinned = (i + 1) % n;
                break;
            }
        }
        if sent {
            Err(ClientError::Cluster(errors))
        } else {
            Err(ClientError::Unreachable(errors))
        }
    }
}

/// Go counts only failures to dial or read as connection errors (etcdctl's status 2); a TLS
/// failure, a connection closed without an answer (Go's `EOF`), an answer that is not HTTP or
/// a member that did not answer in time is status 4.
fn not_a_connection_error(line: &str) -> bool {
    crate::tls::is_failure_text(line)
        || line == "EOF"
        || line.starts_with("malformed HTTP response")
        || line.ends_with("connection closed before message completed")
        || line.ends_with("exceeded header timeout")
}

fn refused_for_no_space(reply: &http::Reply) -> bool {
    reply.status == 500
        && serde_json::from_slice::<crate::error::Error>(&reply.body)
            .is_ok_and(|e| e.cause == crate::error::NO_SPACE_CAUSE)
}

/// One GET to one endpoint, whatever its status (for `/health`, which answers 503 when
/// unhealthy); the error is the Go client's text for a failed connection.
pub async fn fetch(
    endpoint: &str,
    path: &str,
    connector: &Connector,
    timeout: Duration,
) -> Result<Reply, String> {
    let endpoint = normalise_endpoint(endpoint)?;
    let host = TokioHost::new();
    http::send(
        &host,
        &endpoint,
        "GET",
        path,
        None,
        None,
        connector,
        timeout,
        Some(timeout),
    )
    .await
    .map_err(http::Failure::into_message)
}

/// `http://host:port` or `https://host:port`, without a trailing slash.
fn normalise_endpoint(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: hyper::Uri = trimmed
        .parse()
        .map_err(|e| format!("invalid endpoint {raw:?}: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => {
            return Err(format!(
                "invalid endpoint {raw:?}: the scheme must be http or https"
            ))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("invalid endpoint {raw:?}: no host"))?;
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_error_reads_as_etcds() {
        let e = ClientError::Cluster(vec![
            "dial tcp 127.0.0.1:2379: connect: connection refused".into(),
            "dial tcp 127.0.0.1:4001: connect: connection refused".into(),
        ]);
        assert_eq!(
            e.to_string(),
            "client: etcd cluster is unavailable or misconfigured; error #0: dial tcp \
             127.0.0.1:2379: connect: connection refused\n; error #1: dial tcp 127.0.0.1:4001: \
             connect: connection refused\n"
        );
        assert_eq!(
            e.detail().unwrap(),
            "error #0: dial tcp 127.0.0.1:2379: connect: connection refused\nerror #1: dial tcp \
             127.0.0.1:4001: connect: connection refused\n"
        );
    }

    #[test]
    fn an_etcd_error_reads_as_etcdctl_prints_it() {
        let e = ClientError::Etcd(EtcdError {
            code: 100,
            message: "Key not found".into(),
            cause: "/foo".into(),
            index: 12,
        });
        assert_eq!(e.to_string(), "100: Key not found (/foo) [12]");
    }

    #[test]
    fn pairs_are_sorted_and_escaped_like_go() {
        let pairs = [("value", "a b&c".to_string()), ("ttl", "5".to_string())];
        assert_eq!(encode_pairs(&pairs), "ttl=5&value=a+b%26c");
    }

    #[test]
    fn endpoints_are_normalised_and_keep_their_scheme() {
        assert_eq!(
            normalise_endpoint("http://127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalise_endpoint("https://localhost:2379").unwrap(),
            "https://localhost:2379"
        );
        assert!(normalise_endpoint("127.0.0.1:2379").is_err());
        assert!(normalise_endpoint("ftp://127.0.0.1:2379").is_err());
    }
}
