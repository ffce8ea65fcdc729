//! Child processes for tests and benchmarks: killed when dropped, and started by reading
//! the line they print once they listen.

use std::io::{self, BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process that is killed (and reaped) when dropped, so that no test or
/// benchmark leaves one behind, whichever way it ends.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started process, the first line it printed, and the rest of its output.
#[derive(Debug)]
pub struct Announced {
    /// The process.
    pub process: Reaped,
    /// Its first line on stdout, trimmed (`listening on …`, an address, a URL).
    pub first_line: String,
    /// The lines after it.
    pub rest: Lines<BufReader<ChildStdout>>,
}

/// Starts `command` with stdout piped and waits for its first line: the servers of
/// this workspace print their address once they are bound.
pub fn spawn_announced(command: &mut Command) -> io::Result<Announced> {
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout was not piped"))?;
    let process = Reaped(child);
    let mut lines = BufReader::new(stdout).lines();
    let first_line = match lines.next() {
        Some(line) => line?.trim().to_string(),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{command:?} exited without printing a line"),
            ));
        }
    };
    Ok(Announced {
        process,
        first_line,
        rest: lines,
    })
}
