//! A stdio backend's side of its upstream: the process hale runs, served on a loopback
//! port that the upstream's clients (shared, per session, the probe) reach like any
//! HTTP server. Bound when the upstream is made; running while its monitor runs.

use std::sync::{Mutex, PoisonError};

use hale_stdio::{StdioConfig, StdioServer, StdioStatus};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The process and its loopback front.
#[derive(Debug)]
pub(crate) struct Local {
    /// Taken when it starts.
    server: Mutex<Option<StdioServer>>,
    status: StdioStatus,
    url: String,
    /// Ends it: cancelled when the upstream is retired or the vMCP has drained.
    stop: CancellationToken,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Local {
    /// Binds a loopback port for `config`'s process (nothing runs yet).
    pub(crate) fn bind(backend: &str, config: &StdioConfig) -> Result<Local, String> {
        let server = StdioServer::bind(config.clone()).map_err(|e| {
            format!("backend {backend}: no loopback port for its stdio server: {e}")
        })?;
        Ok(Local {
            url: server.url(),
            status: server.status(),
            server: Mutex::new(Some(server)),
            stop: CancellationToken::new(),
            running: Mutex::new(None),
        })
    }

    /// Where the upstream's clients reach it.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Starts the process and serves it until [`Local::end`]. Once: later calls find
    /// it running.
    pub(crate) fn start(&self) {
        let Some(server) = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let task = tokio::spawn(server.run(self.stop.clone()));
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// Ends the process group (SIGTERM, SIGKILL after the grace) and waits for it.
    pub(crate) async fn end(&self) {
        self.stop.cancel();
        let task = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// For `/status`: the command line (never the environment), processes, restarts.
    pub(crate) fn describe(&self) -> Value {
        self.status.describe()
    }
}
