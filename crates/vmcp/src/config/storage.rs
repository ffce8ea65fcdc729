//! `sessionStorage`: where client sessions live beyond this process.

use std::time::Duration;

use hale_core::parse_go_duration;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError};

/// `sessionStorage`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SessionStorage {
    /// Sessions live in this process only.
    #[default]
    Memory,
    /// Sessions live in Redis (or Valkey), shared by every replica.
    Redis(RedisSettings),
}

/// Where Redis is and how hale uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`.
    pub address: String,
    /// The database number.
    pub db: u32,
    /// Prepended to every key and channel.
    pub key_prefix: String,
    /// The environment variable holding the password (its value is never printed).
    pub password_env: Option<String>,
    /// The password, read from `password_env` at start.
    pub(crate) password: Option<Secret>,
    /// How long one store operation may take before the request that needed it gets an
    /// error.
    pub timeout: Duration,
}

/// A secret: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawStorage {
    provider: Spanned<String>,
    address: Option<Spanned<String>>,
    db: Option<Spanned<u32>>,
    key_prefix: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// Checks `sessionStorage`.
pub(crate) fn storage(
    c: &Checker<'_>,
    raw: Option<Spanned<RawStorage>>,
) -> Result<SessionStorage, ConfigFileError> {
    let Some(raw) = raw else {
        return Ok(SessionStorage::Memory);
    };
    let line = raw.referenced.line();
    let raw = raw.value;
    match raw.provider.value.trim() {
        "memory" => {
            if raw.address.is_some() {
                return c.error(
                    "sessionStorage.address",
                    Some(line),
                    "is for provider redis",
                );
            }
            return Ok(SessionStorage::Memory);
        }
        "redis" | "valkey" => {}
        other => {
            return c.error(
                "sessionStorage.provider",
                Some(raw.provider.referenced.line()),
                format!("expected memory or redis, got {other:?}"),
            );
        }
    }
    let Some(address) = raw.address else {
        return c.error(
            "sessionStorage.address",
            Some(line),
            "required with provider redis: host:port, such as redis:6379",
        );
    };
    let addr = address.value.trim().to_string();
    if addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return c.error(
            "sessionStorage.address",
            Some(address.referenced.line()),
            format!("expected host:port, such as redis:6379, got {addr:?}"),
        );
    }
    let password = match &raw.password_env {
        None => None,
        Some(var) => {
            let name = var.value.trim();
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Some(Secret(v)),
                _ => {
                    return c.error(
                        "sessionStorage.passwordEnv",
                        Some(var.referenced.line()),
                        format!("the environment variable {name} is not set or empty"),
                    );
                }
            }
        }
    };
    let timeout = match raw.timeout {
        None => Duration::from_secs(1),
        Some(t) => match parse_go_duration(t.value.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                return c.error(
                    "sessionStorage.timeout",
                    Some(t.referenced.line()),
                    "must be positive",
                );
            }
            Err(e) => {
                return c.error(
                    "sessionStorage.timeout",
                    Some(t.referenced.line()),
                    e.to_string(),
                );
            }
        },
    };
    Ok(SessionStorage::Redis(RedisSettings {
        address: addr,
        db: raw.db.map_or(0, |d| d.value),
        key_prefix: raw
            .key_prefix
            .map_or_else(|| "hale:vmcp:".to_string(), |p| p.value),
        password_env: raw.password_env.map(|v| v.value.trim().to_string()),
        password,
        timeout,
    }))
}
