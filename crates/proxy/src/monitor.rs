//! The health monitor: drives hale-core's [`CheckLoop`] with a [`Probe`] on a long-lived
//! probe session, and records every result for `/health` and the request path.

use std::sync::Arc;

use hale_core::{Attempt, CheckLoop, CheckOutcome, LoopEvent};
use hale_mcp::{ClientOptions, Probe, ProbeMethod};
use tokio::time::Instant;

use crate::ProxyConfig;
use crate::status::Status;

pub(crate) struct Monitor {
    checks: CheckLoop,
    probe: Probe,
    status: Arc<Status>,
    target: String,
}

impl Monitor {
    pub(crate) fn new(config: &ProxyConfig, checks: CheckLoop, status: Arc<Status>) -> Self {
        let options = ClientOptions {
            transport: config.transport,
            client_name: "hale-proxy-health".into(),
            // `server/discover` for a 2026-07-28 server, `ping` on a session otherwise.
            era: hale_mcp::Era::Auto,
            // A probe reads no notifications: no GET or listen stream for it.
            listen: false,
            tls: config.tls.clone(),
            ..ClientOptions::default()
        };
        Monitor {
            checks,
            probe: Probe::new(
                &config.target,
                options,
                ProbeMethod::Ping,
                config.checks.ping_timeout,
            ),
            status,
            target: hale_mcp::redact_url(&config.target),
        }
    }

    /// Ends the probe session (DELETE on streamable HTTP), within the ping timeout.
    pub(crate) async fn close(&mut self) {
        let within = self.checks.config().ping_timeout;
        let _ = tokio::time::timeout(within, self.probe.close()).await;
    }

    /// Runs checks until the threshold is reached; returns why the proxy must stop.
    /// Cancel-safe between checks: the proxy drops it on SIGTERM, then calls `close`.
    pub(crate) async fn run(&mut self) -> String {
        while let Some(due) = self.checks.poll_timeout() {
            tokio::time::sleep_until(Instant::from_std(due)).await;
            let Some(attempt) = self.checks.handle_timeout(Instant::now().into_std()) else {
                continue;
            };
            let traced = hale_telemetry::get().and_then(|t| {
                let check = t.health_check("target")?;
                let ping = t.client_call(
                    &hale_telemetry::Outgoing {
                        method: "ping",
                        params: &serde_json::Value::Null,
                        backend: "target",
                        address: None,
                        port: None,
                        transport: "tcp",
                        circuit: "closed",
                    },
                    check.context(),
                );
                Some((t, check, ping))
            });
            let outcome = self.probe.check().await;
            let success = !matches!(outcome, CheckOutcome::Failure(_));
            let event = self.checks.record(Instant::now().into_std(), success);
            if let Some((t, check, ping)) = traced {
                if let Some(ping) = ping {
                    ping.finish(hale_telemetry::Outcome::of_check(&outcome), t);
                }
                if let Some(e) = &event {
                    check.event(
                        "health check loop",
                        vec![opentelemetry::KeyValue::new(
                            "hale.health.event",
                            e.to_string(),
                        )],
                    );
                }
                check.finish(
                    if success { "healthy" } else { "failing" },
                    &format!(
                        "{} consecutive failures",
                        self.checks.consecutive_failures()
                    ),
                );
            }
            self.status
                .checked(&outcome, self.checks.consecutive_failures());
            let error = match &outcome {
                CheckOutcome::Failure(f) => f.to_string(),
                _ => String::new(),
            };
            match event {
                Some(LoopEvent::Shutdown { failures }) => {
                    return format!(
                        "the MCP server at {} failed {failures} consecutive health checks; last error: {error}",
                        self.target
                    );
                }
                Some(e @ (LoopEvent::CheckFailed { .. } | LoopEvent::RetryFailed { .. })) => {
                    tracing::warn!(
                        target = %self.target,
                        attempt = ?attempt,
                        failures = self.checks.consecutive_failures(),
                        threshold = self.checks.config().failure_threshold,
                        %error,
                        "{e}"
                    )
                }
                Some(e @ LoopEvent::Recovered { .. }) => {
                    tracing::info!(target = %self.target, "{e}")
                }
                None => {
                    if attempt == Attempt::Check {
                        tracing::debug!(target = %self.target, ?outcome, "health check passed");
                    }
                }
            }
        }
        String::from("the health-check loop ended")
    }
}
