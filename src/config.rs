//! etcd 2.x's command line: the same flags, spelled `-flag value`, `--flag value` or
//! `--flag=value`, and the same `ETCD_*` environment variables (a flag beats its variable).
//! Parsing is clap's; this module adds Go's single-dash spelling and checks the result the way
//! etcd does, so a bad configuration is one clear line, never a panic.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::membership;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "etcd",
    about = "A distributed, consistent key-value store for shared configuration and service discovery.",
    disable_version_flag = true,
    // Go's flag package: a flag given twice keeps its last value.
    args_override_self = true
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ${name}.etcd).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<String>,
    /// Path to the dedicated WAL directory (default: inside the data directory).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<String>,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380,http://localhost:7001"
    )]
    pub listen_peer_urls: String,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379,http://localhost:4001"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379,http://localhost:4001"
    )]
    pub advertise_client_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380,http://localhost:7001"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (default: ${name}=${initial-advertise-peer-urls}).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(
        long,
        env = "ETCD_STRICT_RECONFIG_CHECK",
        default_value = "true",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub strict_reconfig_check: bool,
    /// Disables fsync: unsafe, loses acknowledged writes on a power cut (etcd 3.5's flag, for
    /// throwaway clusters; the simulator uses it to prove that its checks catch the loss).
    #[arg(
        long,
        env = "ETCD_UNSAFE_NO_FSYNC",
        default_value = "false",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub unsafe_no_fsync: bool,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", default_value_t = 5)]
    pub max_snapshots: usize,
    /// Maximum number of wal files to retain (0 is unlimited).
    #[arg(long, env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: usize,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Comma-separated whitelist of origins for CORS, or cross-origin resource sharing,
    /// (empty or * means allow all).
    #[arg(long, env = "ETCD_CORS", default_value = "*")]
    pub cors: String,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<String>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<String>,
    /// Enable client cert authentication.
    #[arg(
        long,
        env = "ETCD_CLIENT_CERT_AUTH",
        default_value = "false",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub client_cert_auth: bool,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<String>,
    /// DEPRECATED: Path to the client server TLS CA file (implies --client-cert-auth).
    #[arg(long, env = "ETCD_CA_FILE")]
    pub ca_file: Option<String>,
    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<String>,
    /// Client TLS using generated certificates.
    #[arg(
        long,
        env = "ETCD_AUTO_TLS",
        default_value = "false",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<String>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<String>,
    /// Enable peer client cert authentication.
    #[arg(
        long,
        env = "ETCD_PEER_CLIENT_CERT_AUTH",
        default_value = "false",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<String>,
    /// DEPRECATED: Path to the peer server TLS CA file (implies --peer-client-cert-auth).
    #[arg(long, env = "ETCD_PEER_CA_FILE")]
    pub peer_ca_file: Option<String>,
    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<String>,
    /// Peer TLS using generated certificates.
    #[arg(
        long,
        env = "ETCD_PEER_AUTO_TLS",
        default_value = "false",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub peer_auto_tls: bool,
    /// Print the version and exit.
    #[arg(long, action = ArgAction::SetTrue)]
    pub version: bool,
}

/// The body limit etcd's v2 API really has: Go's 10 MiB form limit (etcd 3.x's own
/// `--max-request-bytes`, 1.5 MiB by default, applies only to its v3 API).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 << 20;
/// The largest `--max-request-bytes` taken: one request becomes one log entry, and an entry
/// must fit in a log record and a peer message.
pub const MAX_MAX_REQUEST_BYTES: usize = 64 << 20;

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {text:?}")),
    }
}

/// Go's flag package takes `-name` as well as `--name`; clap wants the second.
pub fn go_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let single_dash_long = i > 0
                && arg.starts_with('-')
                && !arg.starts_with("--")
                && arg.len() > 2
                && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic());
            if single_dash_long {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

/// A URL to listen on or advertise: `scheme://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, ConfigError> {
        let bad = |why: &str| ConfigError(format!("invalid URL {text:?}: {why}"));
        let uri: hyper::Uri = text.parse().map_err(|e| bad(&format!("{e}")))?;
        let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme"))?.to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a URL here cannot have a path"));
        }
        Ok(Url {
            scheme,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// `host:port`, as a socket address string.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.address())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub id: u64,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub snapshot_count: u64,
    pub heartbeat: Duration,
    pub election: Duration,
    pub listen_peer_urls: Vec<Url>,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub new_cluster: bool,
    /// Why the bootstrap flags cannot bootstrap this member, if they cannot: an error only
    /// when the data dir holds no member yet.
    pub bootstrap_conflict: Option<String>,
    pub token: String,
    pub strict_reconfig_check: bool,
    pub unsafe_no_fsync: bool,
    /// Bytes per WAL segment file; not a flag (tests shrink it to cut segments often).
    pub wal_segment_bytes: u64,
    pub max_snapshots: usize,
    pub max_wals: usize,
    /// The largest client request body accepted.
    pub max_request_bytes: usize,
    pub cors: Cors,
    /// TLS for the client listeners (`--cert-file` and friends).
    pub client_tls: TlsSettings,
    /// TLS for the peer listeners and for dialling peers (`--peer-cert-file` and friends).
    pub peer_tls: TlsSettings,
    /// This member's id.
    pub id: u64,
    pub cluster_id: u64,
}

fn url_list(flag: &str, text: &str) -> Result<Vec<Url>, ConfigError> {
    let urls: Vec<Url> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Url::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError(format!("--{flag}: {e}")))?;
    if urls.is_empty() {
        return Err(ConfigError(format!("--{flag} needs at least one URL")));
    }
    Ok(urls)
}

/// One side's TLS flags: the client side's (`--cert-file`, ...) or the peers' (`--peer-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub trusted_ca: Option<PathBuf>,
    /// Refuse, at the handshake, a client (or peer) without a certificate the CA signed.
    pub client_cert_auth: bool,
    pub crl: Option<PathBuf>,
    /// Generate a self-signed certificate into the data dir when no files are given.
    pub auto: bool,
}

/// The names of one side's flags, for messages.
pub struct TlsFlagNames {
    cert: &'static str,
    key: &'static str,
    auth: &'static str,
    trusted_ca: &'static str,
    url: &'static str,
}

impl TlsFlagNames {
    pub const CLIENT: TlsFlagNames = TlsFlagNames {
        cert: "--cert-file",
        key: "--key-file",
        auth: "--client-cert-auth",
        trusted_ca: "--trusted-ca-file",
        url: "client",
    };
    pub const PEER: TlsFlagNames = TlsFlagNames {
        cert: "--peer-cert-file",
        key: "--peer-key-file",
        auth: "--peer-client-cert-auth",
        trusted_ca: "--peer-trusted-ca-file",
        url: "peer",
    };
}

impl TlsSettings {
    /// `files` are cert, key, trusted CA, the deprecated CA (2.x's `--ca-file`, which turned
    /// client-cert auth on) and the CRL; an empty value is no value.
    fn from_flags(
        names: TlsFlagNames,
        files: [&Option<String>; 5],
        client_cert_auth: bool,
        auto: bool,
    ) -> Result<TlsSettings, ConfigError> {
        let path = |value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let [cert, key, trusted_ca, deprecated_ca, crl] = files.map(path);
        let mut settings = TlsSettings {
            cert,
            key,
            trusted_ca,
            client_cert_auth,
            crl,
            auto,
        };
        if settings.trusted_ca.is_none() && deprecated_ca.is_some() {
            settings.trusted_ca = deprecated_ca;
            settings.client_cert_auth = true;
        }
        if settings.cert.is_some() != settings.key.is_some() {
            return Err(ConfigError(format!(
                "{} and {} must be given together",
                names.cert, names.key
            )));
        }
        if settings.client_cert_auth && settings.trusted_ca.is_none() {
            return Err(ConfigError(format!(
                "{} needs {} (the CA that signs the certificates to accept)",
                names.auth, names.trusted_ca
            )));
        }
        Ok(settings)
    }

    /// Whether anything asks for TLS on this side.
    pub fn has_certificate(&self) -> bool {
        self.cert.is_some() || self.auto
    }

    /// An `https://` listener needs a certificate: never plaintext where TLS was asked for.
    fn check_urls(&self, names: TlsFlagNames, urls: &[Url]) -> Result<(), ConfigError> {
        match urls.iter().find(|u| u.scheme == "https") {
            Some(url) if !self.has_certificate() => Err(ConfigError(format!(
                "TLS key/cert ({}, {}) must be provided for {} url {url} with HTTPS scheme",
                names.cert, names.key, names.url
            ))),
            _ => Ok(()),
        }
    }
}

/// Which origins may read the client API from a browser (etcd 3.x's `--cors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (`*`, or an empty list): every answer says `Access-Control-Allow-Origin: *`.
    All,
    /// Only these origins, each `scheme://host:port` exactly as a browser sends it.
    Origins(Vec<String>),
}

impl Cors {
    /// The `Access-Control-Allow-Origin` to answer a request from `origin` with, if any.
    pub fn allow(&self, origin: Option<&str>) -> Option<String> {
        match self {
            Cors::All => Some("*".into()),
            Cors::Origins(list) => origin
                .filter(|o| list.iter().any(|allowed| allowed == o))
                .map(str::to_owned),
        }
    }
}

/// `--cors` as etcd 3.x reads it: `*` or nothing allows all; otherwise each entry is a URL
/// with a host and a port.
fn parse_cors(text: &str) -> Result<Cors, ConfigError> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() || entries.contains(&"*") {
        return Ok(Cors::All);
    }
    for entry in &entries {
        let authority = entry.split_once("://").map_or("", |(_, rest)| rest);
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Err(ConfigError(format!(
                "invalid value {text:?} for flag -cors: URL address does not have the form \"host:port\": {entry}"
            )));
        }
    }
    Ok(Cors::Origins(
        entries.into_iter().map(str::to_owned).collect(),
    ))
}

/// What a flag of etcd's that this etcd does not have does when it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unbuilt {
    /// A file, URL or mode: refused unless empty (`--proxy` also takes `off`).
    Value,
    /// A switch: refused when it is on, ignored when it is off.
    Switch,
    /// Meaningful only with a feature that is itself refused (proxy timings, the discovery
    /// fallback), or one this etcd always has (`--enable-v2`): ignored.
    Ignored,
}

/// etcd's flags this etcd does not have yet. Asking for one of these features, on the command
/// line or as an `ETCD_*` variable, stops the start with a clear message: ignoring, say,
/// `--proxy on` would serve as a member what the operator asked to be a proxy. Leaving one
/// off (`--proxy off`, `--debug=false`, an empty `ETCD_CERT_FILE`), as distributions'
/// configuration files do, is accepted.
const UNBUILT_FLAGS: &[(&str, Unbuilt, &str)] = &[
    ("proxy", Unbuilt::Value, "proxy mode"),
    ("proxy-failure-wait", Unbuilt::Ignored, "proxy mode"),
    ("proxy-refresh-interval", Unbuilt::Ignored, "proxy mode"),
    ("proxy-dial-timeout", Unbuilt::Ignored, "proxy mode"),
    ("proxy-write-timeout", Unbuilt::Ignored, "proxy mode"),
    ("proxy-read-timeout", Unbuilt::Ignored, "proxy mode"),
    ("discovery", Unbuilt::Value, "discovery"),
    ("discovery-fallback", Unbuilt::Ignored, "discovery"),
    ("discovery-proxy", Unbuilt::Value, "discovery"),
    ("discovery-srv", Unbuilt::Value, "discovery"),
    ("force-new-cluster", Unbuilt::Switch, "disaster recovery"),
    ("debug", Unbuilt::Switch, "logging"),
    ("log-package-levels", Unbuilt::Value, "logging"),
    ("enable-pprof", Unbuilt::Switch, "profiling"),
    ("listen-metrics-urls", Unbuilt::Value, "metrics"),
    (
        "enable-v2",
        Unbuilt::Ignored,
        "the v2 API, which this etcd always serves",
    ),
];

/// The environment variable etcd reads for a flag: `--peer-cert-file` is
/// `ETCD_PEER_CERT_FILE`.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Whether a value of an unbuilt flag asks for its feature.
fn asks_for(kind: Unbuilt, flag: &str, value: Option<&str>) -> Result<bool, String> {
    match kind {
        Unbuilt::Ignored => Ok(false),
        Unbuilt::Switch => match value {
            None => Ok(true),
            Some(v) => {
                parse_go_bool(v).map_err(|_| format!("invalid boolean value {v:?} for -{flag}"))
            }
        },
        Unbuilt::Value => {
            let off = |v: &str| v.is_empty() || (flag == "proxy" && v == "off");
            Ok(value.is_some_and(|v| !off(v)))
        }
    }
}

/// The command line and environment made ready for the parser: a flag of a feature this etcd
/// does not have is refused if it asks for the feature and taken out if it does not; an
/// `ETCD_*` variable that names no flag, or is empty, is reported (as etcd reports it) and
/// listed in `cleared` for the caller to remove, so that an empty one means the default.
pub struct Prepared {
    pub args: Vec<String>,
    pub warnings: Vec<String>,
    pub cleared: Vec<String>,
}

pub fn prepare(
    args: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Prepared, ConfigError> {
    let unbuilt = |name: &str| UNBUILT_FLAGS.iter().find(|(flag, _, _)| *flag == name);
    let refuse = |flag: &str, feature: &str| {
        ConfigError(format!(
            "--{flag} is not supported yet ({feature}); refusing to start without it"
        ))
    };
    let mut kept = Vec::with_capacity(args.len());
    let mut tokens = args.iter().enumerate();
    while let Some((i, arg)) = tokens.next() {
        let spelled = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let (name, inline) = match spelled {
            Some(rest) if i > 0 => match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            },
            _ => {
                kept.push(arg.clone());
                continue;
            }
        };
        let Some(&(flag, kind, feature)) = unbuilt(name) else {
            kept.push(arg.clone());
            continue;
        };
        // Go's flag package: a switch takes its value only after `=`; others take the next
        // argument when none is attached.
        let value = match (inline, kind) {
            (Some(v), _) => Some(v.to_owned()),
            (None, Unbuilt::Switch) => None,
            (None, _) => tokens.next().map(|(_, v)| v.clone()),
        };
        if asks_for(kind, flag, value.as_deref()).map_err(ConfigError)? {
            return Err(refuse(flag, feature));
        }
    }
    use clap::CommandFactory;
    let known: BTreeSet<String> = Flags::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .filter_map(|e| e.to_str().map(str::to_owned))
        .collect();
    let mut warnings = Vec::new();
    let mut cleared = Vec::new();
    for (key, value) in env {
        if !key.starts_with("ETCD_") {
            continue;
        }
        if known.contains(&key) && !value.is_empty() {
            continue;
        }
        if let Some(&(flag, kind, feature)) =
            UNBUILT_FLAGS.iter().find(|(f, _, _)| env_name(f) == key)
        {
            let asked = asks_for(kind, flag, Some(&value))
                .map_err(|why| ConfigError(format!("{key}: {why}")))?;
            if asked {
                return Err(ConfigError(format!(
                    "{key} is set, but --{flag} is not supported yet ({feature}); refusing to start without it"
                )));
            }
            continue;
        }
        warnings.push(format!("unrecognized environment variable {key}={value}"));
        if value.is_empty() {
            cleared.push(key);
        }
    }
    Ok(Prepared {
        args: kept,
        warnings,
        cleared,
    })
}

fn strings(urls: &[Url]) -> Vec<String> {
    urls.iter().map(Url::to_string).collect()
}

impl Config {
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        if flags.name.is_empty() {
            return Err(ConfigError("--name cannot be empty".into()));
        }
        if flags.heartbeat_interval == 0 {
            return Err(ConfigError("--heartbeat-interval must be above 0".into()));
        }
        if flags.election_timeout <= flags.heartbeat_interval {
            return Err(ConfigError(format!(
                "--election-timeout[{}ms] must be above --heartbeat-interval[{}ms]",
                flags.election_timeout, flags.heartbeat_interval
            )));
        }
        if flags.max_request_bytes == 0 || flags.max_request_bytes > MAX_MAX_REQUEST_BYTES {
            return Err(ConfigError(format!(
                "--max-request-bytes must be between 1 and {MAX_MAX_REQUEST_BYTES}, not {}",
                flags.max_request_bytes
            )));
        }
        let new_cluster = match flags.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => {
                return Err(ConfigError(format!(
                    "--initial-cluster-state must be 'new' or 'existing', not {other:?}"
                )))
            }
        };
        let listen_peer_urls = url_list("listen-peer-urls", &flags.listen_peer_urls)?;
        let listen_client_urls = url_list("listen-client-urls", &flags.listen_client_urls)?;
        let advertise_client = url_list("advertise-client-urls", &flags.advertise_client_urls)?;
        let advertise_client_urls = strings(&advertise_client);
        let advertise_peer = url_list(
            "initial-advertise-peer-urls",
            &flags.initial_advertise_peer_urls,
        )?;
        let advertise_peer_urls = strings(&advertise_peer);
        let client_tls = TlsSettings::from_flags(
            TlsFlagNames::CLIENT,
            [
                &flags.cert_file,
                &flags.key_file,
                &flags.trusted_ca_file,
                &flags.ca_file,
                &flags.client_crl_file,
            ],
            flags.client_cert_auth,
            flags.auto_tls,
        )?;
        client_tls.check_urls(TlsFlagNames::CLIENT, &listen_client_urls)?;
        let peer_tls = TlsSettings::from_flags(
            TlsFlagNames::PEER,
            [
                &flags.peer_cert_file,
                &flags.peer_key_file,
                &flags.peer_trusted_ca_file,
                &flags.peer_ca_file,
                &flags.peer_crl_file,
            ],
            flags.peer_client_cert_auth,
            flags.peer_auto_tls,
        )?;
        peer_tls.check_urls(TlsFlagNames::PEER, &listen_peer_urls)?;

        let cluster_text = flags.initial_cluster.clone().unwrap_or_else(|| {
            // etcd's `name=url1,name=url2`, one entry per advertised peer URL.
            advertise_peer_urls
                .iter()
                .map(|url| format!("{}={url}", flags.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        let initial_cluster = parse_initial_cluster(&cluster_text, &flags.initial_cluster_token)?;
        // Both checked only when bootstrapping, as etcd does: a member restarting after its
        // peer URLs were changed (`member update`) is started with new advertised URLs, and
        // one added at runtime may be restarted with the cluster's original
        // --initial-cluster, which does not list it; neither matters once the data dir holds
        // the member.
        let me = initial_cluster.iter().find(|m| m.name == flags.name);
        let bootstrap_conflict = match me {
            None => Some(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                flags.name
            )),
            Some(me) => {
                let mut mine = me.peer_urls.clone();
                let mut advertised = advertise_peer_urls.clone();
                mine.sort();
                advertised.sort();
                (mine != advertised).then(|| {
                    format!(
                        "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}",
                        flags.name,
                        me.peer_urls.join(","),
                        advertise_peer_urls.join(",")
                    )
                })
            }
        };
        // Without a bootstrap entry there is no id to derive; a data dir supplies the real one.
        let id = me.map_or(0, |me| me.id);
        let ids: Vec<u64> = initial_cluster.iter().map(|m| m.id).collect();
        let data_dir = PathBuf::from(
            flags
                .data_dir
                .clone()
                .unwrap_or_else(|| format!("{}.etcd", flags.name)),
        );
        Ok(Config {
            name: flags.name,
            data_dir,
            wal_dir: flags.wal_dir.map(PathBuf::from),
            snapshot_count: flags.snapshot_count.max(1),
            heartbeat: Duration::from_millis(flags.heartbeat_interval),
            election: Duration::from_millis(flags.election_timeout),
            listen_peer_urls,
            listen_client_urls,
            advertise_client_urls,
            advertise_peer_urls,
            initial_cluster,
            new_cluster,
            bootstrap_conflict,
            token: flags.initial_cluster_token,
            strict_reconfig_check: flags.strict_reconfig_check,
            unsafe_no_fsync: flags.unsafe_no_fsync,
            wal_segment_bytes: crate::wal::DEFAULT_SEGMENT_BYTES,
            max_snapshots: flags.max_snapshots,
            max_wals: flags.max_wals,
            max_request_bytes: flags.max_request_bytes,
            cors: parse_cors(&flags.cors)?,
            client_tls,
            peer_tls,
            id,
            cluster_id: membership::cluster_id(&ids),
        })
    }

    /// Parses a command line (with the program name first) and the environment.
    pub fn from_args(
        args: impl IntoIterator<Item = String>,
    ) -> Result<Result<Config, ConfigError>, clap::Error> {
        let flags = Flags::try_parse_from(go_style_args(args))?;
        Ok(Config::from_flags(flags))
    }
}

/// `name=url,name=url`: a member may appear more than once, with more peer URLs.
fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    let mut urls_seen = BTreeSet::new();
    for entry in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--initial-cluster: {entry:?} is not name=url")))?;
        let url = Url::parse(url).map_err(|e| ConfigError(format!("--initial-cluster: {e}")))?;
        let url = url.to_string();
        if !urls_seen.insert(url.clone()) {
            return Err(ConfigError(format!(
                "--initial-cluster has {url} more than once"
            )));
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_owned(), vec![url])),
        }
    }
    if members.is_empty() {
        return Err(ConfigError("--initial-cluster is empty".into()));
    }
    let members: Vec<InitialMember> = members
        .into_iter()
        .map(|(name, peer_urls)| InitialMember {
            id: membership::member_id(&peer_urls, token, None),
            name,
            peer_urls,
        })
        .collect();
    let ids: BTreeSet<u64> = members.iter().map(|m| m.id).collect();
    if ids.len() != members.len() {
        return Err(ConfigError(
            "--initial-cluster has two members with the same id".into(),
        ));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("etcd")
            .chain(args.iter().copied())
            .map(String::from);
        match Config::from_args(args) {
            Ok(result) => result.map_err(|e| e.0),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults_are_etcds() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        // etcd 2.x's defaults still listen on the legacy ports 4001 and 7001 too.
        let urls = |u: &[Url]| u.iter().map(Url::to_string).collect::<Vec<_>>();
        assert_eq!(
            urls(&c.listen_client_urls),
            ["http://localhost:2379", "http://localhost:4001"]
        );
        assert_eq!(
            urls(&c.listen_peer_urls),
            ["http://localhost:2380", "http://localhost:7001"]
        );
        assert_eq!(
            c.advertise_client_urls,
            ["http://localhost:2379", "http://localhost:4001"]
        );
        // And so the default member has the id etcd 2.x's documentation shows.
        assert_eq!(crate::membership::format_id(c.id), "ce2a822cea30bfca");
        assert_eq!(c.heartbeat, Duration::from_millis(100));
        assert_eq!(c.election, Duration::from_millis(1000));
        assert_eq!(c.snapshot_count, 10_000);
        assert_eq!(c.initial_cluster.len(), 1);
        assert!(c.new_cluster && c.strict_reconfig_check);
        assert_eq!(c.token, "etcd-cluster");
    }

    #[test]
    fn single_and_double_dash_and_equals_all_work() {
        for args in [
            &["-name", "infra1"][..],
            &["--name", "infra1"],
            &["--name=infra1"],
            &["-name=infra1"],
        ] {
            let c = parse(args).unwrap();
            assert_eq!(c.name, "infra1", "{args:?}");
            assert_eq!(c.data_dir, PathBuf::from("infra1.etcd"));
        }
    }

    #[test]
    fn strict_reconfig_check_spellings() {
        assert!(
            parse(&["-strict-reconfig-check"])
                .unwrap()
                .strict_reconfig_check
        );
        assert!(
            parse(&["--strict-reconfig-check"])
                .unwrap()
                .strict_reconfig_check
        );
        assert!(
            !parse(&["--strict-reconfig-check=false"])
                .unwrap()
                .strict_reconfig_check
        );
        assert!(
            !parse(&["-strict-reconfig-check=0"])
                .unwrap()
                .strict_reconfig_check
        );
    }

    #[test]
    fn advertised_urls_that_disagree_with_the_cluster_only_stop_a_bootstrap() {
        let c = parse(&["--initial-cluster", "default=http://localhost:9999"]).unwrap();
        let conflict = c.bootstrap_conflict.expect("a conflict");
        assert!(
            conflict.contains("--initial-advertise-peer-urls"),
            "{conflict}"
        );
        assert!(parse(&[]).unwrap().bootstrap_conflict.is_none());
        // A name the initial cluster does not list is refused only when bootstrapping.
        let unlisted = parse(&[
            "--name",
            "x",
            "--initial-cluster",
            "y=http://localhost:2380",
        ])
        .unwrap()
        .bootstrap_conflict
        .expect("a conflict");
        assert!(unlisted.contains("couldn't find local name"), "{unlisted}");
    }

    #[test]
    fn a_three_member_cluster_parses() {
        let c = parse(&[
            "--name", "infra2",
            "--initial-advertise-peer-urls", "http://127.0.0.1:22380",
            "--initial-cluster",
            "infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380",
        ])
        .unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.id, c.initial_cluster[1].id);
    }

    #[test]
    fn bad_configurations_are_one_clear_line() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen-client-urls", "localhost:2379"], "invalid URL"),
            (&["--listen-client-urls", "ftp://a:1"], "scheme"),
            (&["--listen-client-urls", "http://a"], "no port"),
            (
                &[
                    "--initial-cluster",
                    "default=http://localhost:2380,b=http://localhost:2380",
                ],
                "more than once",
            ),
            (&["--initial-cluster", "nonsense"], "not name=url"),
            (
                &["--election-timeout", "100"],
                "must be above --heartbeat-interval",
            ),
            (&["--initial-cluster-state", "old"], "'new' or 'existing'"),
        ];
        for (args, expected) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(
                !err.trim().contains('\n'),
                "{args:?} gave several lines: {err}"
            );
        }
    }

    #[test]
    fn unknown_flags_and_bad_numbers_are_usage_errors() {
        assert!(parse(&["--no-such-flag"]).is_err());
        assert!(parse(&["--snapshot-count", "many"]).is_err());
    }
}
