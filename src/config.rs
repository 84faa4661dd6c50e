//! Command-line flags and environment variables, read once at start-up and checked: every value
//! is trimmed (env files written on Windows end lines with `\r`), and a bad one stops start-up
//! with a message naming both the flag and the env variable. Holds no runtime state.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hyper::Uri;

use crate::proposal;
use crate::source::{RedisSettings, Symbols};

pub const DEFAULT_PREFIX: &str = "quantum:harvest:proposal:";
/// The exporter's JSON document, which `status --from` reads.
const PROPOSALS_PATH: &str = "/api/v1/proposals";

#[derive(Debug, Parser)]
#[command(
    name = "harvest-exporter",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::LONG_VERSION,
    about = "Prometheus exporter for the harvest proposals a trading system keeps in Redis hashes.",
    long_about = "Prometheus exporter for the harvest proposals a trading system keeps in Redis \
hashes (quantum:harvest:proposal:<SYMBOL>).\n\nEvery setting can be given as a flag or as the \
environment variable shown with it; a flag wins over the environment. The environment names are \
those of the original exporter's env file, so that file keeps working."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish simulated proposals to Redis the way the real publisher does (for demos and tests).
    Simulate(SimulateArgs),
    /// Print the proposals as a table, with an exit code for scripts and cron.
    ///
    /// Exit code 0: all fresh, every kill score below 0.6; 1: a kill score at or above 0.6;
    /// 2: stale or missing data, or Redis or the exporter unreachable. Without --from, Redis is
    /// read once with the exporter's own settings.
    Status(StatusArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Read a running exporter's /api/v1/proposals (e.g. http://127.0.0.1:8042, or https://
    /// with --tls.ca-file) instead of Redis.
    #[arg(long, value_name = "URL", value_parser = exporter_url)]
    pub from: Option<ExporterUrl>,
    /// Print the JSON document of /api/v1/proposals instead of the table.
    #[arg(long)]
    pub json: bool,
    /// PEM file with the CA certificate that signed the exporter's certificate; needed for an
    /// https:// --from URL (the system's bundle, e.g. /etc/ssl/certs/ca-certificates.crt, for a
    /// public CA).
    #[arg(long = "tls.ca-file", value_name = "FILE", value_parser = pem_file, requires = "from")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for an exporter that requires one (mutual TLS); with
    /// --tls.key-file.
    #[arg(long = "tls.cert-file", value_name = "FILE", value_parser = pem_file, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls.cert-file.
    #[arg(long = "tls.key-file", value_name = "FILE", value_parser = pem_file, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// User for the exporter's basic auth (its web config's basic_auth_users).
    #[arg(long = "auth.username", env = STATUS_USERNAME_ENV, value_name = "USER", value_parser = trimmed)]
    pub username: Option<String>,
    /// File holding the basic-auth password (spaces and line ends around it are ignored). Or set
    /// HARVEST_STATUS_PASSWORD; there is no flag for the password itself, as the command line is
    /// visible to every user of the host.
    #[arg(long = "auth.password-file", env = "HARVEST_STATUS_PASSWORD_FILE", value_name = "FILE", value_parser = password_file)]
    pub password: Option<Secret>,
}

/// The basic-auth user of `status --from`.
const STATUS_USERNAME_ENV: &str = "HARVEST_STATUS_USERNAME";
/// The basic-auth password of `status --from`, when `--auth.password-file` is not given: an
/// environment variable only.
const STATUS_PASSWORD_ENV: &str = "HARVEST_STATUS_PASSWORD";

/// A password, kept out of `Debug` output so that it cannot reach a log or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl StatusArgs {
    /// Takes the password from the environment when no file gave one, and checks what clap
    /// cannot: the URL's scheme against the TLS flags, and credentials given in pairs.
    fn complete(&mut self, env_password: Option<String>) -> Result<(), String> {
        self.username = self.username.take().filter(|u| !u.is_empty());
        if self.password.is_none() {
            self.password = env_password
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .map(Secret);
        }
        let Some(from) = &self.from else {
            // Reading Redis: credentials from an env file meant for --from are not an error.
            return Ok(());
        };
        match (from.tls, self.tls_ca_file.is_some()) {
            (true, false) => {
                return Err(format!(
                    "{from} is https://: give --tls.ca-file, the CA that signed the exporter's certificate"
                ));
            }
            (false, true) => {
                return Err(format!(
                    "--tls.ca-file is for an https:// --from URL, and {from} is http://"
                ));
            }
            _ => {}
        }
        match (&self.username, &self.password) {
            (Some(_), None) => Err(format!(
                "--auth.username ({STATUS_USERNAME_ENV}) needs a password: give --auth.password-file or set {STATUS_PASSWORD_ENV}"
            )),
            (None, Some(_)) => Err(format!(
                "a password was given (--auth.password-file or {STATUS_PASSWORD_ENV}) without --auth.username ({STATUS_USERNAME_ENV})"
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Comma-separated symbols to publish.
    #[arg(long, default_value = "BTCUSDT,ETHUSDT,SOLUSDT", value_parser = symbol_list)]
    pub symbols: SymbolList,
    /// Seconds between two publications.
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub interval: Duration,
    /// Stop after this many publications (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// Seed for the random walk, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write what the heat gate adds (action, original_action, calibrated=1, EXPIRE 300).
    #[arg(long)]
    pub heat_gate: bool,
    /// Also play the apply layer: each round, a plan per proposal and a result per plan on the
    /// streams --apply.plan-stream and --apply.result-stream name, with the real system's field
    /// sets (--apply=false: proposals only).
    #[arg(long = "apply", default_value = "true", value_parser = boolean, num_args = 0..=1, default_missing_value = "true")]
    pub apply: bool,
    /// Comma-separated symbols the simulated apply layer may execute; the others are skipped
    /// with not_in_allowlist, as in the real system's dry run. Default: the first of --symbols;
    /// * allows every symbol.
    #[arg(long = "apply.allowlist", value_name = "SYMBOLS", value_parser = symbol_list)]
    pub allowlist: Option<SymbolList>,
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

    /// Seconds a client may take to send its request head before the connection is closed.
    #[arg(long = "web.header-timeout", env = "WEB_HEADER_TIMEOUT_SEC", default_value = "5", value_parser = seconds, global = true)]
    pub header_timeout: Duration,

    /// Seconds a response may make no progress (a client that stops reading) before the
    /// connection is closed.
    #[arg(long = "web.write-timeout", env = "WEB_WRITE_TIMEOUT_SEC", default_value = "30", value_parser = seconds, global = true)]
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

    /// Redis URL (redis:// or rediss:// for TLS, with optional user:password@ and /db); replaces
    /// --redis.host, --redis.port and --redis.db.
    #[arg(long = "redis.addr", env = "REDIS_URL", value_parser = redis_url, global = true)]
    pub redis_url: Option<String>,

    /// Redis password, used when the URL carries none. Prefer the env file (mode 0640) to the
    /// command line, which other users can read.
    #[arg(long = "redis.password", env = "REDIS_PASSWORD", hide_env_values = true, value_parser = trimmed, global = true)]
    pub redis_password: Option<String>,

    /// File holding the Redis password (trailing newline ignored), read at start-up; the usual
    /// way to keep it out of the command line and the environment. Excludes --redis.password.
    #[arg(long = "redis.password-file", env = "REDIS_PASSWORD_FILE", value_parser = readable_file, conflicts_with = "redis_password", global = true)]
    pub redis_password_file: Option<PathBuf>,

    /// PEM file with the CA certificate that signed the Redis server's certificate (rediss://);
    /// without it the system's trust store is used.
    #[arg(long = "redis.tls-ca-file", env = "REDIS_TLS_CA_FILE", value_parser = readable_file, global = true)]
    pub redis_ca_file: Option<PathBuf>,

    /// Seconds to wait for a connection to Redis.
    #[arg(long = "redis.connect-timeout", env = "REDIS_CONNECT_TIMEOUT_SEC", default_value = "2", value_parser = seconds, global = true)]
    pub redis_connect_timeout: Duration,

    /// Seconds to wait for Redis to answer a command.
    #[arg(long = "redis.timeout", env = "REDIS_TIMEOUT_SEC", default_value = "2", value_parser = seconds, global = true)]
    pub redis_timeout: Duration,

    /// Comma-separated symbols to export. Empty or * discovers every key under the prefix with
    /// SCAN on each refresh.
    #[arg(long = "harvest.symbols", env = "SYMBOLS", default_value = "", value_parser = symbol_list, global = true)]
    pub symbols: SymbolList,

    /// Key prefix of the proposal hashes; the rest of the key is the symbol.
    #[arg(long = "harvest.prefix", env = "HARVEST_PREFIX", default_value = DEFAULT_PREFIX, value_parser = prefix, global = true)]
    pub prefix: String,

    /// Seconds between two reads of Redis.
    #[arg(long = "harvest.poll-interval", env = "POLL_INTERVAL_SEC", default_value = "5", value_parser = seconds, global = true)]
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
    fn redis_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = self
            .redis_password_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Ok(self.redis_password.clone().filter(|p| !p.is_empty()));
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()).filter(|p| !p.is_empty()))
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
        Ok(RedisSettings {
            url,
            password: self.redis_password()?,
            ca_file: self
                .redis_ca_file
                .clone()
                .filter(|path| !path.as_os_str().is_empty()),
            connect_timeout: self.redis_connect_timeout,
            response_timeout: self.redis_timeout,
        })
    }

    pub fn symbols(&self) -> Symbols {
        if self.symbols.0.is_empty() {
            Symbols::Discover
        } else {
            Symbols::Fixed(self.symbols.0.clone())
        }
    }
}

/// Parses the command line and environment. On a bad value the error also names the env variable
/// the value may have come from.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let mut cli = Cli::try_parse_from(args).map_err(|mut error| {
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
                        format!("the value comes from {arg} or the environment variable {env}")
                            .into(),
                    ]),
                );
            }
        }
        error
    })?;
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

fn trimmed(raw: &str) -> Result<String, String> {
    Ok(raw.trim().to_owned())
}

/// A readable file, or empty for none (as `KEY=` in an env file means).
fn readable_file(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    if !path.as_os_str().is_empty() {
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// A readable PEM file; unlike the exporter's settings there is no env file to leave it empty in.
fn pem_file(raw: &str) -> Result<PathBuf, String> {
    let path = readable_file(raw)?;
    if path.as_os_str().is_empty() {
        return Err("expected a file".into());
    }
    Ok(path)
}

/// The password in a file, without the spaces and line end around it (as Prometheus reads its
/// `password_file`).
fn password_file(raw: &str) -> Result<Secret, String> {
    let path = pem_file(raw)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(password.to_owned()))
}

fn port(raw: &str) -> Result<u16, String> {
    match raw.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port number from 1 to 65535".into()),
    }
}

fn database(raw: &str) -> Result<u32, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected a database number (0, 1, ...)".into())
}

fn positive_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err("expected a whole number greater than 0".into()),
    }
}

/// Seconds as a decimal number, from a millisecond to a day.
fn seconds(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<f64>() {
        Ok(secs) if (0.001..=86_400.0).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err("expected seconds, a number from 0.001 to 86400 (e.g. 5 or 0.5)".into()),
    }
}

fn host(raw: &str) -> Result<String, String> {
    let host = raw.trim();
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || "/@?#".contains(c))
    {
        return Err("expected a host name or IP address".into());
    }
    Ok(host.to_owned())
}

fn redis_url(raw: &str) -> Result<String, String> {
    use redis::IntoConnectionInfo;
    let url = raw.trim();
    if url.is_empty() {
        return Ok(String::new());
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("expected a redis:// or rediss:// URL".into());
    }
    url.into_connection_info().map_err(|e| e.to_string())?;
    Ok(url.to_owned())
}

fn prefix(raw: &str) -> Result<String, String> {
    let prefix = raw.trim();
    if prefix.is_empty() {
        return Err("the prefix must not be empty".into());
    }
    Ok(prefix.to_owned())
}

fn stream_key(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err("the stream key must not be empty".into());
    }
    Ok(key.to_owned())
}

fn symbol_list(raw: &str) -> Result<SymbolList, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(SymbolList(Vec::new()));
    }
    let mut symbols = Vec::new();
    for symbol in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        proposal::parse_symbol(symbol.as_bytes()).map_err(|e| format!("{symbol:?}: {e}"))?;
        if !symbols.iter().any(|s| s == symbol) {
            symbols.push(symbol.to_owned());
        }
    }
    Ok(SymbolList(symbols))
}

fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn log_level(raw: &str) -> Result<tracing::Level, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "error" | "critical" => Ok(tracing::Level::ERROR),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        "trace" => Ok(tracing::Level::TRACE),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or `:port` (every interface), the host an IP
/// literal or a name (`localhost`, a DNS name), resolved when binding.
fn listen_address(raw: &str) -> Result<ListenAddress, String> {
    let raw = raw.trim();
    let ip = |host: IpAddr, port: Option<u16>| ListenAddress {
        host: host.to_string(),
        port,
    };
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(ip(addr.ip(), Some(addr.port())));
    }
    let bare = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return Ok(ip(addr, None));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some(("", port_text)) => {
            return Ok(ip(Ipv4Addr::UNSPECIFIED.into(), Some(port(port_text)?)));
        }
        Some((host, port_text)) => (host, Some(port(port_text)?)),
        None => (raw, None),
    };
    let valid_name = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_name {
        return Err(
            "expected an IP address or host name with an optional port, e.g. 127.0.0.1, localhost:8042, 0.0.0.0:8042 or [::1]:8042"
                .into(),
        );
    }
    Ok(ListenAddress {
        host: host.to_owned(),
        port,
    })
}

fn telemetry_path(raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err("expected a path starting with /, e.g. /metrics".into());
    }
    if matches!(path, "/" | "/health" | "/ready" | "/api/v1/proposals") {
        return Err(format!("{path} is taken by another endpoint"));
    }
    Ok(path.to_owned())
}

fn log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "logfmt" => Ok(LogFormat::Logfmt),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected logfmt or json".into()),
    }
}

/// Parses `--from`.
fn exporter_url(raw: &str) -> Result<ExporterUrl, String> {
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected e.g. http://127.0.0.1:8042"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err("expected an http:// or https:// URL, e.g. http://127.0.0.1:8042".into());
        }
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err(
            "expected http[s]://host[:port][/path]: give the user with --auth.username".into(),
        );
    }
    if uri.query().is_some() {
        return Err("expected http[s]://host[:port][/path], without a query".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let path = format!("{}{PROPOSALS_PATH}", uri.path().trim_end_matches('/'));
    path.parse::<Uri>().map_err(|e| format!("bad path: {e}"))?;
    Ok(ExporterUrl {
        tls,
        authority: authority.as_str().to_owned(),
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("harvest-exporter").chain(args.iter().copied()))
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
        ] {
            let message = parse(&[flag, value]).unwrap_err().to_string();
            assert!(message.contains(flag) && message.contains(env), "{message}");
        }
    }

    fn status_args(args: &[&str], env_password: Option<&str>) -> Result<StatusArgs, String> {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        let Some(Command::Status(mut status)) =
            Cli::try_parse_from(std::iter::once("harvest-exporter").chain(all))
                .map_err(|e| e.to_string())?
                .command
        else {
            unreachable!("parsed as status")
        };
        status.complete(env_password.map(str::to_owned))?;
        Ok(status)
    }

    #[test]
    fn status_credentials_and_tls_flags() {
        let dir = std::env::temp_dir().join(format!("harvest-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let (ca, password) = (file("ca.crt", "pem"), file("password", " s3cret\r\n"));
        let https = "https://127.0.0.1:8042";

        let status = status_args(
            &[
                "--from",
                https,
                "--tls.ca-file",
                &ca,
                "--auth.username",
                "prometheus",
                "--auth.password-file",
                &password,
            ],
            Some("from-the-env"),
        )
        .unwrap();
        assert_eq!(status.username.as_deref(), Some("prometheus"));
        assert_eq!(
            status.password,
            Some(Secret("s3cret".into())),
            "the file wins"
        );
        assert_eq!(format!("{:?}", status.password), "Some(Secret(..))");
        let status = status_args(
            &[
                "--from",
                https,
                "--tls.ca-file",
                &ca,
                "--auth.username",
                "prometheus",
            ],
            Some("from-the-env\n"),
        )
        .unwrap();
        assert_eq!(status.password, Some(Secret("from-the-env".into())));
        // Reading Redis, a password in the environment is not for this run.
        assert!(status_args(&[], Some("unused")).is_ok());

        for (args, env_password, expected) in [
            (vec!["--from", https], None, "give --tls.ca-file"),
            (
                vec!["--from", "http://127.0.0.1:8042", "--tls.ca-file", &ca],
                None,
                "is http://",
            ),
            (vec!["--tls.ca-file", &ca], None, "--from"),
            (
                vec![
                    "--from",
                    https,
                    "--tls.ca-file",
                    &ca,
                    "--tls.cert-file",
                    &ca,
                ],
                None,
                "--tls.key-file",
            ),
            (
                vec![
                    "--from",
                    https,
                    "--tls.ca-file",
                    &ca,
                    "--auth.username",
                    "u",
                ],
                None,
                "needs a password",
            ),
            (
                vec!["--from", https, "--tls.ca-file", &ca],
                Some("pw"),
                "without --auth.username",
            ),
            (
                vec![
                    "--from",
                    https,
                    "--tls.ca-file",
                    &ca,
                    "--auth.password-file",
                    &file("empty", "\n"),
                ],
                None,
                "is empty",
            ),
            (
                vec!["--from", "http://u:pw@127.0.0.1"],
                None,
                "--auth.username",
            ),
        ] {
            let error = status_args(&args, env_password)
                .err()
                .unwrap_or_else(|| panic!("{args:?}"));
            assert!(error.contains(expected), "{args:?}: {error}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn from_urls() {
        let url = exporter_url("http://127.0.0.1:8042").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8042, "/api/v1/proposals")
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:8042/api/v1/proposals");
        let url = exporter_url(" http://[::1]:9000/harvest/ ").unwrap();
        assert_eq!(
            (url.host.as_str(), url.authority.as_str(), url.path.as_str()),
            ("::1", "[::1]:9000", "/harvest/api/v1/proposals")
        );
        assert_eq!(exporter_url("http://exporter.internal").unwrap().port, 80);
        let url = exporter_url("https://exporter.internal/").unwrap();
        assert_eq!((url.tls, url.port), (true, 443));
        assert_eq!(
            url.to_string(),
            "https://exporter.internal/api/v1/proposals"
        );
        for bad in [
            "ftp://127.0.0.1:8042",
            "127.0.0.1:8042",
            "http://u:p@host",
            "http://host/?x=1",
            "",
            "http://",
        ] {
            assert!(exporter_url(bad).is_err(), "{bad}");
        }
    }
}
