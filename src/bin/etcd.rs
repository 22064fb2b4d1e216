//! The `etcd` server. Not yet: the store it will serve is in place; the replicated node and the
//! HTTP API land with the next issues.

fn main() {
    eprintln!(
        "etcd {}: the server is not implemented yet; this build contains the v2 store only \
         (see README.md, \"What works today\")",
        etcd::SERVER_VERSION
    );
    std::process::exit(1);
}
