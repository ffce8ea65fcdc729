//! Which traces are recorded. The decision for a request is taken before anything is
//! built ([`Decide`]): a caller's sampled context is continued (the `parentbased_`
//! samplers, the default) and an unsampled one is not, a share of new traces is
//! (`samplingRate`), and a share of health checks (`healthCheckSamplingRate`). A request
//! not recorded costs one coin and no span. The SDK's sampler then only keeps a
//! decision taken: a span under one of hale's own is recorded with its parent.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use crate::config::Settings;

/// The decisions taken before a span is made.
#[derive(Debug)]
pub(crate) struct Decide {
    rate: f64,
    health_rate: f64,
    parent_based: bool,
    coins: AtomicU64,
}

impl Decide {
    pub(crate) fn new(settings: &Settings) -> Self {
        Decide {
            rate: settings.sampling_rate,
            health_rate: settings.health_check_sampling_rate,
            parent_based: settings.parent_based,
            coins: AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id())),
        }
    }

    /// Whether a request whose caller sent `parent` (maybe invalid: none) is recorded.
    pub(crate) fn request(&self, parent: &SpanContext) -> bool {
        if parent.is_valid() && self.parent_based {
            return parent.is_sampled();
        }
        self.coin(self.rate)
    }

    /// Whether this health check is traced.
    pub(crate) fn health(&self) -> bool {
        self.coin(self.health_rate)
    }

    /// True with probability `rate` (a counter through splitmix64: uniform, lock-free).
    fn coin(&self, rate: f64) -> bool {
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        let mut z = self
            .coins
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < rate
    }
}

/// The SDK's sampler: the decision was taken (by [`Decide`]) before the span was
/// made, so a root or a caller's child is recorded; a span under one of hale's own
/// follows its parent.
#[derive(Clone, Debug)]
pub(crate) struct Keep;

impl ShouldSample for Keep {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.map(|cx| cx.span().span_context().clone());
        let decision = match &parent {
            Some(p) if p.is_valid() && !p.is_remote() && !p.is_sampled() => SamplingDecision::Drop,
            _ => SamplingDecision::RecordAndSample,
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(rate: f64) -> Decide {
        Decide {
            rate,
            health_rate: rate,
            parent_based: true,
            coins: AtomicU64::new(7),
        }
    }

    #[test]
    fn the_coin_keeps_its_rate() {
        for rate in [0.0, 0.01, 0.3, 1.0] {
            let d = decide(rate);
            let heads = (0..100_000)
                .filter(|_| d.request(&SpanContext::empty_context()))
                .count();
            let share = heads as f64 / 100_000.0;
            assert!((share - rate).abs() < 0.01, "{rate}: {share}");
        }
    }

    #[test]
    fn a_callers_decision_is_followed() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
        let parent = |sampled: bool| {
            SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                if sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )
        };
        assert!(decide(0.0).request(&parent(true)));
        assert!(!decide(1.0).request(&parent(false)));
    }
}
