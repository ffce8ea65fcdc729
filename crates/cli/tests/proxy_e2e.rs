//! End to end: the `hale proxy` binary in front of a testkit server.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient, TransportKind};
use hale_testkit::process::{Reaped, spawn_announced};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use serde_json::json;

/// The binary (killed when dropped), its URL for MCP clients, and its log.
struct Hale {
    child: Reaped,
    url: String,
    stderr: Option<std::process::ChildStderr>,
}

const FAST: [(&str, &str); 4] = [
    ("TOOLHIVE_HEALTH_CHECK_INTERVAL", "300ms"),
    ("TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT", "200ms"),
    ("TOOLHIVE_HEALTH_CHECK_RETRY_DELAY", "100ms"),
    ("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD", "3"),
];

fn proxy(server: &TestServer, transport: &str, env: &[(&str, &str)]) -> Hale {
    let started = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args([
                "proxy",
                "--target",
                &server.url(),
                "--transport",
                transport,
                "--drain-timeout",
                "1s",
            ])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut child = started.process;
    let line = started.first_line;
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("printed {line:?}"));
    let url = server.url().replace(&server.addr().to_string(), addr);
    let stderr = child.0.stderr.take();
    Hale { child, url, stderr }
}

fn options(transport: TransportKind) -> ClientOptions {
    ClientOptions {
        transport,
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn sessions_work_through_the_binary_over_both_transports() {
    for (transport, kind, name) in [
        (
            Transport::StreamableHttp,
            TransportKind::StreamableHttp,
            "streamable-http",
        ),
        (Transport::Sse, TransportKind::Sse, "sse"),
    ] {
        let server = TestServer::start(ServerConfig {
            transport,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let hale = proxy(&server, name, &[]);
        let client = McpClient::connect(&hale.url, options(kind)).await.unwrap();
        let sum = client
            .call_tool("add", json!({"a": 1, "b": 2}))
            .await
            .unwrap();
        assert_eq!(sum["content"][0]["text"], "3", "{name}");

        // An event on an open stream comes through while the stream stays open: nothing
        // waits for the stream to end.
        let mut notes = client.notifications();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        server.add_tool("fresh");
        let note = tokio::time::timeout(Duration::from_secs(2), notes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(note.method, "notifications/tools/list_changed");
        eprintln!(
            "{name}: list_changed arrived {:?} after it was sent",
            sent.elapsed()
        );
        client.close().await;
        server.shutdown();
    }
}

#[tokio::test]
async fn a_dead_server_makes_the_proxy_exit_3_within_the_documented_window() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut hale = proxy(&server, "streamable-http", &FAST);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopped = Instant::now();
    server.set_fault(Some(Fault::Down)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = hale.child.0.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(&mut hale.stderr.take().unwrap(), &mut log).unwrap();
        (status, log)
    })
    .await
    .unwrap();
    let elapsed = stopped.elapsed();
    let (status, log) = status;
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("failed 3 consecutive health checks"), "{log}");
    assert!(
        log.contains("ERROR"),
        "the reason is logged at ERROR: {log}"
    );
    // Window: up to one interval to the first failed check, then (threshold - 1) intervals;
    // one more interval of slack for a loaded machine.
    let window = Duration::from_millis(300 + 2 * 300 + 300);
    assert!(
        elapsed <= window + Duration::from_millis(500),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_blip_shorter_than_the_window_keeps_the_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let hale = proxy(&server, "streamable-http", &FAST);
    let client = McpClient::connect(&hale.url, options(TransportKind::StreamableHttp))
        .await
        .unwrap();
    client.ping().await.unwrap();
    server.set_fault(Some(Fault::Down)).await;
    tokio::time::sleep(Duration::from_millis(350)).await; // at most two failed checks
    server.set_fault(None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The server kept its sessions (only the listener went away), so ours still works.
    let opened = server.stats().sessions_opened;
    let echo = client
        .call_tool("echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "still here");
    assert_eq!(
        server.stats().sessions_opened,
        opened,
        "no new session was needed"
    );
    drop(hale);
    server.shutdown();
}

#[tokio::test]
async fn sigterm_stops_the_proxy_when_nothing_reads_its_log() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    // A reader that went away (`hale proxy 2>&1 | head -1`): writes fail with EPIPE.
    let mut gone = proxy(&server, "streamable-http", &FAST);
    drop(gone.stderr.take());
    let client = McpClient::connect(&gone.url, options(TransportKind::StreamableHttp))
        .await
        .unwrap();
    client.ping().await.unwrap();
    let status = tokio::task::spawn_blocking(move || gone.child.terminate(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exited on SIGTERM");

    // A reader that stopped reading (a stuck log shipper): writes would block once the
    // pipe is full. Trace logging and a few hundred requests fill it many times over.
    let stuck = proxy(&server, "streamable-http", &[("RUST_LOG", "trace")]);
    let _kept_open_unread = &stuck.stderr;
    let client = McpClient::connect(&stuck.url, options(TransportKind::StreamableHttp))
        .await
        .unwrap();
    for _ in 0..300 {
        client.ping().await.unwrap();
    }
    let mut stuck = stuck;
    let status = tokio::task::spawn_blocking(move || {
        let status = stuck.child.terminate(Duration::from_secs(5));
        (status, stuck)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exited on SIGTERM");
    server.shutdown();
}

#[tokio::test]
async fn credentials_in_the_target_stay_out_of_logs_and_output() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let target = format!("http://alice:hunter2@127.0.0.1:{port}/mcp?api_key=sekrit");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["proxy", "--target", &target, "--drain-timeout", "1s"])
        .envs(FAST)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    for secret in ["alice", "hunter2", "sekrit"] {
        assert!(!text.contains(secret), "{secret} in: {text}");
    }
}

#[test]
fn help_documents_every_flag_and_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--target",
        "--transport",
        "--listen",
        "--drain-timeout",
        "--target-ca-bundle",
        "--target-client-cert",
        "--target-client-key",
        "--target-server-name",
        "--target-insecure-skip-verify",
        "TOOLHIVE_HEALTH_CHECK_INTERVAL",
        "TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT",
        "TOOLHIVE_HEALTH_CHECK_RETRY_DELAY",
        "TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD",
        "status 3",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[tokio::test]
async fn unusable_variables_are_named_in_a_warning_and_defaults_apply() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut hale = proxy(
        &server,
        "streamable-http",
        &[
            ("TOOLHIVE_HEALTH_CHECK_INTERVAL", "10"),
            ("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD", "2.5"),
        ],
    );
    hale.child.terminate(Duration::from_secs(5)).unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut hale.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("TOOLHIVE_HEALTH_CHECK_INTERVAL")
            && log.contains("\"10\"")
            && log.contains("10s"),
        "{log}"
    );
    assert!(
        log.contains("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD") && log.contains("2.5"),
        "{log}"
    );
    server.shutdown();
}

#[test]
fn a_bad_target_is_a_clear_error_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["proxy", "--target", "ftp://example/mcp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--target ftp://example/mcp") && stderr.contains("http://"),
        "{stderr}"
    );
}

#[test]
fn unusable_tls_flags_name_the_flag_with_status_2() {
    for (args, expected) in [
        (
            vec![
                "--target",
                "https://127.0.0.1:1/mcp",
                "--target-ca-bundle",
                "/nonexistent/ca.pem",
            ],
            "--target-ca-bundle: /nonexistent/ca.pem",
        ),
        (
            vec![
                "--target",
                "http://127.0.0.1:1/mcp",
                "--target-insecure-skip-verify",
            ],
            "apply to an https:// target",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hale"))
            .arg("proxy")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// hale-stdio's Python fixture: a stdio MCP server with a `pid` tool.
const STDIO_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../stdio/tests/fixtures/stdio_server.py"
);

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[tokio::test]
async fn a_stdio_server_after_double_dash_is_run_proxied_and_ended_with_the_proxy() {
    let started = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args([
                "proxy",
                "--drain-timeout",
                "1s",
                "--",
                "python3",
                STDIO_FIXTURE,
            ])
            .envs(FAST)
            .stderr(Stdio::null()),
    )
    .unwrap();
    let mut hale = started.process;
    let addr = started
        .first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    let url = format!("http://{addr}/mcp");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let client = loop {
        match McpClient::connect(&url, options(TransportKind::StreamableHttp)).await {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        client.server_info().await.server_info["name"],
        "stdio-fixture"
    );
    let echo = client
        .call_tool("echo", json!({"text": "through hale proxy"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "through hale proxy");
    let pid: i32 = client.call_tool("pid", json!({})).await.unwrap()["content"][0]["text"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(running(pid));
    let (status, body) = get_health(&addr).await;
    assert_eq!(status, 200, "{body}");
    // A legacy SSE client through the same proxy.
    let legacy = McpClient::connect(&format!("http://{addr}/sse"), options(TransportKind::Sse))
        .await
        .unwrap();
    let echo = legacy
        .call_tool("echo", json!({"text": "legacy through hale proxy"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "legacy through hale proxy");

    let exit = tokio::task::spawn_blocking(move || hale.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    assert!(!running(pid), "the stdio server outlived hale proxy");
}

#[test]
fn target_and_a_command_together_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args([
            "proxy",
            "--target",
            "http://127.0.0.1:1/mcp",
            "--",
            "python3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn get_health(addr: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, text)
}
