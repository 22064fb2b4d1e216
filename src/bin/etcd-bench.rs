//! `etcd-bench`: see `etcd::bench`.

use std::io::Write;

use clap::Parser;

fn main() {
    let options = etcd::bench::Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(etcd::bench::run(options.clone())) {
        Ok(report) => {
            // A reader that went away (`| head`) is not an error of the run.
            let mut out = std::io::stdout().lock();
            let _ = if options.json {
                let json = serde_json::to_string(&report).expect("a report serialises");
                writeln!(out, "{json}")
            } else {
                write!(out, "{report}")
            };
            std::process::exit(if report.invalid.is_some() { 1 } else { 0 });
        }
        Err(e) => {
            eprintln!("etcd-bench: {e}");
            std::process::exit(2);
        }
    }
}
