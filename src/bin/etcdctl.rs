//! The v2 `etcdctl`. Not yet: it lands with its own issue, once the server speaks HTTP.

fn main() {
    eprintln!("etcdctl: not implemented yet (see README.md, \"What works today\")");
    std::process::exit(1);
}
