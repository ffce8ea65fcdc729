//! W3C trace context (and baggage) in MCP's two carriers: a request's `params._meta`
//! (`traceparent`, `tracestate`, `baggage`: keys MCP 2026-07-28 reserves, SEP-414) and
//! HTTP headers. A received context comes from `_meta` when it has one (the semantic
//! conventions' carrier for MCP), else from the `traceparent` header; a sent one goes
//! into `_meta`, replacing what was there (hale-mcp copies it into the request's
//! headers).

use std::sync::OnceLock;

use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use serde_json::{Map, Value};

/// The keys a context travels under.
pub const KEYS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

fn propagator() -> &'static TextMapCompositePropagator {
    static P: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    P.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    })
}

struct Meta<'a>(&'a Map<String, Value>);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MetaMut<'a>(&'a mut Map<String, Value>);

impl Injector for MetaMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), Value::String(value));
    }
}

/// The context a request carries: from `params._meta` if it has a `traceparent`,
/// else from the HTTP headers; the empty context if neither has one.
pub fn extract(params: &Value, headers: Option<&http::HeaderMap>) -> Context {
    if let Some(meta) = params.get("_meta").and_then(Value::as_object)
        && meta.get("traceparent").and_then(Value::as_str).is_some()
    {
        return propagator().extract(&Meta(meta));
    }
    match headers {
        Some(h) => propagator().extract(&opentelemetry_http::HeaderExtractor(h)),
        None => Context::new(),
    }
}

/// Writes `cx` into `params._meta` (made if missing; `params` made an object if it is
/// null), replacing the keys of [`KEYS`] a caller sent.
pub fn inject_meta(cx: &Context, params: &mut Value) {
    if params.is_null() {
        *params = Value::Object(Map::new());
    }
    let Some(object) = params.as_object_mut() else {
        return;
    };
    let meta = object
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        for key in KEYS {
            meta.remove(key);
        }
        propagator().inject_context(cx, &mut MetaMut(meta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use serde_json::json;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-11111111111111111111111111111111-2222222222222222-01";

    #[test]
    fn meta_wins_over_the_header_and_the_header_serves_when_meta_has_none() {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", http::HeaderValue::from_static(OTHER));
        let params = json!({"name": "x", "_meta": {"traceparent": PARENT, "progressToken": 1}});
        let cx = extract(&params, Some(&h));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let cx = extract(&json!({"name": "x"}), Some(&h));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "11111111111111111111111111111111"
        );
        assert!(!extract(&json!({}), None).span().span_context().is_valid());
    }

    #[test]
    fn injecting_replaces_what_the_caller_sent_and_keeps_the_rest_of_meta() {
        let parent = extract(&json!({"_meta": {"traceparent": PARENT}}), None);
        let mut params = json!({"name": "t", "_meta": {"traceparent": OTHER, "progressToken": 7}});
        inject_meta(&parent, &mut params);
        assert_eq!(params["_meta"]["traceparent"], PARENT);
        assert_eq!(params["_meta"]["progressToken"], 7);
        let mut empty = Value::Null;
        inject_meta(&parent, &mut empty);
        assert_eq!(empty["_meta"]["traceparent"], PARENT);
    }
}
