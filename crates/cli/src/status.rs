//! `hale status`: the backends of a running vMCP, as a table (or JSON for scripts).

use std::io::{IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::logging;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The vMCP's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4483")]
    url: String,
    /// Print the raw /status JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let status = match fetch(&args.url) {
        Ok(v) => v,
        Err(e) => {
            logging::say(format_args!(
                "hale status: nothing answered at {}: {e}",
                args.url
            ));
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let _ = write!(out, "{}", table(&status, std::io::stdout().is_terminal()));
    ExitCode::SUCCESS
}

/// GET `{base}/status` over plain HTTP/1.1.
fn fetch(base: &str) -> Result<Value, String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or("expected an http:// URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host does not resolve")?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "it answered {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("the answer is not a vMCP status ({e})"))
}

/// The status as a table; `colour` paints health and circuit states.
pub(crate) fn table(status: &Value, colour: bool) -> String {
    let paint = |text: &str| -> String {
        if !colour {
            return text.to_string();
        }
        let code = match text {
            "healthy" | "closed" => "32",
            "degraded" | "half-open" | "unknown" => "33",
            _ => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut rows = vec![
        [
            "BACKEND",
            "HEALTH",
            "CIRCUIT",
            "FAILURES",
            "LATENCY",
            "TOOLS",
            "LAST ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for b in status["backends"].as_array().into_iter().flatten() {
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        };
        rows.push(vec![
            text(&b["name"]),
            text(&b["health"]),
            text(&b["circuit"]["state"]),
            text(&b["consecutiveFailures"]),
            b["latencyMs"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            text(&b["tools"]),
            b["lastError"]["message"]
                .as_str()
                .unwrap_or("-")
                .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{} — {}: {}\n",
        status["name"].as_str().unwrap_or("vmcp"),
        status["phase"].as_str().unwrap_or("?"),
        status["message"].as_str().unwrap_or("")
    );
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded = format!("{cell:<width$}", width = widths[c]);
            let shown = if i > 0 && (c == 1 || c == 2) {
                padded.replacen(cell.as_str(), &paint(cell), 1)
            } else {
                padded
            };
            line.push_str(&shown);
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
