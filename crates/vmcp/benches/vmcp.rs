//! `cargo xtask bench vmcp`: what the vMCP costs.
//!
//! - `tools/call` through the vMCP against calling the backend directly, 16 clients.
//! - How fast an open breaker answers (the refusal path, p99).
//! - Detection: how soon a dead backend's tools are withdrawn and clients told, and that a
//!   short blip withdraws nothing.
//! - The monitor's cost for 1,000 backends checked every second: CPU share and memory
//!   per backend.
//!
//! The backend and, for the call measurements, the vMCP run in processes of their own
//! (this binary, re-executed with HALE_BENCH_ROLE), as in production: the vMCP with a
//! Prometheus recorder installed, so that metrics cost what they cost, and its CPU time
//! per call read from /proc. The monitor is measured in this process, alone.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a bench reports on stdout

#[path = "support/load_generator.rs"]
mod load_generator;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::process::{Reaped, cpu_seconds, rss_kib, spawn_announced};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The `hale` binary's allocator, so that the vMCP here costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "HALE_BENCH_ROLE";
const CLIENTS: usize = 16;
const SECONDS: u64 = 3;

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("load") {
        load_generator::run();
        return;
    }
    if std::env::var(ROLE).as_deref() == Ok("collector") {
        // An OTLP/HTTP receiver in its own process (its work is not the vMCP's).
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let receiver = hale_testkit::otlp::OtlpReceiver::start().await.unwrap();
            println!("{}", receiver.url());
            std::future::pending::<()>().await;
        });
        return;
    }
    if std::env::var(ROLE).as_deref() == Ok("bigtools") {
        big_tools_server();
        return;
    }
    if std::env::var(ROLE).as_deref() == Ok("backend") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let stateless = std::env::args().any(|a| a == "stateless");
            let server = hale_testkit::TestServer::start(hale_testkit::ServerConfig {
                stateless,
                json_response: true,
                session_tools: true,
                ..hale_testkit::ServerConfig::default()
            })
            .await
            .unwrap();
            println!("{}", server.url());
            std::future::pending::<()>().await;
        });
        return;
    }
    match std::env::var(ROLE).as_deref() {
        Ok("vmcp") => {
            serve_with_metrics(async |metrics| {
                let yaml = std::env::var("HALE_BENCH_YAML").unwrap();
                let config = VmcpConfig::from_yaml("bench.yaml", &yaml).unwrap();
                let vmcp = Vmcp::bind(config, Some(metrics)).await.unwrap();
                println!("{}", vmcp.local_addr());
                vmcp.run(CancellationToken::new()).await;
            });
            return;
        }
        Ok("proxy") => {
            // The reference: one bare HTTP hop (hale proxy, at nginx's speed).
            serve_with_metrics(async |metrics| {
                let target = std::env::var("HALE_BENCH_TARGET").unwrap();
                let config = hale_proxy::ProxyConfig {
                    metrics: Some(metrics),
                    ..hale_proxy::ProxyConfig::new(&target, hale_core::CheckLoopConfig::default())
                };
                let proxy = hale_proxy::Proxy::bind(config).await.unwrap();
                println!("{}", proxy.local_addr());
                proxy.run(CancellationToken::new()).await;
            });
            return;
        }
        _ => {}
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let (_backend, url) = spawn_backend(false);
    if quick {
        println!("vmcp bench: backend at {url}; `cargo xtask bench vmcp` measures");
        return;
    }
    // `cargo bench -p hale-vmcp --bench vmcp -- calls` (or `breaker`, `detection`,
    // `monitor`) runs one part, e.g. under a profiler.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| {
            [
                "calls",
                "edge",
                "auth",
                "telemetry",
                "gray",
                "eras",
                "sessions",
                "store",
                "breaker",
                "detection",
                "monitor",
            ]
            .contains(&a.as_str())
        })
        .collect();
    let wanted = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    let rt = tokio::runtime::Runtime::new().unwrap();
    if wanted("calls") {
        rt.block_on(calls(&url));
    }
    if wanted("edge") {
        edge(&url);
    }
    if wanted("auth") {
        // The test issuer serves its keys from this process's runtime.
        let issuer = rt.block_on(hale_testkit::TestIssuer::start()).unwrap();
        auth(&url, &issuer);
    }
    if wanted("gray") {
        gray(&url);
    }
    if wanted("telemetry") {
        telemetry(&url);
    }
    if wanted("eras") {
        eras(&url);
    }
    if wanted("sessions") {
        rt.block_on(sessions());
    }
    if wanted("store") {
        rt.block_on(store());
    }
    if wanted("bigtools") {
        rt.block_on(big_tools(&url));
    }
    if wanted("breaker") {
        rt.block_on(open_breaker());
    }
    if wanted("detection") {
        rt.block_on(detection());
    }
    drop(rt);
    if wanted("monitor") {
        monitor_cost();
    }
}

/// Runs `serve` as `hale` runs its servers: a multi-threaded runtime and a Prometheus
/// recorder with the product's buckets.
fn serve_with_metrics(serve: impl AsyncFnOnce(metrics_exporter_prometheus::PrometheusHandle)) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&hale_proxy::DURATION_BUCKETS)
            .unwrap()
            .install_recorder()
            .unwrap();
        serve(metrics).await;
    });
}

fn spawn_backend(stateless: bool) -> (Reaped, String) {
    let started = spawn_announced(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "backend")
            .arg(if stateless { "stateless" } else { "stateful" }),
    )
    .unwrap();
    (started.process, started.first_line)
}

/// A vMCP in its own process: the process (killed on drop) and its address.
fn spawn_vmcp(yaml: &str) -> (Reaped, std::net::SocketAddr) {
    spawn_role("vmcp", "HALE_BENCH_YAML", yaml)
}

/// This binary in `role`, with `var=value`; it prints its address once it listens.
fn spawn_role(role: &str, var: &str, value: &str) -> (Reaped, std::net::SocketAddr) {
    let started = spawn_announced(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .env(var, value),
    )
    .unwrap();
    let addr = started.first_line.parse().unwrap();
    std::thread::sleep(Duration::from_millis(500)); // first checks, first catalog
    (started.process, addr)
}

/// `CLIENTS` clients calling `tool` at `url` for `SECONDS`: (calls/s, p50 ms, p99 ms).
async fn load(url: &str, tool: &str, arguments: serde_json::Value) -> (f64, f64, f64) {
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
        let arguments = arguments.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let _ = client.call_tool(&tool, arguments.clone()).await;
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
    let (vmcp, addr) = spawn_vmcp(&yaml);
    let through = format!("http://{addr}/mcp");
    let (proxy, proxy_addr) = spawn_role("proxy", "HALE_BENCH_TARGET", backend);
    let proxied = format!("http://{proxy_addr}/mcp");
    let mut table = vec![
        format!("\n## vMCP: tools/call, {CLIENTS} clients, {SECONDS} s per run (last of 2 interleaved rounds)\n"),
        "| tool | path | calls/s | p50 ms | p99 ms | hop's CPU per call |\n|---|---|---|---|---|---|".to_string(),
    ];
    // `echo` answers at once: the pure cost of the extra hop. `sleep 1 ms` stands for a
    // tool that does some work (real tools take milliseconds to seconds).
    for (label, tool, arguments) in [
        ("echo", "echo", json!({"text": "hi"})),
        ("sleep 1 ms", "sleep", json!({"ms": 1})),
    ] {
        let mut last = None;
        for round in 1..=2 {
            let d = load(backend, tool, arguments.clone()).await;
            let cpu0 = cpu_seconds(proxy.0.id());
            let p = load(&proxied, tool, arguments.clone()).await;
            let proxy_us = (cpu_seconds(proxy.0.id()) - cpu0) / (p.0 * SECONDS as f64) * 1e6;
            let cpu0 = cpu_seconds(vmcp.0.id());
            let v = load(&through, &format!("kit_{tool}"), arguments.clone()).await;
            let vmcp_us = (cpu_seconds(vmcp.0.id()) - cpu0) / (v.0 * SECONDS as f64) * 1e6;
            eprintln!(
                "{label} round {round}: direct {:.0}/s p99 {:.2} ms; via hale proxy {:.0}/s p99 {:.2} ms, {proxy_us:.0} µs CPU per call; via vmcp {:.0}/s p99 {:.2} ms, {vmcp_us:.0} µs CPU per call",
                d.0, d.2, p.0, p.2, v.0, v.2
            );
            last = Some((d, p, proxy_us, v, vmcp_us));
        }
        let (d, p, proxy_us, v, vmcp_us) = last.unwrap();
        table.push(format!(
            "| {label} | direct | {:.0} | {:.3} | {:.3} | |",
            d.0, d.1, d.2
        ));
        table.push(format!(
            "| {label} | through hale proxy (a bare HTTP hop) | {:.0} | {:.3} | {:.3} | {proxy_us:.0} µs |",
            p.0, p.1, p.2
        ));
        table.push(format!(
            "| {label} | through hale vmcp | {:.0} | {:.3} | {:.3} | {vmcp_us:.0} µs |",
            v.0, v.1, v.2
        ));
        table.push(format!(
            "| {label} | **ratio (vmcp / direct)** | **{:.2}×** | {:.2}× | **{:.2}×** | |",
            v.0 / d.0,
            v.1 / d.1,
            v.2 / d.2
        ));
    }
    for line in table {
        println!("{line}");
    }
}

/// Runs the out-of-process load generator against `url` (see [`load_generator`]).
fn generate(url: &str, tool: &str, sessions: usize, concurrency: usize) -> load_generator::Figures {
    generate_as(url, tool, sessions, concurrency, None)
}

/// [`generate`] with every request carrying `Authorization: Bearer token`.
fn generate_as(
    url: &str,
    tool: &str,
    sessions: usize,
    concurrency: usize,
    token: Option<&str>,
) -> load_generator::Figures {
    generate_with(url, tool, sessions, concurrency, token, false)
}

/// [`generate_as`], as a 2026-07-28 client when `modern`.
fn generate_with(
    url: &str,
    tool: &str,
    sessions: usize,
    concurrency: usize,
    token: Option<&str>,
    modern: bool,
) -> load_generator::Figures {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some(token) = token {
        command.env("HALE_BENCH_TOKEN", token);
    }
    if modern {
        command.env("HALE_BENCH_MODERN", "1");
    }
    let out = command
        .env(ROLE, "load")
        .args([
            url,
            tool,
            &sessions.to_string(),
            &concurrency.to_string(),
            &SECONDS.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    load_generator::Figures::parse(text.trim()).unwrap_or_else(|| {
        panic!(
            "the load generator said {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Issue "vMCP request path": one session at c=1 and c=16, and 16 sessions, driven by a
/// lean load generator in a process of its own (keep-alive connections, the session
/// header, JSON-RPC bodies), through hale proxy and through hale vmcp, interleaved.
fn edge(backend: &str) {
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    let (vmcp, addr) = spawn_vmcp(&yaml);
    let through = format!("http://{addr}/mcp");
    let (proxy, proxy_addr) = spawn_role("proxy", "HALE_BENCH_TARGET", backend);
    let proxied = format!("http://{proxy_addr}/mcp");
    println!(
        "\n## vMCP request path: tools/call echo, out-of-process load generator, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!(
        "| path | 1 session c=1 calls/s | 1 session c=16 calls/s | 16 sessions calls/s | p99 ms (1 session c=16) | p99 ms (16 sessions) | CPU per call (c=16, 16 sessions) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let shapes = [(1, 1), (1, 16), (16, 16)];
    let mut rows: Vec<(String, Vec<load_generator::Figures>, Vec<f64>)> = Vec::new();
    for _round in 0..2 {
        rows.clear();
        for (label, url, pid) in [
            ("direct", backend.to_string(), None),
            ("through hale proxy", proxied.clone(), Some(proxy.0.id())),
            ("through hale vmcp", through.clone(), Some(vmcp.0.id())),
        ] {
            let mut figures = Vec::new();
            let mut cpu = Vec::new();
            for (sessions, concurrency) in shapes {
                let before = pid.map(cpu_seconds);
                let f = generate(&url, "echo", sessions, concurrency);
                if let (Some(pid), Some(before)) = (pid, before) {
                    cpu.push((cpu_seconds(pid) - before) / f.calls as f64 * 1e6);
                }
                figures.push(f);
            }
            rows.push((label.to_string(), figures, cpu));
        }
    }
    for (label, f, cpu) in &rows {
        let cpu = if cpu.is_empty() {
            String::new()
        } else {
            format!("{:.0} µs, {:.0} µs", cpu[1], cpu[2])
        };
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {cpu} |",
            f[0].rate, f[1].rate, f[2].rate, f[1].p99_ms, f[2].p99_ms
        );
    }
    let (p, v) = (&rows[1], &rows[2]);
    println!(
        "| **vmcp / proxy** | **{:.2}×** | **{:.2}×** | **{:.2}×** | **{:.2}×** | **{:.2}×** | **{:.2}×, {:.2}×** |",
        v.1[0].rate / p.1[0].rate,
        v.1[1].rate / p.1[1].rate,
        v.1[2].rate / p.1[2].rate,
        v.1[1].p99_ms / p.1[1].p99_ms,
        v.1[2].p99_ms / p.1[2].p99_ms,
        v.2[1] / p.2[1],
        v.2[2] / p.2[2],
    );
}

/// Both protocol eras through one vMCP over a handshake-era backend: legacy sessions,
/// and 2026-07-28 clients (no session; each call is run as a possible `input_required`
/// bridge, since a handshake-era backend may ask for input mid-call).
fn eras(backend: &str) {
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    let (vmcp, addr) = spawn_vmcp(&yaml);
    let url = format!("http://{addr}/mcp");
    println!(
        "\n## Both eras through hale vmcp over a handshake-era backend: tools/call echo, c=16, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!("| client | calls/s | p50 ms | p99 ms | CPU per call |");
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for _round in 0..2 {
        rows.clear();
        for (label, modern) in [
            ("legacy, 16 sessions", false),
            ("2026-07-28, no session", true),
        ] {
            let before = cpu_seconds(vmcp.0.id());
            let f = generate_with(&url, "echo", 16, 16, None, modern);
            let cpu = (cpu_seconds(vmcp.0.id()) - before) / f.calls as f64 * 1e6;
            rows.push((label, f, cpu));
        }
    }
    for (label, f, cpu) in &rows {
        println!(
            "| {label} | {:.0} | {:.3} | {:.3} | {cpu:.0} µs |",
            f.rate, f.p50_ms, f.p99_ms
        );
    }
}

/// Issue "who may call": the request path with no authentication, with `oidc` (an ES256
/// and an RS256 token, the JWKS from a test issuer) and with `static` tokens, one vMCP per
/// setting, interleaved.
/// What tracing costs: one vMCP per setting (telemetry is per process) over the same
/// backend, exporting to an OTLP receiver in a process of its own.
/// What issue 29's machinery costs a healthy call: per-tool breakers, the rate window's
/// success tally and the retry budget (a copy of each request kept for a retry), against
/// the same vMCP with per-tool breakers and retries off and the window out of reach.
fn gray(backend: &str) {
    let base = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    let lean = format!(
        "{base}operational:\n  failureHandling:\n    retryBudget: 0%\n    circuitBreaker: {{perTool: false, minimumCalls: 1000000}}\n"
    );
    let (full, full_addr) = spawn_vmcp(&base);
    let (bare, bare_addr) = spawn_vmcp(&lean);
    println!(
        "\n## Gray-failure machinery: tools/call echo through hale vmcp, 16 sessions, out-of-process load generator, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!("| configuration | calls/s | p99 ms | CPU per call |");
    println!("|---|---|---|---|");
    let cells = [
        (
            "per-tool breakers off, retryBudget 0 %, window out of reach",
            bare_addr,
            bare.0.id(),
        ),
        (
            "defaults: per-tool breakers, rate window, retryBudget 20 %",
            full_addr,
            full.0.id(),
        ),
    ];
    compare(&cells);
    drop((full, bare));
}

/// Runs `echo` from 16 sessions against each vMCP of `cells` (label, address, pid), in
/// two interleaved rounds, and prints the last round's rows relative to the first cell:
/// calls/s, p99 and the vMCP's CPU per call.
fn compare(cells: &[(&str, std::net::SocketAddr, u32)]) {
    let mut rows = Vec::new();
    for _round in 0..2 {
        rows.clear();
        for &(label, addr, pid) in cells {
            let url = format!("http://{addr}/mcp");
            let before = cpu_seconds(pid);
            let many = generate_as(&url, "echo", 16, 16, None);
            let cpu = (cpu_seconds(pid) - before) / many.calls as f64 * 1e6;
            rows.push((label, many, cpu));
        }
    }
    let (base_rate, base_cpu) = (rows[0].1.rate, rows[0].2);
    for (label, many, cpu) in &rows {
        println!(
            "| {label} | {:.0} ({:.2}×) | {:.3} | {cpu:.1} µs ({:.2}×) |",
            many.rate,
            many.rate / base_rate,
            many.p99_ms,
            cpu / base_cpu
        );
    }
}

fn telemetry(backend: &str) {
    let collector =
        spawn_announced(Command::new(std::env::current_exe().unwrap()).env(ROLE, "collector"))
            .unwrap();
    let endpoint = collector.first_line.clone();
    let base = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    let traced = |rate: &str, metrics: bool| {
        format!(
            "{base}telemetry: {{endpoint: \"{endpoint}\", samplingRate: {rate}, metricsEnabled: {metrics}}}\n"
        )
    };
    let (off, off_addr) = spawn_vmcp(&base);
    let (one, one_addr) = spawn_vmcp(&traced("0.01", false));
    let (all, all_addr) = spawn_vmcp(&traced("1", false));
    let (both, both_addr) = spawn_vmcp(&traced("1", true));
    let (counted, counted_addr) = spawn_vmcp(&traced("0", true));
    println!(
        "\n## Tracing: tools/call echo through hale vmcp, out-of-process load generator and collector, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!("| tracing | 16 sessions calls/s | p99 ms | CPU per call |");
    println!("|---|---|---|---|");
    let cells = [
        ("off (no endpoint)", off_addr, off.0.id()),
        ("on, samplingRate 1 %", one_addr, one.0.id()),
        ("on, samplingRate 100 %", all_addr, all.0.id()),
        (
            "metrics only (samplingRate 0)",
            counted_addr,
            counted.0.id(),
        ),
        ("on, 100 % and metrics", both_addr, both.0.id()),
    ];
    compare(&cells);
    drop((off, one, all, both, counted, collector));
}

fn auth(backend: &str, issuer: &hale_testkit::TestIssuer) {
    let tokens_file =
        std::env::temp_dir().join(format!("hale-bench-tokens-{}", std::process::id()));
    let static_token = "bench-static-token-0123456789abcdef";
    std::fs::write(&tokens_file, format!("bench {static_token}\n")).unwrap();
    let base = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    issuer.publish(&["a", "r"]);
    let claims = |kid: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        hale_testkit::TestIssuer::sign(
            kid,
            &serde_json::json!({"iss": issuer.issuer(), "aud": "bench", "sub": "bench", "scope": "mcp:call", "exp": now + 3600}),
        )
    };
    let (es256, rs256) = (claims("a"), claims("r"));
    let (anonymous, a_addr) = spawn_vmcp(&base);
    let (oidc, o_addr) = spawn_vmcp(&format!(
        "{base}incomingAuth: {{type: oidc, issuer: \"{}\", audience: bench, requiredScopes: [mcp:call]}}\n",
        issuer.issuer()
    ));
    let (fixed, s_addr) = spawn_vmcp(&format!(
        "{base}incomingAuth: {{type: static, tokensFile: \"{}\"}}\n",
        tokens_file.display()
    ));
    println!(
        "\n## Who may call: tools/call echo through hale vmcp, out-of-process load generator, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!(
        "| incomingAuth | 1 session c=16 calls/s | 16 sessions calls/s | p99 ms (16 sessions) | CPU per call (16 sessions) |"
    );
    println!("|---|---|---|---|---|");
    let cells: [(&str, std::net::SocketAddr, u32, Option<&str>); 4] = [
        ("none (loopback)", a_addr, anonymous.0.id(), None),
        ("oidc, ES256 token", o_addr, oidc.0.id(), Some(&es256)),
        ("oidc, RS256 token", o_addr, oidc.0.id(), Some(&rs256)),
        ("static", s_addr, fixed.0.id(), Some(static_token)),
    ];
    let mut rows = Vec::new();
    for _round in 0..2 {
        rows.clear();
        for (label, addr, pid, token) in cells {
            let url = format!("http://{addr}/mcp");
            let one = generate_as(&url, "echo", 1, 16, token);
            let before = cpu_seconds(pid);
            let many = generate_as(&url, "echo", 16, 16, token);
            let cpu = (cpu_seconds(pid) - before) / many.calls as f64 * 1e6;
            rows.push((label, one, many, cpu));
        }
    }
    let base_rate = rows[0].2.rate;
    for (label, one, many, cpu) in &rows {
        println!(
            "| {label} | {:.0} | {:.0} ({:.2}×) | {:.3} | {cpu:.0} µs |",
            one.rate,
            many.rate,
            many.rate / base_rate,
            many.p99_ms
        );
    }
    let _ = std::fs::remove_file(&tokens_file);
}

/// Issue "one backend session per client session": 1,000 client sessions over 3
/// stateful backends, each calling once (a backend session each), then memory per
/// session and backend, connections to the backends; and the time to open a session
/// with 10 backends configured, one of them hanging, against one healthy backend.
/// `sessionStorage: redis` against memory: the same vMCP over a stateful backend, one
/// session at c=16 (calls answered at the replica holding the session); the first call
/// at a replica that must resume the session (a read from Redis and the backend session
/// taken over) against the next; and the bytes Redis keeps per session.
async fn store() {
    let redis = hale_testkit::redis::RedisServer::start().unwrap();
    let (_backend, backend) = spawn_backend(false);
    let base = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{backend}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n"
    );
    let stored = format!(
        "{base}sessionStorage: {{provider: redis, address: \"{}\", keyPrefix: \"bench:\"}}\n",
        redis.address()
    );
    let (memory, m_addr) = spawn_vmcp(&base);
    let (redis_a, r_addr) = spawn_vmcp(&stored);
    let (_redis_b, b_addr) = spawn_vmcp(&stored);
    println!(
        "\n## Sessions in Redis: tools/call count (a stateful backend: each call on the client's backend session), out-of-process load generator, {SECONDS} s per cell (last of 2 interleaved rounds)\n"
    );
    println!(
        "| sessionStorage | 1 session c=16 calls/s | p50 ms | p99 ms | CPU per call |\n|---|---|---|---|---|"
    );
    let mut rows = Vec::new();
    for _round in 0..2 {
        rows.clear();
        for (label, addr, pid) in [
            ("memory", m_addr, memory.0.id()),
            ("redis", r_addr, redis_a.0.id()),
        ] {
            let before = cpu_seconds(pid);
            let f = generate(&format!("http://{addr}/mcp"), "count", 1, 16);
            let cpu = (cpu_seconds(pid) - before) / f.calls as f64 * 1e6;
            rows.push((label, f, cpu));
        }
    }
    for (label, f, cpu) in &rows {
        println!(
            "| {label} | {:.0} | {:.3} | {:.3} | {cpu:.0} µs |",
            f.rate, f.p50_ms, f.p99_ms
        );
    }
    println!(
        "| **redis / memory** | **{:.2}×** | **{:.2}×** | **{:.2}×** | **{:.2}×** |",
        rows[1].1.rate / rows[0].1.rate,
        rows[1].1.p50_ms / rows[0].1.p50_ms,
        rows[1].1.p99_ms / rows[0].1.p99_ms,
        rows[1].2 / rows[0].2
    );

    // Sessions opened at A, then asked at B: the first call there resumes.
    let n = 100;
    let options = || ClientOptions {
        request_timeout: Duration::from_secs(10),
        listen: false,
        ..ClientOptions::default()
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let at_a = McpClient::connect(&format!("http://{r_addr}/mcp"), options())
            .await
            .unwrap();
        at_a.call_tool("count", json!({})).await.unwrap();
        let sid = at_a.session_id().await.unwrap();
        for times in [&mut first, &mut second] {
            let started = Instant::now();
            let status = raw_call(b_addr, &sid).await;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200);
        }
    }
    let stat = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (f50, f99) = stat(&mut first);
    let (s50, s99) = stat(&mut second);
    println!(
        "\n| a call at a replica that did not hold the session ({n} sessions) | p50 ms | p99 ms |\n|---|---|---|"
    );
    println!(
        "| first call there (session read from Redis, backend session taken over) | {f50:.3} | {f99:.3} |"
    );
    println!("| the next call there | {s50:.3} | {s99:.3} |");

    // What Redis keeps per session.
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", redis.address().rsplit(':').next().unwrap()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let keys = cli(&["--scan", "--pattern", "bench:session:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    let (mut value, mut memory_usage) = (0u64, 0u64);
    for k in &keys {
        value += cli(&["STRLEN", k]).parse::<u64>().unwrap_or(0);
        memory_usage += cli(&["MEMORY", "USAGE", k]).parse::<u64>().unwrap_or(0);
    }
    let count = keys.len().max(1) as u64;
    println!(
        "\n| bytes per stored session ({} sessions, one backend session each) | value (JSON) | Redis MEMORY USAGE |\n|---|---|---|\n| mean | {} | {} |",
        keys.len(),
        value / count,
        memory_usage / count
    );
    drop(redis);
}

/// A `tools/call count` POSTed in session `sid` to the vMCP at `addr`: its status.
async fn raw_call(addr: std::net::SocketAddr, sid: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"count","arguments":{}}}"#;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn sessions() {
    let backends: Vec<(Reaped, String)> = (0..3).map(|_| spawn_backend(false)).collect();
    let mut yaml = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for (i, (_, url)) in backends.iter().enumerate() {
        yaml.push_str(&format!("  - {{name: b{i}, url: \"{url}\"}}\n"));
    }
    // Every session here comes from one address (one anonymous identity): the limits
    // are set above what is held, so that nothing is evicted while measuring.
    yaml.push_str("operational:\n  maxSessionsPerBackend: 20000\n  maxClientSessions: 20000\n  maxSessionsPerIdentity: 20000\n");
    let (vmcp, addr) = spawn_vmcp(&yaml);
    let url = format!("http://{addr}/mcp");
    let sessions: usize = std::env::var("HALE_BENCH_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    // Warm up (pools, catalog) with a few sessions, then measure the growth.
    let _ = generate(&url, "b0_count", 4, 4);
    let rss0 = rss_kib(vmcp.0.id());
    let f =
        load_generator::hold_sessions(&url, sessions, &["b0_count", "b1_count", "b2_count"]).await;
    let rss1 = rss_kib(vmcp.0.id());
    let conns = backend_connections(vmcp.0.id(), &backends);
    let per = (rss1.saturating_sub(rss0)) as f64 / (sessions * 3) as f64;
    println!(
        "\n## vMCP: {sessions} client sessions over 3 stateful backends (each session calls each backend once)\n"
    );
    println!("| figure | value |\n|---|---|");
    println!("| backend sessions opened | {} |", f.calls);
    println!("| RSS before → after | {rss0} KiB → {rss1} KiB |");
    println!(
        "| RSS growth per backend session, the client session's share included | **{per:.1} KiB** (goal: 4 KiB) |"
    );
    println!("| TCP connections from the vMCP to the 3 backends | {conns} |");
    let after = generate(&url, "b0_echo", 16, 16);
    println!(
        "| calls/s on 16 sessions afterwards (b0_echo) | {:.0} |",
        after.rate
    );
    drop(vmcp);

    // Session open time: 1 healthy backend vs 10 with one hanging (it accepts
    // connections and never answers).
    let healthy = &backends[0].1;
    let one = format!("listen: 127.0.0.1:0\nbackends:\n  - {{name: b0, url: \"{healthy}\"}}\n");
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_url = format!("http://{}/mcp", hanging.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming().flatten() {
            held.push(stream); // accepted, never answered
        }
    });
    let mut ten = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for i in 0..9 {
        ten.push_str(&format!(
            "  - {{name: h{i}, url: \"{}\"}}\n",
            backends[i % 3].1
        ));
    }
    ten.push_str(&format!("  - {{name: hanging, url: \"{hang_url}\"}}\n"));
    let (v1, a1) = spawn_vmcp(&one);
    let (v10, a10) = spawn_vmcp(&ten);
    let o1 = load_generator::open_times(&format!("http://{a1}/mcp"), 200).await;
    let o10 = load_generator::open_times(&format!("http://{a10}/mcp"), 200).await;
    println!("\n## vMCP: time to open a client session (initialize), 200 sessions each\n");
    println!("| configuration | p50 ms | p99 ms |\n|---|---|---|");
    println!("| 1 healthy backend | {:.3} | {:.3} |", o1.0, o1.1);
    println!("| 10 backends, one hanging | {:.3} | {:.3} |", o10.0, o10.1);
    println!(
        "| difference (bar: within 1 ms) | {:.3} | {:.3} |",
        o10.0 - o1.0,
        o10.1 - o1.1
    );
    drop((v1, v10, backends));
}

/// A stateless MCP server whose `tools/list` answers 200,000 tools in one page (about
/// 15 MB of JSON, under hale-mcp's 16 MiB body limit), as the attack in issue
/// "reliability" did.
fn big_tools_server() {
    use http_body_util::Full;
    let tools: Vec<serde_json::Value> = (0..200_000)
        .map(|n| json!({"name": format!("tool_{n}"), "description": "One of many.", "inputSchema": {"type": "object"}}))
        .collect();
    let list = std::sync::Arc::new(serde_json::to_vec(&json!({"tools": tools})).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http://{}/mcp", listener.local_addr().unwrap());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let list = list.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let list = list.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let msg: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let id = msg["id"].clone();
                        let bytes = match msg["method"].as_str().unwrap_or_default() {
                            "tools/list" => {
                                let mut out = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":").into_bytes();
                                out.extend_from_slice(&list);
                                out.push(b'}');
                                out
                            }
                            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "big", "version": "1"}}}).to_string().into_bytes(),
                            _ if id.is_null() => Vec::new(),
                            _ => json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string().into_bytes(),
                        };
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(bytes)));
                        if id.is_null() {
                            *r.status_mut() = hyper::StatusCode::ACCEPTED;
                        } else {
                            r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Issue "reliability", defect 4: a backend listing 200,000 tools next to a normal one.
async fn big_tools(normal: &str) {
    let started =
        spawn_announced(Command::new(std::env::current_exe().unwrap()).env(ROLE, "bigtools"))
            .unwrap();
    let big = started.first_line.clone();
    let _big = started.process;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: normal, url: \"{normal}\"}}\n  - {{name: big, url: \"{big}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 2s, healthCheckTimeout: 1s}}\n"
    );
    let t0 = Instant::now();
    let (vmcp, addr) = spawn_vmcp(&yaml);
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let listed = loop {
        if let Ok(tools) = client.list_tools().await
            && tools.iter().any(|t| t["name"] == "normal_echo")
        {
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let call = Instant::now();
    client
        .call_tool("normal_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    let called = call.elapsed();
    // A few clients listing while the big backend is retried every check.
    for _ in 0..20 {
        let _ = client.list_tools().await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", vmcp.0.id())).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    println!("\n## vMCP: a backend listing 200,000 tools (15 MB of JSON) next to a normal one\n");
    println!("| figure | value |\n|---|---|");
    println!(
        "| the normal backend's tools listed, from the vMCP's start | {listed:.2?} (0.5 s of it is the bench's start-up wait) |"
    );
    println!("| a call to a normal tool | {called:.2?} |");
    println!(
        "| vMCP RSS after 20 list requests and 5 s of retries | {} |",
        field("VmRSS:")
    );
    println!("| vMCP peak RSS | {} |", field("VmHWM:"));
    let status = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = write!(
            s,
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let body: serde_json::Value = status
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_default();
    println!(
        "| `/status` of the big backend | health `{}`, unusable: {} |",
        body["backends"][1]["health"], body["backends"][1]["unusable"]
    );
}

/// TCP connections the process `pid` holds to the backends' ports (from /proc).
fn backend_connections(pid: u32, backends: &[(Reaped, String)]) -> usize {
    let ports: Vec<u16> = backends
        .iter()
        .filter_map(|(_, url)| url.rsplit(':').next()?.split('/').next()?.parse().ok())
        .collect();
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    l.strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9
                && inodes.contains(f[9])
                && u16::from_str_radix(f[2].rsplit(':').next().unwrap_or(""), 16)
                    .is_ok_and(|p| ports.contains(&p))
        })
        .count()
}

async fn open_breaker() {
    // A backend of its own, listed once, then killed: the first call fails and opens
    // the breaker (threshold 1, open for 10 minutes); every later call is refused.
    let (backend, url) = spawn_backend(false);
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: dead, url: \"{url}\"}}\noperational:\n  failureHandling:\n    healthCheckInterval: 600s\n    healthCheckTimeout: 5s\n    circuitBreaker: {{failureThreshold: 1, timeout: 600s}}\n"
    );
    let (_vmcp, addr) = spawn_vmcp(&yaml);
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    assert!(
        client
            .list_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t["name"] == "dead_echo"),
        "the backend's tools are listed before it dies"
    );
    drop(backend);
    let first = client.call_tool("dead_echo", json!({})).await;
    assert!(first.is_err(), "the first call fails and opens the breaker");
    let refused = client.call_tool("dead_echo", json!({})).await.unwrap_err();
    assert!(
        refused.to_string().contains("is unavailable"),
        "then calls are refused: {refused}"
    );
    // Interleaved with MCP pings to the same vMCP: the floor any answer from it has.
    let (mut refusals, mut pings) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let start = Instant::now();
        let _ = client.call_tool("dead_echo", json!({})).await;
        refusals.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        let _ = client.ping().await;
        pings.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((p / 100.0) * (v.len() - 1) as f64) as usize]
    };
    println!(
        "\n## A call to a backend whose breaker is open (2,000 calls, measured at the client)\n"
    );
    println!("| answer | p50 ms | p99 ms |\n|---|---|---|");
    println!(
        "| refused: backend 'dead' is unavailable | {:.3} | {:.3} |",
        pct(&mut refusals, 50.0),
        pct(&mut refusals, 99.0)
    );
    println!(
        "| ping (the floor) | {:.3} | {:.3} |",
        pct(&mut pings, 50.0),
        pct(&mut pings, 99.0)
    );
}

/// Spec §9, detection: a dead backend's tools are withdrawn, and clients notified, within
/// `unhealthyThreshold × interval + healthCheckTimeout + 1 s`; a blip shorter than the
/// tolerance window never withdraws them. Measured at a client of a vMCP in its own
/// process, against a backend in this one whose faults the bench switches.
async fn detection() {
    const INTERVAL: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_millis(500);
    const THRESHOLD: u32 = 3;
    let bound = INTERVAL * THRESHOLD + TIMEOUT + Duration::from_secs(1);
    // With checks spread ±10 %, `THRESHOLD` checks can fit in (THRESHOLD - 1) × 0.9
    // intervals: a blip shorter than that can never withdraw anything.
    let blip = INTERVAL.mul_f64(f64::from(THRESHOLD - 1) * 0.9) - Duration::from_millis(300);
    let server = hale_testkit::TestServer::start(hale_testkit::ServerConfig::default())
        .await
        .unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: {}ms, healthCheckTimeout: {}ms, unhealthyThreshold: {THRESHOLD}}}\n",
        server.url(),
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    );
    let (_vmcp, addr) = spawn_vmcp(&yaml);
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let _ = client.list_tools().await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the start-up notification passes
    let mut notes = client.notifications();
    let tools_changed =
        async |notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>,
               within: Duration| {
            tokio::time::timeout(within, async {
                while notes.recv().await.map(|n| n.method).unwrap_or_default()
                    != "notifications/tools/list_changed"
                {}
            })
            .await
            .is_ok()
        };
    println!(
        "\n## Detection: interval 1 s, timeout 500 ms, unhealthyThreshold 3 (bound {bound:?})\n"
    );
    println!("| trial | backend down → client notified | within the bound |\n|---|---|---|");
    for trial in 1..=3 {
        let started = Instant::now();
        server.set_fault(Some(hale_testkit::Fault::Down)).await;
        let told = tools_changed(&mut notes, bound * 2).await;
        let took = started.elapsed();
        println!(
            "| {trial} | {} | {} |",
            if told {
                format!("{:.2} s", took.as_secs_f64())
            } else {
                "never".into()
            },
            if told && took <= bound {
                "yes"
            } else {
                "**no**"
            }
        );
        server.set_fault(None).await;
        tools_changed(&mut notes, bound * 2).await; // restored
        tokio::time::sleep(INTERVAL * 2).await;
        while notes.try_recv().is_ok() {}
    }
    server.set_fault(Some(hale_testkit::Fault::Down)).await;
    tokio::time::sleep(blip).await;
    server.set_fault(None).await;
    let withdrawn = tools_changed(&mut notes, INTERVAL * 3).await;
    println!(
        "| blip of {:.1} s | {} | {} |",
        blip.as_secs_f64(),
        if withdrawn {
            "withdrawn"
        } else {
            "not withdrawn"
        },
        if withdrawn { "**no**" } else { "yes" }
    );
    server.shutdown();
}

fn monitor_cost() {
    const BACKENDS: usize = 1000;
    const WINDOW: u64 = 10;
    let (_backend, url) = spawn_backend(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let me = std::process::id();
    let before = rss_kib(me) as f64;
    let mut yaml = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for i in 0..BACKENDS {
        yaml.push_str(&format!("  - {{name: b{i}, url: \"{url}\"}}\n"));
    }
    yaml.push_str(
        "operational:\n  failureHandling: {healthCheckInterval: 1s, healthCheckTimeout: 900ms}\n",
    );
    rt.block_on(async {
        let vmcp = Vmcp::bind(VmcpConfig::from_yaml("bench.yaml", &yaml).unwrap(), None)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(vmcp.run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(3)).await; // every session opened
        let (cpu0, wall0) = (cpu_seconds(me), Instant::now());
        tokio::time::sleep(Duration::from_secs(WINDOW)).await;
        let share = (cpu_seconds(me) - cpu0) / wall0.elapsed().as_secs_f64();
        let per_backend = (rss_kib(me) as f64 - before) / BACKENDS as f64;
        println!(
            "\n## Monitor cost: {BACKENDS} backends checked every second, {WINDOW} s window\n"
        );
        println!("| CPU (share of one core) | memory per backend |\n|---|---|");
        println!("| {:.1} % | {:.1} KiB |", share * 100.0, per_backend);
        stop.cancel();
    });
}
