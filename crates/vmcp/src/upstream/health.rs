//! One backend's health: its tracker and circuit breaker, fed by health checks (and, on
//! the request path, by real calls), whether it is routable, and what `/status` shows of
//! it. Pure bookkeeping: no I/O, the time from tokio's clock (paused in tests).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hale_core::{
    BreakerConfig, BreakerState, CheckOutcome, Clock, ConfigError, HealthConfig, HealthState,
    HealthTracker, HealthTransition, SharedBreaker, Transition,
};
use serde_json::{Value, json};

/// The clock backends use: tokio's, so that paused-time tests drive it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The breaker's jitter seed for backend `name` (FNV-1a: stable across runs).
pub(crate) fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// What one recorded check changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The health transition, if any.
    pub health: Option<HealthTransition>,
    /// The breaker transition, if any.
    pub circuit: Option<Transition>,
    /// Whether the backend went from routable to not, or back.
    pub routability_changed: bool,
}

/// A backend's health and breaker.
#[derive(Debug)]
pub struct Health {
    health: Mutex<HealthTracker>,
    /// The breaker every call to this backend goes through.
    pub breaker: SharedBreaker<TokioClock>,
    /// Each tool's own breaker, inside the backend's.
    pub(crate) tool_circuits: super::tools::ToolCircuits,
    /// Tools it offers (for `/status`).
    tools: Mutex<usize>,
    /// Maps monotonic instants to wall-clock time for display.
    epoch: (Instant, SystemTime),
    /// Notified when the breaker changes state, so the monitor (asleep until its next
    /// check) can wake for an open breaker's timeout, whoever opened it.
    pub(crate) breaker_moved: tokio::sync::Notify,
    /// Notified (all waiters) when the backend stops being routable: calls in flight to
    /// it end at once instead of waiting out their timeout.
    pub(crate) withdrawn: tokio::sync::Notify,
    /// Whether real calls made it `degraded` at the last look (passive health).
    passive: std::sync::atomic::AtomicBool,
    /// Why the backend cannot be used although it answers (its listing was refused, or
    /// it lists more than hale takes); `None` when usable.
    unusable: Mutex<Option<String>>,
}

impl Health {
    /// A backend in state `unknown` with a closed breaker; `name` seeds the breaker's
    /// jitter. `enforce` false makes the breaker only track and report
    /// (`circuitBreaker.enabled: false`); `per_tool` gives each tool a breaker too
    /// (`circuitBreaker.perTool`).
    pub fn new(
        name: &str,
        health: &HealthConfig,
        breaker: &BreakerConfig,
        enforce: bool,
        per_tool: bool,
    ) -> Result<Self, ConfigError> {
        let shared = SharedBreaker::new(breaker, seed(name), TokioClock)?;
        if !enforce {
            shared.disable();
        }
        Ok(Health {
            health: Mutex::new(HealthTracker::new(health)?),
            breaker: shared,
            tool_circuits: super::tools::ToolCircuits::new(breaker, enforce, per_tool, seed(name)),
            passive: std::sync::atomic::AtomicBool::new(false),
            tools: Mutex::new(0),
            epoch: (TokioClock.now(), SystemTime::now()),
            breaker_moved: tokio::sync::Notify::new(),
            withdrawn: tokio::sync::Notify::new(),
            unusable: Mutex::new(None),
        })
    }

    fn tracker(&self) -> MutexGuard<'_, HealthTracker> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a health check: the tracker judges it, and the breaker sees it as a probe.
    pub fn record_check(&self, outcome: CheckOutcome) -> Changes {
        let before = self.routable();
        let circuit = self.breaker.observe(outcome.call_outcome());
        let health = self.tracker().record(TokioClock.now(), outcome);
        Changes {
            health,
            circuit,
            routability_changed: before != self.routable(),
        }
    }

    /// Records a failed fan-out request (a list refresh) with the tracker, as spec §7.2
    /// asks: it counts towards `unhealthyThreshold` like a failed check. The breaker
    /// has already seen it as a call.
    pub fn record_fan_out_failure(&self, failure: CheckOutcome) -> Changes {
        let before = self.routable();
        let health = self.tracker().record(TokioClock.now(), failure);
        Changes {
            health,
            circuit: None,
            routability_changed: before != self.routable(),
        }
    }

    /// Moves an open breaker on once its timeout has passed.
    pub fn tick(&self) -> Changes {
        let before = self.routable();
        let circuit = self.breaker.handle_timeout();
        Changes {
            health: None,
            circuit,
            routability_changed: before != self.routable(),
        }
    }

    /// Passive health: why real calls say the backend is sick although its checks pass,
    /// or `None`. A failure rate of half `failureRateThreshold` or more (a slow-call rate
    /// of half `slowCallRateThreshold`), over at least `minimumCalls` calls, is reported
    /// before the breaker trips at the full rate; once reported, it holds until the rate
    /// falls below a quarter of the threshold (a rate hovering at the bar does not flap).
    /// Folds the lock-free counts: for status pages and after failures, not every call.
    pub fn passive_reason(&self) -> Option<String> {
        let rules = self.breaker.rates()?;
        let w = self.breaker.window()?;
        if w.calls == 0 || w.calls < rules.minimum_calls {
            return None;
        }
        let bar = if self.passive.load(std::sync::atomic::Ordering::Acquire) {
            4.0
        } else {
            2.0
        };
        let share = |n: u32| f64::from(n) / f64::from(w.calls);
        let percent = |n: u32| (u64::from(n) * 100) / u64::from(w.calls);
        if share(w.failures) >= rules.failure_rate / bar {
            return Some(format!(
                "{} % of the last {} calls failed while health checks pass",
                percent(w.failures),
                w.calls
            ));
        }
        match rules.slow_call_duration {
            Some(slow) if share(w.slow) >= rules.slow_call_rate / bar => Some(format!(
                "{} % of the last {} calls took {slow:?} or longer while health checks pass",
                percent(w.slow),
                w.calls
            )),
            _ => None,
        }
    }

    /// The health state operators see: the checks' verdict, lowered from healthy to
    /// degraded by passive health; with the reason when there is one.
    pub fn shown(&self) -> (HealthState, Option<String>) {
        let state = self.health();
        if matches!(state, HealthState::Healthy | HealthState::Degraded)
            && let Some(why) = self.passive_reason()
        {
            return (HealthState::Degraded, Some(why));
        }
        (state, None)
    }

    /// Looks at passive health again; true if it changed (the health gauges then need
    /// publishing).
    pub(crate) fn passive_changed(&self) -> bool {
        let now = self.passive_reason().is_some();
        self.passive.swap(now, std::sync::atomic::Ordering::AcqRel) != now
    }

    /// True once the backend has been checked at least once.
    pub fn checked(&self) -> bool {
        self.tracker().last_check().is_some()
    }

    /// How long the last check's answer took.
    pub fn last_latency(&self) -> Option<std::time::Duration> {
        self.tracker().last_latency()
    }

    /// The current health state.
    pub fn health(&self) -> HealthState {
        self.tracker().state()
    }

    /// Routable: healthy or degraded, the breaker not open, and usable.
    pub fn routable(&self) -> bool {
        self.reachable() && self.unusable().is_none()
    }

    /// Healthy or degraded with the breaker not open: worth trying to list.
    pub(crate) fn reachable(&self) -> bool {
        self.health().is_routable() && self.breaker.state() != BreakerState::Open
    }

    /// Why the backend answers but cannot be used, if it cannot.
    pub fn unusable(&self) -> Option<String> {
        self.unusable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the backend unusable for `why` (`None`: usable again); true if routability
    /// changed.
    pub(crate) fn set_unusable(&self, why: Option<String>) -> bool {
        let before = self.routable();
        *self.unusable.lock().unwrap_or_else(PoisonError::into_inner) = why;
        before != self.routable()
    }

    /// Whether a client may cache this backend's lists now (healthy, breaker closed, no
    /// failed check pending), and when it was last checked.
    pub(crate) fn cache_hint(&self) -> (bool, Option<Instant>) {
        let t = self.tracker();
        let stable = t.state() == HealthState::Healthy
            && t.consecutive_failures() == 0
            && self.breaker.state() == BreakerState::Closed;
        (stable, t.last_check())
    }

    /// Records how many tools the backend offers.
    pub fn set_tools(&self, count: usize) {
        *self.tools.lock().unwrap_or_else(PoisonError::into_inner) = count;
    }

    pub(crate) fn wall(&self, at: Instant) -> String {
        let since = at.saturating_duration_since(self.epoch.0);
        humantime::format_rfc3339_millis(self.epoch.1 + since).to_string()
    }

    /// The health part of the backend's `/status` entry (camelCase).
    pub fn status(&self) -> Value {
        let (shown, passive) = self.shown();
        let t = self.tracker();
        let b = self.breaker.snapshot();
        let state = match (b.override_, b.state) {
            (Some(hale_core::Override::Disabled), s) => format!("{} (disabled)", s.as_str()),
            (_, s) => s.as_str().to_string(),
        };
        // An unauthenticated backend has no failure to show: say what it needs.
        let reason = (t.state() == hale_core::HealthState::Unauthenticated)
            .then(|| "it answers 401/403 to hale's requests: check its headers and auth (tokenEnv, tokenFile) in the configuration".to_string())
            .or(passive);
        json!({
            "reason": reason,
            "health": shown.as_str(),
            "circuit": {
                "state": state,
                "override": b.override_.map(|o| o.as_str()),
                "since": b.since.map(|s| self.wall(s)),
                "retryAt": b.retry_at.map(|s| self.wall(s)),
            },
            "consecutiveFailures": t.consecutive_failures(),
            "lastCheck": t.last_check().map(|s| self.wall(s)),
            "lastSuccess": t.last_success().map(|s| self.wall(s)),
            "lastError": t.last_error().map(|e| json!({"category": e.failure.category.as_str(), "message": e.failure.message})),
            "latencyMs": t.last_latency().map(duration_ms),
            "unusable": self.unusable(),
            "tools": *self.tools.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }
}

fn duration_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_core::FailureCategory;

    fn backend(unhealthy: u32, failures_to_open: u32) -> Health {
        Health::new(
            "weather",
            &HealthConfig {
                unhealthy_threshold: unhealthy,
                ..HealthConfig::default()
            },
            &BreakerConfig {
                failure_threshold: failures_to_open,
                ..BreakerConfig::default()
            },
            true,
            true,
        )
        .unwrap()
    }

    fn refused() -> CheckOutcome {
        CheckOutcome::failure(FailureCategory::ConnectionRefused, "connection refused")
    }

    #[tokio::test(start_paused = true)]
    async fn routable_needs_a_good_health_state_and_a_breaker_that_is_not_open() {
        let b = backend(2, 3);
        assert!(!b.routable(), "unknown is not routable");
        let c = b.record_check(CheckOutcome::success(Duration::from_millis(5)));
        assert!(c.routability_changed && b.routable());
        assert!(
            !b.record_check(refused()).routability_changed,
            "one failure is a blip"
        );
        let c = b.record_check(refused());
        assert_eq!(c.health.unwrap().to, HealthState::Unhealthy);
        assert!(c.routability_changed && !b.routable());
        // The third failed probe opens the breaker too.
        let c = b.record_check(refused());
        assert_eq!(c.circuit.unwrap().to, BreakerState::Open);
        // Back: health recovers, and a successful probe moves the breaker to half-open.
        let c = b.record_check(CheckOutcome::success(Duration::from_millis(5)));
        assert_eq!(c.health.unwrap().to, HealthState::Healthy);
        assert_eq!(c.circuit.unwrap().to, BreakerState::HalfOpen);
        assert!(c.routability_changed && b.routable());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_withdraws_a_healthy_backend_until_its_timeout() {
        let b = backend(5, 1);
        b.record_check(CheckOutcome::success(Duration::from_millis(5)));
        let permit = b.breaker.try_acquire().unwrap();
        let t = permit.record(hale_core::CallOutcome::Failure).unwrap();
        assert_eq!(t.to, BreakerState::Open);
        assert!(!b.routable(), "healthy but open");
        tokio::time::advance(Duration::from_secs(60)).await;
        let c = b.tick();
        assert_eq!(c.circuit.unwrap().to, BreakerState::HalfOpen);
        assert!(c.routability_changed && b.routable());
    }

    #[tokio::test(start_paused = true)]
    async fn status_shows_the_record() {
        let b = backend(1, 5);
        b.set_tools(3);
        b.record_check(refused());
        let s = b.status();
        assert_eq!(s["health"], "unhealthy");
        assert_eq!(s["circuit"]["state"], "closed");
        assert_eq!(s["consecutiveFailures"], 1);
        assert_eq!(s["lastError"]["category"], "connection_refused");
        assert_eq!(s["tools"], 3);
        assert!(s["lastCheck"].as_str().unwrap().ends_with('Z'));
        assert!(s["lastSuccess"].is_null());
    }
}
