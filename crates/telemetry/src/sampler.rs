//! Which traces are recorded: a share of new request traces (`samplingRate`), a parent's
//! decision when a caller sent one (the `parentbased_` samplers, the default), a share
//! of health checks of their own (`healthCheckSamplingRate`), and always the parent's
//! decision for a span under one of hale's own.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler as Ratio, SamplingDecision, SamplingResult, ShouldSample};

use crate::config::Settings;
use crate::names::HEALTH_CHECK;

#[derive(Clone, Debug)]
pub(crate) struct Sampler {
    requests: Ratio,
    health: Ratio,
    parent_based: bool,
}

impl Sampler {
    pub(crate) fn new(settings: &Settings) -> Self {
        Sampler {
            requests: Ratio::TraceIdRatioBased(settings.sampling_rate),
            health: Ratio::TraceIdRatioBased(settings.health_check_sampling_rate),
            parent_based: settings.parent_based,
        }
    }
}

impl ShouldSample for Sampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        if let Some(parent) = &parent
            && (!parent.is_remote() || self.parent_based)
        {
            let decision = if parent.is_sampled() {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            };
            return SamplingResult {
                decision,
                attributes: Vec::new(),
                trace_state: parent.trace_state().clone(),
            };
        }
        let ratio = if name == HEALTH_CHECK && parent.is_none() {
            &self.health
        } else {
            &self.requests
        };
        ratio.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}
