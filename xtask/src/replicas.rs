//! One Python SDK client session across three hale vmcp replicas: a real redis-server
//! (`sessionStorage: redis`), HAProxy balancing every request round-robin, a stateful
//! hale-testkit whose `count` tool counts one backend session's calls. The session keeps
//! its backend session while one replica is SIGKILLed and another SIGTERMed, and through
//! a rolling restart of all three; a second SDK session stays apart.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::servers::{Paths, Server, spawn, testkit};
use crate::tally::{Tally, report_steps};
use crate::watcher::Watcher;

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn wait_listening(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} never listened on {port}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

type Proc = Server;

/// SIGTERM, and the exit code once it exits (within 20 s).
fn terminate(mut p: Proc) -> Option<i32> {
    p.terminate(Duration::from_secs(20)).and_then(|s| s.code())
}

fn start(program: &Path, args: &[&str]) -> Result<Proc, String> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server::of)
        .map_err(|e| format!("starting {}: {e}", program.display()))
}

fn replica(bin: &Path, config: &Path, port: u16) -> Result<Proc, String> {
    let listen = format!("127.0.0.1:{port}");
    let config = config.display().to_string();
    let p = start(
        &bin.join("hale"),
        &[
            "vmcp",
            "--config",
            &config,
            "--listen",
            &listen,
            "--drain-timeout",
            "2s",
        ],
    )?;
    wait_listening(port, "hale vmcp")?;
    // HAProxy's checks (every 200 ms) see it up, and its first catalog is built.
    thread::sleep(Duration::from_millis(800));
    Ok(p)
}

pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    println!(
        "\n== one Python SDK session across three hale vmcp replicas (Redis sessions, HAProxy round-robin per request)"
    );
    let redis_bin = PathBuf::from("/usr/bin/redis-server");
    let haproxy_bin = PathBuf::from("/usr/sbin/haproxy");
    if !redis_bin.exists() || !haproxy_bin.exists() {
        return Err("redis-server and haproxy are needed (apt-get install redis-server haproxy; .ci/run does)".into());
    }
    let redis_port = free_port()?;
    let _redis = start(
        &redis_bin,
        &[
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )?;
    wait_listening(redis_port, "redis-server")?;
    let backend = spawn(
        &|port| {
            let mut c = testkit(p.bin, port, "streamable-http");
            c.arg("--session-tools");
            c
        },
        "/mcp",
    )?;
    let config = p.dir.join("vmcp-replicas.yaml");
    fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nsessionStorage: {{provider: redis, address: \"127.0.0.1:{redis_port}\", keyPrefix: \"interop:\"}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\noperational:\n  failureHandling: {{healthCheckInterval: 500ms, healthCheckTimeout: 400ms}}\n",
            backend.url
        ),
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let front = free_port()?;
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!("  server r{i} 127.0.0.1:{port} check inter 200ms fall 1 rise 1\n")
        })
        .collect();
    let haproxy_cfg = p.dir.join("haproxy-replicas.cfg");
    fs::write(
        &haproxy_cfg,
        format!(
            "global\n  maxconn 256\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n  retries 3\n  option redispatch\n  option http-server-close\nfrontend mcp\n  bind 127.0.0.1:{front}\n  default_backend vmcp\nbackend vmcp\n  balance roundrobin\n  option httpchk GET /health\n{servers}"
        ),
    )
    .map_err(|e| format!("writing {}: {e}", haproxy_cfg.display()))?;
    let mut replicas: Vec<Option<Proc>> = Vec::new();
    for port in ports {
        replicas.push(Some(replica(p.bin, &config, port)?));
    }
    let _haproxy = start(
        &haproxy_bin,
        &["-f", &haproxy_cfg.display().to_string(), "-db"],
    )?;
    wait_listening(front, "haproxy")?;
    thread::sleep(Duration::from_millis(500));

    let url = format!("http://127.0.0.1:{front}/mcp");
    let watcher = || {
        let mut c = Command::new(p.python);
        c.arg(p.root.join("xtask/interop/python_watch.py"));
        c
    };
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let mut a = Watcher::start(watcher(), &url)?;
    let mut b = Watcher::start(watcher(), &url)?;
    let mut expected = 0u64;
    let counts = |w: &mut Watcher, n: usize, expected: &mut u64| -> (bool, String) {
        let mut seen = Vec::new();
        let mut ok = true;
        for _ in 0..n {
            *expected += 1;
            let r = w.call_with("count", &json!({})).unwrap_or_default();
            let got = r["text"]
                .as_str()
                .and_then(|t| t.trim().parse::<u64>().ok());
            seen.push(got.map_or_else(|| r.to_string(), |g| g.to_string()));
            ok &= got == Some(*expected);
        }
        (ok, format!("counts {}", seen.join(", ")))
    };
    let (ok, detail) = counts(&mut a, 6, &mut expected);
    steps.push((
        "six calls round the three replicas: one backend session counts them".into(),
        ok,
        detail,
    ));
    let ra = a.call_with("remember", &json!({"value": "alpha"}))?;
    let rb = b.call_with("remember", &json!({"value": "beta"}))?;
    let (xa, xb) = (
        a.call_with("recall", &json!({}))?,
        b.call_with("recall", &json!({}))?,
    );
    steps.push((
        "two SDK sessions stay apart".into(),
        ra["ok"] == true && rb["ok"] == true && xa["text"] == "alpha" && xb["text"] == "beta",
        format!("{} / {}", xa["text"], xb["text"]),
    ));

    if let Some(r) = replicas[0].take() {
        r.signal("-KILL");
    }
    let stopped = replicas[1].take().and_then(terminate);
    thread::sleep(Duration::from_millis(500));
    let (ok, detail) = counts(&mut a, 4, &mut expected);
    steps.push((
        "replica 0 SIGKILLed, replica 1 SIGTERMed: the same backend session goes on".into(),
        ok && stopped == Some(0),
        format!("{detail}; replica 1 exited {stopped:?}"),
    ));
    replicas[0] = Some(replica(p.bin, &config, ports[0])?);
    replicas[1] = Some(replica(p.bin, &config, ports[1])?);
    let mut rolled = true;
    let mut details = Vec::new();
    for (i, slot) in replicas.iter_mut().enumerate() {
        let code = slot.take().and_then(terminate);
        let (ok, detail) = counts(&mut a, 2, &mut expected);
        rolled &= ok && code == Some(0);
        details.push(format!("r{i}: {detail}"));
        *slot = Some(replica(p.bin, &config, ports[i])?);
    }
    let (ok, detail) = counts(&mut a, 3, &mut expected);
    details.push(format!("after: {detail}"));
    steps.push((
        "a rolling restart of all three: the session and its backend session go on".into(),
        rolled && ok,
        details.join("; "),
    ));
    let xb = b.call_with("recall", &json!({}))?;
    steps.push((
        "the other session kept its own".into(),
        xb["text"] == "beta",
        xb.to_string(),
    ));
    drop(a);
    drop(b);
    drop(replicas);
    let mut failures = Vec::new();
    report_steps("replicas", steps, tally, &mut failures);
    Ok(failures)
}
