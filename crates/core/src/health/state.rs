use std::fmt;

/// The health of one backend, as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HealthState {
    /// No check has answered yet, and fewer than `unhealthyThreshold` have failed.
    Unknown,
    /// Answers, in time.
    Healthy,
    /// Answers, but slower than `degradedLatency`. Still routable.
    Degraded,
    /// `unhealthyThreshold` checks in a row failed.
    Unhealthy,
    /// Answers 401/403: reachable, but unusable without credentials.
    Unauthenticated,
}

impl HealthState {
    /// Every state, in a stable order (for one-hot metrics).
    pub const ALL: [HealthState; 5] = [
        HealthState::Unknown,
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::Unhealthy,
        HealthState::Unauthenticated,
    ];

    /// The name used in status JSON, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unauthenticated => "unauthenticated",
        }
    }

    /// Whether requests may be sent to a backend in this state (the breaker has a say too).
    pub const fn is_routable(self) -> bool {
        matches!(self, HealthState::Healthy | HealthState::Degraded)
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
