//! The processes the interop checks start: servers on free ports, hale in its modes,
//! killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where things are.
pub(crate) struct Paths<'a> {
    pub(crate) root: &'a Path,
    pub(crate) dir: &'a Path,
    pub(crate) bin: &'a Path,
    pub(crate) python: &'a Path,
}

/// A server process that is killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    /// `child`, which serves nothing at a URL (redis-server, HAProxy, a replica).
    pub(crate) fn of(child: Child) -> Server {
        Server {
            child,
            url: String::new(),
        }
    }

    /// Sends it `signal` (`-KILL`, …) and returns at once.
    pub(crate) fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, as an orchestrator stops it; its exit status if it ended within `within`.
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hale-testkit binary serving `transport` on `port`.
pub(crate) fn testkit(bin: &Path, port: u16, transport: &str) -> Command {
    let mut c = Command::new(bin.join("hale-testkit"));
    c.args([
        "serve",
        "--port",
        &port.to_string(),
        "--transport",
        transport,
    ]);
    c
}

/// Starts a server on a free port and waits until it accepts connections.
pub(crate) fn spawn(start: &dyn Fn(u16) -> Command, path: &str) -> Result<Server, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    spawn_on(start, path, port)
}

/// Starts a server on `port` and waits until it accepts connections.
pub(crate) fn spawn_on(
    start: &dyn Fn(u16) -> Command,
    path: &str,
    port: u16,
) -> Result<Server, String> {
    let mut command = start(port);
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}{path}"),
    };
    wait_for_port(port, Duration::from_secs(30)).map_err(|e| format!("{command:?}: {e}"))?;
    Ok(server)
}

/// Waits until something accepts connections on loopback `port`.
pub(crate) fn wait_for_port(port: u16, within: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + within;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listened on port {port} within {within:?}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts the `hale` binary with `args` and reads the address it prints; the server's URL
/// is that address followed by `path`.
pub(crate) fn spawn_hale(bin: &Path, args: &[&str], path: &str) -> Result<Server, String> {
    let child = Command::new(bin.join("hale"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting hale {args:?}: {e}"))?;
    // Owned by a Server from here on, so that the process is killed on every path.
    let mut server = Server {
        child,
        url: String::new(),
    };
    let mut line = String::new();
    if let Some(out) = server.child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    server.url = line
        .trim()
        .strip_prefix("listening on http://")
        .map(|addr| format!("http://{addr}/{path}"))
        .ok_or_else(|| format!("hale {args:?} printed {line:?} instead of its address"))?;
    Ok(server)
}

/// Starts `hale proxy` in front of `target`.
pub(crate) fn spawn_proxy(bin: &Path, target: &str) -> Result<Server, String> {
    let path = target.splitn(4, '/').nth(3).unwrap_or_default();
    spawn_hale(bin, &["proxy", "--target", target], path)
}
