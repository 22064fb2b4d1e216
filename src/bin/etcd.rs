//! `etcd`: etcd 2.x's server, with its flags and `ETCD_*` variables.

use etcd::config::Config;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config = match Config::from_args(args.clone()) {
        Ok(Ok(config)) => config,
        Ok(Err(e)) => {
            eprintln!("etcd: {e}");
            std::process::exit(1);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            return;
        }
        Err(e) => {
            eprint!("{e}");
            std::process::exit(2);
        }
    };
    if etcd::config::go_style_args(args)
        .iter()
        .any(|a| a == "--version")
    {
        println!("etcd Version: {}", etcd::SERVER_VERSION);
        println!(
            "Git SHA: {}",
            option_env!("GIT_SHA").unwrap_or("Not provided")
        );
        println!("Rust Version: rustc");
        return;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("etcd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(etcd::server::run(config)) {
        eprintln!("etcd: {e}");
        std::process::exit(1);
    }
}
