//! One running stdio server: spawned in a process group of its own, its stdout read as
//! JSON-RPC lines (bounded; anything else logged and dropped), its stderr passed to the
//! log at a bounded rate, and the whole group ended when it is stopped or dropped: no
//! orphan outlives it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use crate::StdioCommand;

/// Bounds on what a process may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest stdout line (one JSON-RPC message); longer ones are dropped.
    pub max_line: usize,
    /// How long a process has to exit after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// How many stderr lines reach the log per 10 s; the rest are counted.
    pub stderr_lines: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 16 * 1024 * 1024,
            grace: Duration::from_secs(5),
            stderr_lines: 50,
        }
    }
}

/// A running process.
#[derive(Debug)]
pub(crate) struct Process {
    stdin: mpsc::Sender<Bytes>,
    group: Pid,
    /// Why it ended, once it has.
    ended: watch::Receiver<Option<String>>,
    label: String,
}

impl Process {
    /// Starts `command`; its JSON-RPC messages go to `messages` (which closes when the
    /// process's stdout does).
    pub(crate) fn spawn(
        command: &StdioCommand,
        limits: Limits,
        messages: mpsc::Sender<Value>,
    ) -> Result<Process, String> {
        let label = command.to_string();
        let mut cmd = tokio::process::Command::new(&command.command);
        cmd.args(&command.args)
            .envs(&command.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: SIGTERM reaches what it started too (npx → node).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &command.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => ": is it installed, and on PATH (or is cwd there)?",
                std::io::ErrorKind::PermissionDenied => ": is it executable?",
                _ => "",
            };
            format!("cannot start `{}`: {e}{hint}", command.command)
        })?;
        let pid = child
            .id()
            .ok_or("the process ended before it could be watched")?;
        let group = Pid::from_raw(i32::try_from(pid).map_err(|_| "pid out of range")?);
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the process's pipes could not be opened".into());
        };

        let (to_stdin, mut lines) = mpsc::channel::<Bytes>(256);
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if stdin.write_all(&line).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                    || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });

        let name = label.clone();
        tokio::spawn(async move {
            let mut out = FramedRead::new(stdout, LinesCodec::new_with_max_length(limits.max_line));
            let mut noise = Budget::new(5);
            while let Some(line) = out.next().await {
                match line {
                    Ok(line) => {
                        let line = line.trim();
                        if line.is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<Value>(line) {
                            Ok(v) if v.get("jsonrpc").and_then(Value::as_str) == Some("2.0") => {
                                if messages.send(v).await.is_err() {
                                    break;
                                }
                            }
                            _ => {
                                if let Some(held) = noise.take(Instant::now()) {
                                    let preview: String = line.chars().take(120).collect();
                                    tracing::warn!(command = %name, line = %preview, held_back = held, "the stdio server wrote a line that is not JSON-RPC to stdout: dropped");
                                }
                            }
                        }
                    }
                    Err(LinesCodecError::MaxLineLengthExceeded) => {
                        tracing::warn!(command = %name, max = limits.max_line, "the stdio server wrote a line longer than the limit to stdout: dropped");
                    }
                    Err(LinesCodecError::Io(_)) => break,
                }
            }
        });

        let name = label.clone();
        tokio::spawn(async move {
            let mut err = FramedRead::new(stderr, LinesCodec::new_with_max_length(8 * 1024));
            let mut budget = Budget::new(limits.stderr_lines);
            while let Some(line) = err.next().await {
                let Ok(line) = line else {
                    continue; // too long: the codec skips it
                };
                if let Some(held) = budget.take(Instant::now()) {
                    tracing::info!(command = %name, held_back = held, "stderr: {line}");
                }
            }
        });

        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(async move {
            let why = match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("could not be waited for: {e}"),
            };
            // Whatever it started and left behind goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            let _ = ended_tx.send(Some(why));
        });

        Ok(Process {
            stdin: to_stdin,
            group,
            ended,
            label,
        })
    }

    /// Writes one message to its stdin; false if it is gone.
    pub(crate) async fn send(&self, message: &Value) -> bool {
        let line = Bytes::from(message.to_string());
        self.stdin.send(line).await.is_ok()
    }

    /// Writes one message if there is room right now (no waiting); false otherwise.
    pub(crate) fn try_send_now(&self, message: &Value) -> bool {
        self.stdin
            .try_send(Bytes::from(message.to_string()))
            .is_ok()
    }

    /// Waits until it has ended; why.
    pub(crate) async fn ended(&self) -> String {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "ended".into(),
        }
    }

    /// Whether it has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Ends it: SIGTERM to its group, SIGKILL after `grace`.
    pub(crate) async fn terminate(&self, grace: Duration) {
        if self.has_ended() {
            return;
        }
        let _ = killpg(self.group, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.ended()).await.is_err() {
            tracing::warn!(command = %self.label, ?grace, "the stdio server did not end on SIGTERM: killed");
            let _ = killpg(self.group, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), self.ended()).await;
        }
    }

    /// Its process id (also its group's).
    pub(crate) fn pid(&self) -> u32 {
        self.group.as_raw().unsigned_abs()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.has_ended() {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!(
            "killed by signal {}",
            Signal::try_from(signal)
                .map_or_else(|_| signal.to_string(), |s| s.as_str().to_string())
        ),
        _ => format!("ended ({status})"),
    }
}

/// At most `per_window` lines per 10 s; counts the ones held back.
struct Budget {
    per_window: u32,
    window_start: Option<Instant>,
    used: u32,
    held: u64,
}

impl Budget {
    fn new(per_window: u32) -> Self {
        Budget {
            per_window,
            window_start: None,
            used: 0,
            held: 0,
        }
    }

    /// `Some(held back before this line)` if a line may be logged now.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_secs(10) {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_a_window_through_and_counts_the_rest() {
        let mut b = Budget::new(2);
        let t = Instant::now();
        assert_eq!(b.take(t), Some(0));
        assert_eq!(b.take(t), Some(0));
        assert_eq!(b.take(t), None);
        assert_eq!(b.take(t + Duration::from_secs(1)), None);
        assert_eq!(b.take(t + Duration::from_secs(10)), Some(2));
    }
}
