//! A stdio server behind hale-stdio's loopback front, driven by hale's own MCP client:
//! a small Python stdio server (tests/fixtures) that can crash, hang and misbehave on
//! request. (Real third-party stdio servers are in `cargo xtask interop`.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError};
use hale_stdio::{HangCheck, Isolation, RestartPolicy, StdioCommand, StdioConfig, StdioServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn fixture(args: &[&str]) -> StdioCommand {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    let mut all = vec![script.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    StdioCommand::new("python3", all)
}

fn fast(command: StdioCommand) -> StdioConfig {
    StdioConfig {
        restart: RestartPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        },
        hang: HangCheck {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(200),
            misses: 2,
        },
        handshake_timeout: Duration::from_secs(10),
        ..StdioConfig::new(command)
    }
}

struct Running {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: hale_stdio::StdioStatus,
}

fn run(config: StdioConfig) -> Running {
    let server = StdioServer::bind(config).unwrap();
    let url = server.url();
    let status = server.status();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    Running {
        url,
        stop,
        task,
        status,
    }
}

async fn client(url: &str) -> McpClient {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        match McpClient::connect(url, options).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

fn text(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap().to_string()
}

async fn pid(c: &McpClient) -> i32 {
    text(&c.call_tool("pid", json!({})).await.unwrap())
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_process_serves_every_client_and_their_ids_never_meet() {
    let r = run(fast(fixture(&[])));
    let (a, b) = (client(&r.url).await, client(&r.url).await);
    assert_eq!(a.server_info().await.server_info["name"], "stdio-fixture");
    assert!(
        a.list_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );
    // Both clients number their requests from 1: interleaved, each gets its own answer.
    let calls = (0..20).map(|i| {
        let c = if i % 2 == 0 { &a } else { &b };
        async move {
            let r = c.call_tool("echo", json!({"text": format!("n{i}")})).await;
            (i, r)
        }
    });
    for (i, r) in futures_util::future::join_all(calls).await {
        assert_eq!(text(&r.unwrap()), format!("n{i}"));
    }
    assert_eq!(pid(&a).await, pid(&b).await, "one process");
    assert_eq!(r.status.processes(), 1);
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn a_killed_process_is_started_again_and_clients_hear_list_changed() {
    let r = run(fast(fixture(&[])));
    let c = client(&r.url).await;
    let first = pid(&c).await;
    let mut notes = c.notifications();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // While it is down: a clear error naming why, never a hang.
    until("restarted", async || {
        match c.call_tool("pid", json!({})).await {
            Ok(v) => text(&v).parse::<i32>().unwrap() != first,
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("not running") || e.contains("ended before answering"),
                    "{e}"
                );
                false
            }
        }
    })
    .await;
    assert!(!alive(first));
    assert!(r.status.restarts() >= 1);
    let note = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = notes.recv().await.unwrap();
            if n.method == "notifications/tools/list_changed" {
                return n;
            }
        }
    })
    .await;
    assert!(note.is_ok(), "no list_changed after the restart");
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn a_hung_process_is_ended_and_started_again() {
    let r = run(fast(fixture(&[])));
    let c = client(&r.url).await;
    let first = pid(&c).await;
    // It stops reading stdin: pings go unanswered.
    let hung = c.call_tool("hang", json!({})).await;
    assert!(hung.is_err());
    until("a new process", async || {
        c.call_tool("pid", json!({}))
            .await
            .is_ok_and(|v| text(&v).parse::<i32>().unwrap() != first)
    })
    .await;
    assert!(!alive(first), "the hung process was ended");
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn noise_on_stdout_and_stderr_is_dropped_and_calls_go_on() {
    let r = run(fast(fixture(&["--garbage"])));
    let c = client(&r.url).await;
    assert_eq!(
        text(&c.call_tool("noise", json!({})).await.unwrap()),
        "noisy"
    );
    assert_eq!(
        text(&c.call_tool("echo", json!({"text": "still"})).await.unwrap()),
        "still"
    );
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn a_missing_command_is_a_clear_error_naming_it() {
    let r = run(fast(StdioCommand::new("/nonexistent/mcp-server", ["--x"])));
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = McpClient::connect(&r.url, options).await.unwrap_err();
    assert!(matches!(e, McpError::HttpStatus { status: 503, .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("cannot start `/nonexistent/mcp-server`") && e.contains("PATH"),
        "{e}"
    );
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn per_session_isolation_gives_each_session_its_own_process_ended_with_it() {
    let r = run(StdioConfig {
        isolation: Isolation::PerSession,
        max_sessions: 2,
        ..fast(fixture(&[]))
    });
    let (a, b) = (client(&r.url).await, client(&r.url).await);
    let (pa, pb) = (pid(&a).await, pid(&b).await);
    assert_ne!(pa, pb);
    // The session's own handshake reached its process.
    let instructions = a
        .server_info()
        .await
        .instructions
        .clone()
        .unwrap_or_default();
    assert!(instructions.contains("hale"), "{instructions}");
    // The limit: a third session waits for one to end.
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let e = McpClient::connect(&r.url, options).await.unwrap_err();
    assert!(e.to_string().contains("the limit"), "{e}");
    a.close().await;
    until("a's process ended", async || !alive(pa)).await;
    assert!(alive(pb));
    let c = client(&r.url).await;
    assert_ne!(pid(&c).await, pb);
    r.stop.cancel();
    r.task.await.unwrap();
    assert!(!alive(pb), "stopping ends every session's process");
}

#[tokio::test]
async fn stopping_ends_the_whole_process_group() {
    // A shell that starts the server as its child: the server is in the shell's group.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    let r = run(fast(StdioCommand::new(
        "sh",
        ["-c".to_string(), format!("python3 {script}; echo done")],
    )));
    let c = client(&r.url).await;
    let server = pid(&c).await;
    assert!(alive(server));
    r.stop.cancel();
    r.task.await.unwrap();
    until("the server gone", async || !alive(server)).await;
}

#[tokio::test]
async fn progress_and_the_servers_requests_reach_the_call_that_caused_them() {
    let r = run(fast(fixture(&[])));
    let _warm = client(&r.url).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let post = |body: Value| {
        http::Request::post(&r.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap()
    };
    use http_body_util::BodyExt;
    let progress = http
        .request(post(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "progress", "arguments": {}, "_meta": {"progressToken": "p1"}}}),
        ))
        .await
        .unwrap();
    let body = String::from_utf8(
        progress
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{body}");
    assert_eq!(events[0]["params"]["progressToken"], "p1");
    assert_eq!(events[2]["id"], 7, "the caller's own id");
    assert_eq!(text(&events[2]["result"]), "done");

    // sampling/createMessage during the call: on the call's stream; the answer POSTed
    // back reaches the process.
    let asking = http
        .request(post(
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
            "params": {"name": "ask", "arguments": {}}}),
        ))
        .await
        .unwrap();
    let mut body = asking.into_body();
    let mut seen = String::new();
    let request = loop {
        let frame = body.frame().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
        if let Some(line) = seen.lines().find_map(|l| l.strip_prefix("data: ")) {
            break serde_json::from_str::<Value>(line).unwrap();
        }
    };
    assert_eq!(request["method"], "sampling/createMessage");
    let answered = http
        .request(post(json!({"jsonrpc": "2.0", "id": request["id"],
            "result": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "hello"}}})))
        .await
        .unwrap();
    assert_eq!(answered.status(), 202);
    let rest = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let last: Value =
        serde_json::from_str(rest.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(last["id"], 8);
    assert!(text(&last["result"]).contains("hello"), "{last}");
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn legacy_sse_clients_are_served_too_in_both_isolations() {
    for isolation in [Isolation::Shared, Isolation::PerSession] {
        let server = StdioServer::bind(StdioConfig {
            isolation,
            ..fast(fixture(&[]))
        })
        .unwrap();
        let sse = server.sse_url();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let options = || ClientOptions {
            transport: hale_mcp::TransportKind::Sse,
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        let c = loop {
            match McpClient::connect(&sse, options()).await {
                Ok(c) => break c,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{isolation:?}: {e}"),
            }
        };
        assert!(
            c.list_tools()
                .await
                .unwrap()
                .iter()
                .any(|t| t["name"] == "echo")
        );
        let r = c
            .call_tool("echo", json!({"text": "legacy"}))
            .await
            .unwrap();
        assert_eq!(text(&r), "legacy", "{isolation:?}");
        // The process's notifications reach the legacy stream.
        let mut notes = c.notifications();
        c.call_tool("touch_list", json!({})).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if notes.recv().await.unwrap().method == "notifications/tools/list_changed" {
                    return;
                }
            }
        })
        .await;
        assert!(
            heard.is_ok(),
            "{isolation:?}: no list_changed on the legacy stream"
        );
        stop.cancel();
        task.await.unwrap();
    }
}
