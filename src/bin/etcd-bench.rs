//! `etcd-bench`: see `etcd::bench`.

use clap::Parser;

fn main() {
    let options = etcd::bench::Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(etcd::bench::run(options.clone())) {
        Ok(report) => {
            if options.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serialises")
                );
            } else {
                print!("{report}");
            }
            std::process::exit(if report.invalid.is_some() { 1 } else { 0 });
        }
        Err(e) => {
            eprintln!("etcd-bench: {e}");
            std::process::exit(2);
        }
    }
}
