//! Keeps one shared process running: started, watched (a process that stops answering is
//! ended), started again after it ends with a jittered backoff, and ended with its group
//! when hale stops. Clients see its state: up (with the session) or down (and why).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::StdioCommand;
use crate::peer::Peer;
use crate::process::Limits;
use crate::restart::{RestartPolicy, Restarts};

/// How a process that stops answering is found: a `ping` every `interval` (the process
/// saying anything counts as an answer); `misses` unanswered in a row end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HangCheck {
    /// Between pings.
    pub interval: Duration,
    /// How long a ping may take.
    pub timeout: Duration,
    /// Unanswered pings in a row before the process is ended and started again.
    pub misses: u32,
}

impl Default for HangCheck {
    fn default() -> Self {
        HangCheck {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            misses: 3,
        }
    }
}

/// The shared process as clients find it.
#[derive(Clone, Debug)]
pub(crate) enum Current {
    /// Starting (the first time).
    Starting,
    /// Running, with its session.
    Up(Arc<Peer>),
    /// Not running, and why (with when it is tried again).
    Down(String),
}

/// What the supervisor was given.
#[derive(Clone, Debug)]
pub(crate) struct Supervision {
    pub(crate) command: StdioCommand,
    pub(crate) limits: Limits,
    pub(crate) restart: RestartPolicy,
    pub(crate) hang: HangCheck,
    pub(crate) handshake_timeout: Duration,
}

/// Starts the process and keeps it running until `stop`; its state goes to `current`,
/// its notifications to `notifications`. Returns once the process is ended.
pub(crate) async fn supervise(
    s: Supervision,
    current: watch::Sender<Current>,
    notifications: broadcast::Sender<Value>,
    restarts_seen: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
) {
    let seed = u64::from(std::process::id()) ^ s.command.command.len() as u64;
    let mut restarts = Restarts::new(s.restart, seed);
    let mut first = true;
    loop {
        let started = Instant::now();
        let peer = tokio::select! {
            p = Peer::start(&s.command, s.limits, Peer::own_params(), notifications.clone(), s.handshake_timeout) => p,
            () = stop.cancelled() => return,
        };
        let why = match peer {
            Ok(peer) => {
                tracing::info!(command = %s.command, pid = peer.pid(), "stdio server started");
                current.send_replace(Current::Up(peer.clone()));
                if !first {
                    // A new process may offer other things: clients list again.
                    for kind in ["tools", "resources", "prompts"] {
                        let _ = notifications.send(json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")}));
                    }
                }
                match watch_over(&peer, s.hang, &stop).await {
                    Some(why) => {
                        peer.terminate(s.limits.grace).await;
                        why
                    }
                    None => {
                        peer.terminate(s.limits.grace).await;
                        current.send_replace(Current::Down("stopped".into()));
                        return;
                    }
                }
            }
            Err(why) => why,
        };
        first = false;
        restarts_seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = restarts.ended(started.elapsed());
        tracing::warn!(command = %s.command, reason = %why, retry_in = ?wait, "stdio server not running; starting it again");
        current.send_replace(Current::Down(format!(
            "{why}; starting it again in {:.1}s",
            wait.as_secs_f64()
        )));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Watches a running process: `Some(why)` when it ended or stopped answering, `None`
/// when `stop` came first.
async fn watch_over(peer: &Peer, hang: HangCheck, stop: &CancellationToken) -> Option<String> {
    let mut missed = 0;
    loop {
        tokio::select! {
            why = peer.ended() => return Some(why),
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(hang.interval) => {}
        }
        if peer.alive(hang.timeout).await {
            missed = 0;
            continue;
        }
        if peer.has_ended() {
            continue; // said on the next turn
        }
        missed += 1;
        tracing::warn!(
            pid = peer.pid(),
            missed,
            of = hang.misses,
            "the stdio server did not answer a ping"
        );
        if missed >= hang.misses {
            return Some(format!(
                "it stopped answering ({missed} pings in a row unanswered within {:?}) and was ended",
                hang.timeout
            ));
        }
    }
}
