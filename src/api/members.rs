//! The members API's writes: POST `/v2/members` adds a member (not started until it runs and
//! publishes itself), DELETE `/v2/members/<id>` removes one, PUT `/v2/members/<id>` changes a
//! member's peer URLs. Errors are `{"message": ...}` with etcd's statuses.

use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::{full, json_response, method_not_allowed, App, Body};
use crate::config::Url;
use crate::membership::{member_id, parse_id, Member, MembershipError};
use crate::node::MemberChange;
use crate::runtime::Runtime;

#[derive(Deserialize)]
struct PeerUrls {
    // A body without the field is an empty list, which etcd refuses as "no valid URLs".
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "message": text }).to_string())
}

fn refused(error: &MembershipError) -> Response<Body> {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = message(status, &error.to_string());
    if *error == MembershipError::TooManyRequests {
        let secs = crate::error::RETRY_AFTER_SECS.to_string();
        super::set_header(&mut response, "Retry-After", secs);
    }
    response
}

async fn peer_urls<R: Runtime>(
    app: &App<R>,
    request: Request<hyper::body::Incoming>,
) -> Result<Vec<String>, Box<Response<Body>>> {
    json_body(&request)?;
    let bad = |why: String| Box::new(message(StatusCode::BAD_REQUEST, &why));
    let body = super::read_body(app, request.into_body(), app.max_body)
        .await
        .map_err(|_| bad("unreadable request body".into()))?;
    parse_peer_urls(&body).map_err(bad)
}

/// A members write's body, `{"peerURLs": [...]}`: the URLs made canonical, or why the body is
/// refused (a 400), in the words etcd (Go's URL checks) uses.
pub fn parse_peer_urls(body: &[u8]) -> Result<Vec<String>, String> {
    let parsed: PeerUrls = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if parsed.peer_urls.is_empty() {
        return Err("no valid URLs given".into());
    }
    parsed.peer_urls.iter().map(|u| peer_url(u)).collect()
}

/// One peer URL as etcd's `types.NewURLs` checks it.
fn peer_url(text: &str) -> Result<String, String> {
    let scheme = text.split_once("://").map_or("", |(s, _)| s);
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return Err(format!(
            "URL scheme must be http, https, unix, or unixs: {text}"
        ));
    }
    if scheme.starts_with("unix") {
        return Err(format!(
            "URL scheme {scheme} is not supported yet (unix sockets): {text}"
        ));
    }
    let rest = &text[scheme.len() + 3..];
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !path.is_empty() && path != "/" {
        return Err(format!("URL must not contain a path: {text}"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !port.is_empty() && !host.ends_with('['));
    if !has_port {
        return Err(format!(
            "URL address does not have the form \"host:port\": {text}"
        ));
    }
    Url::parse(text)
        .map(|u| u.to_string())
        .map_err(|e| format!("parse {text:?}: {e}"))
}

/// etcd answers a members write only in JSON: anything else is 415 and changes nothing.
fn json_body<B>(request: &Request<B>) -> Result<(), Box<Response<Body>>> {
    let header = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Go's mime.ParseMediaType: the type before any parameters, lower-cased.
    let media_type = header
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type == "application/json" {
        return Ok(());
    }
    Err(Box::new(message(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &format!("Bad Content-Type {media_type}, accept application/json"),
    )))
}

/// Every method the members paths serve, as etcd lists them in `Allow`.
const MEMBERS_METHODS: &str = "GET,POST,DELETE,PUT";

/// `/v2/members`, `/v2/members/leader` and `/v2/members/<id>`. Every answer names the
/// cluster, as etcd's do, except a method the paths never take: etcd refuses it first.
pub async fn handle<R: Runtime>(
    app: &Arc<App<R>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if !matches!(
        *request.method(),
        Method::GET | Method::POST | Method::DELETE | Method::PUT
    ) {
        return method_not_allowed(MEMBERS_METHODS);
    }
    let mut response = answer(app, request).await;
    super::set_header(
        &mut response,
        "X-Etcd-Cluster-ID",
        crate::membership::format_id(app.cluster_id),
    );
    response
}

/// etcd's members JSON ends with a newline.
fn json_line<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = crate::json::to_string(value) + "\n";
    json_response(status, body)
}

async fn answer<R: Runtime>(
    app: &Arc<App<R>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let target = path.strip_prefix("/v2/members/").filter(|s| !s.is_empty());
    match (request.method().clone(), target) {
        (Method::GET, None) => {
            #[derive(serde::Serialize)]
            struct Members {
                members: Vec<Member>,
            }
            json_line(
                StatusCode::OK,
                &Members {
                    members: app.node.members(),
                },
            )
        }
        (Method::GET, Some("leader")) => {
            let leader = app.node.status().leader;
            match app.node.members().into_iter().find(|m| m.id == leader) {
                Some(member) => json_line(StatusCode::OK, &member),
                None => message(StatusCode::SERVICE_UNAVAILABLE, "During election"),
            }
        }
        // etcd serves no single member: a GET of one is "Not found".
        (Method::GET, Some(_)) => message(StatusCode::NOT_FOUND, "Not found"),
        (Method::POST, None) => {
            let urls = match peer_urls(app, request).await {
                Ok(urls) => urls,
                Err(response) => return *response,
            };
            let now = app.node.runtime().now().unix_nanos() / 1_000_000_000;
            let id = member_id(&urls, &app.token, Some(now));
            match app
                .node
                .change_members(MemberChange::Add {
                    id,
                    peer_urls: urls.clone(),
                })
                .await
            {
                Ok(()) => {
                    let member = Member {
                        id,
                        name: String::new(),
                        peer_urls: urls,
                        client_urls: Vec::new(),
                    };
                    json_line(StatusCode::CREATED, &member)
                }
                Err(e) => refused(&e),
            }
        }
        (Method::DELETE, Some(id)) | (Method::PUT, Some(id)) => {
            let Some(id) = parse_id(id) else {
                return message(StatusCode::NOT_FOUND, &format!("No such member: {id}"));
            };
            let change = if request.method() == Method::DELETE {
                MemberChange::Remove { id }
            } else {
                match peer_urls(app, request).await {
                    Ok(peer_urls) => MemberChange::UpdatePeerUrls { id, peer_urls },
                    Err(response) => return *response,
                }
            };
            match app.node.change_members(change).await {
                Ok(()) => {
                    let mut response = Response::new(full(""));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                Err(e) => refused(&e),
            }
        }
        // A member to add has no id yet; one to remove or change needs one. etcd answers
        // these with a bare 405, without `Allow`.
        _ => {
            let mut response = method_not_allowed(MEMBERS_METHODS);
            response.headers_mut().remove("Allow");
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_peer_urls;

    #[test]
    fn https_peer_urls_are_taken_and_unix_sockets_refused() {
        let taken = parse_peer_urls(br#"{"peerURLs":["https://10.0.0.1:2380"]}"#);
        assert_eq!(taken, Ok(vec!["https://10.0.0.1:2380".to_owned()]));
        let refused = parse_peer_urls(br#"{"peerURLs":["unixs://m:2380"]}"#);
        assert!(refused.unwrap_err().contains("unix sockets"));
    }
}
