//! Whether a role may read or write a key, as etcd's v2 auth decides it.
//!
//! The key is the raw path after `/v2/keys`, as the client sent it: `/v2/keys` is `""`,
//! `/v2/keys/` is `"/"`, `/v2/keys/foo/` is `"/foo/"`. A pattern ending in `*` matches every key
//! that starts with what comes before the `*`; any other pattern matches only itself. So
//! `/foo*` covers `/foo` and `/foobar`, `/foo/*` covers `/foo/` and `/foo/bar` but not `/foo`,
//! and `/*` covers everything but `""`. A recursive request (`recursive=true`) by a user is
//! allowed only by `*` patterns whose prefix the key starts with; the guest role is never held
//! to that. The role named `root` may do anything. An empty pattern, which crashes etcd's
//! matcher, matches nothing here.

use serde::{Deserialize, Serialize};

/// The name of the role that may do anything, and the role unauthenticated requests get.
pub const ROOT_ROLE: &str = "root";
pub const GUEST_ROLE: &str = "guest";

/// What a role may touch in the keyspace, as etcd's JSON has it: `{"read":[…],"write":[…]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPermissions {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
}

/// A role: its name and its key permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub kv: KeyPermissions,
}

/// What a request asks of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET and HEAD (watches included).
    Read,
    /// Every other method.
    Write,
}

impl Role {
    fn patterns(&self, access: Access) -> &[String] {
        match access {
            Access::Read => &self.kv.read,
            Access::Write => &self.kv.write,
        }
    }

    /// etcd's `HasKeyAccess`: a pattern matches the key.
    pub fn may(&self, key: &str, access: Access) -> bool {
        self.name == ROOT_ROLE
            || self
                .patterns(access)
                .iter()
                .any(|pattern| simple_match(pattern, key))
    }

    /// etcd's `HasRecursiveAccess`: a `*` pattern covers the key and all below it.
    pub fn may_recursively(&self, key: &str, access: Access) -> bool {
        self.name == ROOT_ROLE
            || self
                .patterns(access)
                .iter()
                .any(|pattern| prefix_match(pattern, key))
    }
}

/// Whether a user with `roles` may do `access` to `key`; any one role suffices.
pub fn user_may(roles: &[Role], key: &str, access: Access, recursive: bool) -> bool {
    roles.iter().any(|role| {
        if recursive {
            role.may_recursively(key, access)
        } else {
            role.may(key, access)
        }
    })
}

/// Whether an unauthenticated request may: the guest role, never held to the recursive rule.
pub fn guest_may(guest: &Role, key: &str, access: Access) -> bool {
    guest.may(key, access)
}

fn simple_match(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => !pattern.is_empty() && key == pattern,
    }
}

fn prefix_match(pattern: &str, key: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| key.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn role(name: &str, read: &[&str]) -> Role {
        Role {
            name: name.into(),
            kv: KeyPermissions {
                read: read.iter().map(|s| s.to_string()).collect(),
                write: Vec::new(),
            },
        }
    }

    /// Each row as etcd 3.4 answered it: pattern, key, plain read allowed, recursive allowed.
    #[test]
    fn patterns_match_as_etcd_3_4_answered() {
        let rows: &[(&str, &str, bool, bool)] = &[
            ("/foo", "/foo", true, false),
            ("/foo", "/foo/", false, false),
            ("/foo", "/foo/bar", false, false),
            ("/foo*", "/foo", true, true),
            ("/foo*", "/foo/", true, true),
            ("/foo*", "/foo/bar", true, true),
            ("/foo*", "/foobar", true, true),
            ("/foo/*", "/foo/", true, true),
            ("/foo/*", "/foo/bar", true, true),
            ("/foo/*", "/foo", false, false),
            ("*", "", true, true),
            ("*", "/anything", true, true),
            ("/*", "", false, false),
            ("/*", "/", true, true),
            ("/*", "/a/b", true, true),
            ("/", "/", true, false),
            ("/", "", false, false),
            ("", "", false, false),
            ("", "/", false, false),
        ];
        for &(pattern, key, plain, recursive) in rows {
            let user = [role("reader", &[pattern])];
            assert_eq!(
                user_may(&user, key, Access::Read, false),
                plain,
                "{pattern} {key}"
            );
            assert_eq!(
                user_may(&user, key, Access::Read, true),
                recursive,
                "{pattern} {key} recursive"
            );
            // Read permission says nothing of writing.
            assert!(!user_may(&user, key, Access::Write, false));
        }
    }

    #[test]
    fn root_may_do_anything_and_guest_is_not_held_to_the_recursive_rule() {
        let root = [role(ROOT_ROLE, &[])];
        assert!(user_may(&root, "", Access::Write, true));
        let guest = role(GUEST_ROLE, &["/foo"]);
        assert!(guest_may(&guest, "/foo", Access::Read));
        assert!(!user_may(
            std::slice::from_ref(&guest),
            "/foo",
            Access::Read,
            true
        ));
        // Any one role suffices.
        let roles = [role("a", &["/x"]), role("b", &["/y*"])];
        assert!(user_may(&roles, "/y/z", Access::Read, true));
        assert!(!user_may(&roles, "/z", Access::Read, false));
    }

    /// The reference: a pattern names a set of keys (one key, or every key with a prefix).
    fn model_covers(pattern: &str, key: &str, recursive: bool) -> bool {
        let (prefix, starred) = match pattern.char_indices().last() {
            Some((at, '*')) => (&pattern[..at], true),
            _ => (pattern, false),
        };
        if starred {
            key.len() >= prefix.len() && &key[..prefix.len()] == prefix
        } else {
            !recursive && !pattern.is_empty() && key == pattern
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_reference(
            pattern in "[/ab*]{0,4}",
            key in "[/ab]{0,4}",
            recursive in any::<bool>(),
        ) {
            let user = [role("r", &[pattern.as_str()])];
            prop_assert_eq!(
                user_may(&user, &key, Access::Read, recursive),
                model_covers(&pattern, &key, recursive)
            );
            // Whatever a user may do recursively, it may do plainly.
            if user_may(&user, &key, Access::Read, true) {
                prop_assert!(user_may(&user, &key, Access::Read, false));
            }
        }
    }
}
