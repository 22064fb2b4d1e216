//! The members API (`/v2/members`), as etcd's Go `MembersAPI`.

use serde::Deserialize;

use super::{Body, Client, ClientError, Reply};
use crate::runtime::Host;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// etcd's hex form, as the server writes it.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Refusal {
    message: String,
}

/// A refusal's `message`, or the status when the body has none.
fn refused(reply: &Reply) -> ClientError {
    match serde_json::from_slice::<Refusal>(&reply.body) {
        Ok(r) => ClientError::Members(r.message),
        Err(_) => ClientError::Members(format!("unexpected status code {}", reply.status)),
    }
}

fn unreadable(e: serde_json::Error) -> ClientError {
    ClientError::Unexpected(format!("unreadable members response: {e}"))
}

pub async fn list<H: Host>(client: &mut Client<H>) -> Result<Vec<Member>, ClientError> {
    let reply = client.request("GET", "/v2/members", None, false).await?;
    if reply.status != 200 {
        return Err(refused(&reply));
    }
    let list: List = serde_json::from_slice(&reply.body).map_err(unreadable)?;
    Ok(list.members)
}

pub async fn leader<H: Host>(client: &mut Client<H>) -> Result<Member, ClientError> {
    let reply = client
        .request("GET", "/v2/members/leader", None, false)
        .await?;
    if reply.status != 200 {
        return Err(refused(&reply));
    }
    serde_json::from_slice(&reply.body).map_err(unreadable)
}

pub async fn add<H: Host>(
    client: &mut Client<H>,
    peer_urls: &[String],
) -> Result<Member, ClientError> {
    let body = Body::json(&serde_json::json!({ "peerURLs": peer_urls }));
    let reply = client
        .request("POST", "/v2/members", Some(&body), false)
        .await?;
    if reply.status != 201 {
        return Err(refused(&reply));
    }
    serde_json::from_slice(&reply.body).map_err(unreadable)
}

pub async fn remove<H: Host>(client: &mut Client<H>, id: &str) -> Result<(), ClientError> {
    let path = format!("/v2/members/{id}");
    let reply = client.request("DELETE", &path, None, false).await?;
    if reply.status != 204 {
        return Err(refused(&reply));
    }
    Ok(())
}

pub async fn update<H: Host>(
    client: &mut Client<H>,
    id: &str,
    peer_urls: &[String],
) -> Result<(), ClientError> {
    let body = Body::json(&serde_json::json!({ "peerURLs": peer_urls }));
    let path = format!("/v2/members/{id}");
    let reply = client.request("PUT", &path, Some(&body), false).await?;
    if reply.status != 204 {
        return Err(refused(&reply));
    }
    Ok(())
}
