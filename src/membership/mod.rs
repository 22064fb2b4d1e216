//! The cluster's members: who they are, how their ids are derived, the table of them, and the
//! rules for changing it.

pub mod rules;
mod table;

pub use table::{Membership, MembershipError};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// A member as `/v2/members` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(with = "hex_id")]
    pub id: u64,
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
}

/// etcd's member id: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs, the
/// cluster token and, for a member added at run time, the time it was added.
pub fn member_id(peer_urls: &[String], token: &str, added_unix_secs: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = Sha1::new();
    for url in &urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    if let Some(secs) = added_unix_secs {
        hasher.update(secs.to_string().as_bytes());
    }
    first_u64(&hasher.finalize())
}

/// etcd's cluster id: the first 8 bytes of SHA-1 over the sorted member ids (8 bytes each,
/// big-endian).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(hash: &[u8]) -> u64 {
    u64::from_be_bytes(hash[..8].try_into().expect("SHA-1 is 20 bytes"))
}

/// An id as etcd writes it: lower-case hex without padding.
pub fn format_id(id: u64) -> String {
    format!("{id:x}")
}

pub fn parse_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_id(*id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_id(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("bad member id {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcds() {
        // Read off etcd 3.4 started with --initial-advertise-peer-urls http://127.0.0.1:4380
        // and the default token: member b7bacd4212cc9323 in cluster a7f4832331eecaf3.
        let id = member_id(&["http://127.0.0.1:4380".into()], "etcd-cluster", None);
        assert_eq!(format_id(id), "b7bacd4212cc9323");
        assert_eq!(format_id(cluster_id(&[id])), "a7f4832331eecaf3");
    }

    #[test]
    fn peer_url_order_does_not_matter() {
        let a = member_id(&["http://a:1".into(), "http://b:2".into()], "t", None);
        let b = member_id(&["http://b:2".into(), "http://a:1".into()], "t", None);
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id(&["http://a:1".into(), "http://b:2".into()], "u", None)
        );
        assert_ne!(
            a,
            member_id(&["http://a:1".into(), "http://b:2".into()], "t", Some(5))
        );
    }

    #[test]
    fn members_serialise_like_etcd() {
        let m = Member {
            id: 0xb7ba_cd42_12cc_9323,
            name: "default".into(),
            peer_urls: vec!["http://127.0.0.1:4380".into()],
            client_urls: vec!["http://127.0.0.1:4379".into()],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":"b7bacd4212cc9323","name":"default","peerURLs":["http://127.0.0.1:4380"],"clientURLs":["http://127.0.0.1:4379"]}"#
        );
    }
}
