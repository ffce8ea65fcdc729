//! `hale demo`: the whole system in one process, misbehaving on a schedule.
//!
//! Three testkit backends — `weather` steady, `search` down 20 s of every 60 s, `docs`
//! slower than `degradedLatency` for 12 s of every 30 s — behind a vMCP that checks them
//! every 2 s. Each scheduled fault is logged as it starts (`demo: …`), and the vMCP logs
//! the health and circuit transitions it causes, so cause and effect read side by side.
//!
//! One gray failure too: weather's `alerts` tool fails every other call (its backend and
//! its other tools are fine, and a consecutive-failure count never sees it). A small
//! agent in the demo calls `weather_alerts` and `weather_forecast` once a second; the
//! tool's own breaker catches the rate, withdraws it, tries it again after its open
//! timeout, while `weather_forecast` answers throughout. The agent says what it gets
//! when that changes (`demo agent: …`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use hale_vmcp::VmcpConfig;
use tokio_util::sync::CancellationToken;

use crate::{logging, vmcp};

#[derive(clap::Args)]
#[command(
    after_help = "Connect any MCP client to the printed MCP URL and watch search_* tools come and go;\n`hale status` shows the backends. Checks run every 2 s; search is down 20 s of every 60 s;
docs answers slowly 12 s of every 30 s; weather_alerts fails every other call (an agent
in the demo calls it once a second). --speedup divides all of these."
)]
pub(crate) struct Args {
    /// Stop by itself after this long (Go syntax: 30s, 5m); default: until Ctrl-C.
    #[arg(long = "for", value_parser = crate::parse_duration)]
    run_for: Option<Duration>,
    /// Address of the vMCP (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:4483")]
    listen: SocketAddr,
    /// Run every period (checks, outages, spikes, breaker timeouts) N times faster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    speedup: u32,
    /// Let anyone who reaches --listen call the demo's tools: needed for a non-loopback
    /// --listen (the demo has no authentication).
    #[arg(long)]
    anonymous: bool,
}

/// One step of a backend's schedule: this fault (or none) for this long.
struct Phase {
    fault: Option<Fault>,
    length: Duration,
    /// What the log says when the phase starts.
    says: String,
}

pub(crate) async fn run(args: Args) -> ExitCode {
    let scale = |ms: u64| Duration::from_millis(ms) / args.speedup;
    let backends = match start_backends().await {
        Ok(b) => b,
        Err(e) => {
            logging::say(format_args!(
                "hale demo: cannot start the demo backends: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let config =
        VmcpConfig::from_yaml("demo", &config_yaml(&args, &backends, scale)).map(|mut c| {
            if args.anonymous {
                c.incoming_auth = Some(hale_vmcp::config::IncomingAuth::Anonymous);
            }
            c
        });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            // The demo writes its own configuration; failing here is a bug in hale.
            logging::say(format_args!("hale demo: {e}"));
            return ExitCode::FAILURE;
        }
    };

    let stop = logging::shutdown_signal();
    if let Some(run_for) = args.run_for {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(run_for).await;
            tracing::info!("demo: {} are up, stopping", humanize(run_for));
            stop.cancel();
        });
    }
    // weather is steady: it has no schedule.
    let [_, search, docs] = &backends;
    tokio::spawn(follow(
        "search",
        search.clone(),
        vec![
            Phase {
                fault: None,
                length: scale(15_000),
                says: "answering".into(),
            },
            Phase {
                fault: Some(Fault::Down),
                length: scale(20_000),
                says: "going down (refuses connections)".into(),
            },
            Phase {
                fault: None,
                length: scale(25_000),
                says: "back up".into(),
            },
        ],
        stop.clone(),
    ));
    tokio::spawn(follow(
        "docs",
        docs.clone(),
        vec![
            Phase {
                fault: None,
                length: scale(10_000),
                says: "answering quickly".into(),
            },
            Phase {
                fault: Some(Fault::Slow(scale(800))),
                length: scale(12_000),
                says: format!(
                    "has a latency spike (every answer takes {})",
                    humanize(scale(800))
                ),
            },
            Phase {
                fault: None,
                length: scale(8_000),
                says: "answering quickly again".into(),
            },
        ],
        stop.clone(),
    ));
    let (listening, addr) = tokio::sync::oneshot::channel();
    tokio::spawn(agent(addr, scale(1_000), stop.clone()));
    let code = vmcp::serve(config, None, Duration::from_secs(2), stop, Some(listening)).await;
    for backend in &backends {
        backend.shutdown();
    }
    code
}

/// `weather`, `search` (legacy SSE, to show both transports) and `docs`, each with one
/// tool named for what it pretends to be.
async fn start_backends() -> std::io::Result<[TestServer; 3]> {
    // Each offers resources of its own (no URI two of them offer).
    let weather = TestServer::start(ServerConfig {
        resource_scheme: "weather".into(),
        ..ServerConfig::default()
    })
    .await?;
    let search = TestServer::start(ServerConfig {
        transport: Transport::Sse,
        resource_scheme: "search".into(),
        ..ServerConfig::default()
    })
    .await?;
    let docs = TestServer::start(ServerConfig {
        resource_scheme: "docs".into(),
        ..ServerConfig::default()
    })
    .await?;
    weather.add_tool("forecast");
    weather.add_tool("alerts");
    weather.set_flaky("alerts", true);
    search.add_tool("query");
    docs.add_tool("lookup");
    Ok([weather, search, docs])
}

/// The vMCP's configuration, as a user would write it, with every period scaled.
fn config_yaml(
    args: &Args,
    [weather, search, docs]: &[TestServer; 3],
    scale: impl Fn(u64) -> Duration,
) -> String {
    let ms = |n: u64| format!("{}ms", scale(n).as_millis().max(1));
    format!(
        r#"name: hale-demo
listen: "{listen}"
backends:
  - {{name: weather, url: "{weather}", transport: streamable-http}}
  - {{name: search, url: "{search}", transport: sse}}
  - {{name: docs, url: "{docs}", transport: streamable-http}}
aggregation:
  conflictResolution: prefix
  tools:
    - {{workload: weather, filter: [forecast, alerts, echo, add]}}
    - {{workload: search, filter: [query, echo, add]}}
    - {{workload: docs, filter: [lookup, echo, add, sleep]}}
operational:
  timeouts: {{default: {call}}}
  failureHandling:
    healthCheckInterval: {interval}
    healthCheckTimeout: {timeout}
    unhealthyThreshold: 3
    healthyThreshold: 1
    degradedLatency: {degraded}
    partialFailureMode: best_effort
    circuitBreaker: {{enabled: true, failureThreshold: 5, timeout: {open}, maxTimeout: {max_open}, halfOpenMaxRequests: 1}}
"#,
        listen = args.listen,
        weather = weather.url(),
        search = search.url(),
        docs = docs.url(),
        call = ms(10_000),
        interval = ms(2_000),
        timeout = ms(1_500),
        degraded = ms(500),
        open = ms(10_000),
        max_open = ms(40_000),
    )
}

/// The demo's agent: once `every`, calls `weather_alerts` (failing every other call) and
/// `weather_forecast` through the vMCP at the address it is told, and says what each
/// gets whenever that changes (answered, failed, refused fast by an open circuit).
async fn agent(
    addr: tokio::sync::oneshot::Receiver<SocketAddr>,
    every: Duration,
    stop: CancellationToken,
) {
    let Ok(addr) = addr.await else { return };
    let url = format!("http://{addr}/mcp");
    let client = loop {
        tokio::select! {
            () = stop.cancelled() => return,
            connected = hale_mcp::McpClient::connect(&url, hale_mcp::ClientOptions::default()) => {
                if let Ok(c) = connected {
                    break c;
                }
            }
        }
        tokio::time::sleep(every).await;
    };
    // Until the first round of checks has listed weather's tools.
    loop {
        let listed = client
            .list_tools()
            .await
            .is_ok_and(|tools| tools.iter().any(|t| t["name"] == "weather_alerts"));
        if listed {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every / 4) => {}
        }
    }
    // What each tool last got, by kind: a line only when the kind changes.
    let mut said: [&str; 2] = ["", ""];
    loop {
        for (i, tool) in ["weather_alerts", "weather_forecast"]
            .into_iter()
            .enumerate()
        {
            let (kind, text) = match client.call_tool(tool, serde_json::json!({})).await {
                // A flaky tool alternates: its answers do not end "fails half its calls".
                Ok(_) if said[i] == "flaky" => continue,
                Ok(_) => ("answers", "answers".to_string()),
                Err(hale_mcp::McpError::Rpc {
                    code: -31001,
                    message,
                    ..
                }) => ("refused", format!("is refused at once: {message}")),
                Err(hale_mcp::McpError::Rpc { code: -32603, .. }) => (
                    "flaky",
                    "fails half of its calls, never twice in a row".to_string(),
                ),
                Err(e) => ("fails", format!("fails: {e}")),
            };
            if said[i] != kind {
                tracing::info!("demo agent: {tool} {text}");
                said[i] = kind;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Plays `phases` on `server` in a loop until `stop`.
async fn follow(name: &str, server: TestServer, phases: Vec<Phase>, stop: CancellationToken) {
    loop {
        for phase in &phases {
            if server.fault() != phase.fault {
                tracing::info!("demo: {name} {} for {}", phase.says, humanize(phase.length));
                server.set_fault(phase.fault).await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(phase.length) => {}
            }
        }
    }
}

/// A period as a person reads it: "20 s", "2.7 s", "800 ms" (never "2.6666666660000002 s").
fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if (secs - secs.round()).abs() < 0.05 {
        format!("{} s", secs.round())
    } else {
        format!("{secs:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_a_person_says_them() {
        assert_eq!(humanize(Duration::from_secs(20)), "20 s");
        assert_eq!(humanize(Duration::from_nanos(2_666_666_666)), "2.7 s");
        assert_eq!(humanize(Duration::from_millis(800)), "800 ms");
    }
}
