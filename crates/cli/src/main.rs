//! The `hale` binary: `hale proxy | vmcp | demo | status`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks on stdout and stderr

mod demo;
mod logging;
mod proxy;
mod status;
mod vmcp;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the vMCP's request path allocates on every call
/// (JSON in and out), and this allocator takes about a tenth off its CPU per call
/// (docs/decisions/0008-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hale",
    version,
    about = "Keeps MCP traffic flowing when the servers behind it fail"
)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A transparent proxy for one MCP server that shuts down when the server is gone.
    Proxy(Box<proxy::Args>),
    /// A virtual MCP server over many backends, with health checks and circuit breakers.
    Vmcp(vmcp::Args),
    /// Everything in one process: three misbehaving backends behind a vMCP.
    Demo(demo::Args),
    /// The backends of a running vMCP, as a table.
    Status(status::Args),
}

/// Durations on the command line use Go syntax, as ToolHive's do: `10s`, `1m30s`, `250ms`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    hale_core::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Like [`parse_duration`], with `0` meaning "none".
fn parse_duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(text)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_format);
    let code = match cli.command {
        Command::Proxy(args) => proxy::run(*args).await,
        Command::Vmcp(args) => vmcp::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Status(args) => status::run(args),
    };
    // The last lines (why it stopped) are worth a short wait; a stuck stderr is not.
    logging::flush(std::time::Duration::from_millis(500));
    code
}
