//! The client API over HTTP/1 (hyper): `/v2/keys`, `/v2/members`, `/v2/machines`,
//! `/v2/stats/*`, `/version` and `/health`, answering exactly as etcd 2.x does.

pub mod keys;
pub mod members;

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::error::Error;
use crate::membership::format_id;
use crate::node::{Node, Role};
use crate::runtime::Runtime;
use crate::timestamp::Timestamp;

pub use crate::net::{full, json_response, method_not_allowed, text_response, Body};

/// What the handlers need: the member, and what is known of the cluster.
pub struct App<R: Runtime> {
    pub node: Node<R>,
    pub name: String,
    pub id: u64,
    pub cluster_id: u64,
    /// The cluster token, from which new members' ids are derived.
    pub token: String,
    pub started: Timestamp,
    /// Largest request body accepted (`--max-request-bytes`).
    pub max_body: usize,
    /// Which origins browsers may let read the answers (`--cors`).
    pub cors: crate::config::Cors,
    /// Raft traffic, for the stats endpoints.
    pub traffic: std::sync::Arc<crate::transport::TrafficStats>,
}

/// How long a client may take to send a request body. A request head has its own timeout
/// (`net::HEADER_READ_TIMEOUT`); without this one a client that stalls in the middle of a
/// body would hold its connection, and its share of the connection limit, for ever.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A whole request body, at most `limit` bytes, within [`BODY_DEADLINE`].
pub(crate) async fn read_body<R: Runtime>(
    app: &App<R>,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, crate::body::BodyError> {
    let reading = crate::body::BodyRead {
        max: limit,
        budget: None,
        deadline: BODY_DEADLINE,
        stall: BODY_DEADLINE,
    };
    let runtime = app.node.runtime();
    let (bytes, _) = reading.read(body, |d| runtime.sleep(d)).await?;
    Ok(bytes)
}

/// etcd's error JSON with its status and `X-Etcd-Index`.
pub fn error_response(error: &Error, cluster_id: u64) -> Response<Body> {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, error.to_json() + "\n");
    set_header(&mut response, "X-Etcd-Index", error.index.to_string());
    set_header(&mut response, "X-Etcd-Cluster-ID", format_id(cluster_id));
    if let Some(secs) = error.retry_after_secs() {
        set_header(&mut response, "Retry-After", secs.to_string());
    }
    response
}

pub(crate) fn set_header(response: &mut Response<Body>, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

/// Answers one request, with etcd's CORS headers: an allowed origin gets
/// `Access-Control-Allow-*` on every answer, and `OPTIONS` (a browser's preflight) is always
/// a bare 200.
pub async fn handle<R: Runtime>(
    app: Arc<App<R>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let origin = request
        .headers()
        .get("Origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Go refuses a path with a bad escape before etcd's handlers (and so its CORS) see it.
    let bad_escape = keys::bad_escape_at(request.uri().path().as_bytes()).is_some();
    let allowed = app.cors.allow(origin.as_deref()).filter(|_| !bad_escape);
    let mut response = if request.method() == Method::OPTIONS {
        let mut response = Response::new(full(""));
        set_header(&mut response, "Content-Length", "0".into());
        response
    } else if bad_escape {
        // Go's bare answer, and a closed connection.
        let mut response = text_response(StatusCode::BAD_REQUEST, "400 Bad Request");
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        route(app, request).await
    };
    if let Some(origin) = allowed {
        set_header(&mut response, "Access-Control-Allow-Origin", origin);
        set_header(
            &mut response,
            "Access-Control-Allow-Methods",
            "POST, GET, OPTIONS, PUT, DELETE".into(),
        );
        set_header(
            &mut response,
            "Access-Control-Allow-Headers",
            "accept, content-type, authorization".into(),
        );
    }
    response
}

/// Routes one request.
async fn route<R: Runtime>(
    app: Arc<App<R>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if let Some(clean) = redirect_target(&path) {
        return moved_permanently(request.method(), &clean, request.uri().query());
    }
    if path == "/v2/keys" || path.starts_with("/v2/keys/") {
        return keys::handle(&app, request).await;
    }
    if path == "/v2/members" || path.starts_with("/v2/members/") {
        return members::handle(&app, request).await;
    }
    // The methods each path takes, as etcd's handlers check them (HEAD only where etcd takes
    // it); anything else is a 405 naming them.
    let method = request.method().clone();
    let only = move |allow: &'static str, response: Response<Body>| -> Response<Body> {
        let allowed = allow.split(',').any(|m| m == method.as_str());
        if allowed {
            response
        } else {
            method_not_allowed(allow)
        }
    };
    let get_only = |response| only("GET", response);
    match path.as_str() {
        "/version" => get_only(json_response(
            StatusCode::OK,
            format!(
                r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
                crate::SERVER_VERSION,
                crate::CLUSTER_VERSION
            ),
        )),
        "/health" => {
            let status = app.node.status();
            // A full disk is etcd 3.x's NOSPACE alarm: the member cannot take writes.
            let healthy = status.leader != 0 && status.stopped.is_none() && !status.disk_full;
            // etcd answers JSON here, but labelled as plain text.
            let body = if healthy {
                r#"{"health":"true"}"#
            } else {
                r#"{"health":"false"}"#
            };
            let code = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            get_only(text_response(code, body))
        }
        "/v2/machines" => {
            // Sorted, as etcd lists them (clients such as python-etcd take the first).
            let mut urls: Vec<String> = app
                .node
                .members()
                .into_iter()
                .flat_map(|m| m.client_urls)
                .collect();
            urls.sort();
            let mut response = Response::new(full(urls.join(", ")));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            only("GET,HEAD", response)
        }
        "/v2/stats/self" => get_only(json_response(StatusCode::OK, self_stats(&app))),
        "/v2/stats/leader" => {
            let status = app.node.status();
            if status.role == Role::Leader {
                use crate::transport::stats::FollowerStats;
                let followers: std::collections::BTreeMap<String, FollowerStats> = app
                    .node
                    .members()
                    .iter()
                    .filter(|m| m.id != app.id)
                    .map(|m| (format_id(m.id), app.traffic.follower(m.id)))
                    .collect();
                #[derive(serde::Serialize)]
                struct LeaderStats {
                    leader: String,
                    followers: std::collections::BTreeMap<String, FollowerStats>,
                }
                let body = serde_json::to_string(&LeaderStats {
                    leader: format_id(app.id),
                    followers,
                })
                .expect("stats serialise");
                get_only(json_response(StatusCode::OK, body))
            } else {
                get_only(json_response(
                    StatusCode::FORBIDDEN,
                    r#"{"message":"not current leader"}"#.to_owned(),
                ))
            }
        }
        "/v2/stats/store" => {
            let stats = app.node.store_stats();
            get_only(json_response(StatusCode::OK, stats.to_json()))
        }
        _ => text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// `/v2/stats/self`, in etcd's field order; rates are left out while they are zero, as etcd
/// leaves them out.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SelfStats<'a> {
    name: &'a str,
    id: String,
    state: &'static str,
    start_time: String,
    leader_info: LeaderInfo,
    recv_append_request_cnt: u64,
    #[serde(skip_serializing_if = "is_zero")]
    recv_pkg_rate: f64,
    #[serde(skip_serializing_if = "is_zero")]
    recv_bandwidth_rate: f64,
    send_append_request_cnt: u64,
    #[serde(skip_serializing_if = "is_zero")]
    send_pkg_rate: f64,
    #[serde(skip_serializing_if = "is_zero")]
    send_bandwidth_rate: f64,
}

fn is_zero(rate: &f64) -> bool {
    *rate == 0.0
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaderInfo {
    leader: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<String>,
}

/// Go's ServeMux answers a path with `//`, `.` or `..` segments with a redirect to the clean
/// path (a trailing slash is kept); etcd's API inherits that.
fn redirect_target(path: &str) -> Option<String> {
    let mut clean = crate::store::path::clean(path);
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    (clean != path).then_some(clean)
}

/// Go's `http.Redirect`: a little HTML page for GET and HEAD, nothing for other methods.
fn moved_permanently(method: &Method, clean: &str, query: Option<&str>) -> Response<Body> {
    let location = match query {
        Some(query) => format!("{clean}?{query}"),
        None => clean.to_owned(),
    };
    let page = matches!(*method, Method::GET | Method::HEAD);
    let mut response = Response::new(full(if page {
        format!("<a href=\"{location}\">Moved Permanently</a>.\n\n")
    } else {
        String::new()
    }));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if page {
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    set_header(&mut response, "Location", location);
    response
}

fn self_stats<R: Runtime>(app: &App<R>) -> String {
    let status = app.node.status();
    let state = match status.role {
        Role::Leader => "StateLeader",
        Role::Candidate | Role::PreCandidate => "StateCandidate",
        Role::Follower => "StateFollower",
    };
    let now = app.node.runtime().now();
    let uptime = status.leader_since.map(|since| {
        let nanos = now.unix_nanos().saturating_sub(since.unix_nanos()).max(0);
        crate::transport::stats::go_duration(std::time::Duration::from_nanos(nanos as u64))
    });
    let (sent, send_pkg_rate, send_bandwidth_rate) = app.traffic.sent();
    let (received, recv_pkg_rate, recv_bandwidth_rate) = app.traffic.received();
    let stats = SelfStats {
        name: &app.name,
        id: format_id(app.id),
        state,
        start_time: app.started.to_rfc3339(),
        leader_info: LeaderInfo {
            leader: format_id(status.leader),
            uptime,
            start_time: status.leader_since.map(|t| t.to_rfc3339()),
        },
        recv_append_request_cnt: received,
        recv_pkg_rate,
        recv_bandwidth_rate,
        send_append_request_cnt: sent,
        send_pkg_rate,
        send_bandwidth_rate,
    };
    serde_json::to_string(&stats).expect("stats serialise")
}
