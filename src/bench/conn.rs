//! One keep-alive HTTP/1.1 connection to one member, as a benchmark client holds it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;

use crate::net::Connector;
use crate::runtime::TokioHost;

pub struct Conn {
    authority: String,
    sender: SendRequest<Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub etcd_index: u64,
    pub body: Bytes,
}

impl Conn {
    /// Connects to `endpoint` (`http://` or `https://host:port`) through the shared connector.
    pub async fn open(endpoint: &str, connector: &Connector) -> Result<Conn, String> {
        let uri: hyper::Uri = endpoint
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("{endpoint}: no host"))?;
        let sender = connector
            .dial(&TokioHost::new(), &uri, Duration::from_secs(5))
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        Ok(Conn { authority, sender })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[u8]>,
    ) -> Result<Reply, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if form.is_some() {
            request = request.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let body = Full::new(Bytes::copy_from_slice(form.unwrap_or_default()));
        let request = request.body(body).map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let etcd_index = response
            .headers()
            .get("X-Etcd-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            etcd_index,
            body,
        })
    }
}
