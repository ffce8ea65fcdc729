//! The per-request metrics of one backend, with their handles kept: looking a labelled
//! metric up in the recorder on every call (hashing its labels, allocating their values)
//! cost more than the rest of hale's bookkeeping on the call path.

use std::sync::{Mutex, PoisonError};

use metrics::{Counter, Histogram};

/// Handles by method: a handful of methods per backend in practice.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    by_method: Mutex<Vec<(String, Handles)>>,
}

#[derive(Clone)]
struct Handles {
    duration: Histogram,
    success: Counter,
    failure: Counter,
}

impl RequestMetrics {
    /// Records one request of `method` to `backend` that took `seconds`.
    pub(crate) fn record(&self, backend: &str, method: &str, seconds: f64, success: bool) {
        let handles = {
            let mut by_method = self
                .by_method
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match by_method.iter().find(|(m, _)| m == method) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = Handles {
                        duration: metrics::histogram!("toolhive_vmcp_backend_requests_duration_seconds", "backend" => backend.to_string(), "method" => method.to_string()),
                        success: metrics::counter!("toolhive_vmcp_backend_requests_total", "backend" => backend.to_string(), "method" => method.to_string(), "outcome" => "success"),
                        failure: metrics::counter!("toolhive_vmcp_backend_requests_total", "backend" => backend.to_string(), "method" => method.to_string(), "outcome" => "failure"),
                    };
                    by_method.push((method.to_string(), h.clone()));
                    h
                }
            }
        };
        handles.duration.record(seconds);
        if success {
            handles.success.increment(1);
        } else {
            handles.failure.increment(1);
        }
    }
}
