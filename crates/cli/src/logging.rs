//! Logs: human-readable by default, JSON lines with `--log-format json`; `RUST_LOG`
//! filters (default `info`).
//!
//! Every line for stderr (logs and the CLI's own messages) goes through a bounded queue
//! to a thread of its own. A stderr that blocks (a log shipper that stopped reading) or
//! fails (a reader that went away, as after `| head -1`) costs lines, never a stuck or
//! crashed server: the default writer panicked on a closed pipe, and a panic in the signal
//! task left SIGTERM unanswered.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// Lines waiting for stderr before new ones are dropped.
const QUEUE_LINES: usize = 4096;

struct Queue {
    lines: SyncSender<Vec<u8>>,
    /// Lines queued and not yet written (or given up on).
    pending: AtomicUsize,
    /// Lines dropped because the queue was full; reported when stderr moves again.
    dropped: AtomicUsize,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| {
        let (lines, rx) = sync_channel(QUEUE_LINES);
        let _ = std::thread::Builder::new()
            .name("hale-stderr".into())
            .spawn(move || write_lines(rx));
        Queue {
            lines,
            pending: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    })
}

fn write_lines(rx: Receiver<Vec<u8>>) {
    let mut stderr = std::io::stderr();
    for line in rx {
        let dropped = queue().dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            let _ = writeln!(
                stderr,
                "hale: {dropped} log lines dropped: stderr was not read"
            );
        }
        // Errors are ignored on purpose: nobody is left to tell.
        let _ = stderr.write_all(&line);
        queue().pending.fetch_sub(1, Ordering::AcqRel);
    }
}

fn enqueue(line: Vec<u8>) {
    let q = queue();
    q.pending.fetch_add(1, Ordering::AcqRel);
    match q.lines.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            q.pending.fetch_sub(1, Ordering::AcqRel);
            q.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Writes one message of the CLI's own to stderr (never blocks, never panics).
pub(crate) fn say(message: impl std::fmt::Display) {
    enqueue(format!("{message}\n").into_bytes());
}

/// Waits up to `within` for queued lines to reach stderr (call before exiting).
pub(crate) fn flush(within: Duration) {
    let deadline = Instant::now() + within;
    while queue().pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `tracing` writer: each event is formatted into one buffer, queued when the
/// formatter drops it.
#[derive(Default)]
struct EventWriter(Vec<u8>);

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            enqueue(std::mem::take(&mut self.0));
        }
    }
}

pub(crate) fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EventWriter::default)
        // Colour only for a person at a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// A Prometheus recorder for the whole process, with explicit histogram buckets.
pub(crate) fn metrics(buckets: &[f64]) -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(buckets)
        .ok()?
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics are disabled"))
        .ok()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Some(handle)
}

/// Cancelled on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stopping on signal");
        trigger.cancel();
    });
    token
}
