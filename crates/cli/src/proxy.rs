//! `hale proxy`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hale_mcp::TransportKind;
use hale_proxy::{Exit, Proxy, ProxyConfig, ProxyError};

use crate::logging;

const ENV_HELP: &str = "\
Health checks (all optional; invalid, zero or negative values log a warning and use the default):
  TOOLHIVE_HEALTH_CHECK_INTERVAL           time between checks, Go syntax (default 10s)
  TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT       timeout of one check attempt (default 5s)
  TOOLHIVE_HEALTH_CHECK_RETRY_DELAY        delay before the one retry of a failed check (default 5s)
  TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD  consecutive failed checks before shutdown (default 5)

Each check is an MCP ping on a long-lived probe session. A failed check counts one
failure and is retried once after the retry delay; a successful retry resets the count.
Between a failed check and the threshold, requests wait for the server (a refused
connection is tried again after the retry delay): a blip shorter than the window costs
one slow answer. At the threshold the proxy stops accepting, answers every request it
can no longer deliver with HTTP 200 and a JSON-RPC error for its id (code -31001; on the
SSE stream for legacy SSE), drains, closes SSE streams and exits with status 3. SIGTERM
does the same with code -31003 and exit status 0.

Endpoints served by the proxy itself: GET /health (the last check's result: 200, or 503
once shutting down) and GET /metrics (Prometheus). Everything else goes to the target.";

#[derive(clap::Args)]
#[command(after_long_help = ENV_HELP, after_help = "See --help for the TOOLHIVE_HEALTH_CHECK_* variables.")]
pub(crate) struct Args {
    /// The MCP server's endpoint URL, e.g. http://127.0.0.1:8080/mcp or http://127.0.0.1:8080/sse
    /// (or a stdio server's command line after `--`).
    #[arg(long, required_unless_present = "command", conflicts_with = "command")]
    target: Option<String>,
    /// A stdio MCP server to run and proxy (`hale proxy -- npx -y @modelcontextprotocol/server-memory`):
    /// hale starts it in a process group of its own, restarts it with a backoff when it
    /// ends, and ends the group when the proxy stops.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// The server's transport.
    #[arg(long, default_value = "streamable-http", value_parser = ["streamable-http", "sse"])]
    transport: String,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How long requests in flight may take to finish at shutdown (Go syntax).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    drain_timeout: Duration,
    /// How long a request may wait for the server's answer, retries of a refused
    /// connection included (Go syntax; 0: until the proxy gives up on the server).
    #[arg(long, default_value = "0", value_parser = crate::parse_duration_or_zero)]
    request_timeout: Duration,
    /// A host name clients may use to reach the proxy, besides IP addresses and
    /// localhost (repeatable; `*` allows any). Other names get 403 (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// A browser origin allowed to call the proxy, besides its own and (on a loopback
    /// listener) loopback pages (repeatable; `*` allows any).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// How long a client may take to send a request's headers or body; an idle
    /// connection is closed after as long (Go syntax).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    read_timeout: Duration,
    /// For an https:// target: PEM CA certificates to trust besides Mozilla's roots
    /// (re-read when the file changes).
    #[arg(long, value_name = "PATH")]
    target_ca_bundle: Option<PathBuf>,
    /// For an https:// target that asks for one: the PEM client certificate chain to
    /// present (re-read when the file changes).
    #[arg(long, value_name = "PATH", requires = "target_client_key")]
    target_client_cert: Option<PathBuf>,
    /// The PEM private key of --target-client-cert.
    #[arg(long, value_name = "PATH", requires = "target_client_cert")]
    target_client_key: Option<PathBuf>,
    /// The name the target's certificate must carry (and the SNI sent), instead of the
    /// URL's host.
    #[arg(long, value_name = "NAME")]
    target_server_name: Option<String>,
    /// Accept any certificate from the target. For a test bench only: anyone on the
    /// path could read and change the traffic.
    #[arg(long)]
    target_insecure_skip_verify: bool,
    /// Do not recover client sessions when the server restarts. By default a session the
    /// server answers with 404 (or a 400 about the session) is opened again with the
    /// client's own initialize and the request replayed, so the client's session goes on
    /// (the server-side state of the old session is gone either way).
    #[arg(long)]
    no_session_recovery: bool,
    /// Export OpenTelemetry traces and metrics to this OTLP/HTTP collector: host:port
    /// (https unless --otel-insecure) or a URL; OTEL_EXPORTER_OTLP_ENDPOINT otherwise.
    #[arg(long, value_name = "ENDPOINT")]
    otel_endpoint: Option<String>,
    /// Plain HTTP to a host:port --otel-endpoint.
    #[arg(long)]
    otel_insecure: bool,
    /// service.name (default hale-proxy; or OTEL_SERVICE_NAME).
    #[arg(long, value_name = "NAME")]
    otel_service_name: Option<String>,
    /// The share of new traces recorded, 0 to 1 (default 1; or OTEL_TRACES_SAMPLER).
    #[arg(long, value_name = "RATE")]
    otel_sampling_rate: Option<f64>,
    /// The share of health checks traced, 0 to 1 (default 0.01).
    #[arg(long, value_name = "RATE")]
    otel_health_check_sampling_rate: Option<f64>,
}

/// The `--target-*` TLS flags as settings; `None` when none is given. The error names
/// the flag.
fn target_tls(args: &Args) -> Result<Option<hale_mcp::Tls>, String> {
    let options = hale_mcp::TlsOptions {
        ca_bundle: args.target_ca_bundle.clone(),
        client_cert: args.target_client_cert.clone(),
        client_key: args.target_client_key.clone(),
        server_name: args.target_server_name.clone(),
        insecure_skip_verify: args.target_insecure_skip_verify,
    };
    if options == hale_mcp::TlsOptions::default() {
        return Ok(None);
    }
    hale_mcp::Tls::new(&options).map(Some).map_err(|e| {
        let (key, reason) = (e.key(), e.reason());
        let flag = match key {
            "caBundlePath" => "--target-ca-bundle",
            "clientCertPath" => "--target-client-cert",
            "clientKeyPath" => "--target-client-key",
            "serverName" => "--target-server-name",
            _ => "--target",
        };
        format!("{flag}: {reason}")
    })
}

pub(crate) async fn run(args: Args) -> ExitCode {
    let (checks, warnings) = hale_proxy::env::from_process_env();
    for warning in &warnings {
        tracing::warn!(variable = %warning.variable, value = %warning.value, default = %warning.default, "{warning}");
    }
    let transport = if args.transport == "sse" {
        TransportKind::Sse
    } else {
        TransportKind::StreamableHttp
    };
    let tls = match target_tls(&args) {
        Ok(tls) => tls,
        Err(e) => {
            logging::say(format_args!("hale proxy: {e}"));
            return ExitCode::from(2);
        }
    };
    // A stdio server: run it on a loopback port and proxy that.
    let stdio_stop = tokio_util::sync::CancellationToken::new();
    let (target, stdio) = match (&args.target, args.command.split_first()) {
        (Some(target), _) => (target.clone(), None),
        (None, Some((program, rest))) => {
            let command = hale_stdio::StdioCommand::new(program.clone(), rest.iter().cloned());
            let server = match hale_stdio::StdioServer::bind(hale_stdio::StdioConfig::new(
                command.clone(),
            )) {
                Ok(s) => s,
                Err(e) => {
                    logging::say(format_args!(
                        "hale proxy: no loopback port for the stdio server: {e}"
                    ));
                    return ExitCode::from(1);
                }
            };
            tracing::info!(%command, "running the stdio server");
            let url = server.url();
            (url, Some(tokio::spawn(server.run(stdio_stop.clone()))))
        }
        (None, None) => {
            logging::say(format_args!(
                "hale proxy: give --target URL, or a stdio server's command after --"
            ));
            return ExitCode::from(2);
        }
    };
    if stdio.is_some() && (tls.is_some() || args.transport == "sse") {
        logging::say(format_args!(
            "hale proxy: --transport sse and the --target-* TLS flags are for --target, not a stdio command"
        ));
        return ExitCode::from(2);
    }
    let config = ProxyConfig {
        tls,
        transport,
        listen: args.listen,
        drain_timeout: args.drain_timeout,
        request_timeout: (!args.request_timeout.is_zero()).then_some(args.request_timeout),
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        read_timeout: args.read_timeout,
        session_recovery: !args.no_session_recovery,
        telemetry: hale_telemetry::Overrides {
            endpoint: args.otel_endpoint,
            insecure: args.otel_insecure.then_some(true),
            service_name: args.otel_service_name,
            sampling_rate: args.otel_sampling_rate,
            health_check_sampling_rate: args.otel_health_check_sampling_rate,
            ..hale_telemetry::Overrides::default()
        },
        metrics: logging::metrics(&hale_proxy::DURATION_BUCKETS),
        ..ProxyConfig::new(&target, checks)
    };
    let proxy = match Proxy::bind(config).await {
        Ok(p) => p,
        Err(e) => {
            logging::say(format_args!("hale proxy: {e}"));
            let code = match e {
                ProxyError::Listen { .. } => 1,
                _ => 2,
            };
            return ExitCode::from(code);
        }
    };
    // A reader that went away must not take the proxy down (println! panics on EPIPE).
    let _ = writeln!(
        std::io::stdout(),
        "listening on http://{}",
        proxy.local_addr()
    );
    let (refused, hanging) = checks.tolerance();
    tracing::info!(
        target = %hale_mcp::redact_url(&target),
        interval = ?checks.interval,
        ping_timeout = ?checks.ping_timeout,
        retry_delay = ?checks.retry_delay,
        threshold = checks.failure_threshold,
        "proxying; a dead server is given up about {refused:?} after its first failed check ({hanging:?} if it hangs)"
    );
    let exit = proxy.run(logging::shutdown_signal()).await;
    // A stdio server ends after the drain: calls in flight had their time.
    stdio_stop.cancel();
    if let Some(stdio) = stdio {
        let _ = stdio.await;
    }
    match exit {
        Exit::Interrupted => ExitCode::SUCCESS,
        Exit::ServerFailed { reason } => {
            logging::say(format_args!("hale proxy: {reason}"));
            ExitCode::from(3)
        }
    }
}
