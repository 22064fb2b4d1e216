//! Keys as etcd normalises them: rooted, no empty, `.` or `..` segments, no trailing slash.

/// etcd's `path.Clean(path.Join("/", key))`: `a//b/` → `/a/b`, `/a/../b` → `/b`, `` → `/`.
pub fn clean(key: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in key.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut out = String::with_capacity(key.len() + 1);
    for name in &kept {
        out.push('/');
        out.push_str(name);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The names along a clean key; none for the root.
pub fn segments(clean_key: &str) -> impl Iterator<Item = &str> {
    clean_key.split('/').filter(|s| !s.is_empty())
}

/// A clean key's parent and last name: `/a/b` → (`/a`, `b`), `/a` → (`/`, `a`).
pub fn split(clean_key: &str) -> (&str, &str) {
    match clean_key.rfind('/') {
        Some(0) => ("/", &clean_key[1..]),
        Some(i) => (&clean_key[..i], &clean_key[i + 1..]),
        None => ("/", clean_key),
    }
}

pub fn join(parent: &str, name: &str) -> String {
    let mut out = String::with_capacity(parent.len() + name.len() + 1);
    if parent != "/" {
        out.push_str(parent);
    }
    out.push('/');
    out.push_str(name);
    out
}

/// Every ancestor of a clean key from the root down, then the key itself.
pub fn prefixes(clean_key: &str) -> impl Iterator<Item = &str> {
    let root = std::iter::once("/");
    let inner = clean_key
        .match_indices('/')
        .skip(1)
        .map(move |(i, _)| &clean_key[..i]);
    let whole = (clean_key != "/").then_some(clean_key);
    root.chain(inner).chain(whole)
}

/// `key` is `dir` or lies below it (segment-wise: `/foobar` is not below `/foo`).
pub fn is_within(key: &str, dir: &str) -> bool {
    if dir == "/" {
        return true;
    }
    key.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('_')
}

/// Whether `key`, seen from a watcher at its ancestor `watched`, passes through a hidden name
/// (etcd's `isHidden`): such events are not announced to watchers above the hidden part.
pub fn is_hidden_below(watched: &str, key: &str) -> bool {
    key.get(watched.len()..)
        .is_some_and(|below| segments(below).any(is_hidden_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised_as_etcd_does() {
        assert_eq!(clean("/a//b/"), "/a/b");
        assert_eq!(clean("a/b"), "/a/b");
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("//"), "/");
        assert_eq!(clean("/a/./b/../c"), "/a/c");
        assert_eq!(clean("/../../x"), "/x");
        assert_eq!(clean(".."), "/");
    }

    #[test]
    fn split_and_join_are_inverse() {
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(split("/a/b/c"), ("/a/b", "c"));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a/b", "c"), "/a/b/c");
    }

    #[test]
    fn prefixes_walk_from_the_root() {
        assert_eq!(
            prefixes("/a/b/c").collect::<Vec<_>>(),
            ["/", "/a", "/a/b", "/a/b/c"]
        );
        assert_eq!(prefixes("/").collect::<Vec<_>>(), ["/"]);
    }

    #[test]
    fn within_is_segment_wise() {
        assert!(is_within("/foo/bar", "/foo"));
        assert!(is_within("/foo", "/foo"));
        assert!(!is_within("/foobar", "/foo"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn hidden_below_looks_only_under_the_watched_path() {
        assert!(is_hidden_below("/", "/_a"));
        assert!(is_hidden_below("/", "/a/_b/c"));
        assert!(!is_hidden_below("/_a", "/_a/b"));
        assert!(!is_hidden_below("/a/b", "/a"));
    }
}
