//! Exercises one MCP server with hale's client and prints one line per step:
//! `ok STEP detail` or `FAIL STEP error`. Exits 1 if any step failed. `cargo xtask
//! interop` runs it against third-party servers.
//!
//! `cargo run -p hale-mcp --example mcp_check -- URL streamable-http|sse`

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks on stdout

use std::process::ExitCode;
use std::time::Duration;

use hale_core::CheckOutcome;
use hale_mcp::{ClientOptions, McpClient, Probe, ProbeMethod, TransportKind};
use serde_json::{Map, Value, json};

struct Report {
    failed: usize,
}

impl Report {
    fn step<T>(
        &mut self,
        name: &str,
        result: Result<T, impl std::fmt::Display>,
        detail: impl Fn(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(v) => {
                println!("ok {name} {}", detail(&v));
                Some(v)
            }
            Err(e) => {
                println!("FAIL {name} {e}");
                self.failed += 1;
                None
            }
        }
    }
}

/// Arguments for a tool: every required string property gets "hale", numbers get 1.
fn arguments_for(tool: &Value) -> Value {
    let mut args = Map::new();
    let schema = &tool["inputSchema"];
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let value = match schema["properties"][name]["type"].as_str() {
            Some("number" | "integer") => json!(1),
            Some("boolean") => json!(true),
            _ => json!("hale"),
        };
        args.insert(name.to_string(), value);
    }
    Value::Object(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(transport)) = (
        args.first(),
        args.get(1).and_then(|t| t.parse::<TransportKind>().ok()),
    ) else {
        eprintln!("usage: mcp_check URL streamable-http|sse");
        return ExitCode::from(2);
    };
    let options = ClientOptions {
        transport,
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let mut report = Report { failed: 0 };
    let Some(client) = report.step(
        "initialize",
        McpClient::connect(url, options.clone()).await,
        |_| String::new(),
    ) else {
        return ExitCode::FAILURE;
    };
    let info = client.server_info().await;
    println!(
        "ok negotiated {} with {}",
        info.protocol_version, info.server_info["name"]
    );
    report.step("ping", client.ping().await, |_| String::new());
    let tools = report.step("tools/list", client.list_tools().await, |t| {
        format!("{} tools", t.len())
    });
    if let Some(echo) = tools.iter().flatten().find(|t| {
        t["name"]
            .as_str()
            .is_some_and(|n| n == "echo" || n.ends_with("_echo"))
    }) {
        let args = arguments_for(echo);
        let name = echo["name"].as_str().unwrap_or("echo").to_string();
        report.step("tools/call", client.call_tool(&name, args).await, |r| {
            format!(
                "echo -> {}",
                r["content"][0]["text"].as_str().unwrap_or("?")
            )
        });
    }
    if info.has("resources") {
        report.step("resources/list", client.list_resources().await, |r| {
            format!("{} resources", r.len())
        });
    }
    if info.has("prompts") {
        report.step("prompts/list", client.list_prompts().await, |p| {
            format!("{} prompts", p.len())
        });
    }
    client.close().await;

    let mut probe = Probe::new(url, options, ProbeMethod::Ping, Duration::from_secs(5));
    for round in 1..=3 {
        let outcome = probe.check().await;
        let result = match &outcome {
            CheckOutcome::Success { latency } => Ok(*latency),
            other => Err(format!("{other:?}")),
        };
        report.step(&format!("probe#{round}"), result, |l| format!("{l:?}"));
    }
    probe.close().await;
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
