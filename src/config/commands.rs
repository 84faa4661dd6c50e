//! The subcommands and their own flags: `simulate`'s and `status`'s, with the checks clap
//! cannot make on `status` (TLS flags against the URL, credentials in pairs). The exporter's
//! settings and the value parsers are `config`'s.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::parse::{
    boolean, duration, exporter_url, password_file, pem_file, symbol, symbol_list, trimmed,
};
use super::{ExporterUrl, SymbolList};
use crate::secret::Secret;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish simulated proposals to Redis the way the real publisher does (for demos and tests).
    Simulate(SimulateArgs),
    /// Print the proposals as a table, or one symbol's story, with an exit code for scripts and
    /// cron.
    ///
    /// Exit code 0: all fresh, every kill score below 0.6; 1: a kill score at or above 0.6;
    /// 2: stale or missing data, or Redis or the exporter unreachable. With SYMBOL, the same for
    /// that symbol alone. Without --from, Redis is read once with the exporter's own settings.
    Status(StatusArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Tell this symbol's story: its current values, and with --from its history, events and
    /// the apply layer's plans.
    #[arg(value_name = "SYMBOL", value_parser = symbol)]
    pub symbol: Option<String>,
    /// Read a running exporter's /api/v1/proposals (e.g. http://127.0.0.1:8042, or https://
    /// with --tls.ca-file) instead of Redis.
    #[arg(long, value_name = "URL", value_parser = exporter_url)]
    pub from: Option<ExporterUrl>,
    /// Print the JSON document of /api/v1/proposals (with SYMBOL, of
    /// /api/v1/proposals/SYMBOL) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Redraw every poll interval (at least 1s) until interrupted; with --json, one document
    /// per line. Exits with the last report's code.
    #[arg(long)]
    pub watch: bool,
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
pub(super) const STATUS_PASSWORD_ENV: &str = "HARVEST_STATUS_PASSWORD";

impl StatusArgs {
    /// Takes the password from the environment when no file gave one, and checks what clap
    /// cannot: the URL's scheme against the TLS flags, and credentials given in pairs.
    pub(super) fn complete(&mut self, env_password: Option<String>) -> Result<(), String> {
        self.username = self.username.take().filter(|u| !u.is_empty());
        if self.password.is_none() {
            self.password = env_password
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .map(Secret::new);
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
    /// Time between two publications (2s, 500ms; a bare number is seconds).
    #[arg(long, default_value = "2", value_parser = duration)]
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

impl SimulateArgs {
    /// The symbols whose plans the simulated apply layer executes: by default the first of
    /// --symbols; `None` (every symbol) for `*`.
    pub fn allowlist(&self) -> Option<Vec<String>> {
        match &self.allowlist {
            None => Some(self.symbols.0.iter().take(1).cloned().collect()),
            Some(list) if list.0.is_empty() => None,
            Some(list) => Some(list.0.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Cli;

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
    fn status_symbol_and_watch() {
        let status = status_args(&[], None).unwrap();
        assert_eq!((status.symbol, status.watch), (None, false));
        let status = status_args(&["BTCUSDT", "--watch", "--json"], None).unwrap();
        assert_eq!(status.symbol.as_deref(), Some("BTCUSDT"));
        assert!(status.watch && status.json);
        let status = status_args(&["--from", "http://127.0.0.1:8042", "BTC/USDT é"], None).unwrap();
        assert_eq!(
            status.symbol.as_deref(),
            Some("BTC/USDT é"),
            "any valid key suffix"
        );
        for (bad, expected) in [
            ("", "symbol is empty"),
            ("BTC\x1b[2J", "control characters"),
            (&"X".repeat(300), "longer than"),
        ] {
            let error = status_args(&[bad], None).unwrap_err();
            assert!(
                error.contains("SYMBOL") && error.contains(expected),
                "{bad:?}: {error}"
            );
        }
        assert!(
            status_args(&["BTCUSDT", "ETHUSDT"], None).is_err(),
            "one symbol"
        );
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
            Some(Secret::new("s3cret")),
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
        assert_eq!(status.password, Some(Secret::new("from-the-env")));
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
}
