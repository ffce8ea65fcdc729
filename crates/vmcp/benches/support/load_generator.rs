//! A lean MCP load generator, as an agent drives a server: keep-alive HTTP/1.1
//! connections, the session header, one JSON-RPC request per POST. It runs in a process
//! of its own (`HALE_BENCH_ROLE=load`), so that no in-process client hides or adds a cost.
//!
//! `sessions` sessions are opened with `initialize`; `concurrency` workers, each on its
//! own connection, call `tool` in a loop for the given seconds, worker `k` in session
//! `k % sessions`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Figures {
    pub(crate) calls: u64,
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

impl Figures {
    pub(crate) fn parse(text: &str) -> Option<Figures> {
        let v: Vec<f64> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (v.len() == 4).then(|| Figures {
            calls: v[0] as u64,
            rate: v[1],
            p50_ms: v[2],
            p99_ms: v[3],
        })
    }
}

/// One keep-alive connection.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    /// `Bearer …` from `HALE_BENCH_TOKEN`, sent with every request when set.
    authorization: Option<String>,
    /// `HALE_BENCH_MODERN`: speak 2026-07-28 (no session; the version and method
    /// headers, `_meta` in the body).
    modern: bool,
}

impl Connection {
    async fn open(url: &str) -> Connection {
        let rest = url.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Connection {
            sender,
            authority: authority.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            authorization: std::env::var("HALE_BENCH_TOKEN")
                .ok()
                .map(|t| format!("Bearer {t}")),
            modern: std::env::var_os("HALE_BENCH_MODERN").is_some(),
        }
    }

    /// POSTs `body`; returns the session header of the answer, if any.
    async fn post(&mut self, session: Option<&str>, body: String) -> Option<String> {
        let mut request = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        request = if self.modern {
            request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "echo")
        } else {
            request.header("mcp-protocol-version", "2025-06-18")
        };
        if let Some(s) = session {
            request = request.header("mcp-session-id", s);
        }
        if let Some(a) = &self.authorization {
            request = request.header("authorization", a);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let sid = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let _ = response.into_body().collect().await.unwrap();
        sid
    }

    async fn initialize(&mut self) -> Option<String> {
        if self.modern {
            return None; // no session in 2026-07-28
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "hale-bench", "version": "1"}}});
        let sid = self.post(None, init.to_string()).await;
        let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(sid.as_deref(), done.to_string()).await;
        sid
    }
}

fn call(id: u64, tool: &str) -> String {
    let mut params = json!({"name": tool, "arguments": {"text": "hi"}});
    if std::env::var_os("HALE_BENCH_MODERN").is_some() {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "hale-bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

fn percentiles(mut all: Vec<f64>) -> (f64, f64) {
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((p / 100.0) * (all.len() - 1) as f64) as usize];
    (pct(50.0), pct(99.0))
}

/// The process entry point: `URL TOOL SESSIONS CONCURRENCY SECONDS` → prints
/// `calls rate p50_ms p99_ms`.
pub(crate) fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, tool) = (args[0].clone(), args[1].clone());
    let sessions: usize = args[2].parse().unwrap();
    let concurrency: usize = args[3].parse().unwrap();
    let seconds: u64 = args[4].parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let figures = rt.block_on(async move {
        let mut ids = Vec::new();
        for _ in 0..sessions {
            ids.push(Connection::open(&url).await.initialize().await);
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut workers = Vec::new();
        for k in 0..concurrency.max(sessions) {
            let (url, tool, session) = (url.clone(), tool.clone(), ids[k % sessions].clone());
            workers.push(tokio::spawn(async move {
                let mut conn = Connection::open(&url).await;
                let mut latencies = Vec::new();
                let mut id = 1;
                while Instant::now() < deadline {
                    let start = Instant::now();
                    conn.post(session.as_deref(), call(id, &tool)).await;
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                    id += 1;
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        let calls = all.len() as u64;
        let (p50, p99) = percentiles(all);
        Figures {
            calls,
            rate: calls as f64 / seconds as f64,
            p50_ms: p50,
            p99_ms: p99,
        }
    });
    println!(
        "{} {:.1} {:.4} {:.4}",
        figures.calls, figures.rate, figures.p50_ms, figures.p99_ms
    );
}

/// Opens `sessions` sessions (8 connections) and calls each of `tools` once in each;
/// the sessions stay open on the server. Returns the calls made.
pub(crate) async fn hold_sessions(url: &str, sessions: usize, tools: &[&str]) -> Figures {
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8 {
        let url = url.to_string();
        let tools: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
        workers.push(tokio::spawn(async move {
            let mut conn = Connection::open(&url).await;
            let mut calls = 0u64;
            for _ in (w..sessions).step_by(8) {
                let sid = conn.initialize().await;
                for tool in &tools {
                    conn.post(sid.as_deref(), call(1, tool)).await;
                    calls += 1;
                }
            }
            calls
        }));
    }
    let mut calls = 0;
    for w in workers {
        calls += w.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    Figures {
        calls,
        rate: calls as f64 / secs,
        p50_ms: 0.0,
        p99_ms: 0.0,
    }
}

/// Opens `n` sessions one after another on one connection: (p50, p99) of the time to
/// the `initialize` answer, in ms.
pub(crate) async fn open_times(url: &str, n: usize) -> (f64, f64) {
    let mut conn = Connection::open(url).await;
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        conn.initialize().await;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    percentiles(times)
}
