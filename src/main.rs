//! The `harvest-exporter` binary: reads the settings, then runs the exporter (the refresh loop and
//! the HTTP server), the simulator or the status command. Only wiring lives here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use harvest_exporter::config::{self, Cli, Command, Config};
use harvest_exporter::listener;
use harvest_exporter::logging;
use harvest_exporter::refresh::{Refresher, unix_now};
use harvest_exporter::server::{self, Security, WebConfigState, WebSettings};
use harvest_exporter::simulate;
use harvest_exporter::source::{self, Source, Symbols};
use harvest_exporter::status;
use harvest_exporter::streams::Follower;
use harvest_exporter::webconfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn main() -> ExitCode {
    tune_allocator();
    let cli = match config::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    // To stderr, so to the journal under systemd.
    logging::init(cli.config.log_level, cli.config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Connections still open (a client that never reads, say) must not delay the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's defaults suit many short-lived threads; here one refresh at a time allocates a
/// multi-megabyte body and frees the previous one. One arena and a fixed mmap threshold return
/// those bodies to the system as soon as they are freed, which keeps the resident set near the
/// live data (measured at 10,000 symbols: 32 MB instead of 53 to 62 MB).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, and runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => export(cli.config).await.map(|()| ExitCode::SUCCESS),
        Some(Command::Simulate(args)) => {
            let allowlist = args.allowlist();
            let symbols = args.symbols.0;
            let apply = args.apply.then_some(simulate::ApplyOptions {
                plan_stream: cli.config.plan_stream.clone(),
                result_stream: cli.config.result_stream.clone(),
                allowlist,
            });
            let options = simulate::Options {
                symbols,
                interval: args.interval,
                rounds: (args.rounds > 0).then_some(args.rounds),
                seed: args.seed,
                heat_gate: args.heat_gate,
                apply,
            };
            let redis = cli.config.redis()?;
            if redis.topology != source::Topology::Single {
                anyhow::bail!(
                    "simulate writes to the one Redis at --redis.addr (REDIS_URL): unset \
                     REDIS_SENTINELS and REDIS_CLUSTER_NODES for it"
                );
            }
            tokio::select! {
                result = simulate::run(&redis, &cli.config.prefix, options) => {
                    result.context("simulator stopped").map(|()| ExitCode::SUCCESS)
                }
                () = shutdown_signal() => Ok(ExitCode::SUCCESS),
            }
        }
        Some(Command::Status(args)) => {
            let credentials = args
                .username
                .zip(args.password)
                .map(|(username, password)| status::Credentials {
                    username,
                    password: password.expose().to_owned(),
                });
            let tls = args.tls_ca_file.map(|ca_file| status::ClientTls {
                ca_file,
                client_cert: args.tls_cert_file.zip(args.tls_key_file),
            });
            let options = status::Options {
                from: args.from.map(|url| status::Exporter {
                    url: url.to_string(),
                    host: url.host,
                    port: url.port,
                    authority: url.authority,
                    path: url.path,
                    tls,
                    credentials,
                }),
                symbol: args.symbol,
                json: args.json,
                watch: args.watch,
                redis: cli.config.redis()?,
                prefix: cli.config.prefix.clone(),
                symbols: cli.config.symbols(),
                poll_interval: cli.config.poll_interval,
                max_symbols: cli.config.max_symbols,
                apply_streams: cli.config.apply_streams.then(|| {
                    (
                        cli.config.plan_stream.clone(),
                        cli.config.result_stream.clone(),
                    )
                }),
            };
            Ok(ExitCode::from(
                status::run(options, shutdown_signal()).await,
            ))
        }
    }
}

async fn export(config: Config) -> anyhow::Result<()> {
    // Taken over before anything else: SIGHUP's default action ends the process, and systemd's
    // Restart=on-failure counts that as a clean exit, leaving the service down.
    let hangups = hangup_signals()?;
    let security = web_security(&config)?;
    let (listeners, listening) = listen(&config, &security).await?;
    let symbols = config.symbols();
    let redis = config.redis()?;
    let source = Source::new(
        &redis,
        &config.prefix,
        symbols.clone(),
        harvest_exporter::proposal_keys(),
    )
    .context("invalid redis settings")?;
    let symbols_text = match &symbols {
        Symbols::Discover => format!("every key under {:?}", config.prefix),
        Symbols::Fixed(list) => list.join(","),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = ?listening,
        redis = source.addr(),
        symbols = symbols_text,
        poll_interval = ?config.poll_interval,
        "harvest-exporter started"
    );
    let (mut refresher, published) = Refresher::new(
        source,
        config.poll_interval,
        config.max_symbols,
        config.events,
        config.history(),
    );
    let failovers = source::switches(&redis).context("invalid sentinel settings")?;
    let announced = failovers.as_ref().map(|(_, announced)| announced.clone());
    let listening_to_sentinels = failovers.map(|(switches, _)| tokio::spawn(switches.run()));
    if let Some(announced) = &announced {
        refresher.follow_failovers(announced.clone());
    }
    let refreshing = tokio::spawn(refresher.run());
    let (following, apply) = if config.apply_streams {
        let (mut follower, apply) = Follower::new(
            &redis,
            &config.plan_stream,
            &config.result_stream,
            config.history().kept_for(),
        )
        .context("invalid redis settings")?;
        if let Some(announced) = announced {
            follower.follow_failovers(announced);
        }
        (Some(tokio::spawn(follower.run())), apply)
    } else {
        (None, tokio::sync::watch::channel(Arc::default()).1)
    };
    let web = WebSettings {
        telemetry_path: config.telemetry_path.clone(),
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
    };
    let web_config = Arc::new(WebConfigState::new(security, unix_now()));
    let reloading = tokio::spawn(reload_on_hangup(
        hangups,
        config.clone(),
        Arc::clone(&web_config),
    ));
    server::serve(
        listeners,
        published,
        apply,
        web,
        web_config,
        shutdown_signal(),
    )
    .await;
    tracing::info!("shutting down");
    reloading.abort();
    if let Some(following) = following {
        following.abort();
    }
    if let Some(listening) = listening_to_sentinels {
        listening.abort();
    }
    // Stopped here, before the runtime drops its Redis connection under it, so that a refresh
    // in flight is abandoned quietly instead of failing.
    refreshing.abort();
    let _ = refreshing.await;
    Ok(())
}

/// The listening sockets (bound, or handed over by systemd) and their addresses; warns of each
/// one reachable beyond this host without both TLS and authentication.
async fn listen(
    config: &Config,
    security: &Security,
) -> anyhow::Result<(Vec<TcpListener>, Vec<SocketAddr>)> {
    let listeners = if config.systemd_socket {
        listener::from_systemd()?
    } else {
        listener::bind(&config.listen_targets()).await?
    };
    let listening: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for &listen in &listening {
        if security.exposed(listen) {
            tracing::warn!(
                %listen,
                tls = security.tls.is_some(),
                basic_auth = security.auth.is_some(),
                "listening beyond this host without both TLS and authentication (see --web.config.file)"
            );
        }
    }
    Ok((listeners, listening))
}

/// Loads `--web.config.file`, if given.
fn web_security(config: &Config) -> anyhow::Result<Security> {
    let Some(path) = config
        .web_config_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    else {
        return Ok(Security::default());
    };
    let web = webconfig::load(path).context("invalid --web.config.file (WEB_CONFIG_FILE)")?;
    for setting in &web.ignored {
        tracing::warn!(
            "{}: {setting} is accepted but not applied by this exporter",
            path.display()
        );
    }
    tracing::info!(
        tls = web.tls.is_some(),
        basic_auth = web.auth.is_some(),
        "web configuration loaded from {}",
        path.display()
    );
    Ok(Security {
        tls: web.tls.map(TlsAcceptor::from),
        auth: web.auth.map(Arc::new),
        headers: web.headers,
    })
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

fn hangup_signals() -> anyhow::Result<Hangups> {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP");
    #[cfg(not(unix))]
    Ok(())
}

/// Re-reads `--web.config.file` on every SIGHUP. A file that no longer loads leaves the one in
/// force serving, as Prometheus does, and says so in the log and in the reload gauge.
async fn reload_on_hangup(mut hangups: Hangups, config: Config, web_config: Arc<WebConfigState>) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        match web_security(&config) {
            Ok(security) => {
                web_config.replace(security, unix_now());
                tracing::info!("SIGHUP: web configuration reloaded");
            }
            Err(error) => {
                web_config.reload_failed();
                tracing::error!("SIGHUP: {error:#}; the previous web configuration stays in force");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (hangups, config, web_config);
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
