//! `telemetry:` — ToolHive's keys for OpenTelemetry export (`endpoint`, `serviceName`,
//! `serviceVersion`, `tracingEnabled`, `metricsEnabled`, `samplingRate`, `headers`,
//! `insecure`, `customAttributes`), and hale's `healthCheckSamplingRate`. The standard
//! `OTEL_*` variables fill in what the file leaves out.

use std::collections::BTreeMap;

use hale_telemetry::Overrides;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTelemetry {
    endpoint: Option<Spanned<String>>,
    service_name: Option<String>,
    service_version: Option<String>,
    tracing_enabled: Option<bool>,
    metrics_enabled: Option<bool>,
    sampling_rate: Option<Spanned<Rate>>,
    health_check_sampling_rate: Option<Spanned<Rate>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    insecure: Option<bool>,
    #[serde(default)]
    custom_attributes: BTreeMap<String, String>,
    /// ToolHive's switch for its Prometheus path: hale always serves `/metrics`.
    enable_prometheus_metrics_path: Option<bool>,
}

/// A rate, as a number or (as ToolHive's operator writes it) a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Rate {
    Number(f64),
    Text(String),
}

/// Checks `telemetry`.
pub(crate) fn telemetry(c: &Checker<'_>, raw: RawTelemetry) -> Result<Overrides, ConfigFileError> {
    let _ = raw.enable_prometheus_metrics_path;
    let rate = |key: &str, r: Option<Spanned<Rate>>| -> Result<Option<f64>, ConfigFileError> {
        let Some(r) = r else { return Ok(None) };
        let line = Some(r.referenced.line());
        let value = match r.value {
            Rate::Number(n) => Some(n),
            Rate::Text(t) => t.trim().parse::<f64>().ok(),
        };
        match value {
            Some(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
            _ => c.error(
                key,
                line,
                "expected a rate from 0 to 1 (0.05 is 5 %), as a number or a string",
            ),
        }
    };
    let endpoint = match raw.endpoint {
        None => None,
        Some(e) => {
            let text = e.value.trim().to_string();
            if let Err(why) = hale_telemetry::endpoint_url(&text, raw.insecure.unwrap_or(false)) {
                return c.error("telemetry.endpoint", Some(e.referenced.line()), why);
            }
            Some(text)
        }
    };
    for (name, value) in &raw.headers {
        if http::HeaderName::try_from(name.as_str()).is_err()
            || http::HeaderValue::try_from(value.as_str()).is_err()
        {
            // The value may be a secret: only the name is said.
            return c.error(
                &format!("telemetry.headers.{name}"),
                None,
                "not a valid HTTP header name or value",
            );
        }
    }
    Ok(Overrides {
        endpoint,
        insecure: raw.insecure,
        service_name: raw.service_name,
        service_version: raw.service_version,
        tracing_enabled: raw.tracing_enabled,
        metrics_enabled: raw.metrics_enabled,
        sampling_rate: rate("telemetry.samplingRate", raw.sampling_rate)?,
        health_check_sampling_rate: rate(
            "telemetry.healthCheckSamplingRate",
            raw.health_check_sampling_rate,
        )?,
        headers: raw.headers.into_iter().collect(),
        custom_attributes: raw.custom_attributes,
    })
}
