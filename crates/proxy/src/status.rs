//! What the proxy knows about its server: the monitor writes it, `/health`, `/metrics`
//! and the request path read it. Requests never trigger a check.

use std::sync::Mutex;
use std::time::SystemTime;

use hale_core::{CheckOutcome, FailureCategory};
use hale_mcp::{TransportKind, codes};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::answer::Said;

/// How the request path should treat the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The last check passed (or none ran yet): forward as usual.
    Up,
    /// The last check failed: forward, and wait for the server (a blip shorter than
    /// the tolerance window costs one slow answer).
    Down { error: String },
    /// The threshold was reached: every request still waiting for the server, and every
    /// new one, is answered by the proxy; answers already streaming may finish.
    GivenUp { reason: String },
    /// Stopping on request (SIGTERM): new requests are answered by the proxy; requests
    /// the server already has may finish within the drain timeout.
    Stopping,
}

impl Backend {
    /// What the proxy answers a new request with, when it must not be forwarded.
    pub(crate) fn refusal(&self) -> Option<Said> {
        match self {
            Backend::GivenUp { reason } => Some(Said::new(
                codes::BACKEND_UNAVAILABLE,
                format!("the MCP server is unavailable: {reason}"),
            )),
            Backend::Stopping => Some(Said::new(
                codes::SHUTTING_DOWN,
                "hale proxy is shutting down",
            )),
            Backend::Up | Backend::Down { .. } => None,
        }
    }

    fn stopped(&self) -> bool {
        matches!(self, Backend::GivenUp { .. } | Backend::Stopping)
    }
}

#[derive(Debug, Default)]
struct Record {
    consecutive_failures: u32,
    last_check: Option<SystemTime>,
    last_success: Option<SystemTime>,
    last_error: Option<(FailureCategory, String)>,
}

pub(crate) struct Status {
    pub(crate) transport: TransportKind,
    pub(crate) threshold: u32,
    pub(crate) backend: watch::Sender<Backend>,
    record: Mutex<Record>,
}

impl Status {
    pub(crate) fn new(transport: TransportKind, threshold: u32) -> Self {
        metrics::gauge!("toolhive_proxy_backend_up").set(1.0);
        metrics::gauge!("toolhive_proxy_health_consecutive_failures").set(0.0);
        // Exported so an alert can say "one more failed check and it shuts down" without
        // knowing each deployment's TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD.
        metrics::gauge!("toolhive_proxy_health_failure_threshold").set(f64::from(threshold));
        Status {
            transport,
            threshold,
            backend: watch::channel(Backend::Up).0,
            record: Mutex::new(Record::default()),
        }
    }

    /// Records one check (or retry) and what the loop made of it.
    pub(crate) fn checked(&self, outcome: &CheckOutcome, consecutive_failures: u32) {
        let now = SystemTime::now();
        let mut record = self
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        record.last_check = Some(now);
        record.consecutive_failures = consecutive_failures;
        let result = match outcome {
            CheckOutcome::Failure(f) => {
                record.last_error = Some((f.category, f.message.clone()));
                self.backend.send_if_modified(|b| match b {
                    b if b.stopped() => false,
                    _ => {
                        *b = Backend::Down {
                            error: f.to_string(),
                        };
                        true
                    }
                });
                "failure"
            }
            CheckOutcome::Success { .. } | CheckOutcome::Unauthenticated { .. } => {
                record.last_success = Some(now);
                self.backend.send_if_modified(|b| match b {
                    Backend::Down { .. } => {
                        *b = Backend::Up;
                        true
                    }
                    _ => false,
                });
                "success"
            }
        };
        metrics::counter!("toolhive_proxy_health_checks_total", "result" => result).increment(1);
        metrics::gauge!("toolhive_proxy_health_consecutive_failures")
            .set(f64::from(consecutive_failures));
        let up = matches!(*self.backend.borrow(), Backend::Up);
        metrics::gauge!("toolhive_proxy_backend_up").set(if up { 1.0 } else { 0.0 });
    }

    /// The proxy gave up on the server (`Some(reason)`) or was asked to stop (`None`).
    pub(crate) fn shutting_down(&self, reason: Option<String>) {
        self.backend.send_replace(match reason {
            Some(reason) => Backend::GivenUp { reason },
            None => Backend::Stopping,
        });
        metrics::gauge!("toolhive_proxy_backend_up").set(0.0);
    }

    /// The `/health` answer: the status code and the JSON body.
    pub(crate) fn health(&self) -> (u16, Value) {
        let record = self
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (status, code) = match &*self.backend.borrow() {
            b if b.stopped() => ("unhealthy", 503),
            _ if record.consecutive_failures > 0 => ("degraded", 200),
            _ => ("healthy", 200),
        };
        let time =
            |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_millis(t).to_string());
        let body = json!({
            "status": status,
            "consecutiveFailures": record.consecutive_failures,
            "threshold": self.threshold,
            "lastCheck": time(record.last_check),
            "lastSuccess": time(record.last_success),
            "lastError": record.last_error.as_ref().map(|(category, message)| json!({
                "category": category.as_str(),
                "message": message,
            })),
            "transport": self.transport.as_str(),
        });
        (code, body)
    }
}
