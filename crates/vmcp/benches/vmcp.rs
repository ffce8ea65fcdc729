//! `cargo xtask bench vmcp`: what the vMCP costs.
//!
//! - `tools/call` through the vMCP against calling the backend directly, 16 clients.
//! - How fast an open breaker answers (the refusal path, p99).
//! - The monitor's cost for 1,000 backends checked every second: CPU share and memory
//!   per backend.
//!
//! The backend runs in its own process (this binary, re-executed with HALE_BENCH_ROLE),
//! so that the vMCP's CPU and memory are measured alone.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a bench reports on stdout

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ROLE: &str = "HALE_BENCH_ROLE";
const CLIENTS: usize = 16;
const SECONDS: u64 = 3;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("backend") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let stateless = std::env::args().any(|a| a == "stateless");
            let server = hale_testkit::TestServer::start(hale_testkit::ServerConfig {
                stateless,
                json_response: true,
                ..hale_testkit::ServerConfig::default()
            })
            .await
            .unwrap();
            println!("{}", server.url());
            std::future::pending::<()>().await;
        });
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let (_backend, url) = spawn_backend(false);
    if quick {
        println!("vmcp bench: backend at {url}; `cargo xtask bench vmcp` measures");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(calls(&url));
    rt.block_on(open_breaker(&url));
    drop(rt);
    monitor_cost();
}

fn spawn_backend(stateless: bool) -> (Proc, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "backend")
        .arg(if stateless { "stateless" } else { "stateful" })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line.trim().to_string())
}

async fn start_vmcp(yaml: &str) -> (std::net::SocketAddr, CancellationToken) {
    let vmcp = Vmcp::bind(VmcpConfig::from_yaml("bench.yaml", yaml).unwrap(), None)
        .await
        .unwrap();
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    (addr, stop)
}

/// `CLIENTS` clients calling `tool` at `url` for `SECONDS`: (calls/s, p50 ms, p99 ms).
async fn load(url: &str, tool: &str) -> (f64, f64, f64) {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Arc::new(
            McpClient::connect(url, ClientOptions::default())
                .await
                .unwrap(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for client in clients {
        let tool = tool.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let _ = client.call_tool(&tool, json!({"text": "hi"})).await;
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            client.close().await;
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| all[((p / 100.0) * (all.len() - 1) as f64) as usize];
    (all.len() as f64 / SECONDS as f64, pct(50.0), pct(99.0))
}

async fn calls(backend: &str) {
    let yaml = format!("listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\n");
    let (addr, stop) = start_vmcp(&yaml).await;
    let through = format!("http://{addr}/mcp");
    let mut rows = Vec::new();
    for round in 1..=2 {
        let d = load(backend, "echo").await;
        let v = load(&through, "kit_echo").await;
        eprintln!(
            "round {round}: direct {:.0}/s p99 {:.2} ms, via vmcp {:.0}/s p99 {:.2} ms",
            d.0, d.2, v.0, v.2
        );
        rows.push((d, v));
    }
    let (d, v) = rows[rows.len() - 1];
    println!(
        "\n## vMCP: tools/call, {CLIENTS} clients, {SECONDS} s per run (last of 2 interleaved rounds)\n"
    );
    println!("| path | calls/s | p50 ms | p99 ms |\n|---|---|---|---|");
    println!("| direct | {:.0} | {:.3} | {:.3} |", d.0, d.1, d.2);
    println!(
        "| through hale vmcp | {:.0} | {:.3} | {:.3} |",
        v.0, v.1, v.2
    );
    println!(
        "| **ratio (vmcp / direct)** | **{:.2}×** throughput | {:.2}× | **{:.2}×** latency |",
        v.0 / d.0,
        v.1 / d.1,
        v.2 / d.2
    );
    stop.cancel();
}

async fn open_breaker(backend: &str) {
    // A backend that answers 503 to everything once the breaker's first call is made.
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: dead, url: \"{}\"}}\noperational:\n  failureHandling:\n    healthCheckInterval: 600s\n    healthCheckTimeout: 5s\n    circuitBreaker: {{failureThreshold: 1, timeout: 600s}}\n",
        backend.replace("/mcp", "/nothing-here")
    );
    let _ = backend;
    let (addr, stop) = start_vmcp(&yaml).await;
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let _ = client.call_tool("dead_echo", json!({})).await; // opens it (or finds it unavailable)
    let mut latencies = Vec::new();
    for _ in 0..2000 {
        let start = Instant::now();
        let _ = client.call_tool("dead_echo", json!({})).await;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((p / 100.0) * (latencies.len() - 1) as f64) as usize];
    println!("\n## A call to an unavailable backend (2,000 calls, measured at the client)\n");
    println!(
        "| p50 ms | p99 ms |\n|---|---|\n| {:.3} | {:.3} |",
        pct(50.0),
        pct(99.0)
    );
    stop.cancel();
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn monitor_cost() {
    const BACKENDS: usize = 1000;
    const WINDOW: u64 = 10;
    let (_backend, url) = spawn_backend(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rss_kib();
    let mut yaml = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for i in 0..BACKENDS {
        yaml.push_str(&format!("  - {{name: b{i}, url: \"{url}\"}}\n"));
    }
    yaml.push_str(
        "operational:\n  failureHandling: {healthCheckInterval: 1s, healthCheckTimeout: 900ms}\n",
    );
    rt.block_on(async {
        let (_addr, stop) = start_vmcp(&yaml).await;
        tokio::time::sleep(Duration::from_secs(3)).await; // every session opened
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        tokio::time::sleep(Duration::from_secs(WINDOW)).await;
        let share = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
        let per_backend = (rss_kib() - before) / BACKENDS as f64;
        println!(
            "\n## Monitor cost: {BACKENDS} backends checked every second, {WINDOW} s window\n"
        );
        println!("| CPU (share of one core) | memory per backend |\n|---|---|");
        println!("| {:.1} % | {:.1} KiB |", share * 100.0, per_backend);
        stop.cancel();
    });
}
