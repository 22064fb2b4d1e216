//! The v2 `etcdctl`: see `etcd::ctl`.

fn main() {
    std::process::exit(etcd::ctl::main(std::env::args().collect()));
}
