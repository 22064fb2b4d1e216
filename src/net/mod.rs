//! HTTP/1 over the host's sockets, shared by the client API, the peer transport and the
//! client: one acceptor ([`serve`]) for every listener and one connector ([`dial`]) for every
//! outgoing connection, both on the [`Host`](crate::runtime::Host)'s sockets and clock, so the
//! same code runs on real TCP and on the simulator's. TLS plugs in here: the acceptor takes a
//! [`ServerTls`](crate::tls::ServerTls) for `https://` listeners, the connector a
//! [`ClientTls`](crate::tls::ClientTls) for `https://` URLs.

mod acceptor;
mod connector;
mod prefixed;
mod slots;
mod timer;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub use acceptor::{
    serve, ConnectionLimit, CLIENT_CONNECTIONS, HANDSHAKE_TIMEOUT, HEADER_READ_TIMEOUT,
    PEER_CONNECTIONS,
};
pub use connector::{address_of, Connector, DialError, Sender};
pub use timer::HostTimer;

/// Every answer's body.
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

pub fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn text_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status.is_client_error() || status.is_server_error() {
        // As Go's `http.Error` marks its plain-text errors.
        response.headers_mut().insert(
            "X-Content-Type-Options",
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    response
        .headers_mut()
        .insert("Allow", HeaderValue::from_static(allow));
    response
}
