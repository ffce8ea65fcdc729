//! Sessions across replicas: three `hale vmcp` processes with `sessionStorage: redis`
//! (a real redis-server) behind HAProxy balancing every request round-robin, over a
//! stateful hale-testkit backend whose `count` tool counts the calls of one backend
//! session: a client session goes on, on the same backend session, while replicas are
//! killed (SIGKILL, SIGTERM) and restarted one by one; two clients stay apart; Redis
//! frozen gives a clear error within the timeout, and everything recovers when it thaws.
//! Needs `redis-server` and `haproxy` (Debian's; `.ci/run` installs them).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient, McpError};
use hale_testkit::process::Reaped;
use hale_testkit::redis::RedisServer;
use hale_testkit::{ServerConfig, TestServer};
use serde_json::json;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn binary(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (apt-get install {name}; .ci/run does)"))
}

/// A child process killed (SIGKILL) when dropped.
type Proc = Reaped;

/// SIGTERM, and the exit code once it exits (within 20 s).
fn stop(mut p: Proc) -> Option<i32> {
    p.terminate(Duration::from_secs(20)).and_then(|s| s.code())
}

struct Bench {
    dir: PathBuf,
    config: PathBuf,
    ports: Vec<u16>,
    front: u16,
}

impl Bench {
    fn new(backend: &TestServer) -> (Bench, RedisServer, Proc) {
        let dir = std::env::temp_dir().join(format!("hale-replicas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = RedisServer::start().unwrap();
        let address = redis.address();
        let config = dir.join("vmcp.yaml");
        std::fs::write(
            &config,
            format!(
                "name: replicated\nlisten: 127.0.0.1:0\nsessionStorage: {{provider: redis, address: \"{address}\", keyPrefix: \"test:\", timeout: 500ms}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 500ms, healthCheckTimeout: 400ms}}\n",
                backend.url()
            ),
        )
        .unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let front = free_port();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("  server r{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 1\n"))
            .collect();
        let haproxy_cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &haproxy_cfg,
            format!(
                "global\n  maxconn 256\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch\n  option http-server-close\nfrontend mcp\n  bind 127.0.0.1:{front}\n  default_backend vmcp\nbackend vmcp\n  balance roundrobin\n  option httpchk GET /health\n{servers}"
            ),
        )
        .unwrap();
        let haproxy = Reaped(
            Command::new(binary("haproxy"))
                .args(["-f"])
                .arg(&haproxy_cfg)
                .args(["-db"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(front, "haproxy");
        (
            Bench {
                dir,
                config,
                ports,
                front,
            },
            redis,
            haproxy,
        )
    }

    /// Replica `i` on its port; returns once it answers `/readyz`.
    fn replica(&self, i: usize) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(["vmcp", "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--drain-timeout", "2s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Reaped(child);
        wait_listening(self.ports[i], "hale vmcp");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ready(self.ports[i]) {
            assert!(Instant::now() < deadline, "replica {i} never ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        // HAProxy's checks (every 200 ms) see it up.
        std::thread::sleep(Duration::from_millis(500));
        proc
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.front)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(
        format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        // No GET stream: every request is a POST the balancer spreads.
        listen: false,
        ..ClientOptions::default()
    }
}

async fn count(c: &McpClient) -> Result<u64, McpError> {
    let r = c.call_tool("kit_count", json!({})).await?;
    Ok(r["content"][0]["text"]
        .as_str()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("count answered {r}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_on_across_replicas_killed_and_restarted() {
    let backend = TestServer::start(ServerConfig {
        session_tools: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let (bench, redis, _haproxy) = Bench::new(&backend);
    let mut replicas: Vec<Option<Proc>> = (0..3).map(|i| Some(bench.replica(i))).collect();

    let a = McpClient::connect(&bench.url(), options()).await.unwrap();
    let b = McpClient::connect(&bench.url(), options()).await.unwrap();
    // Six calls go round the three replicas twice: one backend session counts them all.
    let mut expected = 0;
    for _ in 0..6 {
        expected += 1;
        assert_eq!(count(&a).await.unwrap(), expected, "a's backend session");
    }
    // Two clients stay apart, whichever replica answers.
    a.call_tool("kit_remember", json!({"value": "alpha"}))
        .await
        .unwrap();
    b.call_tool("kit_remember", json!({"value": "beta"}))
        .await
        .unwrap();
    for _ in 0..3 {
        let ra = a.call_tool("kit_recall", json!({})).await.unwrap();
        let rb = b.call_tool("kit_recall", json!({})).await.unwrap();
        assert_eq!(ra["content"][0]["text"], "alpha");
        assert_eq!(rb["content"][0]["text"], "beta");
    }
    assert_eq!(count(&b).await.unwrap(), 1, "b has its own backend session");

    // Replica 0 is SIGKILLed, replica 1 SIGTERMed: the one left serves the session.
    replicas[0].take().unwrap().signal("-KILL");
    stop(replicas[1].take().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..4 {
        expected += 1;
        assert_eq!(
            count(&a).await.unwrap(),
            expected,
            "after two replicas went"
        );
    }

    // A rolling restart: each replica in turn stopped and started again.
    replicas[0] = Some(bench.replica(0));
    replicas[1] = Some(bench.replica(1));
    for (i, replica) in replicas.iter_mut().enumerate() {
        let old = replica.take().unwrap();
        assert_eq!(stop(old), Some(0), "replica {i} drains and exits 0");
        for _ in 0..2 {
            expected += 1;
            assert_eq!(
                count(&a).await.unwrap(),
                expected,
                "while replica {i} restarts"
            );
        }
        *replica = Some(bench.replica(i));
    }
    for _ in 0..3 {
        expected += 1;
        assert_eq!(
            count(&a).await.unwrap(),
            expected,
            "after the rolling restart"
        );
    }
    let rb = b.call_tool("kit_recall", json!({})).await.unwrap();
    assert_eq!(rb["content"][0]["text"], "beta", "b kept its own too");

    // Redis frozen: a replica that must ask it answers -31009 within the timeout (one
    // holding the session serves it); thawed, every replica serves again.
    redis.freeze();
    let mut unavailable = 0;
    for _ in 0..6 {
        let started = Instant::now();
        // A new client session: initialize itself must reach the store.
        match McpClient::connect(&bench.url(), options()).await {
            Ok(_) => panic!("initialize succeeded with Redis frozen"),
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(4),
                    "no answer for {:?}",
                    started.elapsed()
                );
                let text = e.to_string();
                assert!(
                    text.contains("-31009") && text.contains("session store"),
                    "{text}"
                );
                unavailable += 1;
            }
        }
    }
    assert_eq!(unavailable, 6);
    redis.thaw();
    for _ in 0..3 {
        expected += 1;
        assert_eq!(count(&a).await.unwrap(), expected, "after Redis thawed");
    }
    let c = McpClient::connect(&bench.url(), options()).await.unwrap();
    assert_eq!(count(&c).await.unwrap(), 1);

    // DELETE ends the session everywhere: a request with its id is refused at every
    // replica, also at those that had resumed it.
    let sid = a.session_id().await.unwrap();
    a.close().await;
    std::thread::sleep(Duration::from_millis(300));
    for port in &bench.ports {
        assert_eq!(post_with_session(*port, &sid), 404, "replica on {port}");
    }
    drop(replicas);
}

/// The status of a `tools/list` POSTed straight to the replica on `port` with session
/// `sid`.
fn post_with_session(port: u16, sid: &str) -> u16 {
    use std::io::{Read, Write};
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
