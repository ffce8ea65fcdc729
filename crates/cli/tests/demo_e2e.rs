//! End to end: `hale demo --for …` run as a user would, watched by an MCP client and by
//! `hale status --json`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::process::{Announced, spawn_announced};
use serde_json::Value;

/// `hale status --json` against the demo.
fn status(url: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["status", "--json", "--url", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn health_of(status: &Value, backend: &str) -> String {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap()["health"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_demo_withdraws_and_restores_search_and_reports_docs_degraded() {
    // At speedup 4: checks every 500 ms; search up 3.75 s, down 5 s, up 6.25 s; docs
    // slow (200 ms, over a 125 ms degradedLatency) from 2.5 s to 5.5 s.
    let started = Instant::now();
    let Announced {
        process: mut hale,
        first_line,
        rest: mut lines,
    } = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args([
                "demo",
                "--for",
                "16s",
                "--speedup",
                "4",
                "--listen",
                "127.0.0.1:0",
            ])
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let stderr = hale.0.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let printed: Vec<String> = std::iter::once(first_line)
        .chain((0..3).map(|_| lines.next().unwrap().unwrap()))
        .collect();
    let base = printed[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert_eq!(printed[1], format!("MCP:     {base}/mcp"));
    assert_eq!(printed[2], format!("status:  {base}/status"));
    assert_eq!(printed[3], format!("metrics: {base}/metrics"));

    let client = McpClient::connect(&format!("{base}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let mut notes = client.notifications();
    let mut seen_all = false;
    for _ in 0..40 {
        let tools = client.list_tools().await.unwrap();
        if ["weather_forecast", "search_query", "docs_lookup"]
            .iter()
            .all(|t| has(&tools, t))
        {
            seen_all = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_all, "every backend's tools are offered at first");

    let mut degraded = false;
    while !degraded && started.elapsed() < Duration::from_secs(8) {
        degraded = health_of(&status(&base), "docs") == "degraded";
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        degraded,
        "docs is reported degraded during its latency spike"
    );
    // Tools counted as clients see them: the demo's filter leaves weather four.
    let weather = status(&base)["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "weather")
        .cloned()
        .unwrap();
    assert_eq!(weather["tools"], 4, "{weather}");

    let tools = tools_changed_until(&client, &mut notes, Duration::from_secs(8), |t| {
        !has(t, "search_query")
    })
    .await;
    assert!(has(&tools, "weather_forecast"), "only search's tools went");
    assert_eq!(health_of(&status(&base), "search"), "unhealthy");

    tools_changed_until(&client, &mut notes, Duration::from_secs(8), |t| {
        has(t, "search_query")
    })
    .await;
    let answer = client
        .call_tool("search_query", serde_json::json!({"q": "hale"}))
        .await
        .unwrap();
    assert_ne!(answer["isError"], true, "{answer}");

    // --for stops it by itself, cleanly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = hale.0.try_wait().unwrap() {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "hale demo --for 16s did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code.success(), "{code}");
    let logs = logs.join().unwrap().join("\n");
    for expected in [
        "demo: search going down",
        "backend health changed backend=search from=healthy to=unhealthy",
        "backend=docs from=healthy to=degraded",
        "demo: 16 s are up, stopping",
        // The gray failure: weather_alerts fails every other call; its own circuit
        // opens by the failure rate while weather_forecast answers throughout.
        "demo agent: weather_alerts fails half of its calls",
        "backend=weather tool=alerts from=closed to=open reason=54 % of the last 11 calls failed",
        "demo agent: weather_alerts is refused at once: tool 'weather_alerts' is unavailable",
        "demo agent: weather_forecast answers",
    ] {
        assert!(
            logs.contains(expected),
            "{expected:?} not in the logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains("demo agent: weather_forecast is refused")
            && !logs.contains("demo agent: weather_forecast fails"),
        "weather's other tool kept answering:\n{logs}"
    );
}
