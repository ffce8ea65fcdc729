//! OpenTelemetry end to end (issue 28), against a real collector: `rotel` from PyPI (a
//! Rust OTLP collector whose debug log prints every span it receives). The official
//! Python SDK's client, traced (the SDK puts its context in `_meta`), calls a tool
//! through `hale vmcp` on a traced Python SDK server: one trace must run from the
//! client's span through hale's SERVER and CLIENT spans to the server's own span, the
//! server having been sent hale's CLIENT span as its parent in `_meta` and in the
//! `traceparent` header. Then the server goes away: the failed calls open the circuit
//! (an event on the call that did it, with the withdrawal it caused) and the next call
//! is refused (its span says so). Last, with the collector gone, calls are answered as
//! before and SIGTERM still ends hale within its drain.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::servers::{Paths, Server, spawn, spawn_hale};
use crate::tally::{Tally, report_steps};

/// Into a venv of its own (the SDK's OpenTelemetry packages pin `opentelemetry-api`).
pub(crate) const PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "rotel==0.0.1a15",
];

/// Installs the venv (once per version set).
pub(crate) fn install(dir: &Path) -> Result<(), String> {
    let venv = dir.join("venv-otel");
    let marker = venv.join(".installed");
    let wanted = PACKAGES.join(" ");
    if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }
    for package in PACKAGES {
        crate::ecosystem::pip(&venv, package)?;
    }
    fs::write(&marker, wanted).map_err(|e| format!("writing {}: {e}", marker.display()))
}

/// One span as rotel printed it.
#[derive(Debug, Default, Clone)]
struct Span {
    service: String,
    trace: String,
    parent: String,
    id: String,
    name: String,
    kind: String,
    attrs: Vec<(String, String)>,
    events: Vec<String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The spans in rotel's detailed debug log.
fn parse(log: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut service = String::new();
    let (mut in_span, mut in_events) = (false, false);
    for line in log.lines() {
        let t = line.trim();
        let field = |name: &str| {
            t.strip_prefix(name)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        if t.starts_with("ResourceSpans #") {
            service.clear();
            in_span = false;
        } else if t.starts_with("Span #") {
            spans.push(Span {
                service: service.clone(),
                ..Span::default()
            });
            (in_span, in_events) = (true, false);
        } else if t.starts_with("Events:") {
            in_events = true;
        } else if let Some(rest) = t.strip_prefix("-> ") {
            let Some((key, value)) = rest.split_once(": ") else {
                continue;
            };
            let value = value
                .strip_prefix("Str(")
                .or_else(|| value.strip_prefix("Int("))
                .or_else(|| value.strip_prefix("Bool("))
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(value)
                .to_string();
            match spans.last_mut() {
                Some(span) if in_span && in_events && key == "Name" => span.events.push(value),
                Some(span) if in_span && !in_events => span.attrs.push((key.to_string(), value)),
                _ if !in_span && key == "service.name" => service = value,
                _ => {}
            }
        } else if let Some(span) = spans.last_mut().filter(|_| in_span) {
            if let Some(v) = field("Trace ID") {
                span.trace = v;
            } else if let Some(v) = field("Parent ID") {
                span.parent = v;
            } else if let Some(v) = field("ID") {
                span.id = v;
            } else if let Some(v) = field("Name") {
                span.name = v;
            } else if let Some(v) = field("Kind") {
                span.kind = v;
            }
        }
    }
    spans
}

/// Runs the checks; returns the failures, one line each.
pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    println!(
        "\n== OpenTelemetry: a traced Python SDK client through hale vmcp to a traced Python SDK server, into a real collector (rotel)"
    );
    let venv = p.dir.join("venv-otel");
    let python = venv.join("bin/python");
    let rotel = fs::read_dir(venv.join("lib"))
        .map_err(|e| format!("{}: {e}", venv.display()))?
        .filter_map(Result::ok)
        .map(|d| d.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.exists())
        .ok_or("rotel-agent is not in venv-otel")?;
    let scripts = p.root.join("xtask/interop/otel");
    let log = p.dir.join("rotel.log");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))
    };
    let (otlp_http, otlp_grpc) = (free()?, free()?);
    let collector_url = format!("http://127.0.0.1:{otlp_http}");
    let start_collector = || -> Result<Server, String> {
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(&rotel)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{otlp_http}"),
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{otlp_grpc}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting rotel: {e}"))?;
        let server = Server::of(child);
        crate::servers::wait_for_port(otlp_http, Duration::from_secs(20))?;
        Ok(server)
    };
    let collector = start_collector()?;
    let collector_arg = collector_url.clone();
    let backend = spawn(
        &|port| {
            let mut c = Command::new(&python);
            c.arg(scripts.join("server.py"))
                .arg(port.to_string())
                .arg(&collector_arg)
                .current_dir(&scripts);
            c
        },
        "/mcp",
    )?;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: py, url: \"{}\"}}\noperational:\n  failureHandling:\n    healthCheckInterval: 60s\n    panicThreshold: 0%\n    circuitBreaker: {{failureThreshold: 2, timeout: 60s}}\ntelemetry: {{endpoint: \"127.0.0.1:{otlp_http}\", insecure: true, healthCheckSamplingRate: 1}}\n",
        backend.url
    );
    let mut vmcp = vmcp_with(p, &yaml)?;
    let client = |url: &str, collector: &str| -> Result<Value, String> {
        let out = Command::new(&python)
            .arg(scripts.join("client.py"))
            .args([url, collector, "py_echo"])
            .current_dir(&scripts)
            .output()
            .map_err(|e| format!("running client.py: {e}"))?;
        serde_json::from_slice::<Value>(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(|e| {
            format!(
                "client.py printed no answer ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(600)
                    .collect::<String>()
            )
        })
    };
    let mut steps: Vec<(String, bool, String)> = Vec::new();

    let traced = client(&vmcp.url, &collector_url)?;
    let seen_meta = traced["answer"]["meta"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let seen_header = traced["answer"]["header"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The server goes away: two failed calls open the circuit, the third is refused.
    drop(backend);
    let failed: Vec<Value> = (0..3)
        .map(|_| client(&vmcp.url, &collector_url))
        .collect::<Result<_, _>>()?;
    vmcp.terminate(Duration::from_secs(15));
    thread::sleep(Duration::from_secs(2)); // rotel prints what it got
    let spans = parse(&String::from_utf8_lossy(
        &fs::read(&log).map_err(|e| format!("{}: {e}", log.display()))?,
    ));
    let trace = traced["trace_id"].as_str().unwrap_or_default().to_string();
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace == trace).collect();
    let find = |service: &str, kind: &str, name: &str| {
        in_trace
            .iter()
            .find(|s| s.service == service && s.kind == kind && s.name == name)
            .copied()
    };
    let sent = find(
        "python-client",
        "SPAN_KIND_CLIENT",
        "MCP send tools/call py_echo",
    );
    let server_span = find("hale-vmcp", "SPAN_KIND_SERVER", "tools/call py_echo");
    let client_span = find("hale-vmcp", "SPAN_KIND_CLIENT", "tools/call echo");
    let backend_span = find("python-backend", "SPAN_KIND_SERVER", "tools/call echo");
    steps.push((
        "the Python SDK client's trace continues in hale: its SERVER span's parent is the client's span".into(),
        traced["error"].is_null()
            && sent.zip(server_span).is_some_and(|(c, s)| s.parent == c.id),
        format!(
            "answer {} error {}; {} spans in the trace",
            traced["answer"], traced["error"], in_trace.len()
        ),
    ));
    steps.push((
        "hale's CLIENT span is under it, with the backend and its circuit".into(),
        server_span.zip(client_span).is_some_and(|(s, c)| {
            c.parent == s.id
                && c.attr("mcp.backend.name") == Some("py")
                && c.attr("hale.circuit.state") == Some("closed")
                && c.attr("gen_ai.tool.name") == Some("echo")
        }),
        format!("{client_span:?}").chars().take(300).collect(),
    ));
    steps.push((
        "the Python SDK server was sent hale's CLIENT span as parent, in _meta and the traceparent header, and its own span continues it".into(),
        client_span.zip(backend_span).is_some_and(|(c, b)| {
            b.parent == c.id && seen_meta.contains(&c.id) && seen_header == seen_meta
        }),
        format!("_meta {seen_meta}, header {seen_header}"),
    ));
    let opened = spans
        .iter()
        .find(|s| s.service == "hale-vmcp" && s.events.iter().any(|e| e == "circuit changed"));
    steps.push((
        "the server gone: the call that opened the circuit carries the transition and the withdrawal".into(),
        opened.is_some_and(|s| s.events.iter().any(|e| e == "backend withdrawn")),
        format!(
            "{:?}",
            opened.map(|s| (&s.name, &s.events, s.attr("error.type")))
        ),
    ));
    // A new session's call to the withdrawn backend: refused before it reaches the
    // breaker, on the SERVER span (an error of the server's, -31001).
    let refused = spans.iter().find(|s| {
        s.service == "hale-vmcp"
            && s.kind == "SPAN_KIND_SERVER"
            && s.events.iter().any(|e| e == "circuit refused the call")
    });
    steps.push((
        "the next call is refused by the open circuit, and its span says so".into(),
        refused.is_some_and(|s| s.attr("rpc.response.status_code") == Some("-31001"))
            && failed.iter().all(|f| !f["error"].is_null()),
        format!(
            "{:?}; the calls said {:?}",
            refused.map(|s| (&s.name, &s.events)),
            failed
                .iter()
                .map(|f| f["error"].to_string())
                .collect::<Vec<_>>()
        ),
    ));
    steps.push((
        "health checks are traced (healthCheckSamplingRate 1): a health_check root with its ping"
            .into(),
        spans.iter().any(|h| {
            h.name == "health_check"
                && h.service == "hale-vmcp"
                && spans.iter().any(|s| s.name == "ping" && s.parent == h.id)
        }),
        String::new(),
    ));

    // The collector gone: calls as before, and shutdown within the drain.
    drop(collector);
    let bin = p.bin.to_path_buf();
    let kit = spawn(
        &|port| crate::servers::testkit(&bin, port, "streamable-http"),
        "/mcp",
    )?;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: py, url: \"{}\"}}\ntelemetry: {{endpoint: \"127.0.0.1:{otlp_http}\", insecure: true, healthCheckSamplingRate: 1}}\n",
        kit.url
    );
    vmcp = vmcp_with(p, &yaml)?;
    let answers: Vec<Value> = (0..3)
        .map(|_| client(&vmcp.url, "none"))
        .collect::<Result<_, _>>()?;
    let stopped = vmcp.terminate(Duration::from_secs(15)).is_some();
    steps.push((
        "the collector gone: calls are answered as before, and SIGTERM ends hale".into(),
        answers.iter().all(|a| a["answer"] == "traced") && stopped,
        format!(
            "{:?}, stopped {stopped}",
            answers
                .iter()
                .map(|a| a["answer"].to_string())
                .collect::<Vec<_>>()
        ),
    ));
    let mut failures = Vec::new();
    report_steps("otel", steps, tally, &mut failures);
    Ok(failures)
}

/// `hale vmcp` with configuration `yaml`.
fn vmcp_with(p: &Paths<'_>, yaml: &str) -> Result<Server, String> {
    let config = p.dir.join("vmcp-otel.yaml");
    fs::write(&config, yaml).map_err(|e| format!("writing {}: {e}", config.display()))?;
    spawn_hale(
        p.bin,
        &["vmcp", "--config", &config.display().to_string()],
        "mcp",
    )
}
