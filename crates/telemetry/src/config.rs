//! What to export where: the standard `OTEL_*` variables, and the settings a product's
//! own configuration gives on top of them (the vMCP's `telemetry:` block, the proxy's
//! flags). Header values are secrets: they are never shown by `Debug` or in an error.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The telemetry settings, once resolved.
#[derive(Clone)]
pub struct Settings {
    /// Where spans go (the full URL, `/v1/traces` included); `None`: no traces.
    pub traces_url: Option<String>,
    /// Where metrics go (`/v1/metrics` included); `None`: no metrics over OTLP.
    pub metrics_url: Option<String>,
    /// Where log records of hale's decisions go (`/v1/logs` included); on with traces.
    pub logs_url: Option<String>,
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// Resource attributes besides the service's (`OTEL_RESOURCE_ATTRIBUTES`,
    /// `customAttributes`).
    pub resource: BTreeMap<String, String>,
    /// The share of new traces (without a sampled parent) recorded, 0 to 1.
    pub sampling_rate: f64,
    /// Whether a parent's decision is followed (the `parentbased_*` samplers: the
    /// default).
    pub parent_based: bool,
    /// The share of health checks traced, 0 to 1.
    pub health_check_sampling_rate: f64,
    /// Headers sent with every export (an API key): never shown.
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub export_timeout: Duration,
    /// How many ended spans may wait for export; more are dropped and counted.
    pub queue_size: usize,
    /// How often metrics are exported.
    pub metrics_interval: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("traces_url", &self.traces_url)
            .field("metrics_url", &self.metrics_url)
            .field("service_name", &self.service_name)
            .field("sampling_rate", &self.sampling_rate)
            .field(
                "health_check_sampling_rate",
                &self.health_check_sampling_rate,
            )
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What a product's own configuration says (every field optional: the `OTEL_*`
/// variables fill in the rest, and a field given here wins over them).
#[derive(Clone, Default, PartialEq)]
pub struct Overrides {
    /// ToolHive's `endpoint`: `host:port` (with `insecure`: `http://`, else `https://`)
    /// or a URL; the signal's path is appended to it.
    pub endpoint: Option<String>,
    /// `insecure`: plain HTTP for a `host:port` endpoint.
    pub insecure: Option<bool>,
    /// `serviceName`.
    pub service_name: Option<String>,
    /// `serviceVersion`.
    pub service_version: Option<String>,
    /// `tracingEnabled`.
    pub tracing_enabled: Option<bool>,
    /// `metricsEnabled`.
    pub metrics_enabled: Option<bool>,
    /// `samplingRate`, 0 to 1.
    pub sampling_rate: Option<f64>,
    /// `healthCheckSamplingRate`, 0 to 1.
    pub health_check_sampling_rate: Option<f64>,
    /// `headers`.
    pub headers: Vec<(String, String)>,
    /// `customAttributes`.
    pub custom_attributes: BTreeMap<String, String>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The default health-check sampling rate: one check in a hundred.
pub const HEALTH_CHECK_SAMPLING_RATE: f64 = 0.01;

impl Settings {
    /// Resolves the settings from `env` (a variable's value by name: `std::env::var` in
    /// a product, a map in a test) and `overrides`. `Ok(None)`: telemetry is off (no
    /// endpoint anywhere, both signals disabled, or `OTEL_SDK_DISABLED=true`). An error
    /// names the variable or key at fault.
    pub fn resolve(
        default_service: &str,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(p) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && p != "http/protobuf"
        {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={p}: hale exports OTLP over http/protobuf only (a collector's port 4318)"
            ));
        }
        let base = match &overrides.endpoint {
            Some(e) => Some(
                base_url(e, overrides.insecure.unwrap_or(false))
                    .map_err(|e| format!("telemetry.endpoint: {e}"))?,
            ),
            None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(e) => Some(
                    base_url(&e, !e.contains("://"))
                        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?,
                ),
                None => None,
            },
        };
        let signal = |enabled: Option<bool>,
                      exporter_var: &str,
                      url_var: &str,
                      path: &str|
         -> Result<Option<String>, String> {
            if enabled == Some(false) || var(exporter_var).is_some_and(|v| v == "none") {
                return Ok(None);
            }
            if overrides.endpoint.is_none()
                && let Some(url) = var(url_var)
            {
                base_url(&url, false).map_err(|e| format!("{url_var}: {e}"))?;
                return Ok(Some(url));
            }
            Ok(base
                .as_ref()
                .map(|b| format!("{}{path}", b.trim_end_matches('/'))))
        };
        let traces_url = signal(
            overrides.tracing_enabled,
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "/v1/traces",
        )?;
        let metrics_url = signal(
            overrides.metrics_enabled,
            "OTEL_METRICS_EXPORTER",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "/v1/metrics",
        )?;
        let logs_url = signal(
            overrides.tracing_enabled,
            "OTEL_LOGS_EXPORTER",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "/v1/logs",
        )?;
        if traces_url.is_none() && metrics_url.is_none() {
            return Ok(None);
        }
        let (sampling_rate, parent_based) = match overrides.sampling_rate {
            Some(rate) => (rate, true),
            None => sampler(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        check_rate("telemetry.samplingRate", sampling_rate)?;
        let health_check_sampling_rate = overrides
            .health_check_sampling_rate
            .unwrap_or(HEALTH_CHECK_SAMPLING_RATE);
        check_rate(
            "telemetry.healthCheckSamplingRate",
            health_check_sampling_rate,
        )?;
        let mut resource = BTreeMap::new();
        if let Some(attrs) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in pairs(&attrs) {
                resource.insert(k, v);
            }
        }
        resource.extend(overrides.custom_attributes.clone());
        let service_name = overrides
            .service_name
            .clone()
            .or_else(|| var("OTEL_SERVICE_NAME"))
            .or_else(|| resource.remove("service.name"))
            .unwrap_or_else(|| default_service.to_string());
        resource.remove("service.name");
        let service_version = overrides
            .service_version
            .clone()
            .or_else(|| resource.remove("service.version"))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        resource.remove("service.version");
        let mut headers: Vec<(String, String)> = var("OTEL_EXPORTER_OTLP_HEADERS")
            .map(|h| pairs(&h))
            .unwrap_or_default();
        for (k, v) in &overrides.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        for (k, v) in &headers {
            if http::HeaderName::try_from(k.as_str()).is_err()
                || http::HeaderValue::try_from(v.as_str()).is_err()
            {
                // The value is a secret: only the name is said.
                return Err(format!(
                    "telemetry header {k:?}: not a valid HTTP header (name or value)"
                ));
            }
        }
        let millis = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name}={v}: expected milliseconds")),
            }
        };
        Ok(Some(Settings {
            traces_url,
            metrics_url,
            logs_url,
            service_name,
            service_version,
            resource,
            sampling_rate,
            parent_based,
            health_check_sampling_rate,
            headers,
            export_timeout: Duration::from_millis(millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?),
            queue_size: millis("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize,
            metrics_interval: Duration::from_millis(millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?),
        }))
    }

    /// The settings from this process's environment and `overrides`.
    pub fn from_env(
        default_service: &str,
        overrides: &Overrides,
    ) -> Result<Option<Settings>, String> {
        Self::resolve(default_service, overrides, &|name| std::env::var(name).ok())
    }
}

/// ToolHive's `endpoint` as the base URL exports go to: `host:port` → `http://` with
/// `insecure`, else `https://`; a URL is kept. The error says why it is not usable.
pub fn endpoint_url(endpoint: &str, insecure: bool) -> Result<String, String> {
    base_url(endpoint, insecure)
}

/// `host:port` → `http(s)://host:port`; a URL is kept. Checked to be an http(s) URL.
fn base_url(endpoint: &str, insecure: bool) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a URL or host:port ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(url),
        _ => Err(format!(
            "{endpoint:?}: expected host:port or an http(s):// URL"
        )),
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument → (rate, parent-based).
fn sampler(name: Option<String>, arg: Option<String>) -> Result<(f64, bool), String> {
    let rate = || -> Result<f64, String> {
        match &arg {
            None => Ok(1.0),
            Some(a) => a
                .parse::<f64>()
                .map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG={a}: expected a number from 0 to 1")),
        }
    };
    Ok(match name.as_deref().unwrap_or("parentbased_always_on") {
        "always_on" => (1.0, false),
        "always_off" => (0.0, false),
        "traceidratio" => (rate()?, false),
        "parentbased_always_on" => (1.0, true),
        "parentbased_always_off" => (0.0, true),
        "parentbased_traceidratio" => (rate()?, true),
        other => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other}: expected always_on, always_off, traceidratio or their parentbased_ forms"
            ));
        }
    })
}

fn check_rate(key: &str, rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("{key}: {rate} is not a rate from 0 to 1"))
    }
}

/// `k=v,k2=v2` (W3C baggage-like, values percent-decoded).
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)], o: &Overrides) -> Result<Option<Settings>, String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve("hale-vmcp", o, &|n| vars.get(n).cloned())
    }

    #[test]
    fn without_an_endpoint_telemetry_is_off() {
        assert!(
            with(&[], &Overrides::default())
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        assert!(
            with(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_SDK_DISABLED", "true")
                ],
                &Overrides::default()
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
        );
    }

    #[test]
    fn a_base_endpoint_gets_the_signal_paths_and_a_signal_endpoint_is_kept() {
        let s = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
            ],
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("off"));
        assert_eq!(s.traces_url.as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(s.metrics_url.as_deref(), Some("http://m:9/custom"));
        assert_eq!(s.service_name, "hale-vmcp");
        assert!(s.parent_based && s.sampling_rate == 1.0);
    }

    #[test]
    fn toolhive_host_port_is_https_unless_insecure_and_wins_over_the_environment() {
        let o = Overrides {
            endpoint: Some("otel-collector:4318".into()),
            insecure: Some(true),
            sampling_rate: Some(0.25),
            service_name: Some("gw".into()),
            metrics_enabled: Some(false),
            headers: vec![("x-api-key".into(), "s3cret".into())],
            ..Overrides::default()
        };
        let s = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:1"),
                ("OTEL_SERVICE_NAME", "env-name"),
            ],
            &o,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("off"));
        assert_eq!(
            s.traces_url.as_deref(),
            Some("http://otel-collector:4318/v1/traces")
        );
        assert_eq!(s.metrics_url, None);
        assert_eq!(s.service_name, "gw");
        assert_eq!(s.sampling_rate, 0.25);
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        let secure = Overrides {
            endpoint: Some("collector.example:4318".into()),
            ..Overrides::default()
        };
        let s = with(&[], &secure)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("off"));
        assert_eq!(
            s.traces_url.as_deref(),
            Some("https://collector.example:4318/v1/traces")
        );
    }

    #[test]
    fn samplers_resource_attributes_and_headers_from_the_environment() {
        let s = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=from-attrs,team=a%20b",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken"),
            ],
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("off"));
        assert_eq!((s.sampling_rate, s.parent_based), (0.1, false));
        assert_eq!(s.service_name, "from-attrs");
        assert_eq!(s.resource.get("team").map(String::as_str), Some("a b"));
        assert_eq!(
            s.headers,
            vec![("authorization".to_string(), "Bearer t0ken".to_string())]
        );
    }

    #[test]
    fn mistakes_name_the_variable_or_key_and_never_a_header_value() {
        let bad = |vars: &[(&str, &str)], o: &Overrides| with(vars, o).err().unwrap_or_default();
        assert!(
            bad(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_TRACES_SAMPLER", "sometimes")
                ],
                &Overrides::default()
            )
            .contains("OTEL_TRACES_SAMPLER")
        );
        assert!(
            bad(
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                &Overrides::default()
            )
            .contains("http/protobuf")
        );
        let o = Overrides {
            endpoint: Some("c:4318".into()),
            sampling_rate: Some(1.5),
            ..Overrides::default()
        };
        assert!(bad(&[], &o).contains("telemetry.samplingRate"));
        let o = Overrides {
            endpoint: Some("ftp://c".into()),
            ..Overrides::default()
        };
        assert!(bad(&[], &o).contains("telemetry.endpoint"));
        let o = Overrides {
            endpoint: Some("c:4318".into()),
            headers: vec![("x-key".into(), "line\nbreak-s3cret".into())],
            ..Overrides::default()
        };
        let e = bad(&[], &o);
        assert!(e.contains("x-key") && !e.contains("s3cret"), "{e}");
    }
}
