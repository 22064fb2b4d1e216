//! `/v2/keys/...`: parameters from the query string and a form body, read the way etcd reads
//! them, turned into a store read, a watch or a replicated write.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::{error_response, json_response, method_not_allowed, set_header, App, Body};
use crate::error::{Error, ErrorCode};
use crate::membership::format_id;
use crate::request::Op;
use crate::runtime::Runtime;
use crate::store::{parse_ttl, Event, Watcher};

/// The parameters, as Go's `Request.FormValue` sees them: body values first, then the query.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    fn bool(&self, name: &str) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(_) => Err(form_error(
                ErrorCode::InvalidField,
                format!("invalid value for {name:?}"),
            )),
        }
    }

    fn index(&self, name: &str) -> Result<u64, Error> {
        match self.get(name) {
            None => Ok(0),
            Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().map_err(|_| {
                form_error(ErrorCode::IndexNaN, format!("invalid value for {name:?}"))
            }),
            Some(_) => Err(form_error(
                ErrorCode::IndexNaN,
                format!("invalid value for {name:?}"),
            )),
        }
    }
}

/// Where a `%` is not followed by two hex digits, which Go's URL and form parsers refuse.
pub(super) fn bad_escape_at(text: &[u8]) -> Option<usize> {
    text.iter().enumerate().find_map(|(i, &b)| {
        let hex = |j: usize| text.get(j).is_some_and(u8::is_ascii_hexdigit);
        (b == b'%' && !(hex(i + 1) && hex(i + 2))).then_some(i)
    })
}

/// etcd's error for a bad escape in a form or a query.
fn bad_escape(text: &[u8]) -> Option<Error> {
    let at = bad_escape_at(text)?;
    let escape = String::from_utf8_lossy(&text[at..(at + 3).min(text.len())]).into_owned();
    Some(form_error(
        ErrorCode::InvalidForm,
        format!("invalid URL escape {escape:?}"),
    ))
}

fn form_error(code: ErrorCode, cause: String) -> Error {
    Error::new(code, cause, 0)
}

/// A parsed keys request.
struct KeysRequest {
    method: Method,
    key: String,
    value: String,
    dir: bool,
    recursive: bool,
    wait: bool,
    wait_index: u64,
    stream: bool,
    quorum: bool,
    ttl: Option<u64>,
    refresh: bool,
    prev_exist: Option<bool>,
    prev_value: Option<String>,
    prev_index: u64,
    /// Answer a successful write with its action only (etcd's `noValueOnSuccess`).
    no_value_on_success: bool,
}

/// A URL path's key: percent-escapes decoded (a `+` stays a `+`). Keys are text: bytes that
/// are not UTF-8 are refused rather than replaced, since replacing them would make `c%ff`
/// and `c%fe` the same key.
fn percent_decode(path: &str) -> Result<String, Error> {
    if let Some(bad) = bad_escape(path.as_bytes()) {
        return Err(bad);
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| form_error(ErrorCode::InvalidField, "the key is not valid UTF-8".into()))
}

fn parse(method: Method, path: &str, form: &Form) -> Result<KeysRequest, Error> {
    let key = percent_decode(path.strip_prefix("/v2/keys").unwrap_or("/"))?;
    if matches!(method, Method::PUT | Method::POST | Method::DELETE) {
        // What the store would refuse when applying, refused before it is proposed.
        crate::store::check_key_limits(&crate::store::path::clean(&key), 0)?;
    }
    let prev_exist = match form.get("prevExist") {
        None => None,
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Some(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Some(false),
        Some(_) => {
            return Err(form_error(
                ErrorCode::InvalidField,
                "invalid value for prevExist".into(),
            ))
        }
    };
    let prev_value = match form.get("prevValue") {
        Some("") => {
            return Err(form_error(
                ErrorCode::PrevValueRequired,
                r#""prevValue" cannot be empty"#.into(),
            ))
        }
        other => other.map(str::to_owned),
    };
    let request = KeysRequest {
        key,
        value: form.get("value").unwrap_or("").to_owned(),
        prev_index: form.index("prevIndex")?,
        wait_index: form.index("waitIndex")?,
        recursive: form.bool("recursive")?,
        wait: form.bool("wait")?,
        stream: form.bool("stream")?,
        dir: form.bool("dir")?,
        quorum: form.bool("quorum")?,
        // etcd quotes the field name in this cause for every flag but this one.
        refresh: form
            .bool("refresh")
            .map_err(|_| form_error(ErrorCode::InvalidField, "invalid value for refresh".into()))?,
        ttl: match form.get("ttl") {
            Some(text) => parse_ttl(text)?,
            None => None,
        },
        prev_exist,
        prev_value,
        no_value_on_success: form.bool("noValueOnSuccess")?,
        method,
    };
    let _ = form.bool("sorted")?;
    if request.wait && request.method != Method::GET {
        return Err(form_error(
            ErrorCode::InvalidField,
            r#""wait" can only be used with GET requests"#.into(),
        ));
    }
    if request.refresh {
        if form.has("value") && !request.value.is_empty() {
            return Err(form_error(
                ErrorCode::RefreshValue,
                "A value was provided on a refresh".into(),
            ));
        }
        if request.ttl.is_none() {
            return Err(form_error(
                ErrorCode::RefreshTtlRequired,
                "No TTL value set".into(),
            ));
        }
    }
    Ok(request)
}

/// A request's parameters (a form body's first, then the query string's, as Go's
/// `FormValue` reads them), checked and turned into a [`KeysRequest`].
fn parse_request(
    method: Method,
    path: &str,
    query: &str,
    form_body: Option<&[u8]>,
) -> Result<KeysRequest, Error> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(body) = form_body {
        if let Some(bad) = bad_escape(body) {
            return Err(bad);
        }
        pairs.extend(form_urlencoded::parse(body).into_owned());
    }
    if let Some(bad) = bad_escape(query.as_bytes()) {
        return Err(bad);
    }
    pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    parse(method, path, &Form(pairs))
}

/// What a keys request asks the server to do; the pure part of [`handle`], for tests and
/// fuzzing.
#[derive(Debug)]
pub enum Interpreted {
    Read {
        key: String,
        recursive: bool,
        quorum: bool,
    },
    Watch {
        key: String,
        recursive: bool,
        stream: bool,
        wait_index: u64,
    },
    Write(Op),
}

/// Reads a keys request as [`handle`] does, without a server: the store read, watch or
/// replicated write it asks for, or the error etcd answers it with.
pub fn interpret(
    method: &str,
    path: &str,
    query: &str,
    form_body: Option<&[u8]>,
) -> Result<Interpreted, Error> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| form_error(ErrorCode::InvalidForm, "bad method".into()))?;
    let r = parse_request(method.clone(), path, query, form_body)?;
    Ok(match method {
        Method::GET | Method::HEAD if r.wait => Interpreted::Watch {
            key: r.key,
            recursive: r.recursive,
            stream: r.stream,
            wait_index: r.wait_index,
        },
        Method::GET | Method::HEAD => Interpreted::Read {
            key: r.key,
            recursive: r.recursive,
            quorum: r.quorum,
        },
        _ => Interpreted::Write(write_op(&r)),
    })
}

/// The replicated operation a PUT, POST or DELETE asks for, chosen as etcd's server does.
fn write_op(r: &KeysRequest) -> Op {
    let key = r.key.clone();
    let value = if r.dir { None } else { Some(r.value.clone()) };
    let conditional = r.prev_index > 0 || r.prev_value.is_some();
    let prev_index = (r.prev_index > 0).then_some(r.prev_index);
    match r.method {
        Method::POST => Op::CreateInOrder {
            dir: key,
            value,
            ttl: r.ttl,
        },
        Method::DELETE if conditional => Op::CompareAndDelete {
            key,
            prev_value: r.prev_value.clone(),
            prev_index,
        },
        Method::DELETE => Op::Delete {
            key,
            dir: r.dir,
            recursive: r.recursive,
        },
        _ => match r.prev_exist {
            Some(true) if !conditional => Op::Update {
                key,
                value: r.value.clone(),
                ttl: r.ttl,
                refresh: r.refresh,
            },
            Some(false) => Op::Create {
                key,
                value,
                ttl: r.ttl,
            },
            _ if conditional => Op::CompareAndSwap {
                key,
                prev_value: r.prev_value.clone(),
                prev_index,
                value: r.value.clone(),
                ttl: r.ttl,
                refresh: r.refresh,
            },
            _ => Op::Set {
                key,
                value,
                ttl: r.ttl,
                refresh: r.refresh,
            },
        },
    }
}

fn event_response<R: Runtime>(
    app: &App<R>,
    event: &Event,
    etcd_index: u64,
    head: bool,
) -> Response<Body> {
    use crate::store::Action;
    let created = event.action == Action::Create
        || (event.action == Action::Set && event.prev_node.is_none());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = event.to_json() + "\n";
    let length = body.len();
    let mut response = json_response(status, if head { String::new() } else { body });
    if head {
        // A HEAD answer says how long the GET answer would be, as Go's server does.
        set_header(&mut response, "Content-Length", length.to_string());
    }
    add_index_headers(app, &mut response, etcd_index);
    response
}

fn add_index_headers<R: Runtime>(app: &App<R>, response: &mut Response<Body>, etcd_index: u64) {
    let status = app.node.status();
    set_header(response, "X-Etcd-Index", etcd_index.to_string());
    set_header(response, "X-Raft-Index", status.applied.to_string());
    set_header(response, "X-Raft-Term", status.term.to_string());
    set_header(response, "X-Etcd-Cluster-ID", format_id(app.cluster_id));
}

pub async fn handle<R: Runtime>(
    app: &Arc<App<R>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::POST | Method::DELETE
    ) {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // Like Go's ParseForm, only PUT and POST bodies carry parameters.
    let mut body = None;
    if matches!(method, Method::PUT | Method::POST) {
        match super::read_body(app, request.into_body(), app.max_body).await {
            Ok(collected) if is_form => body = Some(collected),
            Ok(_) => {}
            Err(e) => {
                // Go's words for a form past its limit, which etcd's v2 API answers with.
                use crate::body::BodyError;
                let cause = match e {
                    BodyError::TooLarge => "http: POST too large",
                    BodyError::TooSlow => "the request body took too long to arrive",
                    BodyError::Broken => "the request body is broken",
                };
                let e = form_error(ErrorCode::InvalidForm, cause.into());
                return error_response(&e, app.cluster_id);
            }
        }
    }
    let parsed = match parse_request(method.clone(), &path, &query, body.as_deref()) {
        Ok(parsed) => parsed,
        Err(e) => return error_response(&e, app.cluster_id),
    };
    let head = method == Method::HEAD;
    match method {
        Method::GET | Method::HEAD if parsed.wait => watch(app, &parsed).await,
        Method::GET | Method::HEAD => {
            let result = if parsed.quorum {
                app.node.quorum_get(&parsed.key, parsed.recursive).await
            } else {
                app.node.get(&parsed.key, parsed.recursive)
            };
            match result {
                Ok(event) => event_response(app, &event, event.etcd_index, head),
                Err(e) => error_response(&e, app.cluster_id),
            }
        }
        _ => match app.node.write(write_op(&parsed)).await {
            Ok(event) if parsed.no_value_on_success && brief_on_success(event.action) => {
                // The status comes from the whole event; only the body is cut down.
                let mut response = event_response(app, &event, event.etcd_index, false);
                *response.body_mut() = super::full(format!(
                    "{{\"action\":{}}}\n",
                    serde_json::to_string(&event.action).expect("an action serialises")
                ));
                response
            }
            Ok(event) => event_response(app, &event, event.etcd_index, false),
            Err(e) => error_response(&e, app.cluster_id),
        },
    }
}

/// `wait=true`: a long poll for the next event, or with `stream=true` every event as it
/// comes. The watch ends when the client goes away (the response body is dropped).
async fn watch<R: Runtime>(app: &Arc<App<R>>, r: &KeysRequest) -> Response<Body> {
    let mut watcher: Watcher = match app.node.watch(&r.key, r.recursive, r.stream, r.wait_index) {
        Ok(watcher) => watcher,
        Err(e) => return error_response(&e, app.cluster_id),
    };
    let start_index = watcher.start_index();
    // As etcd does, the headers go out at once (200, chunked) and the events follow; a watch
    // the server closes ends with an empty body. Each event is turned into JSON only when the
    // connection takes the next piece of the body, so a client that stops reading holds one
    // encoded event, not a queue of them: its watcher's buffer fills, the store drops it (as
    // etcd drops a slow watcher) and the answer ends. Dropping the body (the client went
    // away) drops the watcher.
    let stream = r.stream;
    let mut answered = false;
    let events = futures_util::stream::poll_fn(move |cx| {
        if answered {
            return std::task::Poll::Ready(None);
        }
        watcher.poll_next(cx).map(|event| {
            let event = event?;
            answered = !stream;
            let line = Bytes::from(event.to_json() + "\n");
            Some(Ok::<_, std::convert::Infallible>(Frame::data(line)))
        })
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_index_headers(app, &mut response, start_index);
    response
}

/// The writes whose answer `noValueOnSuccess` cuts down to the action, as etcd's.
fn brief_on_success(action: crate::store::Action) -> bool {
    use crate::store::Action::*;
    matches!(action, Set | CompareAndSwap | Create | Update)
}
