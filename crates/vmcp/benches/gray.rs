//! `cargo xtask bench gray`: how soon a gray failure is caught (issue 29).
//!
//! One tool of one backend starts failing at random (each call independently, with
//! probability 20 %, 40 % or 80 %, seeded), or answering every call in 3 s. Calls go
//! through the vMCP one after another (the slow tool: ten at a time, as a fleet of agents
//! would); the measure is how many calls reached the backend from the onset until the
//! first fast refusal (`-31001`, the tool's circuit or the backend's), and how long that
//! took at full speed. Each rate runs 10 seeds under three rule sets:
//!
//! - consecutive only (`minimumCalls` out of reach): ToolHive's rule, five in a row;
//! - hale's defaults: five in a row, or 50 % of the last 100 calls (from 10 calls on);
//! - `failureRateThreshold: 30%`.
//!
//! A trial gives up after 500 calls (the slow tool after 50): "not caught". Prints a
//! Markdown table.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a bench reports on stdout

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient, McpError};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SEEDS: u64 = 10;
const GIVE_UP: u32 = 500;

/// A backend with one tool, `work`, failing each call with probability `rate`
/// (JSON-RPC -32603), or answering every call after `delay`.
struct Flaky {
    rate: f64,
    delay: Duration,
    rng: Mutex<u64>,
    calls: AtomicU64,
}

impl Flaky {
    /// splitmix64: a seeded coin, no dependency.
    fn coin(&self) -> f64 {
        let mut s = self.rng.lock().unwrap();
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

impl Respond for Flaky {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(id) = body.get("id").cloned() else {
            return ResponseTemplate::new(202);
        };
        let reply = |v: Value| ResponseTemplate::new(200).set_body_json(v);
        match body["method"].as_str().unwrap_or_default() {
            "initialize" => reply(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "flaky", "version": "0"}}})),
            "tools/list" => reply(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                {"name": "work", "description": "Works.", "inputSchema": {"type": "object"}}]}})),
            "tools/call" => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.coin() < self.rate {
                    return reply(json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32603, "message": "upstream failed"}}));
                }
                reply(json!({"jsonrpc": "2.0", "id": id,
                    "result": {"content": [{"type": "text", "text": "ok"}]}}))
                .set_delay(self.delay)
            }
            _ => reply(json!({"jsonrpc": "2.0", "id": id, "result": {}})),
        }
    }
}

struct Caught {
    calls: u64,
    took: Duration,
}

/// One trial: a fresh backend and vMCP with `breaker` as the `circuitBreaker` block;
/// calls `at_once` at a time until the first refusal or [`GIVE_UP`] calls.
async fn trial(
    rate: f64,
    delay: Duration,
    seed: u64,
    breaker: &str,
    (at_once, give_up): (usize, u32),
) -> Option<Caught> {
    let server = MockServer::start().await;
    let flaky = std::sync::Arc::new(Flaky {
        rate,
        delay,
        rng: Mutex::new(seed),
        calls: AtomicU64::new(0),
    });
    Mock::given(method("POST"))
        .respond_with(ArcRespond(flaky.clone()))
        .mount(&server)
        .await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: b, url: \"{}/mcp\"}}\noperational:\n  timeouts: {{default: 30s}}\n  failureHandling:\n    healthCheckInterval: 60s\n    panicThreshold: 0%\n    circuitBreaker: {breaker}\n",
        server.uri()
    );
    let vmcp = Vmcp::bind(VmcpConfig::from_yaml("gray.yaml", &yaml).unwrap(), None)
        .await
        .unwrap();
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    let options = ClientOptions {
        request_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let client = loop {
        if let Ok(c) = McpClient::connect(&format!("http://{addr}/mcp"), options.clone()).await
            && c.list_tools().await.is_ok_and(|t| !t.is_empty())
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let onset = Instant::now();
    let mut caught = None;
    'calls: while flaky.calls.load(Ordering::SeqCst) < u64::from(give_up) {
        let batch = (0..at_once).map(|_| client.call_tool("b_work", json!({})));
        for answer in futures_util::future::join_all(batch).await {
            if let Err(McpError::Rpc { code: -31001, .. }) = answer {
                caught = Some(Caught {
                    calls: flaky.calls.load(Ordering::SeqCst),
                    took: onset.elapsed(),
                });
                break 'calls;
            }
        }
    }
    stop.cancel();
    caught
}

/// wiremock wants an owned responder; the trial keeps a handle on the counts.
struct ArcRespond(std::sync::Arc<Flaky>);

impl Respond for ArcRespond {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req)
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gray bench: `cargo xtask bench gray` measures");
        return;
    }
    let rules = [
        ("consecutive only (ToolHive)", "{minimumCalls: 1000000}"),
        ("hale defaults (50 % of 100)", "{}"),
        ("failureRateThreshold: 30%", "{failureRateThreshold: 30%}"),
    ];
    println!(
        "| failing | rules | caught | calls to the first refusal (median / max) | seconds (median) |"
    );
    println!("|---|---|---|---|---|");
    for rate in [0.2, 0.4, 0.8] {
        for (name, breaker) in rules {
            let mut calls = Vec::new();
            let mut millis = Vec::new();
            for seed in 0..SEEDS {
                if let Some(c) = trial(rate, Duration::ZERO, seed + 1, breaker, (1, GIVE_UP)).await
                {
                    calls.push(c.calls);
                    millis.push(c.took.as_millis() as u64);
                }
            }
            let caught = calls.len();
            let (calls_text, secs) = if calls.is_empty() {
                (format!("none in {GIVE_UP}"), "–".to_string())
            } else {
                let max = *calls.iter().max().unwrap();
                (
                    format!("{} / {max}", median(calls)),
                    format!("{:.2}", median(millis) as f64 / 1000.0),
                )
            };
            println!(
                "| {:.0} % | {name} | {caught}/{SEEDS} | {calls_text} | {secs} |",
                rate * 100.0
            );
        }
    }
    // A tool answering in 3 s, ten calls at a time: slow calls succeed, so only the
    // slow-call rate can see it.
    for (name, breaker) in [
        ("hale defaults (no slow rule)", "{}"),
        (
            "slowCallDurationThreshold: 1s",
            "{slowCallDurationThreshold: 1s}",
        ),
    ] {
        let c = trial(0.0, Duration::from_secs(3), 1, breaker, (10, 50)).await;
        let (caught, calls, secs) = match c {
            Some(c) => (
                "1/1",
                c.calls.to_string(),
                format!("{:.2}", c.took.as_secs_f64()),
            ),
            None => ("0/1", "none in 50".to_string(), "–".into()),
        };
        println!("| slow (3 s) | {name} | {caught} | {calls} | {secs} |");
    }
}
