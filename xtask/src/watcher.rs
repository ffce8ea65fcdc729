//! A Python SDK client session held open on a vMCP (`python_watch.py`), driven by the
//! interop checks (withdrawal, stdio backends, replicas).

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A Python SDK client session held open on a vMCP (`python_watch.py`): commands go to its
/// stdin, its JSON lines come back through a channel.
pub(crate) struct Watcher {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watcher {
    pub(crate) fn start(mut command: Command, url: &str) -> Result<Watcher, String> {
        let mut child = command
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the Python watcher: {e}"))?;
        let stdout = child.stdout.take().ok_or("the watcher has no stdout")?;
        let (send, lines) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                if let Ok(value) = serde_json::from_str(&line)
                    && send.send(value).is_err()
                {
                    return;
                }
            }
        });
        let mut watcher = Watcher { child, lines };
        watcher.expect(Duration::from_secs(20), |v| v["ready"] == true)?;
        Ok(watcher)
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        use std::io::Write;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or("the watcher has no stdin")?;
        writeln!(stdin, "{command}").map_err(|e| format!("writing to the watcher: {e}"))
    }

    /// The first line within `within` that passes `test` (earlier ones are skipped).
    fn expect(
        &mut self,
        within: Duration,
        test: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if test(&value) => return Ok(value),
                Ok(_) => {}
                Err(_) => return Err(format!("nothing expected within {within:?}")),
            }
        }
    }

    pub(crate) fn tools(&mut self) -> Result<Vec<String>, String> {
        self.send("list")?;
        let answer = self.expect(Duration::from_secs(10), |v| v.get("tools").is_some())?;
        Ok(answer["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether a `tools/list_changed` arrives within 10 s, and what went wrong if not.
    pub(crate) fn tools_changed(&mut self) -> (bool, String) {
        match self.expect(Duration::from_secs(10), |v| {
            v["notification"] == "notifications/tools/list_changed"
        }) {
            Ok(_) => (true, String::new()),
            Err(e) => (false, e),
        }
    }

    pub(crate) fn call(&mut self, tool: &str) -> Result<serde_json::Value, String> {
        self.send(&format!("call {tool}"))?;
        self.expect(Duration::from_secs(30), |v| v.get("ok").is_some())
    }

    /// Calls `tool` with `arguments`.
    pub(crate) fn call_with(
        &mut self,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.send(&format!("call {tool} {arguments}"))?;
        self.expect(Duration::from_secs(30), |v| v.get("ok").is_some())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
