//! Stdio backends in the vMCP: processes hale launches (hale-stdio's Python fixture),
//! listed and called like any backend; a killed one withdrawn, started again and
//! restored with list_changed; a missing command unhealthy with its path in the reason;
//! none left running after the vMCP stops. (Real third-party stdio servers:
//! `cargo xtask interop`.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use serde_json::json;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../stdio/tests/fixtures/stdio_server.py"
);

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn pid_of(c: &hale_mcp::McpClient, tool: &str) -> i32 {
    let r = c.call_tool(tool, json!({})).await.unwrap();
    r["content"][0]["text"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn stdio_backends_serve_restart_and_end_with_the_vmcp() {
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  - name: shared
    command: python3
    args: ["{FIXTURE}"]
    env: {{FIXTURE_SECRET: "do-not-show"}}
  - name: own
    command: python3
    args: ["{FIXTURE}"]
    isolation: perSession
  - name: missing
    command: /nonexistent/mcp-server
operational:
  failureHandling: {{healthCheckInterval: 200ms, healthCheckTimeout: 150ms, unhealthyThreshold: 1, panicThreshold: 0%}}
"#
    );
    let s = start_with(&yaml, None).await;
    let c = &s.client;
    wait_for("both stdio backends listed", async || {
        let tools = names(&c.list_tools().await.unwrap());
        tools.contains(&"shared_echo".to_string()) && tools.contains(&"own_echo".to_string())
    })
    .await;
    let r = c
        .call_tool("shared_echo", json!({"text": "over stdio"}))
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "over stdio");

    // The missing one: unhealthy, its path in the reason; the others serve on.
    wait_for("missing unhealthy", async || {
        get_json(s.addr, "/status").await.1["backends"][2]["health"] == "unhealthy"
    })
    .await;
    let status = get_json(s.addr, "/status").await.1;
    let missing = status["backends"][2]["lastError"]["message"]
        .as_str()
        .unwrap();
    assert!(missing.contains("/nonexistent/mcp-server"), "{missing}");
    assert_eq!(status["backends"][0]["transport"], "stdio");
    assert!(
        status["backends"][0]["stdio"]["command"]
            .as_str()
            .unwrap()
            .starts_with("python3 "),
        "{status}"
    );
    assert!(
        !status.to_string().contains("do-not-show"),
        "an env value in /status"
    );

    // perSession: this client session's own process, not the shared one.
    let (shared, own) = (pid_of(c, "shared_pid").await, pid_of(c, "own_pid").await);
    assert_ne!(shared, own);

    // The shared process is killed: withdrawn, started again, restored.
    let mut notes = c.notifications();
    nix_kill(shared);
    tools_changed_until(c, &mut notes, |t| !t.contains(&"shared_echo".into())).await;
    tools_changed_until(c, &mut notes, |t| t.contains(&"shared_echo".into())).await;
    let again = pid_of(c, "shared_pid").await;
    assert_ne!(again, shared, "a new process");
    assert!(!alive(shared));

    s.stop.cancel();
    wait_for("every process ended", async || !alive(again) && !alive(own)).await;
}

fn nix_kill(pid: i32) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[test]
fn stdio_mistakes_name_their_key() {
    let cases = [
        (
            r#"{name: a, url: "http://127.0.0.1:1/mcp", command: x}"#,
            "backends[0]: give either url",
        ),
        (r#"{name: a}"#, "backends[0].url: required: url"),
        (
            r#"{name: a, command: ""}"#,
            "backends[0].command: expected the program",
        ),
        (
            r#"{name: a, command: x, transport: sse}"#,
            "backends[0].transport: is for backends with a url",
        ),
        (
            r#"{name: a, url: "http://127.0.0.1:1/mcp", args: [x]}"#,
            "backends[0].args: is for stdio backends",
        ),
        (
            r#"{name: a, command: x, isolation: perClient}"#,
            "backends[0].isolation: expected shared",
        ),
        (
            r#"{name: a, command: x, cwd: /nonexistent/dir}"#,
            "backends[0].cwd: /nonexistent/dir is not a directory",
        ),
    ];
    for (backend, expected) in cases {
        let yaml = format!("backends:\n  - {backend}\n");
        let e = hale_vmcp::VmcpConfig::from_yaml("vmcp.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{backend}\n  gave: {e}");
    }
}
