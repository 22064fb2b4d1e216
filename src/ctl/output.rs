//! What etcdctl prints, as pure functions of a response (so every format is unit-tested
//! without a server). The texts are etcd's etcdctl's, byte for byte.

use crate::client::keys::{Node, Response};
use crate::client::members::Member;
use crate::client::ClientError;

/// Text for standard output and standard error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

impl Printed {
    pub fn out(text: String) -> Printed {
        Printed {
            stdout: text,
            stderr: String::new(),
        }
    }
}

/// etcdctl's `printResponseKey`: the value; Key/indexes/TTL then the value; or the JSON.
pub fn response_key(r: &Response, format: &str) -> Printed {
    let node = r.node();
    let prev = r.prev_node.as_ref();
    match format {
        "simple" => Printed::out(if r.action != "delete" {
            format!("{}\n", node.value)
        } else {
            format!(
                "PrevNode.Value: {}\n",
                prev.map(|p| p.value.as_str()).unwrap_or("")
            )
        }),
        "extended" => {
            let mut s = format!(
                "Key: {}\nCreated-Index: {}\nModified-Index: {}\n",
                node.key, node.created_index, node.modified_index
            );
            if let Some(prev) = prev {
                s.push_str(&format!("PrevNode.Value: {}\n", prev.value));
            }
            s.push_str(&format!("TTL: {}\nIndex: {}\n", node.ttl, r.index));
            if r.action != "delete" {
                s.push_str(&format!("\n{}\n", node.value));
            }
            Printed::out(s)
        }
        "json" => Printed::out(format!("{}\n", crate::json::to_string(r))),
        other => Printed {
            stdout: String::new(),
            stderr: format!("Unsupported output format: {other}\n"),
        },
    }
}

/// etcdctl's `ls`: keys one per line (directories with a trailing `/` under `-p`), or the
/// whole response in the extended and JSON formats.
pub fn ls(r: &Response, format: &str, slash_dirs: bool) -> Printed {
    if format != "simple" {
        return response_key(r, format);
    }
    let node = r.node();
    let mut s = String::new();
    if !node.dir {
        s.push_str(&format!("{}\n", node.key));
    }
    for child in node.nodes.iter().flatten() {
        list_node(child, slash_dirs, &mut s);
    }
    Printed::out(s)
}

fn list_node(n: &Node, slash_dirs: bool, out: &mut String) {
    if n.dir && slash_dirs {
        out.push_str(&format!("{}/\n", n.key));
    } else {
        out.push_str(&format!("{}\n", n.key));
    }
    for child in n.nodes.iter().flatten() {
        list_node(child, slash_dirs, out);
    }
}

/// A watch event as `watch` prints it: under `--recursive`, `[action] key` first.
pub fn watch_event(r: &Response, format: &str, recursive: bool) -> Printed {
    let mut printed = response_key(r, format);
    if recursive {
        printed.stdout = format!("[{}] {}\n{}", r.action, r.node().key, printed.stdout);
    }
    printed
}

/// `member list`: one line per member; unstarted ones show only their peer URLs.
pub fn member_list(members: &[Member], leader_id: &str) -> String {
    let mut s = String::new();
    for m in members {
        if m.name.is_empty() {
            s.push_str(&format!(
                "{}[unstarted]: peerURLs={}\n",
                m.id,
                m.peer_urls.join(",")
            ));
        } else {
            s.push_str(&format!(
                "{}: name={} peerURLs={} clientURLs={} isLeader={}\n",
                m.id,
                m.name,
                m.peer_urls.join(","),
                m.client_urls.join(","),
                m.id == leader_id
            ));
        }
    }
    s
}

/// `member add`: the confirmation, then the variables to start the new member with.
pub fn member_added(name: &str, new_id: &str, members: &[Member]) -> String {
    let mut cluster = Vec::new();
    for m in members {
        let member_name = if m.id == new_id { name } else { &m.name };
        for url in &m.peer_urls {
            cluster.push(format!("{member_name}={url}"));
        }
    }
    format!(
        "Added member named {name} with ID {new_id} to cluster\n\nETCD_NAME={}\n\
         ETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
        go_quote(name),
        go_quote(&cluster.join(","))
    )
}

/// Go's `%q` for the printable text etcdctl quotes.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// etcdctl's `handleError`: `Error:  <error>`, and for a cluster error each endpoint's.
pub fn error(e: &ClientError) -> String {
    let mut s = format!("Error:  {e}\n");
    if let Some(detail) = e.detail() {
        s.push_str(&format!("{detail}\n"));
    }
    s
}

/// Each member's health as `cluster-health` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    NoClientUrls,
    Healthy(String),
    Unhealthy(String),
    /// Every client URL failed; what each said was printed as it happened.
    Unreachable(Vec<String>),
}

/// The verdict line: every member healthy, none, or some.
pub fn cluster_verdict(healthy: usize, members: usize) -> &'static str {
    if healthy == members {
        "cluster is healthy"
    } else if healthy == 0 {
        "cluster is unavailable"
    } else {
        "cluster is degraded"
    }
}

pub fn health_line(id: &str, health: &Health) -> String {
    match health {
        Health::NoClientUrls => {
            format!("member {id} is unreachable: no available published client urls\n")
        }
        Health::Healthy(url) => format!("member {id} is healthy: got healthy result from {url}\n"),
        Health::Unhealthy(url) => {
            format!("member {id} is unhealthy: got unhealthy result from {url}\n")
        }
        Health::Unreachable(urls) => {
            format!(
                "member {id} is unreachable: [{}] are all unreachable\n",
                urls.join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::EtcdError;

    fn response(json: &str, index: u64) -> Response {
        let mut r: Response = serde_json::from_str(json).unwrap();
        r.index = index;
        r
    }

    const SET: &str = r#"{"action":"set","node":{"key":"/foo","value":"baz","modifiedIndex":1,"createdIndex":1}}"#;
    const DELETE: &str = r#"{"action":"delete","node":{"key":"/new","modifiedIndex":7,"createdIndex":3},"prevNode":{"key":"/new","value":"v","modifiedIndex":3,"createdIndex":3}}"#;

    #[test]
    fn the_three_formats_of_a_set() {
        let r = response(SET, 1);
        assert_eq!(response_key(&r, "simple").stdout, "baz\n");
        assert_eq!(
            response_key(&r, "extended").stdout,
            "Key: /foo\nCreated-Index: 1\nModified-Index: 1\nTTL: 0\nIndex: 1\n\nbaz\n"
        );
        assert_eq!(
            response_key(&r, "json").stdout,
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"baz\",\"nodes\":null,\"createdIndex\":1,\"modifiedIndex\":1},\"prevNode\":null}\n"
        );
        assert_eq!(
            response_key(&r, "bogus"),
            Printed {
                stdout: String::new(),
                stderr: "Unsupported output format: bogus\n".into()
            }
        );
    }

    #[test]
    fn a_delete_prints_the_previous_value() {
        let r = response(DELETE, 7);
        assert_eq!(response_key(&r, "simple").stdout, "PrevNode.Value: v\n");
        assert_eq!(
            response_key(&r, "extended").stdout,
            "Key: /new\nCreated-Index: 3\nModified-Index: 7\nPrevNode.Value: v\nTTL: 0\nIndex: 7\n"
        );
    }

    #[test]
    fn ls_lists_keys_and_marks_directories_under_p() {
        let r = response(
            r#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":1,"createdIndex":1},{"key":"/foo","value":"x","modifiedIndex":3,"createdIndex":3}]}}"#,
            3,
        );
        assert_eq!(ls(&r, "simple", false).stdout, "/dir\n/dir/a\n/foo\n");
        assert_eq!(ls(&r, "simple", true).stdout, "/dir/\n/dir/a\n/foo\n");
        let file = response(SET, 1);
        assert_eq!(ls(&file, "simple", false).stdout, "/foo\n");
    }

    #[test]
    fn a_recursive_watch_names_the_action_and_key() {
        let r = response(SET, 1);
        assert_eq!(watch_event(&r, "simple", true).stdout, "[set] /foo\nbaz\n");
        assert_eq!(watch_event(&r, "simple", false).stdout, "baz\n");
    }

    #[test]
    fn members_list_and_add_print_as_etcdctl() {
        let members = vec![
            Member {
                id: "8c90639fe3422efb".into(),
                peer_urls: vec!["http://127.0.0.1:5390".into()],
                ..Member::default()
            },
            Member {
                id: "a100ada638d79265".into(),
                name: "n1".into(),
                peer_urls: vec!["http://127.0.0.1:5380".into()],
                client_urls: vec!["http://127.0.0.1:5379".into()],
            },
        ];
        assert_eq!(
            member_list(&members, "a100ada638d79265"),
            "8c90639fe3422efb[unstarted]: peerURLs=http://127.0.0.1:5390\n\
             a100ada638d79265: name=n1 peerURLs=http://127.0.0.1:5380 clientURLs=http://127.0.0.1:5379 isLeader=true\n"
        );
        assert_eq!(
            member_added("n2", "8c90639fe3422efb", &members),
            "Added member named n2 with ID 8c90639fe3422efb to cluster\n\n\
             ETCD_NAME=\"n2\"\n\
             ETCD_INITIAL_CLUSTER=\"n2=http://127.0.0.1:5390,n1=http://127.0.0.1:5380\"\n\
             ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"
        );
    }

    #[test]
    fn errors_print_as_handle_error() {
        let e = ClientError::Etcd(EtcdError {
            code: 100,
            message: "Key not found".into(),
            cause: "/nope".into(),
            index: 2,
        });
        assert_eq!(error(&e), "Error:  100: Key not found (/nope) [2]\n");
        let e = ClientError::Cluster(vec![
            "dial tcp 127.0.0.1:5999: connect: connection refused".into()
        ]);
        assert_eq!(
            error(&e),
            "Error:  client: etcd cluster is unavailable or misconfigured; error #0: dial tcp \
             127.0.0.1:5999: connect: connection refused\n\n\
             error #0: dial tcp 127.0.0.1:5999: connect: connection refused\n\n"
        );
    }

    #[test]
    fn the_health_verdict() {
        assert_eq!(cluster_verdict(3, 3), "cluster is healthy");
        assert_eq!(cluster_verdict(2, 3), "cluster is degraded");
        assert_eq!(cluster_verdict(0, 3), "cluster is unavailable");
    }
}
