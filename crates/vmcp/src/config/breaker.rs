//! `operational.failureHandling.circuitBreaker` and each backend's `failureCodes`: when a
//! breaker opens, and what counts against it.

use std::time::Duration;

use hale_core::{BreakerConfig, RateRules, WindowSize, parse_go_duration};
use hale_mcp::FailureCodes;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError, RawPercent};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawBreaker {
    enabled: Option<bool>,
    failure_threshold: Option<Spanned<u32>>,
    success_threshold: Option<Spanned<u32>>,
    timeout: Option<Spanned<String>>,
    max_timeout: Option<Spanned<String>>,
    half_open_max_requests: Option<Spanned<u32>>,
    failure_rate_threshold: Option<Spanned<RawPercent>>,
    slow_call_duration_threshold: Option<Spanned<String>>,
    slow_call_rate_threshold: Option<Spanned<RawPercent>>,
    sliding_window: Option<Spanned<RawWindow>>,
    minimum_calls: Option<Spanned<u32>>,
    per_tool: Option<bool>,
}

/// `slidingWindow: 100` (calls) or `slidingWindow: 60s` (a time window).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawWindow {
    Calls(u32),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailureCodes {
    #[serde(default)]
    add: Vec<i64>,
    #[serde(default)]
    remove: Vec<i64>,
}

/// The breakers' settings.
pub(super) struct Breaker {
    pub config: BreakerConfig,
    pub enabled: bool,
    pub per_tool: bool,
}

pub(super) fn breaker(
    c: &Checker<'_>,
    base: &str,
    cb: RawBreaker,
) -> Result<Breaker, ConfigFileError> {
    let bd = BreakerConfig::default();
    let rd = RateRules::default();
    let key = |k: &str| format!("{base}.{k}");
    let (failure_threshold, _) = c.count(
        &key("failureThreshold"),
        cb.failure_threshold,
        bd.failure_threshold,
    )?;
    let (success_threshold, _) = c.count(
        &key("successThreshold"),
        cb.success_threshold,
        bd.success_threshold,
    )?;
    let (half_open_max_requests, _) = c.count(
        &key("halfOpenMaxRequests"),
        cb.half_open_max_requests,
        bd.half_open_max_requests,
    )?;
    let (timeout, timeout_line) = c.duration(&key("timeout"), cb.timeout, bd.timeout)?;
    let (max_timeout, max_line) = c.duration(
        &key("maxTimeout"),
        cb.max_timeout,
        bd.max_timeout.max(timeout),
    )?;
    if max_timeout < timeout {
        return c.error(
            &key("maxTimeout"),
            max_line.or(timeout_line),
            format!("expected at least circuitBreaker.timeout ({timeout:?}), got {max_timeout:?}"),
        );
    }
    let rate = |k: &str, v, default| {
        c.percent(
            &key(k),
            v,
            default,
            "expected a share of calls above 0% and up to 100%, such as 50%",
            false,
        )
    };
    let failure_rate = rate(
        "failureRateThreshold",
        cb.failure_rate_threshold,
        rd.failure_rate,
    )?;
    let slow_call_rate = rate(
        "slowCallRateThreshold",
        cb.slow_call_rate_threshold,
        rd.slow_call_rate,
    )?;
    let slow_call_duration = match cb.slow_call_duration_threshold {
        None => None,
        Some(v) => Some(
            c.duration(&key("slowCallDurationThreshold"), Some(v), Duration::ZERO)?
                .0,
        ),
    };
    let (minimum_calls, _) = c.count(&key("minimumCalls"), cb.minimum_calls, rd.minimum_calls)?;
    let window = match cb.sliding_window {
        None => rd.window,
        Some(w) => {
            let line = Some(w.referenced.line());
            let expected = "expected a number of calls such as 100, or whole seconds such as 60s";
            match w.value {
                RawWindow::Calls(0) => return c.error(&key("slidingWindow"), line, expected),
                RawWindow::Calls(n) => WindowSize::Calls(n),
                RawWindow::Text(t) => {
                    match (t.trim().parse::<u32>(), parse_go_duration(t.trim())) {
                        (Ok(n), _) if n > 0 => WindowSize::Calls(n),
                        (_, Ok(d))
                            if d >= Duration::from_secs(1)
                                && d.subsec_nanos() == 0
                                && d.as_secs() <= u64::from(u32::MAX) =>
                        {
                            WindowSize::Seconds(d.as_secs() as u32)
                        }
                        _ => {
                            return c.error(
                                &key("slidingWindow"),
                                line,
                                format!("{expected}, got {t:?}"),
                            );
                        }
                    }
                }
            }
        }
    };
    Ok(Breaker {
        config: BreakerConfig {
            failure_threshold,
            success_threshold,
            timeout,
            max_timeout,
            half_open_max_requests,
            jitter: 0.0,
            rates: Some(RateRules {
                window,
                minimum_calls,
                failure_rate,
                slow_call_duration,
                slow_call_rate,
            }),
        },
        enabled: cb.enabled.unwrap_or(true),
        per_tool: cb.per_tool.unwrap_or(true),
    })
}

pub(super) fn failure_codes(
    c: &Checker<'_>,
    key: &str,
    raw: Option<Spanned<RawFailureCodes>>,
) -> Result<FailureCodes, ConfigFileError> {
    let Some(raw) = raw else {
        return Ok(FailureCodes::default());
    };
    let line = Some(raw.referenced.line());
    let codes = FailureCodes {
        add: raw.value.add.into_iter().collect(),
        remove: raw.value.remove.into_iter().collect(),
    };
    if let Some(both) = codes.add.intersection(&codes.remove).next() {
        return c.error(
            key,
            line,
            format!("code {both} is both in add and in remove"),
        );
    }
    Ok(codes)
}
