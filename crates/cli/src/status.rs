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
    /// A file holding the bearer token to send, when the vMCP's statusAuth wants one.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<std::path::PathBuf>,
    /// The bearer token itself (prefer HALE_TOKEN or --token-file: arguments are visible
    /// to other users of the machine).
    #[arg(long, env = "HALE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                logging::say(format_args!(
                    "hale status: --token-file {}: the file is empty",
                    path.display()
                ));
                return ExitCode::from(2);
            }
            Err(e) => {
                logging::say(format_args!(
                    "hale status: --token-file {}: {e}",
                    path.display()
                ));
                return ExitCode::from(2);
            }
        },
        (None, token) => token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
    };
    let status = match fetch(&args.url, token.as_deref()) {
        Ok(v) => v,
        Err(Failed::Unreachable(e)) => {
            logging::say(format_args!(
                "hale status: nothing answered at {}: {e}",
                args.url
            ));
            return ExitCode::from(1);
        }
        Err(Failed::Answered(e)) => {
            logging::say(format_args!("hale status: {}: {e}", args.url));
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

/// Why there is no status to show.
enum Failed {
    /// No HTTP answer at all.
    Unreachable(String),
    /// An answer, but not a status document.
    Answered(String),
}

/// GET `{base}/status` over plain HTTP/1.1, with `token` as a bearer token if given.
fn fetch(base: &str, token: Option<&str>) -> Result<Value, Failed> {
    let (head, body) = exchange(base, token).map_err(Failed::Unreachable)?;
    if head.starts_with("HTTP/1.1 401") || head.starts_with("HTTP/1.1 403") {
        return Err(Failed::Answered(format!(
            "it answered {}: its status endpoints want a token (operational.statusAuth); give one with --token-file FILE or HALE_TOKEN",
            head.lines().next().unwrap_or_default()
        )));
    }
    if !head.starts_with("HTTP/1.1 200") {
        return Err(Failed::Answered(format!(
            "it answered {}",
            head.lines().next().unwrap_or_default()
        )));
    }
    serde_json::from_str(&body)
        .map_err(|e| Failed::Answered(format!("the answer is not a vMCP status ({e})")))
}

/// One GET of `/status`: the response head and body.
fn exchange(base: &str, token: Option<&str>) -> Result<(String, String), String> {
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
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {authority}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP answer")?;
    Ok((head.to_string(), body.to_string()))
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
                .or(b["reason"].as_str())
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
    // Tools whose own circuit is not closed, under the table: one line each.
    for b in status["backends"].as_array().into_iter().flatten() {
        for t in b["toolCircuits"].as_array().into_iter().flatten() {
            let state = t["state"].as_str().unwrap_or("?");
            let until = t["retryAt"]
                .as_str()
                .map_or(String::new(), |at| format!(" until {at}"));
            out.push_str(&format!(
                "tool {}/{}: {}{until} — {}\n",
                b["name"].as_str().unwrap_or("?"),
                t["tool"].as_str().unwrap_or("?"),
                paint(state),
                t["reason"].as_str().unwrap_or("-"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tool_with_its_own_open_circuit_gets_a_line_of_its_own() {
        let status = json!({"name": "vmcp", "phase": "Ready", "message": "1/1 backends routable",
            "backends": [{"name": "search", "health": "degraded", "circuit": {"state": "closed"},
                "consecutiveFailures": 0, "tools": 3,
                "reason": "31 % of the last 100 calls failed while health checks pass",
                "toolCircuits": [{"tool": "web", "state": "open", "retryAt": "2026-12-07T18:00:00.000Z",
                    "reason": "45 % of the last 11 calls failed, open for 60s"}]}]});
        let text = table(&status, false);
        assert!(text.contains("31 % of the last 100 calls failed"), "{text}");
        assert!(
            text.contains("tool search/web: open until 2026-12-07T18:00:00.000Z — 45 % of the last 11 calls failed"),
            "{text}"
        );
    }
}
