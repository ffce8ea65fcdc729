//! Retrying what is safe, within a budget (`failureHandling.retryBudget`).
//!
//! A request that never reached the backend (the connection was refused: nothing was
//! written) is sent once more, whatever it is. A request that reached it and met a
//! transport failure (reset, a 5xx, a malformed answer) is sent once more only if doing
//! it twice cannot hurt: a listing, a read, a prompt, or a `tools/call` of a tool the
//! backend annotates `readOnlyHint` or `idempotentHint`. Never anything else, and never
//! after a timeout (its deadline is spent) or a JSON-RPC error (an answer).
//!
//! The budget keeps retries from multiplying an outage: each request earns a share
//! (`retryBudget`, default 20 %) of one retry, at most ten retries are saved up, and a
//! retry spends one. A dead backend therefore sees at most about 1.2× its requests.

use std::sync::atomic::{AtomicU64, Ordering};

use hale_core::FailureCategory;
use hale_mcp::McpError;
use serde_json::Value;

/// Thousandths of a retry.
const ONE: u64 = 1000;
/// Retries saved up at most.
const CAP: u64 = 10 * ONE;

/// One backend's retry budget and what it did.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Thousandths of a retry each request earns (200: 20 %); 0 turns retries off.
    earn: u64,
    /// Thousandths of a retry saved up (clamped to [`CAP`] when spent).
    saved: AtomicU64,
    retried: AtomicU64,
    refused: AtomicU64,
}

impl RetryBudget {
    /// A budget earning `ratio` (0.0–1.0) of a retry per request, starting full.
    pub(crate) fn new(ratio: f64) -> Self {
        RetryBudget {
            earn: (ratio.clamp(0.0, 1.0) * ONE as f64).round() as u64,
            saved: AtomicU64::new(if ratio > 0.0 { CAP } else { 0 }),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether retries are on at all.
    pub(crate) fn on(&self) -> bool {
        self.earn > 0
    }

    /// A request was made: it earns its share.
    pub(crate) fn earn(&self) {
        if self.earn > 0 {
            self.saved.fetch_add(self.earn, Ordering::Relaxed);
        }
    }

    /// Spends one retry if one is saved up; counts the answer either way.
    pub(crate) fn spend(&self) -> bool {
        let spent = self
            .saved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |saved| {
                saved.min(CAP).checked_sub(ONE)
            })
            .is_ok();
        if spent {
            self.retried.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        spent
    }

    /// For `/status`: retries made, retries the budget refused, retries saved up.
    pub(crate) fn status(&self) -> Value {
        serde_json::json!({
            "retried": self.retried.load(Ordering::Relaxed),
            "refusedByBudget": self.refused.load(Ordering::Relaxed),
            "budgetLeft": self.saved.load(Ordering::Relaxed).min(CAP) / ONE,
        })
    }
}

/// Whether `method` (a `tools/call` of a tool with `annotations`) may be sent twice.
pub(crate) fn is_safe(method: &str, annotations: Option<&Value>) -> bool {
    match method {
        "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "prompts/list"
        | "prompts/get"
        | "completion/complete"
        | "ping" => true,
        "tools/call" => annotations.is_some_and(|a| {
            a.get("readOnlyHint") == Some(&Value::Bool(true))
                || a.get("idempotentHint") == Some(&Value::Bool(true))
        }),
        _ => false,
    }
}

/// Whether a request that failed with `e` is worth sending again (`safe`: it may be
/// sent twice).
pub(crate) fn worth_it(e: &McpError, safe: bool) -> bool {
    match e.category() {
        // Nothing was written: the backend never saw it.
        Some(FailureCategory::ConnectionRefused) => true,
        // It reached the backend, which failed it (5xx) or was cut off meanwhile.
        Some(FailureCategory::ConnectionReset | FailureCategory::HttpStatus) => safe,
        // A timeout spent the deadline; a 4xx or malformed answer, TLS and a lost
        // session do not heal in a retry (hale-mcp already re-opens a lost session
        // once); an answer is an answer.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_of_20_percent_allows_one_retry_in_five_requests_after_its_reserve() {
        let b = RetryBudget::new(0.2);
        let reserve = (0..100).take_while(|_| b.spend()).count();
        assert_eq!(reserve, 10, "ten saved up at most");
        for _ in 0..50 {
            b.earn();
        }
        let more = (0..100).take_while(|_| b.spend()).count();
        assert_eq!(more, 10, "50 requests earn 10 retries");
        assert_eq!(b.status()["retried"], 20);
        assert!(b.status()["refusedByBudget"].as_u64() >= Some(2));
        // Earnings beyond the cap are not kept.
        for _ in 0..10_000 {
            b.earn();
        }
        assert_eq!((0..100).take_while(|_| b.spend()).count(), 10);
        assert!(!RetryBudget::new(0.0).on());
    }

    #[test]
    fn only_what_may_be_sent_twice_is_retried_after_it_reached_the_backend() {
        let ro = serde_json::json!({"readOnlyHint": true});
        assert!(is_safe("tools/call", Some(&ro)));
        assert!(is_safe("resources/read", None));
        assert!(!is_safe("tools/call", None));
        assert!(!is_safe(
            "tools/call",
            Some(&serde_json::json!({"destructiveHint": true}))
        ));
    }
}
