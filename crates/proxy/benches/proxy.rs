//! `cargo xtask bench proxy`: hale proxy against nginx and against no proxy at all.
//!
//! - Throughput and latency of a small `tools/call` POST at concurrency 1, 16 and 64,
//!   measured with wrk against the backend directly, through nginx (keep-alive upstream,
//!   buffering off) and through hale proxy, interleaved round by round in one run.
//! - The latency an SSE event gains by going through hale proxy.
//! - The memory hale proxy needs per idle SSE stream, with 1,000 of them open.
//!
//! Every party is its own process: this binary re-executes itself as the backend, the
//! proxy and the SSE source (`HALE_BENCH_ROLE`), so that the proxy's memory is its own.
//! Needs `nginx` and `wrk` (Debian packages; `cargo xtask bench proxy` installs them).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a bench reports on stdout

use hale_testkit::process::{Reaped, rss_kib, spawn_announced};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `hale` binary's allocator, so that the proxy here costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "HALE_BENCH_ROLE";
const ROUNDS: usize = 3;
const SECONDS_PER_RUN: u64 = 3;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const IDLE_STREAMS: usize = 1000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: then only
    // check that the pieces start.
    let quick = !std::env::args().any(|a| a == "--bench");
    match std::env::var(ROLE).as_deref() {
        Ok("backend") => roles::backend(),
        Ok("proxy") => roles::proxy(),
        Ok("sse-source") => roles::sse_source(),
        _ => orchestrate(quick),
    }
}

/// Starts this binary in `role` with `arg`; returns it and the address it printed.
fn spawn_role(role: &str, arg: &str) -> (Reaped, SocketAddr) {
    let started = spawn_announced(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .arg(arg)
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let addr = started
        .first_line
        .trim_start_matches("listening on http://")
        .parse()
        .unwrap_or_else(|_| panic!("{role} printed {:?}", started.first_line));
    (started.process, addr)
}

fn orchestrate(quick: bool) {
    let (_backend, backend) = spawn_role("backend", "");
    let (_hale, hale) = spawn_role("proxy", &format!("http://{backend}/mcp"));
    if quick {
        println!(
            "proxy bench: backend at {backend}, hale at {hale}; `cargo xtask bench proxy` measures"
        );
        return;
    }
    let (_nginx, nginx) = start_nginx(backend);
    let script = std::env::temp_dir().join("hale-bench-post.lua");
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
"#,
    )
    .unwrap();

    let targets = [("direct", backend), ("nginx", nginx), ("hale", hale)];
    let mut results: BTreeMap<(usize, &str), Vec<Wrk>> = BTreeMap::new();
    for round in 1..=ROUNDS {
        for c in CONCURRENCY {
            for (name, addr) in targets {
                let r = wrk(&script, addr, c);
                eprintln!(
                    "round {round} c={c:>2} {name:>6}: {:>8.0} req/s p50 {:>7.3} ms p99 {:>7.3} ms",
                    r.rps, r.p50_ms, r.p99_ms
                );
                results.entry((c, name)).or_default().push(r);
            }
        }
    }

    println!(
        "\n## Proxy: small tools/call POST, {ROUNDS} interleaved rounds of {SECONDS_PER_RUN} s, median of rounds\n"
    );
    println!(
        "| concurrency | target | req/s | p50 ms | p99 ms | req/s vs nginx | p99 vs nginx | req/s vs direct |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for c in CONCURRENCY {
        let med = |name: &str| Wrk::median(&results[&(c, name)]);
        let (direct, ngx) = (med("direct"), med("nginx"));
        for name in ["direct", "nginx", "hale"] {
            let r = med(name);
            println!(
                "| {c} | {name} | {:.0} | {:.3} | {:.3} | {:.2}× | {:.2}× | {:.2}× |",
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.rps / ngx.rps,
                r.p99_ms / ngx.p99_ms,
                r.rps / direct.rps
            );
        }
    }

    let (_source, source) = spawn_role("sse-source", "");
    let (sse_proxy, sse_proxy_addr) = spawn_role("proxy", &format!("http://{source}/events"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct = rt.block_on(sse::event_latencies(source, 300));
    let proxied = rt.block_on(sse::event_latencies(sse_proxy_addr, 300));
    let (d50, d99) = (percentile(&direct, 50.0), percentile(&direct, 99.0));
    let (p50, p99) = (percentile(&proxied, 50.0), percentile(&proxied, 99.0));
    println!("\n## SSE event latency (300 events, 10 ms apart)\n");
    println!("| path | p50 ms | p99 ms |\n|---|---|---|");
    println!("| direct | {d50:.3} | {d99:.3} |");
    println!("| through hale | {p50:.3} | {p99:.3} |");
    println!(
        "| **added by hale** | {:.3} | {:.3} |",
        p50 - d50,
        p99 - d99
    );

    let before = rss_kib(sse_proxy.0.id());
    let held = rt.block_on(sse::open_idle(sse_proxy_addr, IDLE_STREAMS));
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(sse_proxy.0.id());
    println!("\n## {} idle SSE streams through hale\n", held.len());
    println!("| proxy RSS before | with the streams | per stream |\n|---|---|---|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / held.len().max(1) as f64
    );
}

/// One wrk run.
#[derive(Clone, Copy, Debug)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Wrk {
    fn median(runs: &[Wrk]) -> Wrk {
        let pick = |f: fn(&Wrk) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        Wrk {
            rps: pick(|r| r.rps),
            p50_ms: pick(|r| r.p50_ms),
            p99_ms: pick(|r| r.p99_ms),
        }
    }
}

fn wrk(script: &Path, addr: SocketAddr, connections: usize) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t",
            &connections.clamp(1, 2).to_string(),
            "-c",
            &connections.to_string(),
        ])
        .args(["-d", &format!("{SECONDS_PER_RUN}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://{addr}/mcp"))
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |prefix: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let ms = |s: &str| -> f64 {
        let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    if text
        .lines()
        .any(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        eprintln!("wrk reported errors against {addr}:\n{text}");
    }
    Wrk {
        rps: value("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: value("50%").map(ms).unwrap_or(f64::NAN),
        p99_ms: value("99%").map(ms).unwrap_or(f64::NAN),
    }
}

fn start_nginx(backend: SocketAddr) -> (Reaped, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("hale-bench-nginx-{port}"));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        r#"daemon off;
worker_processes auto;
error_log {dir}/logs/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    upstream mcp {{ server {backend}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let child = Command::new("nginx")
        .args(["-p", &dir.display().to_string(), "-c"])
        .arg(&path)
        .spawn()
        .expect("nginx is installed (apt-get install nginx-light)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start; see {}/logs",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped(child), addr)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

mod roles {
    use super::*;

    pub(super) fn backend() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let server = hale_testkit::TestServer::start(hale_testkit::ServerConfig {
                stateless: true,
                json_response: true,
                ..hale_testkit::ServerConfig::default()
            })
            .await
            .unwrap();
            println!("listening on http://{}", server.addr());
            std::future::pending::<()>().await;
        });
    }

    pub(super) fn proxy() {
        let target = std::env::args().nth(1).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let config =
                hale_proxy::ProxyConfig::new(&target, hale_core::CheckLoopConfig::default());
            let proxy = hale_proxy::Proxy::bind(config).await.unwrap();
            println!("listening on http://{}", proxy.local_addr());
            proxy.run(tokio_util::sync::CancellationToken::new()).await;
        });
    }

    /// `GET /events`: one event every 10 ms whose data is the time it was sent (µs since
    /// the epoch); `GET /idle`: a stream that stays open and silent. Anything else (the
    /// proxy's health checks) gets a JSON-RPC answer.
    pub(super) fn sse_source() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("GET /events") || head.starts_with("GET /idle") {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
                    if head.starts_with("GET /idle") {
                        let _ = stream.read(&mut buf); // until the client goes away
                        return;
                    }
                    loop {
                        let event = format!("data: {}\n\n", now_micros());
                        if stream
                            .write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
                            .is_err()
                        {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                } else {
                    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"sse-source","version":"0"}}}"#;
                    let _ = stream.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
            });
        }
    }
}

mod sse {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
    use tokio::net::TcpStream;

    /// Reads `count` events from `/events` at `addr`; returns each one's latency in ms.
    pub(super) async fn event_latencies(addr: SocketAddr, count: usize) -> Vec<f64> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(
                format!(
                    "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut lines = TokioBufReader::new(stream).lines();
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let Some(line) = lines.next_line().await.unwrap() else {
                break;
            };
            if let Some(sent) = line
                .strip_prefix("data: ")
                .and_then(|v| v.trim().parse::<u128>().ok())
            {
                latencies.push(now_micros().saturating_sub(sent) as f64 / 1000.0);
            }
        }
        latencies
    }

    /// Opens `count` idle streams through `addr` and keeps them open.
    pub(super) async fn open_idle(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(
                    format!(
                        "GET /idle HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            held.push(stream);
        }
        // Wait until the proxy has answered every one (the headers came back).
        for stream in &mut held {
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        }
        held
    }
}
