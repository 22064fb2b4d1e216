//! etcd 2.x's v2 auth (issue 16), built up in steps. This first step is the pure rule that
//! decides whether a user's roles may read or write a key; users, roles, the `/v2/auth` API and
//! its place in the replicated state come next. The facts come from etcd's own source and from
//! etcd 3.4 run side by side (`v2auth`, `hasKeyPrefixAccess`).

pub mod permissions;
