//! Child processes for tests and benchmarks: killed when dropped, and started by reading
//! the line they print once they listen.

use std::io::{self, BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process that is killed (and reaped) when dropped, so that no test or
/// benchmark leaves one behind, whichever way it ends.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// Sends it `signal` (`-KILL`, `-STOP`, …) and returns at once.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status();
    }

    /// Asks the process to stop as an orchestrator would (SIGTERM), and waits up to
    /// `within` for it to exit: its status, or `None` if it was still running (it is then
    /// killed when dropped).
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }
}

/// A started process, the first line it printed, and the rest of its output.
#[derive(Debug)]
pub struct Announced {
    /// The process.
    pub process: Reaped,
    /// Its first line on stdout, trimmed (`listening on …`, an address, a URL).
    pub first_line: String,
    /// The lines after it.
    pub rest: Lines<BufReader<ChildStdout>>,
}

/// Starts `command` with stdout piped and waits for its first line: the servers of
/// this workspace print their address once they are bound.
pub fn spawn_announced(command: &mut Command) -> io::Result<Announced> {
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout was not piped"))?;
    let process = Reaped(child);
    let mut lines = BufReader::new(stdout).lines();
    let first_line = match lines.next() {
        Some(line) => line?.trim().to_string(),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{command:?} exited without printing a line"),
            ));
        }
    };
    Ok(Announced {
        process,
        first_line,
        rest: lines,
    })
}

/// Resident memory of process `pid` in KiB, from `/proc` (0 where it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used, in seconds, from `/proc` (0 where it
/// cannot be read). Assumes the usual 100 clock ticks per second.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may itself hold spaces and parentheses).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readers_see_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        let before = cpu_seconds(me);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds(me) > before, "busy work shows as CPU time");
        assert_eq!(rss_kib(u32::MAX), 0, "no such process");
    }
}
