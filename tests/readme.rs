//! README.md, run as written: every command block of the walk-through, the etcdctl tour and
//! the local cluster runs top to bottom in a shell against fresh real servers, and each
//! command must succeed and print exactly what the README shows after it (`…` standing for
//! what differs from run to run). The README cannot drift from the server again.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

/// The programs a README command starts with; any other line is output.
const PROGRAMS: &[&str] = &[
    "curl ",
    "etcdctl ",
    "echo ",
    "sleep ",
    "target/release/etcd ",
    "cargo ",
    "honcho ",
];

/// Commands the test does itself (building, and starting the Procfile's cluster).
const DONE_BY_THE_TEST: &[&str] = &["cargo ", "honcho "];

struct Step {
    command: String,
    expected: Vec<String>,
}

/// The `sh` blocks of the README section under `heading`, each as its steps.
fn blocks(heading: &str) -> Vec<Vec<Step>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading:?} in README.md"));
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while lines.by_ref().any(|l| l.trim() == "```sh") {
        let mut steps: Vec<Step> = Vec::new();
        for line in lines.by_ref().take_while(|l| l.trim() != "```") {
            if PROGRAMS.iter().any(|p| line.starts_with(p)) {
                steps.push(Step {
                    command: line.to_owned(),
                    expected: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(line.to_owned());
            } else {
                assert!(line.trim().is_empty(), "output before any command: {line}");
            }
        }
        for step in &mut steps {
            while step.expected.last().is_some_and(|l| l.trim().is_empty()) {
                step.expected.pop();
            }
        }
        blocks.push(steps);
    }
    assert!(!blocks.is_empty(), "no sh block under {heading:?}");
    blocks
}

/// `expected` with each `…` standing for any run of characters.
fn matches(expected: &str, actual: &str) -> bool {
    let mut parts = expected.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Where and how a block runs: the working directory, text to replace in commands and in
/// their output (the README's ports by the test's), and environment variables.
struct Shell {
    dir: PathBuf,
    replace: Vec<(String, String)>,
    env: Vec<(String, String)>,
    background: Vec<Child>,
}

impl Shell {
    fn new(dir: PathBuf) -> Shell {
        let binaries = Path::new(env!("CARGO_BIN_EXE_etcd"))
            .parent()
            .expect("the binaries' directory")
            .to_owned();
        let path = format!(
            "{}:{}",
            binaries.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Shell {
            dir,
            replace: vec![("target/release/".into(), format!("{}/", binaries.display()))],
            env: vec![("PATH".into(), path)],
            background: Vec::new(),
        }
    }

    fn rewrite(&self, text: &str) -> String {
        self.replace
            .iter()
            .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
    }

    fn run(&mut self, steps: &[Step]) {
        for step in steps {
            if DONE_BY_THE_TEST.iter().any(|p| step.command.starts_with(p)) {
                continue;
            }
            let command = self.rewrite(&step.command);
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(&command)
                .current_dir(&self.dir)
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            if command.trim_end().ends_with('&') {
                // A server started in the background: its own process group, stopped at the end.
                sh.process_group(0).stdout(Stdio::null());
                self.background.push(sh.spawn().expect("sh starts"));
                continue;
            }
            let out = sh.output().expect("sh runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{}\nexited {:?}: {stdout}{stderr}",
                step.command,
                out.status
            );
            let actual: Vec<&str> = stdout.trim_end_matches('\n').lines().collect();
            let expected: Vec<String> = step.expected.iter().map(|l| self.rewrite(l)).collect();
            let same = actual.len() == expected.len()
                && expected.iter().zip(&actual).all(|(e, a)| matches(e, a));
            assert!(
                same,
                "{}\nREADME shows:\n{}\nbut it printed:\n{}",
                step.command,
                expected.join("\n"),
                actual.join("\n")
            );
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for child in &mut self.background {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

/// A fresh member on free ports; the README's `127.0.0.1:2379` becomes its client URL.
fn single(name: &str) -> (Vec<Member>, Shell) {
    let mut members = cluster(name, 1);
    members[0].start();
    let port = members[0].client;
    wait_for("the member to take writes", || {
        http("GET", port, "/health", "").is_some_and(|r| r.status == 200)
            && http("GET", port, "/v2/members", "")
                .is_some_and(|r| r.body.contains("clientURLs\":[\"http"))
    });
    let mut shell = Shell::new(scratch(&format!("{name}-shell")));
    let url = format!("127.0.0.1:{port}");
    shell.replace.push(("127.0.0.1:2379".into(), url.clone()));
    shell
        .env
        .push(("ETCDCTL_ENDPOINT".into(), format!("http://{url}")));
    (members, shell)
}

#[test]
fn the_walkthrough_prints_what_the_readme_shows() {
    let (_members, mut shell) = single("readme-walkthrough");
    for block in blocks("The classic walk-through") {
        shell.run(&block);
    }
}

#[test]
fn the_etcdctl_tour_prints_what_the_readme_shows() {
    let (_members, mut shell) = single("readme-etcdctl");
    for block in blocks("`etcdctl`") {
        shell.run(&block);
    }
}

#[test]
fn the_local_cluster_and_membership_blocks_run_as_written() {
    // The Procfile's cluster, on its own ports, started from its own lines.
    let dir = scratch("readme-cluster");
    let mut shell = Shell::new(dir.clone());
    let procfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Procfile")).unwrap();
    for line in procfile.lines().filter(|l| l.starts_with("etcd")) {
        let (_, command) = line.split_once(": ").expect("name: command");
        let command = format!("{} 2> /dev/null &", shell.rewrite(command));
        shell.run(&[Step {
            command,
            expected: Vec::new(),
        }]);
    }
    // Running, as a reader following along would have it: healthy, every member published.
    for port in [12379, 22379, 32379] {
        wait_for("the Procfile cluster", || {
            http("GET", port, "/health", "").is_some_and(|r| r.status == 200)
                && http("GET", port, "/v2/members", "")
                    .is_some_and(|r| r.body.matches("clientURLs\":[\"http").count() == 3)
        });
    }
    for block in blocks("A local cluster") {
        shell.run(&block);
    }
    for block in blocks("Membership and `--strict-reconfig-check`") {
        shell.run(&block);
    }
}

#[test]
fn the_wildcard_stands_for_any_text() {
    assert!(matches("a…c", "abbbc"));
    assert!(matches("…", "anything"));
    assert!(matches("{\"id\":\"…\",\"x\":1}", "{\"id\":\"7f\",\"x\":1}"));
    assert!(!matches("a…c", "abd"));
    assert!(matches("exact", "exact"));
    assert!(!matches("exact", "exactly"));
    assert!(matches("a…b…c", "a1b2c"));
}
