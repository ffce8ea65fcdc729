//! A stdio backend's keys, in the mcp.json convention: `command`, `args`, `env`, `cwd`,
//! and hale's `isolation`.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError};

/// The raw keys of a stdio backend.
pub(crate) struct RawStdio {
    pub(crate) command: Spanned<String>,
    pub(crate) args: Vec<String>,
    pub(crate) env: BTreeMap<String, Spanned<String>>,
    pub(crate) cwd: Option<Spanned<String>>,
    pub(crate) isolation: Option<Spanned<String>>,
}

/// Checks a stdio backend at `key` (`backends[N]`).
pub(crate) fn stdio(
    c: &Checker<'_>,
    key: &str,
    raw: RawStdio,
) -> Result<hale_stdio::StdioConfig, ConfigFileError> {
    let program = raw.command.value.trim().to_string();
    if program.is_empty() {
        return c.error(
            &format!("{key}.command"),
            Some(raw.command.referenced.line()),
            "expected the program to run (a path, or a name on PATH such as npx or uvx)",
        );
    }
    let mut env = BTreeMap::new();
    for (name, value) in raw.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return c.error(
                &format!("{key}.env"),
                Some(value.referenced.line()),
                format!("{name:?} is not an environment variable's name"),
            );
        }
        env.insert(name, value.value);
    }
    let cwd = match raw.cwd {
        None => None,
        Some(cwd) => {
            let path = std::path::PathBuf::from(cwd.value.trim());
            if !path.is_dir() {
                return c.error(
                    &format!("{key}.cwd"),
                    Some(cwd.referenced.line()),
                    format!("{} is not a directory", path.display()),
                );
            }
            Some(path)
        }
    };
    let isolation = match raw.isolation {
        None => hale_stdio::Isolation::Shared,
        Some(i) => match i.value.trim() {
            "shared" => hale_stdio::Isolation::Shared,
            "perSession" => hale_stdio::Isolation::PerSession,
            other => {
                return c.error(
                    &format!("{key}.isolation"),
                    Some(i.referenced.line()),
                    format!("expected shared (one process for every client) or perSession (one per client session), got {other:?}"),
                );
            }
        },
    };
    Ok(hale_stdio::StdioConfig {
        isolation,
        ..hale_stdio::StdioConfig::new(hale_stdio::StdioCommand {
            command: program,
            args: raw.args,
            env,
            cwd,
        })
    })
}
