//! `etcdctl`, the v2 command-line client: etcd 2.x's commands, flags, output formats, error
//! texts and exit statuses (0 success, 1 bad arguments, 2 bad connection, 3 bad auth, 4 server
//! error, 5 cluster not healthy), on [`crate::client`].
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod args;
mod commands;
pub mod output;

use std::io::Write;

pub use args::{parse_go_duration, Cli};

pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_BAD_ARGS: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_BAD_AUTH: i32 = 3;
pub const EXIT_SERVER_ERROR: i32 = 4;
pub const EXIT_CLUSTER_NOT_HEALTHY: i32 = 5;

/// How a command ends when it does not succeed: what to print on stderr, and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub stderr: String,
}

impl Exit {
    pub fn new(code: i32, stderr: impl Into<String>) -> Exit {
        Exit {
            code,
            stderr: stderr.into(),
        }
    }
}

/// Prints to stdout at once (watch output must not wait in a buffer).
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub(crate) fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Runs etcdctl with these arguments (the program name first); returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match args::parse(args) {
        Ok(cli) => cli,
        Err(exit) => {
            print_err(&exit.stderr);
            return exit.code;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            print_err(&format!("etcdctl: cannot start: {e}\n"));
            return EXIT_BAD_ARGS;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => EXIT_SUCCESS,
        Err(exit) => {
            print_err(&exit.stderr);
            exit.code
        }
    }
}
