//! `hale vmcp`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hale_vmcp::{Vmcp, VmcpConfig, VmcpError};
use tokio_util::sync::CancellationToken;

use crate::logging;

#[derive(clap::Args)]
#[command(
    after_help = "Either --config FILE (ToolHive's vMCP keys, see docs/configuration.md) or one --backend per server."
)]
pub(crate) struct Args {
    /// The configuration file (YAML, camelCase keys, Go durations).
    #[arg(long, conflicts_with = "backend")]
    config: Option<PathBuf>,
    /// A backend as NAME=URL (streamable HTTP) or NAME=URL@sse; repeat for each.
    #[arg(long)]
    backend: Vec<String>,
    /// Address to listen on (overrides the file's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// How long MCP requests in flight may take to finish at shutdown (Go syntax).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    drain_timeout: Duration,
    /// The server's name (with --backend).
    #[arg(long, default_value = "vmcp")]
    name: String,
    /// Let anyone who reaches --listen call every tool (with --backend; a configuration
    /// file says `incomingAuth: {type: anonymous}` instead). Needed for a non-loopback
    /// --listen without a configuration file.
    #[arg(long, conflicts_with = "config")]
    anonymous: bool,
}

pub(crate) async fn run(args: Args) -> ExitCode {
    let config = match (&args.config, args.backend.is_empty()) {
        (Some(path), _) => VmcpConfig::from_file(path),
        (None, false) => VmcpConfig::from_flags(
            &args.name,
            args.listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4483))),
            &args.backend,
        ),
        (None, true) => {
            logging::say("hale vmcp: give --config FILE or at least one --backend NAME=URL");
            return ExitCode::from(2);
        }
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            logging::say(format_args!("hale vmcp: {e}"));
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.anonymous {
        config.incoming_auth = Some(hale_vmcp::config::IncomingAuth::Anonymous);
    }
    serve(
        config,
        args.config,
        args.drain_timeout,
        logging::shutdown_signal(),
        None,
    )
    .await
}

/// Binds, prints where to reach the vMCP, and serves until `stop`; `file`, if given, is
/// read again on SIGHUP and whenever it changes. `listening` is told the address once
/// it is bound.
pub(crate) async fn serve(
    config: VmcpConfig,
    file: Option<PathBuf>,
    drain_timeout: Duration,
    stop: CancellationToken,
    listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> ExitCode {
    let vmcp = match Vmcp::bind(config, logging::metrics(&hale_proxy::DURATION_BUCKETS)).await {
        Ok(v) => match file {
            Some(path) => v.with_config_file(path),
            None => v,
        }
        .with_drain_timeout(drain_timeout),
        Err(e) => {
            logging::say(format_args!("hale: {e}"));
            return ExitCode::from(match e {
                VmcpError::Listen { .. } => 1,
                VmcpError::Config(_)
                | VmcpError::Unprotected { .. }
                | VmcpError::Auth(_)
                | VmcpError::Telemetry(_) => 2,
            });
        }
    };
    let addr = vmcp.local_addr();
    // A reader that went away after the first line must not take the server down with
    // it (println! panics on a closed pipe).
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = writeln!(
        out,
        "MCP:     http://{addr}/mcp\nstatus:  http://{addr}/status\nmetrics: http://{addr}/metrics"
    );
    let _ = out.flush();
    if let Some(tell) = listening {
        let _ = tell.send(addr);
    }
    vmcp.run(stop).await;
    ExitCode::SUCCESS
}
