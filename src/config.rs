//! Command-line flags and environment variables, read once at start-up and checked: every value
//! is trimmed (env files written on Windows end lines with `\r`), and a bad one stops start-up
//! with a message naming both the flag and the env variable. Holds no runtime state. The
//! subcommands' flags are in `commands`, the value parsers in `parse`.

mod commands;
mod parse;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::history;
pub use crate::secret::Secret;
use crate::secret::redact_url;
use crate::source::{ReadFrom, RedisSettings, SentinelSettings, Symbols, Topology};
use commands::STATUS_PASSWORD_ENV;
pub use commands::{Command, SimulateArgs, StatusArgs};
use parse::{
    boolean, database, duration, history_max_age, history_points, host, listen_address, log_format,
    log_level, master_name, node_list, password, port, positive_count, prefix, read_from,
    readable_file, redis_url, stream_key, symbol_list, telemetry_path, tls_server_name,
};

pub const DEFAULT_PREFIX: &str = "quantum:harvest:proposal:";

#[derive(Debug, Parser)]
#[command(
    name = "harvest-exporter",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::LONG_VERSION,
    about = "Prometheus exporter for the harvest proposals a trading system keeps in Redis hashes.",
    long_about = "Prometheus exporter for the harvest proposals a trading system keeps in Redis \
hashes (quantum:harvest:proposal:<SYMBOL>).\n\nEvery setting can be given as a flag or as the \
environment variable shown with it; a flag wins over the environment. The environment names are \
those of the original exporter's env file, so that file keeps working. Durations take \
Prometheus' units (500ms, 2s, 1m, 1h, 1m30s); a bare number is seconds."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Every setting of the exporter. Flag names follow the Prometheus exporters' dotted style.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on: an IP, [IPv6] or host name, each with an optional :port (without
    /// one, --web.listen-port). Repeat the flag (or separate with commas) to listen on several.
    /// The default serves this host only; expose it deliberately.
    #[arg(long = "web.listen-address", env = "LISTEN_ADDRESS", default_value = "127.0.0.1", value_delimiter = ',', value_parser = listen_address, global = true)]
    pub listen_addresses: Vec<ListenAddress>,

    /// Port to listen on when --web.listen-address has none (the original's METRICS_PORT).
    #[arg(long = "web.listen-port", env = "METRICS_PORT", default_value = "8042", value_parser = port, global = true)]
    pub listen_port: u16,

    /// Use the sockets systemd passes (socket activation, LISTEN_FDS) instead of
    /// --web.listen-address; see the .socket unit in the deployment kit.
    #[arg(long = "web.systemd-socket", env = "WEB_SYSTEMD_SOCKET", default_value = "false", value_parser = boolean, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub systemd_socket: bool,

    /// Path under which the metrics are served.
    #[arg(long = "web.telemetry-path", env = "WEB_TELEMETRY_PATH", default_value = "/metrics", value_parser = telemetry_path, global = true)]
    pub telemetry_path: String,

    /// Most HTTP connections open at once. When full, the oldest connection that has not sent a
    /// request yet is closed to make room; if every one is busy, the new one is closed.
    #[arg(long = "web.max-connections", env = "WEB_MAX_CONNECTIONS", default_value = "1024", value_parser = positive_count, global = true)]
    pub max_connections: usize,

    /// How long a client may take to send its request head before the connection is closed
    /// (500ms, 5s, 1m; a bare number is seconds).
    #[arg(long = "web.header-timeout", env = "WEB_HEADER_TIMEOUT_SEC", default_value = "5", value_parser = duration, global = true)]
    pub header_timeout: Duration,

    /// How long a response may make no progress (a client that stops reading) before the
    /// connection is closed.
    #[arg(long = "web.write-timeout", env = "WEB_WRITE_TIMEOUT_SEC", default_value = "30", value_parser = duration, global = true)]
    pub write_timeout: Duration,

    /// Web configuration file in the Prometheus exporters' shared format (tls_server_config,
    /// basic_auth_users with bcrypt hashes, http_server_config.headers); without it, plain HTTP.
    #[arg(long = "web.config.file", env = "WEB_CONFIG_FILE", value_parser = readable_file, global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Redis host, used when --redis.addr is not set.
    #[arg(long = "redis.host", env = "REDIS_HOST", default_value = "localhost", value_parser = host, global = true)]
    pub redis_host: String,

    /// Redis port, used when --redis.addr is not set.
    #[arg(long = "redis.port", env = "REDIS_PORT", default_value = "6379", value_parser = port, global = true)]
    pub redis_port: u16,

    /// Redis database number, used when --redis.addr is not set.
    #[arg(long = "redis.db", env = "REDIS_DB", default_value = "0", value_parser = database, global = true)]
    pub redis_db: u32,

    /// Redis URL (redis:// or rediss:// for TLS, with optional user:password@ and /db), or
    /// host:port; replaces --redis.host, --redis.port and --redis.db. REDIS_ADDR, redis_exporter's
    /// name, is read too; set to another address than REDIS_URL, it stops start-up. Shown with
    /// the password masked.
    #[arg(long = "redis.addr", env = "REDIS_URL", hide_env_values = true, value_parser = redis_url, global = true)]
    pub redis_url: Option<String>,

    /// Redis password, used when the URL carries none. Prefer the env file (mode 0640) to the
    /// command line, which other users can read.
    #[arg(long = "redis.password", env = "REDIS_PASSWORD", hide_env_values = true, value_parser = password, global = true)]
    pub redis_password: Option<Secret>,

    /// File holding the Redis password (trailing newline ignored), read at start-up; the usual
    /// way to keep it out of the command line and the environment. Excludes --redis.password.
    #[arg(long = "redis.password-file", env = "REDIS_PASSWORD_FILE", value_parser = readable_file, conflicts_with = "redis_password", global = true)]
    pub redis_password_file: Option<PathBuf>,

    /// PEM file with the CA certificate that signed the Redis server's certificate (rediss://);
    /// without it the system's trust store is used.
    #[arg(long = "redis.tls-ca-file", env = "REDIS_TLS_CA_FILE", value_parser = readable_file, global = true)]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate, for a Redis that requires one (tls-auth-clients yes, Redis's
    /// default once TLS is on); with --redis.tls-client-key-file. Shown to the sentinels too
    /// with --redis.sentinel-tls.
    #[arg(long = "redis.tls-client-cert-file", env = "REDIS_TLS_CLIENT_CERT_FILE", value_parser = readable_file, global = true)]
    pub redis_client_cert_file: Option<PathBuf>,

    /// PEM private key of --redis.tls-client-cert-file.
    #[arg(long = "redis.tls-client-key-file", env = "REDIS_TLS_CLIENT_KEY_FILE", value_parser = readable_file, global = true)]
    pub redis_client_key_file: Option<PathBuf>,

    /// The name to check the Redis server's certificate against (and send in SNI) when it is
    /// not --redis.addr's host, e.g. a certificate for redis.internal reached by IP address.
    /// For one rediss:// address, without sentinels, cluster or --harvest.events.
    #[arg(long = "redis.tls-server-name", env = "REDIS_TLS_SERVER_NAME", value_parser = tls_server_name, global = true)]
    pub redis_tls_server_name: Option<String>,

    /// Redis Sentinel addresses, comma-separated host:port. The exporter asks them for the
    /// primary of --redis.sentinel-master and follows its failovers; user, password, TLS and
    /// database of the data nodes still come from --redis.addr, whose host is then not used.
    #[arg(long = "redis.sentinels", env = "REDIS_SENTINELS", value_parser = node_list, global = true)]
    pub redis_sentinels: Option<NodeList>,

    /// The master name the sentinels monitor.
    #[arg(long = "redis.sentinel-master", env = "REDIS_SENTINEL_MASTER", default_value = "mymaster", value_parser = master_name, global = true)]
    pub redis_sentinel_master: String,

    /// Password of the sentinels themselves (their requirepass), when they have one.
    #[arg(long = "redis.sentinel-password", env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true, value_parser = password, global = true)]
    pub redis_sentinel_password: Option<Secret>,

    /// Speak TLS to the sentinels, trusting --redis.tls-ca-file.
    #[arg(long = "redis.sentinel-tls", env = "REDIS_SENTINEL_TLS", default_value = "false", value_parser = boolean, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub redis_sentinel_tls: bool,

    /// Redis Cluster seed nodes, comma-separated host:port; the rest of the cluster is found
    /// from them. Without it, a --redis.addr that is a cluster node is detected at the first
    /// connection. User, password and TLS come from --redis.addr.
    #[arg(long = "redis.cluster-nodes", env = "REDIS_CLUSTER_NODES", value_parser = node_list, global = true)]
    pub redis_cluster_nodes: Option<NodeList>,

    /// Which node the refresh reads: primary, replica (never the primary) or prefer-replica
    /// (the primary only while no replica is healthy). Replicas are found through the
    /// sentinels or the cluster.
    #[arg(long = "redis.read-from", env = "REDIS_READ_FROM", default_value = "primary", value_parser = read_from, global = true)]
    pub redis_read_from: ReadFrom,

    /// How long to wait for a connection to Redis.
    #[arg(long = "redis.connect-timeout", env = "REDIS_CONNECT_TIMEOUT_SEC", default_value = "2", value_parser = duration, global = true)]
    pub redis_connect_timeout: Duration,

    /// How long to wait for Redis to answer a command.
    #[arg(long = "redis.timeout", env = "REDIS_TIMEOUT_SEC", default_value = "2", value_parser = duration, global = true)]
    pub redis_timeout: Duration,

    /// Comma-separated symbols to export. Empty or * discovers every key under the prefix with
    /// SCAN on each refresh.
    #[arg(long = "harvest.symbols", env = "SYMBOLS", default_value = "", value_parser = symbol_list, global = true)]
    pub symbols: SymbolList,

    /// Key prefix of the proposal hashes; the rest of the key is the symbol.
    #[arg(long = "harvest.prefix", env = "HARVEST_PREFIX", default_value = DEFAULT_PREFIX, value_parser = prefix, global = true)]
    pub prefix: String,

    /// Time between two reads of Redis (5s, 500ms; a bare number is seconds, as the original
    /// exporter's POLL_INTERVAL_SEC).
    #[arg(long = "harvest.poll-interval", env = "POLL_INTERVAL_SEC", default_value = "5", value_parser = duration, global = true)]
    pub poll_interval: Duration,

    /// Event mode: also follow Redis keyspace notifications on the prefix and re-read only the
    /// keys they announce, for changes within milliseconds; a full refresh still runs every poll
    /// interval. Needs notify-keyspace-events with K and h (e.g. Khgx); polls without them.
    #[arg(long = "harvest.events", env = "HARVEST_EVENTS", default_value = "false", value_parser = boolean, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub events: bool,

    /// Most symbols exported; beyond it, symbols are dropped (in name order) and counted.
    #[arg(long = "harvest.max-symbols", env = "MAX_SYMBOLS", default_value = "10000", value_parser = positive_count, global = true)]
    pub max_symbols: usize,

    /// Follow the apply layer's plan and result streams (XREAD, observation only) and export
    /// what became of each proposal as the quantum_apply_* metrics.
    #[arg(long = "apply.streams", env = "APPLY_STREAMS", default_value = "true", value_parser = boolean, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub apply_streams: bool,

    /// The apply layer's plan stream.
    #[arg(long = "apply.plan-stream", env = "APPLY_PLAN_STREAM", default_value = "quantum:stream:apply.plan", value_parser = stream_key, global = true)]
    pub plan_stream: String,

    /// The apply layer's result stream.
    #[arg(long = "apply.result-stream", env = "APPLY_RESULT_STREAM", default_value = "quantum:stream:apply.result", value_parser = stream_key, global = true)]
    pub result_stream: String,

    /// Points of each symbol's history kept (the page's sparklines, /api/v1/proposals/{symbol},
    /// `status SYMBOL`): one per change of its kill score, components, net R or action, the
    /// older ones thinned out so that they reach back --history.max-age. 0 keeps no history.
    #[arg(long = "history.points", env = "HISTORY_POINTS", default_value = "24", value_parser = history_points, allow_negative_numbers = true, global = true)]
    pub history_points: usize,

    /// How far back each symbol's history, events and plans reach (500ms to 24h, as the other
    /// durations); 0 keeps no history.
    #[arg(long = "history.max-age", env = "HISTORY_MAX_AGE", default_value = "1h", value_parser = history_max_age, allow_hyphen_values = true, global = true)]
    pub history_max_age: Duration,

    /// Log level: error, warn, info, debug or trace (Python's WARNING and CRITICAL work too).
    #[arg(long = "log.level", env = "LOG_LEVEL", default_value = "info", value_parser = log_level, global = true)]
    pub log_level: tracing::Level,

    /// Log format: logfmt (key=value, as node_exporter writes) or json (one object a line).
    #[arg(long = "log.format", env = "LOG_FORMAT", default_value = "logfmt", value_parser = log_format, global = true)]
    pub log_format: LogFormat,
}

/// A setting that passed its flag's check but cannot be used when it is read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read --redis.password-file (REDIS_PASSWORD_FILE) {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Topology(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// One `--web.listen-address`: a host (an IP literal or a name, resolved when binding) and
/// a port when one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: String,
    pub port: Option<u16>,
}

/// Redis nodes as `host:port`, for the sentinels and the cluster's seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeList(pub Vec<String>);

/// The symbols setting: a fixed list, or discovery when empty or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolList(pub Vec<String>);

/// A running exporter's address, as `--from` takes it: `http[s]://host[:port][/base]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterUrl {
    /// `https://`.
    pub tls: bool,
    /// `host[:port]` as given, for the Host header.
    pub authority: String,
    /// The host without the brackets of an IPv6 literal, for connecting.
    pub host: String,
    pub port: u16,
    /// The path of `/api/v1/proposals` under the given base path.
    pub path: String,
}

impl fmt::Display for ExporterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

impl Config {
    /// Each listen address as (host, port), the port filled in from --web.listen-port.
    pub fn listen_targets(&self) -> Vec<(String, u16)> {
        self.listen_addresses
            .iter()
            .map(|a| (a.host.clone(), a.port.unwrap_or(self.listen_port)))
            .collect()
    }

    /// The password from --redis.password-file, else --redis.password.
    fn redis_password(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(path) = self
            .redis_password_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Ok(self
                .redis_password
                .clone()
                .filter(|p| !p.expose().is_empty()));
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
            path: path.to_owned(),
            source,
        })?;
        let password = text.trim_end_matches(['\n', '\r']);
        Ok((!password.is_empty()).then(|| Secret::new(password)))
    }

    /// How to reach Redis; reads --redis.password-file.
    pub fn redis(&self) -> Result<RedisSettings, ConfigError> {
        let url = self
            .redis_url
            .clone()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| {
                let host = if self.redis_host.contains(':') {
                    format!("[{}]", self.redis_host)
                } else {
                    self.redis_host.clone()
                };
                format!("redis://{host}:{}/{}", self.redis_port, self.redis_db)
            });
        let nodes = |list: &Option<NodeList>| {
            list.as_ref()
                .map(|list| list.0.clone())
                .filter(|list| !list.is_empty())
        };
        let topology = match (
            nodes(&self.redis_sentinels),
            nodes(&self.redis_cluster_nodes),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Topology(
                    "--redis.sentinels (REDIS_SENTINELS) and --redis.cluster-nodes \
                     (REDIS_CLUSTER_NODES) exclude each other: a Redis is either watched by \
                     sentinels or a cluster",
                ));
            }
            (Some(addrs), None) => Topology::Sentinel(SentinelSettings {
                addrs,
                master: self.redis_sentinel_master.clone(),
                password: self
                    .redis_sentinel_password
                    .clone()
                    .filter(|p| !p.expose().is_empty()),
                tls: self.redis_sentinel_tls,
            }),
            (None, Some(seeds)) => Topology::Cluster(seeds),
            (None, None) => Topology::Single,
        };
        if matches!(topology, Topology::Single) && self.redis_read_from != ReadFrom::Primary {
            return Err(ConfigError::Topology(
                "--redis.read-from (REDIS_READ_FROM) other than primary needs --redis.sentinels \
                 or --redis.cluster-nodes to find the replicas; to read one replica, point \
                 --redis.addr at it",
            ));
        }
        if matches!(topology, Topology::Cluster(_)) && url_database(&url) != 0 {
            return Err(ConfigError::Topology(
                "a Redis Cluster has only database 0: --redis.addr (REDIS_URL) or --redis.db \
                 (REDIS_DB) names another",
            ));
        }
        Ok(RedisSettings {
            topology,
            read_from: self.redis_read_from,
            url,
            password: self.redis_password()?,
            ca_file: given(&self.redis_ca_file),
            client_cert: given(&self.redis_client_cert_file)
                .zip(given(&self.redis_client_key_file)),
            tls_server_name: self.tls_server_name().map(str::to_owned),
            connect_timeout: self.redis_connect_timeout,
            response_timeout: self.redis_timeout,
        })
    }

    fn tls_server_name(&self) -> Option<&str> {
        self.redis_tls_server_name
            .as_deref()
            .filter(|name| !name.is_empty())
    }

    /// How much of each symbol's past to keep; off when either setting is 0.
    pub fn history(&self) -> history::Settings {
        history::Settings {
            points: self.history_points,
            max_age: self.history_max_age,
        }
    }

    /// Points asked for need a span to spread over: a zero max age with points given is a
    /// contradiction, not a way to turn the history off (`--history.points 0` is).
    fn check_history(&self) -> Result<(), String> {
        if self.history_points > 0 && self.history_max_age.is_zero() {
            return Err(format!(
                "--history.points (HISTORY_POINTS) {} needs a --history.max-age (HISTORY_MAX_AGE) \
                 above 0 to spread over; set --history.points 0 to keep no history",
                self.history_points
            ));
        }
        Ok(())
    }

    /// The TLS settings fit together: the client certificate comes with its key and goes to a
    /// server spoken to over TLS; the server name, to the one rediss:// address.
    fn check_redis_tls(&self) -> Result<(), String> {
        let cert = given(&self.redis_client_cert_file).is_some();
        let key = given(&self.redis_client_key_file).is_some();
        if cert != key {
            return Err(
                "--redis.tls-client-cert-file (REDIS_TLS_CLIENT_CERT_FILE) and \
                 --redis.tls-client-key-file (REDIS_TLS_CLIENT_KEY_FILE) go together: give both"
                    .into(),
            );
        }
        let rediss = self
            .redis_url
            .as_deref()
            .is_some_and(|url| url.starts_with("rediss://"));
        if cert && !(rediss || self.redis_sentinel_tls) {
            return Err(
                "--redis.tls-client-cert-file (REDIS_TLS_CLIENT_CERT_FILE) is shown over \
                 TLS only: give a rediss:// --redis.addr (REDIS_URL) or --redis.sentinel-tls"
                    .into(),
            );
        }
        if self.tls_server_name().is_none() {
            return Ok(());
        }
        if !rediss {
            return Err(
                "--redis.tls-server-name (REDIS_TLS_SERVER_NAME) is for a rediss:// --redis.addr \
                 (REDIS_URL)"
                    .into(),
            );
        }
        let listed = |nodes: &Option<NodeList>| nodes.as_ref().is_some_and(|n| !n.0.is_empty());
        if listed(&self.redis_sentinels) || listed(&self.redis_cluster_nodes) || self.events {
            return Err(
                "--redis.tls-server-name (REDIS_TLS_SERVER_NAME) applies to the one \
                 --redis.addr: not with --redis.sentinels, --redis.cluster-nodes or \
                 --harvest.events, whose connections go to the nodes' own addresses"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn symbols(&self) -> Symbols {
        if self.symbols.0.is_empty() {
            Symbols::Discover
        } else {
            Symbols::Fixed(self.symbols.0.clone())
        }
    }
}

/// A file setting, unless left empty (as `KEY=` in an env file leaves it).
fn given(path: &Option<PathBuf>) -> Option<PathBuf> {
    path.clone().filter(|path| !path.as_os_str().is_empty())
}

/// The database a Redis URL names (0 when it names none).
fn url_database(url: &str) -> i64 {
    use redis::IntoConnectionInfo as _;
    url.into_connection_info()
        .map(|info| info.redis_settings().db())
        .unwrap_or(0)
}

/// redis_exporter's name for the Redis address, read as an alias of `REDIS_URL`.
const REDIS_ADDR_ENV: &str = "REDIS_ADDR";

/// Parses the command line and environment. On a bad value the error also names the env variable
/// the value may have come from.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_with(args, std::env::var(REDIS_ADDR_ENV).ok())
}

/// `parse_from` with the value of `REDIS_ADDR` given, which the environment cannot carry into a
/// unit test.
fn parse_with<I, T>(args: I, redis_addr: Option<String>) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};

    let matches = Cli::command().try_get_matches_from(args).map_err(explain)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(explain)?;
    if matches.value_source("redis_url") != Some(ValueSource::CommandLine) {
        apply_redis_addr(&mut cli.config, redis_addr)
            .map_err(|message| Cli::command().error(ErrorKind::ArgumentConflict, message))?;
    }
    cli.config
        .check_redis_tls()
        .map_err(|message| Cli::command().error(ErrorKind::ArgumentConflict, message))?;
    if matches.value_source("history_points") != Some(ValueSource::DefaultValue) {
        cli.config
            .check_history()
            .map_err(|message| Cli::command().error(ErrorKind::ArgumentConflict, message))?;
    }
    if let Some(Command::Status(status)) = &mut cli.command {
        status
            .complete(std::env::var(STATUS_PASSWORD_ENV).ok())
            .map_err(|message| {
                let mut command = Cli::command();
                command.build();
                command
                    .find_subcommand_mut("status")
                    .expect("status is a subcommand")
                    .error(ErrorKind::ArgumentConflict, message)
            })?;
    }
    Ok(cli)
}

/// Takes `REDIS_ADDR` (a URL or `host:port`, as redis_exporter reads it) as the Redis address
/// when no flag gave one: never ignored, and refused when `REDIS_URL` names another.
fn apply_redis_addr(config: &mut Config, redis_addr: Option<String>) -> Result<(), String> {
    let Some(raw) = redis_addr.filter(|raw| !raw.trim().is_empty()) else {
        return Ok(());
    };
    let addr = redis_url(&raw).map_err(|error| {
        format!(
            "invalid value '{}' for {REDIS_ADDR_ENV} (redis_exporter's name for REDIS_URL, \
             --redis.addr): {error}",
            redact_url(raw.trim())
        )
    })?;
    match config.redis_url.as_deref().filter(|url| !url.is_empty()) {
        Some(url) if url != addr => Err(format!(
            "REDIS_URL ({}) and {REDIS_ADDR_ENV} ({}) name different Redis addresses: set one",
            redact_url(url),
            redact_url(&addr)
        )),
        _ => {
            config.redis_url = Some(addr);
            Ok(())
        }
    }
}

/// Names the env variable a refused value may have come from, and masks a password in the
/// value, which clap would repeat.
fn explain(mut error: clap::Error) -> clap::Error {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    for kind in [ContextKind::InvalidValue, ContextKind::InvalidArg] {
        if let Some(ContextValue::String(shown)) = error.get(kind) {
            let redacted = ContextValue::String(redact_url(shown));
            error.insert(kind, redacted);
        }
    }
    if matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) && let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg)
    {
        let command = Cli::command();
        let env = command
            .get_arguments()
            .find(|a| {
                a.get_long()
                    .is_some_and(|long| arg.starts_with(&format!("--{long} ")))
            })
            .and_then(|a| a.get_env())
            .map(|env| env.to_string_lossy().into_owned());
        if let Some(env) = env {
            error.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![
                    format!("the value comes from {arg} or the environment variable {env}").into(),
                ]),
            );
        }
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_with(
            std::iter::once("harvest-exporter").chain(args.iter().copied()),
            None,
        )
    }

    #[test]
    fn redis_addr_is_an_alias_of_redis_url() {
        let url = |args: &[&str], addr: &str| {
            let args = std::iter::once("harvest-exporter").chain(args.iter().copied());
            parse_with(args, Some(addr.to_owned()))
                .map(|cli| cli.config.redis().unwrap().url)
                .map_err(|e| e.to_string())
        };
        assert_eq!(url(&[], "10.0.0.5:6380").unwrap(), "redis://10.0.0.5:6380");
        assert_eq!(
            url(&["status"], "rediss://r:6380/1").unwrap(),
            "rediss://r:6380/1"
        );
        assert_eq!(url(&[], " ").unwrap(), "redis://localhost:6379/0");
        // The flag wins over the environment, as for every setting.
        assert_eq!(
            url(&["--redis.addr", "redis://a:1/0"], "b:2").unwrap(),
            "redis://a:1/0"
        );
        assert_eq!(
            url(&["status", "--redis.addr", "redis://a:1/0"], "b:2").unwrap(),
            "redis://a:1/0"
        );
        let refused = url(&[], "http://:s3cr3t@b:2").unwrap_err();
        assert!(
            refused.contains("REDIS_ADDR") && refused.contains("http://:***@b:2"),
            "{refused}"
        );
        assert!(!refused.contains("s3cr3t"), "{refused}");

        // REDIS_URL's value reaches the config as the flag's would.
        let mut config = parse(&["--redis.addr", "redis://:s3cr3t@a:1/0"])
            .unwrap()
            .config;
        let conflict = apply_redis_addr(&mut config, Some("b:2".into())).unwrap_err();
        assert!(
            conflict.contains("REDIS_URL (redis://:***@a:1/0)")
                && conflict.contains("REDIS_ADDR (redis://b:2)"),
            "{conflict}"
        );
        let mut config = parse(&["--redis.addr", "redis://a:1"]).unwrap().config;
        assert_eq!(apply_redis_addr(&mut config, Some("a:1".into())), Ok(()));
    }

    #[test]
    fn defaults_match_the_seed() {
        let cli = parse(&[]).unwrap();
        let config = cli.config;
        assert_eq!(config.listen_targets(), [("127.0.0.1".to_owned(), 8042)]);
        assert_eq!(config.redis().unwrap().url, "redis://localhost:6379/0");
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.symbols(), Symbols::Discover);
        assert_eq!(config.prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn topologies_are_checked_before_start_up() {
        let redis = |args: &[&str]| parse(args).unwrap().config.redis();
        let settings = redis(&[
            "--redis.sentinels",
            " 10.0.0.1:26379,[::1]:26380,10.0.0.1:26379 ",
            "--redis.sentinel-master",
            "quantum",
        ])
        .unwrap();
        let Topology::Sentinel(sentinel) = settings.topology else {
            panic!("sentinels expected");
        };
        assert_eq!(sentinel.addrs, ["10.0.0.1:26379", "[::1]:26380"]);
        assert_eq!(sentinel.master, "quantum");
        let cluster = redis(&[
            "--redis.cluster-nodes",
            "a:7000,b:7001",
            "--redis.read-from",
            "Replica",
        ])
        .unwrap();
        assert_eq!(
            cluster.topology,
            Topology::Cluster(vec!["a:7000".into(), "b:7001".into()])
        );
        assert_eq!(cluster.read_from, ReadFrom::Replica);
        // Empty, as `KEY=` in an env file leaves it, is none.
        assert_eq!(
            redis(&["--redis.sentinels", ""]).unwrap().topology,
            Topology::Single
        );
        let error = |args: &[&str]| redis(args).unwrap_err().to_string();
        assert!(
            error(&["--redis.sentinels", "a:1", "--redis.cluster-nodes", "b:2"])
                .contains("REDIS_CLUSTER_NODES")
        );
        assert!(error(&["--redis.read-from", "replica"]).contains("REDIS_READ_FROM"));
        assert!(error(&["--redis.cluster-nodes", "a:1", "--redis.db", "3"]).contains("database 0"));
        assert!(parse(&["--redis.cluster-nodes", "a"]).is_err());
        assert!(parse(&["--redis.sentinels", "::1:26379"]).is_err());
    }

    #[test]
    fn values_are_trimmed_like_a_windows_env_file() {
        let cli = parse(&[
            "--harvest.symbols",
            " BTCUSDT, ETHUSDT\r,,BTCUSDT ",
            "--harvest.poll-interval",
            "5\r",
        ])
        .unwrap();
        assert_eq!(
            cli.config.symbols(),
            Symbols::Fixed(vec!["BTCUSDT".into(), "ETHUSDT".into()])
        );
        assert_eq!(cli.config.poll_interval, Duration::from_secs(5));
        let units = parse(&["--redis.timeout", "1500ms", "--harvest.poll-interval", "1m"]).unwrap();
        assert_eq!(units.config.redis_timeout, Duration::from_millis(1500));
        assert_eq!(units.config.poll_interval, Duration::from_secs(60));
        assert_eq!(
            parse(&["--harvest.symbols", "*"]).unwrap().config.symbols(),
            Symbols::Discover
        );
    }

    #[test]
    fn listen_address_forms() {
        let target = |raw: &str| {
            let cli = parse(&["--web.listen-address", raw, "--web.listen-port", "8042"]).unwrap();
            cli.config.listen_targets()
        };
        let one = |host: &str, port: u16| vec![(host.to_owned(), port)];
        assert_eq!(target("0.0.0.0:9000"), one("0.0.0.0", 9000));
        assert_eq!(target("[::1]"), one("::1", 8042));
        assert_eq!(target("::1"), one("::1", 8042));
        assert_eq!(target(":9000"), one("0.0.0.0", 9000));
        assert_eq!(target("localhost:9000"), one("localhost", 9000));
        assert_eq!(
            target("exporter.example.com"),
            one("exporter.example.com", 8042)
        );
        assert_eq!(
            target("127.0.0.1:9000,[::1]:9001"),
            [("127.0.0.1".to_owned(), 9000), ("::1".to_owned(), 9001)]
        );
        let repeated = parse(&[
            "--web.listen-address",
            "127.0.0.1:9000",
            "--web.listen-address",
            "localhost:9001",
        ])
        .unwrap();
        assert_eq!(repeated.config.listen_targets().len(), 2);
        for bad in ["exa mple", "host:99999", "a..b", "http://x", "[::1"] {
            assert!(listen_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_optional_settings_mean_unset() {
        let cli = parse(&[
            "--redis.addr",
            " ",
            "--redis.tls-ca-file",
            "",
            "--redis.password",
            "",
        ])
        .unwrap();
        let redis = cli.config.redis().unwrap();
        assert_eq!(redis.url, "redis://localhost:6379/0");
        assert_eq!(redis.ca_file, None);
        assert_eq!(redis.password, None);
    }

    #[test]
    fn ipv6_redis_host_is_bracketed() {
        let cli = parse(&[
            "--redis.host",
            "::1",
            "--redis.port",
            "7000",
            "--redis.db",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.config.redis().unwrap().url, "redis://[::1]:7000/2");
    }

    #[test]
    fn bad_values_name_the_flag_and_the_env_variable() {
        for (flag, value, env) in [
            ("--redis.port", "abc", "REDIS_PORT"),
            ("--harvest.poll-interval", "0", "POLL_INTERVAL_SEC"),
            ("--redis.addr", "http://x", "REDIS_URL"),
            ("--log.level", "loud", "LOG_LEVEL"),
            ("--web.listen-address", "no where", "LISTEN_ADDRESS"),
            ("--web.telemetry-path", "/health", "WEB_TELEMETRY_PATH"),
            ("--log.format", "xml", "LOG_FORMAT"),
            ("--history.points", "-1", "HISTORY_POINTS"),
            ("--history.points", "1001", "HISTORY_POINTS"),
            ("--history.max-age", "-5m", "HISTORY_MAX_AGE"),
            ("--history.max-age", "25h", "HISTORY_MAX_AGE"),
        ] {
            let message = parse(&[flag, value]).unwrap_err().to_string();
            assert!(message.contains(flag) && message.contains(env), "{message}");
        }
    }

    #[test]
    fn history_is_on_by_default_off_at_zero_and_never_a_span_of_nothing() {
        let defaults = parse(&[]).unwrap().config.history();
        assert_eq!(
            (defaults.points, defaults.max_age),
            (24, Duration::from_secs(3_600))
        );
        for off in [&["--history.points", "0"][..], &["--history.max-age", "0"]] {
            let history = parse(off).unwrap().config.history();
            assert!(history.points == 0 || history.max_age.is_zero(), "{off:?}");
        }
        let message = parse(&["--history.points", "20", "--history.max-age", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--history.points") && message.contains("--history.max-age"),
            "{message}"
        );
        let custom = parse(&["--history.points", "60", "--history.max-age", "2h"]).unwrap();
        assert_eq!(custom.config.history().max_age, Duration::from_secs(7_200));
    }
}
