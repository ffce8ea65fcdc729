//! Checking a configuration file: one error naming the file, the key path, the line and
//! what would be accepted.

use std::fmt;
use std::time::Duration;

use hale_core::parse_go_duration;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A configuration that cannot be used: where, and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFileError {
    /// The file (or `--backend` flags).
    pub file: String,
    /// The key path, e.g. `operational.failureHandling.unhealthyThreshold`.
    pub key: String,
    /// The line, when known.
    pub line: Option<u64>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// A share written as `50%` or `50`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPercent {
    Number(f64),
    Text(String),
}

pub(crate) struct Checker<'a> {
    file: &'a str,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Checker { file }
    }

    pub(crate) fn error<T>(
        &self,
        key: &str,
        line: Option<u64>,
        message: impl Into<String>,
    ) -> Result<T, ConfigFileError> {
        Err(ConfigFileError {
            file: self.file.to_string(),
            key: key.to_string(),
            line,
            message: message.into(),
        })
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        value: Option<Spanned<String>>,
        default: Duration,
    ) -> Result<(Duration, Option<u64>), ConfigFileError> {
        let Some(v) = value else {
            return Ok((default, None));
        };
        let line = Some(v.referenced.line());
        match parse_go_duration(v.value.trim()) {
            Ok(d) if !d.is_zero() => Ok((d, line)),
            Ok(_) => self.error(key, line, "expected a positive duration such as 30s, got 0"),
            Err(e) => self.error(key, line, e.to_string()),
        }
    }

    pub(crate) fn count(
        &self,
        key: &str,
        value: Option<Spanned<u32>>,
        default: u32,
    ) -> Result<(u32, Option<u64>), ConfigFileError> {
        match value {
            None => Ok((default, None)),
            Some(v) if v.value == 0 => self.error(
                key,
                Some(v.referenced.line()),
                "expected a whole number of at least 1, got 0",
            ),
            Some(v) => Ok((v.value, Some(v.referenced.line()))),
        }
    }

    /// A share from `50%` or `50` as a ratio: within (0, 100] %, or [0, 100] % when
    /// `zero_ok`; `expected` says what else the key takes.
    pub(crate) fn percent(
        &self,
        key: &str,
        value: Option<Spanned<RawPercent>>,
        default: f64,
        expected: &str,
        zero_ok: bool,
    ) -> Result<f64, ConfigFileError> {
        let Some(p) = value else {
            return Ok(default);
        };
        let number = match &p.value {
            RawPercent::Number(n) => Some(*n),
            RawPercent::Text(t) => t.trim().trim_end_matches('%').trim().parse().ok(),
        };
        match number {
            Some(n) if n <= 100.0 && (n > 0.0 || (zero_ok && n == 0.0)) => Ok(n / 100.0),
            _ => self.error(key, Some(p.referenced.line()), expected),
        }
    }
}
