//! What to run: a program, its arguments, environment and directory, in the mcp.json
//! convention (`{command, args, env, cwd}`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A stdio MCP server to launch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdioCommand {
    /// The program: a path, or a name looked up in `PATH` (`npx`, `uvx`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to hale's own environment (values never logged).
    pub env: BTreeMap<String, String>,
    /// The directory it runs in; `None`: hale's.
    pub cwd: Option<PathBuf>,
}

impl StdioCommand {
    /// `command` with `args`.
    pub fn new(
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        StdioCommand {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..StdioCommand::default()
        }
    }
}

/// The command line as logs and `/status` show it: the program and its arguments, never
/// the environment's values.
impl fmt::Display for StdioCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command)?;
        for a in &self.args {
            if a.contains(char::is_whitespace) || a.is_empty() {
                write!(f, " {a:?}")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}
