//! The listener both of hale's products serve on: thread per core, as nginx does. An
//! accept loop deals connections out to worker threads in turn; each worker runs a
//! single-threaded runtime, and a connection lives on one worker from accept to close, so
//! a request and its upstream exchange never hop between threads (handing work between
//! threads cost more than all of hale's own work per request, measured).
//!
//! ```no_run
//! use std::sync::Arc;
//! use tokio_util::sync::CancellationToken;
//! use tokio_util::task::TaskTracker;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let connections = TaskTracker::new();
//! let workers = hale_listen::Workers::start("demo", 2, |_| {}, &connections, |_worker| {
//!     let serve: hale_listen::Serve = Arc::new(|stream| {
//!         Box::pin(async move {
//!             drop(stream); // serve the connection here
//!         })
//!     });
//!     serve
//! })?;
//! let stop = CancellationToken::new();
//! hale_listen::accept(listener, &workers, stop).await; // until `stop`
//! connections.close();
//! connections.wait().await;
//! workers.join().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves one connection, on the worker thread it was handed to.
pub type Serve =
    Arc<dyn Fn(tokio::net::TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The worker threads, and how to hand each a connection.
pub struct Workers {
    threads: Vec<(
        UnboundedSender<std::net::TcpStream>,
        std::thread::JoinHandle<()>,
    )>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Workers {
    /// Starts `count` worker threads named `{name}-{n}` (at least one). Each first runs
    /// `enter(n)` (its thread-local state), then serves every connection it is handed
    /// with the [`Serve`] that `serve(n)` made for it, in a task of its own tracked by
    /// `connections` (so a drain can wait for every connection of every worker). A
    /// worker ends once [`join`](Self::join) closes its channel and its connections have
    /// ended.
    pub fn start(
        name: &str,
        count: usize,
        enter: fn(usize),
        connections: &TaskTracker,
        mut serve: impl FnMut(usize) -> Serve,
    ) -> std::io::Result<Workers> {
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let (tx, rx) = unbounded_channel();
            let (serve, connections) = (serve(n), connections.clone());
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    enter(n);
                    worker(rx, serve, connections);
                })?;
            threads.push((tx, thread));
        }
        Ok(Workers { threads })
    }

    /// Hands connection `stream` to worker `n` (modulo the workers).
    fn hand(&self, n: usize, stream: std::net::TcpStream) {
        let _ = self.threads[n % self.threads.len()].0.send(stream);
    }

    /// Closes the workers' channels and waits for their threads (once their connections
    /// have ended).
    pub async fn join(self) {
        for (tx, thread) in self.threads {
            drop(tx);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Accepts connections until `stop`, dealing them out to `workers` in turn. Each gets
/// `TCP_NODELAY` (small JSON-RPC answers must not wait for Nagle and a delayed ACK: 40 ms).
/// A failed accept (out of file descriptors, typically) is said once per 10 s, not per
/// try, and tried again after 50 ms. The listener is closed when this returns.
pub async fn accept(listener: TcpListener, workers: &Workers, stop: CancellationToken) {
    let mut next = 0usize;
    let mut failures = hale_core::RateLimitedLog::new(Duration::from_secs(10));
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if let Some(suppressed) = failures.due(std::time::Instant::now()) {
                        tracing::warn!(error = %e, suppressed, "accept failed (the process may be out of file descriptors)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        workers.hand(next, stream);
        next = next.wrapping_add(1);
    }
}

/// One worker thread: a single-threaded runtime serving the connections it is handed,
/// until its channel closes and they have all ended.
fn worker(
    mut incoming: UnboundedReceiver<std::net::TcpStream>,
    serve: Serve,
    connections: TaskTracker,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    let local = TaskTracker::new();
    runtime.block_on(async {
        while let Some(stream) = incoming.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let token = connections.token();
            let served = serve(stream);
            local.spawn(async move {
                served.await;
                drop(token);
            });
        }
        // This runtime's tasks only run while it is driven: keep driving until the
        // connections (and what they spawned) have finished.
        local.close();
        local.wait().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_are_dealt_out_to_the_workers_in_turn_and_drained() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = TaskTracker::new();
        let workers = Workers::start(
            "t",
            2,
            |_| {},
            &connections,
            |_| {
                Arc::new(|mut stream: tokio::net::TcpStream| {
                    Box::pin(async move {
                        let name = std::thread::current().name().unwrap_or("").to_string();
                        let _ = stream.write_all(name.as_bytes()).await;
                    }) as Pin<Box<dyn Future<Output = ()> + Send>>
                })
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let accepting = tokio::spawn({
            let stop = stop.clone();
            async move {
                accept(listener, &workers, stop).await;
                workers
            }
        });
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut name = String::new();
            s.read_to_string(&mut name).await.unwrap();
            seen.push(name);
        }
        assert_eq!(seen, ["t-0", "t-1", "t-0", "t-1"]);
        stop.cancel();
        let workers = accepting.await.unwrap();
        connections.close();
        connections.wait().await;
        workers.join().await;
    }
}
