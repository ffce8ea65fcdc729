//! Limits that say when they are reached. A limit that only moves a counter fails the
//! people it serves: every hit is logged (at most one line per 30 s per limit and
//! backend, with how many were held back), shown in `/status` (how often it evicted or
//! refused, and when last) and counted in `toolhive_vmcp_limit_hits_total`, which an
//! alert rule watches.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

/// One limit's record (of one backend, or of the vMCP).
#[derive(Debug)]
pub(crate) struct LimitHits {
    /// The configuration key, as the log and `/status` name it.
    key: &'static str,
    evicted: AtomicU64,
    refused: AtomicU64,
    last: Mutex<Option<SystemTime>>,
    log: Mutex<hale_core::RateLimitedLog>,
}

impl LimitHits {
    pub(crate) fn new(key: &'static str) -> Self {
        LimitHits {
            key,
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last: Mutex::new(None),
            log: Mutex::new(hale_core::RateLimitedLog::new(Duration::from_secs(30))),
        }
    }

    /// The limit `max` was reached (for `scope`: a backend's name, or `vmcp`) and
    /// `outcome` followed: `evicted` (the idlest made room) or `refused`.
    pub(crate) fn hit(&self, scope: &str, max: u32, outcome: &'static str) {
        match outcome {
            "evicted" => self.evicted.fetch_add(1, Ordering::Relaxed),
            _ => self.refused.fetch_add(1, Ordering::Relaxed),
        };
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(SystemTime::now());
        metrics::counter!("toolhive_vmcp_limit_hits_total", "limit" => self.key, "scope" => scope.to_string(), "outcome" => outcome).increment(1);
        let due = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .due(Instant::now());
        if let Some(held_back) = due {
            let key = self.key;
            match outcome {
                "evicted" => tracing::warn!(
                    scope,
                    limit = max,
                    held_back,
                    "{key} reached ({max}): the idlest session was ended to make room"
                ),
                _ => tracing::warn!(
                    scope,
                    limit = max,
                    held_back,
                    "{key} reached ({max}) and every session is busy: a client was refused"
                ),
            }
        }
    }

    /// The limit's part of `/status`.
    pub(crate) fn status(&self, max: u32, open: u32) -> Value {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| humantime::format_rfc3339_millis(t).to_string());
        json!({
            "key": self.key,
            "max": max,
            "open": open,
            "evicted": self.evicted.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "lastHit": last,
        })
    }
}
