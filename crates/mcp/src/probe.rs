//! Health checks on one long-lived probe session per backend.
//!
//! ToolHive opens a new MCP session for every check (initialize, list everything, DELETE).
//! A probe initializes once, then sends one `ping` (or `tools/list`) per check, opens a
//! new session only after a failure or when the server lost the old one, and DELETEs its
//! session when closed.

use std::time::Duration;

use hale_core::CheckOutcome;
use tokio::time::Instant;

use crate::{ClientOptions, McpClient, McpError};

/// What a check sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ProbeMethod {
    /// MCP `ping` (`healthCheckMethod: ping`, the default).
    #[default]
    Ping,
    /// `tools/list`, all pages (`healthCheckMethod: tools/list`).
    ToolsList,
}

impl std::str::FromStr for ProbeMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ping" => Ok(ProbeMethod::Ping),
            "tools/list" => Ok(ProbeMethod::ToolsList),
            other => Err(format!(
                "unknown health check method {other:?}: expected ping or tools/list"
            )),
        }
    }
}

/// Checks one backend, keeping its probe session between checks.
#[derive(Debug)]
pub struct Probe {
    /// Where to connect (with its credentials).
    url: String,
    /// How messages name it (without them).
    shown: String,
    options: ClientOptions,
    method: ProbeMethod,
    timeout: Duration,
    client: Option<McpClient>,
}

impl Probe {
    /// A probe of `url` whose checks each take at most `timeout`, session set-up included.
    pub fn new(
        url: &str,
        mut options: ClientOptions,
        method: ProbeMethod,
        timeout: Duration,
    ) -> Self {
        options.request_timeout = timeout;
        Probe {
            url: url.to_string(),
            shown: crate::redact_url(url),
            options,
            method,
            timeout,
            client: None,
        }
    }

    /// Runs one check: a JSON-RPC answer in time is a success with its latency; 401/403
    /// is `Unauthenticated`; anything else is a failure with its category.
    pub async fn check(&mut self) -> CheckOutcome {
        let start = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.exchange()).await;
        let latency = start.elapsed();
        let error = match result {
            Ok(Ok(())) => return CheckOutcome::success(latency),
            Ok(Err(e)) => e,
            Err(_) => McpError::Timeout {
                url: self.shown.clone(),
                method: self.method_name().into(),
                after: self.timeout,
            },
        };
        let outcome = error.check_outcome(latency);
        if matches!(outcome, CheckOutcome::Failure(_)) {
            // Start the next check on a fresh session; say goodbye to this one without
            // making the caller wait for a server that is failing anyway.
            if let Some(client) = self.client.take() {
                tokio::spawn(async move { client.close().await });
            }
        }
        outcome
    }

    async fn exchange(&mut self) -> Result<(), McpError> {
        if self.client.is_none() {
            self.client = Some(McpClient::connect(&self.url, self.options.clone()).await?);
        }
        let Some(client) = self.client.as_ref() else {
            return Err(McpError::Closed {
                url: self.shown.clone(),
            });
        };
        match self.method {
            ProbeMethod::Ping => client.ping().await,
            ProbeMethod::ToolsList => client.list_tools().await.map(drop),
        }
    }

    fn method_name(&self) -> &'static str {
        match self.method {
            ProbeMethod::Ping => "ping",
            ProbeMethod::ToolsList => "tools/list",
        }
    }

    /// Whether a probe session is open right now.
    pub fn has_session(&self) -> bool {
        self.client.is_some()
    }

    /// Ends the probe session (DELETE on streamable HTTP).
    pub async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            client.close().await;
        }
    }
}
