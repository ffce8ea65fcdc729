//! `hale-testkit serve`: a fault-injecting MCP server as a process.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks on the terminal

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};

#[derive(Parser)]
#[command(
    name = "hale-testkit",
    version,
    about = "A programmable, fault-injecting MCP server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP until interrupted; prints "listening on URL" once bound.
    Serve {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// streamable-http or sse.
        #[arg(long, default_value = "streamable-http")]
        transport: Transport,
        /// Streamable HTTP without sessions.
        #[arg(long)]
        stateless: bool,
        /// Answer with JSON bodies instead of SSE streams.
        #[arg(long)]
        json_response: bool,
        /// Also offer per-session tools: remember(value), recall(), count().
        #[arg(long)]
        session_tools: bool,
        /// Protocol eras served: both, legacy (handshake only) or modern (2026-07-28 only).
        #[arg(long, default_value = "both")]
        era: hale_testkit::Era,
        /// A fault in force from the start: down, hang, slow=D, status=CODE, malformed, flap=UP/DOWN.
        #[arg(long)]
        fault: Option<Fault>,
        /// Also serve the control endpoint on this port (0 picks a free one).
        #[arg(long)]
        control_port: Option<u16>,
        /// Refuse MCP requests (401) without `Authorization: Bearer TOKEN`.
        #[arg(long, env = "HALE_TESTKIT_REQUIRE_TOKEN")]
        require_token: Option<String>,
    },
    /// Serve a test OAuth issuer (discovery document, JWKS, /token?sub=&aud=&scope=)
    /// signing with published test keys; prints "issuer URL" once bound. Tests only.
    Issuer {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    if let Command::Issuer { port } = command {
        return match hale_testkit::TestIssuer::start_on(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
        {
            Ok(issuer) => {
                println!("issuer {}", issuer.issuer());
                let _ = tokio::signal::ctrl_c().await;
                issuer.shutdown();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hale-testkit: cannot listen on port {port}: {e}");
                ExitCode::from(1)
            }
        };
    }
    let Command::Serve {
        port,
        host,
        transport,
        stateless,
        json_response,
        session_tools,
        era,
        fault,
        control_port,
        require_token,
    } = command
    else {
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hale-testkit: --host {host:?} --port {port}: not an address ({e})");
            return ExitCode::from(2);
        }
    };
    let config = ServerConfig {
        addr,
        transport,
        stateless,
        json_response,
        session_tools,
        era,
        require_token,
        ..ServerConfig::default()
    };
    let server = match TestServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hale-testkit: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(port) = control_port {
        match hale_testkit::control::serve(server.clone(), SocketAddr::new(addr.ip(), port)).await {
            Ok(bound) => println!("control on http://{bound}"),
            Err(e) => {
                eprintln!("hale-testkit: cannot listen for control on port {port}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if fault.is_some() {
        server.set_fault(fault).await;
    }
    println!("listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown();
    ExitCode::SUCCESS
}
