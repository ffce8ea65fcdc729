//! The `hale` binary: `hale proxy | vmcp | demo | status`.
//!
//! The subcommands arrive with the crates behind them; until then the binary says so
//! instead of pretending.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks on stdout and stderr

use std::process::ExitCode;

const USAGE: &str = "\
hale: keeps MCP traffic flowing when the servers behind it fail

usage: hale <proxy|vmcp|demo|status> [options]

Not available yet in this build: the subcommands land with hale-proxy, hale-vmcp and the
demo. Meanwhile, watch the core state machines at work with:
    cargo run -p hale-core --example walkthrough";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => {
            println!("hale {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
