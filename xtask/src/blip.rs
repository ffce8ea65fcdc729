//! A real network blip between hale proxy and its server (issue "reliability", spec §6):
//! the server runs in a network namespace of this test's own, a Python SDK client holds
//! one session through hale proxy, and iptables drops every packet to the server for a
//! while. A 2 s blip must cost the client nothing but slow answers; a drop longer than the
//! tolerance window must make the proxy exit with status 3 on time.
//!
//! Safety: before any namespace or veth work, an `unreachable` route for the test's /24
//! keeps anything from following the default route off the machine; every namespace,
//! route and rule is removed at the end, also on failure (`Lab`'s `Drop`). Only the
//! test's own addresses are used. Needs root, `ip` and `iptables`: skipped (and said so)
//! without them.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tally::{Tally, report_steps};

const SUBNET: &str = "10.231.77.0/24";
const HOST_IP: &str = "10.231.77.1";
const SERVER_IP: &str = "10.231.77.2";
const PORT: u16 = 18731;

/// The namespace, the veth pair and the route; removed when dropped.
struct Lab {
    ns: String,
    veth: String,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    fn create() -> Result<Lab, String> {
        let id = std::process::id() % 100_000;
        let lab = Lab {
            ns: format!("hale-blip-{id}"),
            veth: format!("hbh{id}"),
        };
        // First: nothing in the test's subnet may ever leave by the default route.
        sh(&["ip", "route", "add", "unreachable", SUBNET])?;
        let peer = format!("hbn{id}");
        sh(&["ip", "netns", "add", &lab.ns])?;
        sh(&[
            "ip", "link", "add", &lab.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        sh(&["ip", "link", "set", &peer, "netns", &lab.ns])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_IP}/30"),
            "dev",
            &lab.veth,
        ])?;
        sh(&["ip", "link", "set", &lab.veth, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", lab.ns.as_str()];
            all.extend_from_slice(args);
            sh(&all)
        };
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{SERVER_IP}/30"),
            "dev",
            &peer,
        ])?;
        in_ns(&["ip", "link", "set", &peer, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    fn in_ns(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program).args(args);
        c
    }

    /// Drops (`true`) or lets through (`false`) every packet to the server.
    fn blackhole(&self, on: bool) -> Result<(), String> {
        let action = if on { "-I" } else { "-D" };
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "iptables",
            action,
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &PORT.to_string(),
            "-j",
            "DROP",
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.ns]); // takes the veth pair with it
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "route", "del", "unreachable", SUBNET]);
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python SDK client session (python_watch.py) driven line by line.
struct Client {
    _child: Killed,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Client {
    fn call(&mut self, within: Duration) -> Option<Value> {
        writeln!(self.stdin, "call echo").ok()?;
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v.get("ok").is_some()
            {
                return Some(v);
            }
        }
        None
    }
}

fn available() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    if root.ok() != Some(true) {
        return Err("not root".into());
    }
    for tool in ["ip", "iptables"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// Runs both scenarios; returns the failures.
pub(crate) fn run(
    bin: &Path,
    python: &Path,
    watch: &Path,
    tally: &mut Tally,
) -> Result<Vec<String>, String> {
    println!(
        "\n== a real network blip between hale proxy and its server (network namespace, iptables DROP)"
    );
    if let Err(why) = available() {
        println!("skipped: {why}");
        return Ok(Vec::new());
    }
    let lab = Lab::create()?;
    let _server = Killed(
        lab.in_ns(
            &bin.join("hale-testkit"),
            &["serve", "--host", SERVER_IP, "--port", &PORT.to_string()],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the server in the namespace: {e}"))?,
    );
    thread::sleep(Duration::from_millis(800));
    let target = format!("http://{SERVER_IP}:{PORT}/mcp");
    // Checks every second, 500 ms each, threshold 5: a window of about 5 s.
    let env = [
        ("TOOLHIVE_HEALTH_CHECK_INTERVAL", "1s"),
        ("TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT", "500ms"),
        ("TOOLHIVE_HEALTH_CHECK_RETRY_DELAY", "500ms"),
        ("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD", "5"),
    ];
    let mut proxy = Command::new(bin.join("hale"))
        .args(["proxy", "--target", &target, "--drain-timeout", "2s"])
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting hale proxy: {e}"))?;
    let mut first = String::new();
    if let Some(out) = proxy.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut first);
    }
    let proxy = Killed(proxy);
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| format!("hale proxy printed {first:?}"))?
        .to_string();
    let mut child = Command::new(python)
        .arg(watch)
        .arg(format!("http://{addr}/mcp"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the Python SDK client: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut client = Client {
        _child: Killed(child),
        stdin,
        lines,
    };
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let ready = client
        .lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_default();
    let before = client.call(Duration::from_secs(10));
    steps.push((
        "session through the proxy".into(),
        ready.contains("ready") && before.as_ref().is_some_and(|v| v["ok"] == true),
        format!("{before:?}"),
    ));

    // A 2 s blip: every packet to the server dropped, then let through again.
    lab.blackhole(true)?;
    let started = Instant::now();
    let (tx_done, rx_done) = mpsc::channel();
    let lab_ref = &lab;
    thread::scope(|scope| {
        scope.spawn(move || {
            thread::sleep(Duration::from_secs(2));
            let _ = lab_ref.blackhole(false);
            let _ = tx_done.send(());
        });
        let during = client.call(Duration::from_secs(30));
        let took = started.elapsed();
        let _ = rx_done.recv();
        steps.push((
            "a call during a 2 s blip: answered after it, same session".into(),
            during.as_ref().is_some_and(|v| v["ok"] == true),
            format!("{during:?}, {took:.1?}"),
        ));
    });
    let after: Vec<Option<Value>> = (0..3)
        .map(|_| client.call(Duration::from_secs(10)))
        .collect();
    steps.push((
        "calls after the blip".into(),
        after
            .iter()
            .all(|a| a.as_ref().is_some_and(|v| v["ok"] == true)),
        format!("{after:?}"),
    ));

    // A drop longer than the window: the proxy gives up and exits 3; the call waiting
    // meanwhile gets a JSON-RPC error, not a 5xx.
    lab.blackhole(true)?;
    let dropped = Instant::now();
    let waiting = client.call(Duration::from_secs(40));
    let mut proxy = proxy;
    let status = loop {
        if let Ok(Some(status)) = proxy.0.try_wait() {
            break Some(status);
        }
        if dropped.elapsed() > Duration::from_secs(40) {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let exited = dropped.elapsed();
    let error = waiting
        .as_ref()
        .and_then(|v| v["error"].as_str())
        .unwrap_or_default()
        .to_string();
    steps.push((
        "a drop longer than the window: exit 3 on time".into(),
        status.and_then(|s| s.code()) == Some(3) && exited < Duration::from_secs(20),
        format!(
            "exit {:?} {exited:.1?} after the drop began (5 checks 1 s apart, each up to 500 ms, retries 500 ms after a failure)",
            status.and_then(|s| s.code())
        ),
    ));
    steps.push((
        "the call waiting meanwhile: a JSON-RPC error for its id".into(),
        waiting.as_ref().is_some_and(|v| v["ok"] == false) && error.contains("unavailable"),
        error.clone(),
    ));
    let _ = lab.blackhole(false);

    let mut failures = Vec::new();
    report_steps("blip", steps, tally, &mut failures);
    Ok(failures)
}
