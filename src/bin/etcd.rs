//! `etcd`: etcd 2.x's server, with its flags and `ETCD_*` variables.

use etcd::config::Config;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let args = match etcd::config::prepare(&args, std::env::vars()) {
        Ok(prepared) => {
            for warning in prepared.warnings {
                eprintln!("etcd: {warning}");
            }
            // An empty variable means the flag's default, as in etcd. Nothing else runs yet.
            for key in prepared.cleared {
                std::env::remove_var(key);
            }
            prepared.args
        }
        Err(e) => {
            eprintln!("etcd: {e}");
            std::process::exit(1);
        }
    };
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
            // Go's flag package: one line saying what was wrong, and status 2 (1 for a stray
            // word, which etcd itself refuses after parsing).
            let (line, status) = go_flag_error(&e);
            eprintln!("{line}");
            std::process::exit(status);
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

/// A command-line error in the words of Go's flag package, which etcd prints.
fn go_flag_error(e: &clap::Error) -> (String, i32) {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // clap names a flag `--snapshot-count <SNAPSHOT_COUNT>`; Go says `-snapshot-count`.
    let flag = context(ContextKind::InvalidArg);
    let flag = flag.split_whitespace().next().unwrap_or("");
    let flag = format!("-{}", flag.trim_start_matches('-'));
    let given = context(ContextKind::InvalidArg);
    if e.kind() == ErrorKind::UnknownArgument && !given.starts_with('-') {
        // A word that is no flag at all (`--strict-reconfig-check false`): etcd's own words.
        return (
            format!("error verifying flags, '{given}' is not a valid flag"),
            1,
        );
    }
    let line = match e.kind() {
        ErrorKind::UnknownArgument => format!("flag provided but not defined: {flag}"),
        ErrorKind::InvalidValue if context(ContextKind::InvalidValue).is_empty() => {
            format!("flag needs an argument: {flag}")
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => format!(
            "invalid value {:?} for flag {flag}: parse error",
            context(ContextKind::InvalidValue)
        ),
        ErrorKind::NoEquals | ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            format!("flag needs an argument: {flag}")
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or("bad arguments")
            .trim_start_matches("error: ")
            .to_owned(),
    };
    (line, 2)
}
