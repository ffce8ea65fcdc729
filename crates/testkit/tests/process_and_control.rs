//! hale-testkit as a process and through its control endpoint: what a test in another
//! process (or an operator with curl) relies on.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hale_testkit::{Fault, ServerConfig, TestServer};

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}

const MCP_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and reads the URLs it prints.
fn serve(args: &[&str]) -> (Process, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hale-testkit"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.starts_with("listening on ");
        printed.push(line);
        if done {
            break;
        }
    }
    (Process(child), printed)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_binary_prints_its_url_serves_mcp_and_obeys_its_control_endpoint() {
    let (_process, printed) = serve(&["--port", "0", "--control-port", "0", "--json-response"]);
    let control = addr_of(
        printed
            .iter()
            .find_map(|l| l.strip_prefix("control on "))
            .unwrap(),
    );
    let url = printed
        .iter()
        .find_map(|l| l.strip_prefix("listening on "))
        .unwrap()
        .to_string();
    assert!(url.ends_with("/mcp"), "{url}");
    let mcp = addr_of(&url);

    let (status, body) = http(mcp, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""protocolVersion":"2025-06-18""#), "{body}");

    let (status, _) = http(control, "POST", "/fault", &[], "status=503").unwrap();
    assert_eq!(status, 200);
    let (status, body) = http(mcp, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).unwrap();
    assert_eq!((status, body.as_str()), (503, "injected status 503"));

    http(control, "POST", "/fault", &[], "down").unwrap();
    assert!(
        http(mcp, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).is_err(),
        "connection refused while down"
    );
    http(control, "POST", "/fault", &[], "none").unwrap();
    let (status, _) = http(mcp, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).unwrap();
    assert_eq!(status, 200, "up again on the same port");

    let (status, body) = http(control, "POST", "/tools/add?name=weather", &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""changed":true"#) && body.contains("weather"),
        "{body}"
    );
    let (_, stats) = http(control, "GET", "/stats", &[], "").unwrap();
    assert!(stats.contains(r#""initialize":"#), "{stats}");
    // Four attempts; the one made while down never reached the server.
    assert!(stats.contains(r#""requests":3"#), "{stats}");

    let (status, body) = http(control, "POST", "/fault", &[], "explode").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("unknown fault"), "{body}");
}

#[test]
fn a_bad_fault_on_the_command_line_is_refused_with_the_expected_forms() {
    let output = Command::new(env!("CARGO_BIN_EXE_hale-testkit"))
        .args(["serve", "--fault", "slow"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("slow=DURATION"), "{stderr}");
}

#[tokio::test]
async fn flap_alternates_between_up_and_down() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let addr = server.addr();
    server
        .set_fault(Some(Fault::Flap {
            up: Duration::from_millis(300),
            down: Duration::from_millis(300),
        }))
        .await;
    let (mut up, mut down) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        match tokio::task::spawn_blocking(move || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(100))
        })
        .await
        .unwrap()
        {
            Ok(_) => up += 1,
            Err(_) => down += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up > 3 && down > 3, "up {up} times, down {down} times");
    server.set_fault(None).await;
    assert!(
        TcpStream::connect(addr).is_ok(),
        "clearing the fault brings it up"
    );
    server.shutdown();
}

#[tokio::test]
async fn hang_accepts_but_never_answers() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server.set_fault(Some(Fault::Hang)).await;
    let addr = server.addr();
    let result =
        tokio::task::spawn_blocking(move || http(addr, "POST", "/mcp", &MCP_HEADERS, INITIALIZE))
            .await
            .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the read timed out: {err}"
    );
    server.shutdown();
}
