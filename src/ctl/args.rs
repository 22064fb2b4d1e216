//! etcdctl's command line: global options before the command, the command's options, its
//! arguments. Go's flag spelling (`-flag`) is accepted as well as `--flag`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::{Exit, EXIT_BAD_ARGS, EXIT_BAD_AUTH, EXIT_SUCCESS};

pub const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:2379,http://127.0.0.1:4001";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd.",
    disable_version_flag = true,
    args_override_self = true,
    after_help = "Exit statuses: 0 success, 1 bad arguments, 2 bad connection, 3 bad auth, \
                  4 server error, 5 cluster not healthy."
)]
pub struct Cli {
    /// Output cURL commands which can be used to reproduce the request
    #[arg(long)]
    pub debug: bool,
    /// Don't synchronize cluster information before sending request
    #[arg(long)]
    pub no_sync: bool,
    /// Output response in the given format (simple, extended or json)
    #[arg(short = 'o', long, default_value = "simple")]
    pub output: String,
    /// Domain name to query for SRV records describing cluster endpoints (not supported)
    #[arg(short = 'D', long, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// Accept insecure SRV records describing cluster endpoints
    #[arg(long)]
    pub insecure_discovery: bool,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(short = 'C', long)]
    pub peers: Option<String>,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A comma-delimited list of machine addresses in the cluster
    /// [default: http://127.0.0.1:2379,http://127.0.0.1:4001]
    #[arg(long)]
    pub endpoints: Option<String>,
    /// Identify HTTPS client using this SSL certificate file
    #[arg(long, env = "ETCDCTL_CERT_FILE")]
    pub cert_file: Option<String>,
    /// Identify HTTPS client using this SSL key file
    #[arg(long, env = "ETCDCTL_KEY_FILE")]
    pub key_file: Option<String>,
    /// Verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, env = "ETCDCTL_CA_FILE")]
    pub ca_file: Option<String>,
    /// Skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes)
    #[arg(
        long,
        default_value = "false",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_skip_tls_verify: bool,
    /// Provide username[:password] and prompt if password is not supplied
    #[arg(short = 'u', long, env = "ETCDCTL_USERNAME")]
    pub username: Option<String>,
    /// Connection timeout per request
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    pub timeout: Duration,
    /// Timeout for the command execution (except watch)
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub total_timeout: Duration,
    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command's arguments, taken as given (extra ones are ignored, as etcdctl ignores them).
/// As with Go's flag package, flags come first: a `-x` before the first argument is a flag
/// (an unknown one is a usage error, never a key), and everything from the first argument on
/// is an argument, dashes or not (`set /k -5` sets `-5`).
#[derive(Args, Debug, Clone, Default)]
pub struct Rest {
    #[arg(trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Backup an etcd directory (not supported by this etcdctl)
    Backup(Rest),
    /// Check the health of the etcd cluster
    ClusterHealth {
        /// Forever check the health every 10 second until CTRL+C
        #[arg(long)]
        forever: bool,
    },
    /// Make a new key with a given value
    Mk {
        /// Create in-order key under directory DIR
        #[arg(long)]
        in_order: bool,
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Make a new directory
    Mkdir {
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Remove a key or a directory
    Rm {
        /// Removes the key if it is an empty directory or a key-value pair
        #[arg(long)]
        dir: bool,
        /// Removes the key and all child keys (if it is a directory)
        #[arg(long)]
        recursive: bool,
        /// Previous value
        #[arg(long, default_value = "")]
        with_value: String,
        /// Previous index
        #[arg(long, default_value_t = 0)]
        with_index: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Removes the key if it is an empty directory or a key-value pair
    Rmdir(Rest),
    /// Retrieve the value of a key
    Get {
        /// Returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// Require quorum for get request
        #[arg(long)]
        quorum: bool,
        #[command(flatten)]
        rest: Rest,
    },
    /// Retrieve a directory
    Ls {
        /// Returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// Returns all key names recursively for the given path
        #[arg(long)]
        recursive: bool,
        /// Append slash (/) to directories
        #[arg(short = 'p')]
        p: bool,
        /// Require quorum for get request
        #[arg(long)]
        quorum: bool,
        #[command(flatten)]
        rest: Rest,
    },
    /// Set the value of a key
    Set {
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        /// Previous value
        #[arg(long, default_value = "")]
        swap_with_value: String,
        /// Previous index
        #[arg(long, default_value_t = 0)]
        swap_with_index: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Create a new directory or update an existing directory TTL
    Setdir {
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Update an existing key with a given value
    Update {
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Update an existing directory
    Updatedir {
        /// Key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[command(flatten)]
        rest: Rest,
    },
    /// Watch a key for changes
    Watch {
        /// Forever watch a key until CTRL+C
        #[arg(long)]
        forever: bool,
        /// Watch after the given index
        #[arg(long, default_value_t = 0)]
        after_index: u64,
        /// Returns all values for key and child keys
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        rest: Rest,
    },
    /// Watch a key for changes and exec an executable
    ExecWatch {
        /// Watch after the given index
        #[arg(long, default_value_t = 0)]
        after_index: u64,
        /// Watch all values for key and child keys
        #[arg(long)]
        recursive: bool,
        /// KEY -- COMMAND [ARGS...], or COMMAND [ARGS...] KEY
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Member add, remove and list subcommands
    #[command(subcommand)]
    Member(MemberCommand),
    /// User add, grant and revoke subcommands (not supported by this server)
    User(Rest),
    /// Role add, grant and revoke subcommands (not supported by this server)
    Role(Rest),
    /// Overall auth controls (not supported by this server)
    Auth(Rest),
}

#[derive(Subcommand, Debug, Clone)]
pub enum MemberCommand {
    /// Enumerate existing cluster members
    List(Rest),
    /// Add a new member to the etcd cluster: NAME PEER_URL
    Add(Rest),
    /// Remove an existing member from the etcd cluster: ID
    Remove(Rest),
    /// Update an existing member in the etcd cluster: ID PEER_URLS
    Update(Rest),
}

impl Cli {
    /// etcdctl's order: `--endpoints`, `ETCDCTL_ENDPOINTS`, `--endpoint`, `ETCDCTL_ENDPOINT`,
    /// `--peers`/`-C`, `ETCDCTL_PEERS`, then the default.
    pub fn endpoint_list(&self) -> Vec<String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let chosen = self
            .endpoints
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| env("ETCDCTL_ENDPOINTS"))
            .or_else(|| self.endpoint.clone().filter(|v| !v.is_empty()))
            .or_else(|| env("ETCDCTL_ENDPOINT"))
            .or_else(|| self.peers.clone().filter(|v| !v.is_empty()))
            .or_else(|| env("ETCDCTL_PEERS"))
            .unwrap_or_else(|| DEFAULT_ENDPOINTS.to_string());
        chosen
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Go's `time.ParseDuration` for the forms etcdctl users write: `2s`, `500ms`, `1m30s`, `1h`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (write it as Go does: 2s, 500ms, 1m30s)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// The command line as etcdctl's (urfave/cli) reads it, rewritten for clap:
/// - Go's flag package takes `-name` for `--name`;
/// - a flag the command defines may come after its arguments (`set /k v --ttl 5`, as etcd's
///   documentation writes it): it is moved in front, with its value;
/// - anything else after the first argument is an argument, dashes or not (`set /k -5`), and a
///   `--` among them is dropped (`set /k -- -x` sets `-x`);
/// - exec-watch's own command, after its `--`, is left alone.
fn go_style(args: Vec<String>) -> Vec<String> {
    use clap::CommandFactory;
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    if let Some(program) = rest.next() {
        out.push(program);
    }
    // Global flags, up to the command (and `member`'s subcommand).
    let mut command = Cli::command();
    let mut tokens: Vec<String> = rest.collect();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.starts_with('-') && token != "-" && token != "--" {
            let (flag, takes_value, _) = command_flag(&command, token);
            out.push(flag);
            if takes_value && !token.contains('=') {
                if let Some(value) = tokens.get(i + 1) {
                    out.push(value.clone());
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        match command.find_subcommand(token).cloned() {
            Some(sub) => {
                out.push(token.clone());
                command = sub;
                i += 1;
                if command.has_subcommands() {
                    continue;
                }
                break;
            }
            None => break,
        }
    }
    let own = tokens.split_off(i.min(tokens.len()));
    if command.get_name() == "exec-watch" {
        let separator = own.iter().position(|t| t == "--").unwrap_or(own.len());
        let (flags, command_line) = own.split_at(separator);
        out.extend(flags.iter().map(|t| command_flag(&command, t).0));
        out.extend(command_line.iter().cloned());
        return out;
    }
    out.extend(reorder(&command, own));
    out
}

/// A command's own tokens with its flags (and their values) in front of its arguments.
fn reorder(command: &clap::Command, tokens: Vec<String>) -> Vec<String> {
    let mut flags = Vec::new();
    let mut arguments: Vec<String> = Vec::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if token == "--" {
            // Everything after it is an argument; before any argument clap takes `--` itself.
            if arguments.is_empty() {
                arguments.push(token);
            }
            arguments.extend(tokens.by_ref());
            break;
        }
        let (flag, takes_value, defined) = command_flag(command, &token);
        let is_flag = token.starts_with('-') && token.len() > 1;
        if is_flag && (defined || arguments.is_empty()) {
            flags.push(flag);
            if takes_value && !token.contains('=') {
                if let Some(value) = tokens.next_if(|v| !v.starts_with('-') || v.len() == 1) {
                    flags.push(value);
                }
            }
        } else {
            arguments.push(token);
        }
    }
    if arguments.first().is_some_and(|a| a != "--") && arguments.iter().any(|a| a.starts_with('-'))
    {
        // clap would read a dash argument as a flag: `--` says the rest are arguments.
        arguments.insert(0, "--".into());
    }
    flags.extend(arguments);
    flags
}

/// `token` rewritten for clap (`-name` as `--name`), whether it takes a value, and whether
/// the command defines it.
fn command_flag(command: &clap::Command, token: &str) -> (String, bool, bool) {
    let Some(stripped) = token.strip_prefix('-') else {
        return (token.to_owned(), false, false);
    };
    let long = stripped.strip_prefix('-').unwrap_or(stripped);
    let name = long.split_once('=').map_or(long, |(n, _)| n);
    let by_long = command.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    });
    if let Some(arg) = by_long {
        // A Go boolean (`--insecure-skip-tls-verify`) takes a value only as `=value`.
        let takes_value = arg.get_action().takes_values() && !arg.is_require_equals_set();
        return (format!("--{long}"), takes_value, true);
    }
    let by_short = (!token.starts_with("--") && name.chars().count() == 1)
        .then(|| name.chars().next())
        .flatten()
        .and_then(|c| command.get_arguments().find(|a| a.get_short() == Some(c)));
    if let Some(arg) = by_short {
        return (token.to_owned(), arg.get_action().takes_values(), true);
    }
    // Unknown: spelled long, so that clap's complaint names it.
    let spelled = if token.starts_with("--") || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        token.to_owned()
    } else {
        format!("-{token}")
    };
    (spelled, false, false)
}

pub fn parse(args: Vec<String>) -> Result<Cli, Exit> {
    use clap::error::ErrorKind;
    let cli = match Cli::try_parse_from(go_style(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_SUCCESS,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_SUCCESS,
                ErrorKind::InvalidSubcommand => {
                    // etcdctl's answer to an unknown command.
                    let name = e
                        .get(clap::error::ContextKind::InvalidSubcommand)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    return Err(Exit::new(
                        EXIT_BAD_AUTH,
                        format!("No help topic for '{name}'\n"),
                    ));
                }
                ErrorKind::UnknownArgument => {
                    // etcdctl's (urfave/cli's) words.
                    let flag = e
                        .get(clap::error::ContextKind::InvalidArg)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let flag = flag.split_whitespace().next().unwrap_or("");
                    return Err(Exit::new(
                        EXIT_BAD_ARGS,
                        format!(
                            "Incorrect Usage: flag provided but not defined: -{}\n",
                            flag.trim_start_matches('-')
                        ),
                    ));
                }
                _ => EXIT_BAD_ARGS,
            };
            let text = e.render().to_string();
            if code == EXIT_SUCCESS {
                super::print_out(&text);
            }
            return Err(Exit::new(
                code,
                if code == EXIT_SUCCESS {
                    String::new()
                } else {
                    text
                },
            ));
        }
    };
    if cli.version {
        super::print_out(&format!(
            "etcdctl version: {}\nAPI version: 2\n",
            crate::SERVER_VERSION
        ));
        return Err(Exit::new(EXIT_SUCCESS, ""));
    }
    if cli.command.is_none() {
        use clap::CommandFactory;
        super::print_out(&Cli::command().render_help().to_string());
        return Err(Exit::new(EXIT_SUCCESS, ""));
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_go_duration("1").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("s").is_err());
    }

    #[test]
    fn global_options_then_the_command_and_its_own() {
        let cli = parse(args("etcdctl -C http://a:1 -o json set --ttl 5 /foo bar")).unwrap();
        assert_eq!(cli.output, "json");
        assert_eq!(cli.endpoint_list(), vec!["http://a:1".to_string()]);
        match cli.command.unwrap() {
            Command::Set { ttl, rest, .. } => {
                assert_eq!(ttl, 5);
                assert_eq!(rest.args, vec!["/foo", "bar"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn single_dash_long_flags_as_go_writes_them() {
        let cli = parse(args(
            "etcdctl -endpoints http://a:1,http://b:2 -no-sync ls -recursive",
        ))
        .unwrap();
        assert!(cli.no_sync);
        assert_eq!(cli.endpoint_list().len(), 2);
        assert!(matches!(
            cli.command,
            Some(Command::Ls {
                recursive: true,
                ..
            })
        ));
    }

    #[test]
    fn exec_watch_keeps_the_command_after_the_separator() {
        let cli = parse(args("etcdctl exec-watch --recursive /foo -- sh -c -x")).unwrap();
        match cli.command.unwrap() {
            Command::ExecWatch {
                recursive, args, ..
            } => {
                assert!(recursive);
                assert_eq!(args, vec!["/foo", "--", "sh", "-c", "-x"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_command_and_bad_flags() {
        let e = parse(args("etcdctl frobnicate")).unwrap_err();
        assert_eq!(e, Exit::new(3, "No help topic for 'frobnicate'\n"));
        let e = parse(args("etcdctl --total-timeout 1 get /a")).unwrap_err();
        assert_eq!(e.code, 1);
    }
}
