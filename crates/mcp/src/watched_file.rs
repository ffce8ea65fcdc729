//! A small file read at start and again when it changes (a token, a list of tokens):
//! Kubernetes rotates a mounted secret by swapping its files in place.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often a watched file is looked at again (its modification time and size): a
/// rotated secret is in use within this time, and a busy caller stats the file at most
/// this often.
pub const FILE_RECHECK: Duration = Duration::from_secs(1);

/// The largest file read: these files hold a token or a few hundred.
const MAX_FILE: u64 = 1024 * 1024;

/// A file's parsed content, read again when the file changes. If a later read fails,
/// the last good content stays in use (with a warning that names the file).
#[derive(Debug)]
pub struct WatchedFile<T> {
    path: PathBuf,
    parse: fn(&str) -> Result<T, String>,
    current: RwLock<Loaded<T>>,
}

#[derive(Debug)]
struct Loaded<T> {
    value: T,
    checked: Instant,
    /// Modification time and size when read: a change of either means read again.
    stamp: Option<(SystemTime, u64)>,
}

impl<T: Clone> WatchedFile<T> {
    /// Reads and parses `path` now. The error names the file and says what is wrong
    /// (never the content).
    pub fn open(path: &Path, parse: fn(&str) -> Result<T, String>) -> Result<Self, String> {
        let (value, stamp) = read(path, parse)?;
        Ok(WatchedFile {
            path: path.to_path_buf(),
            parse,
            current: RwLock::new(Loaded {
                value,
                checked: Instant::now(),
                stamp,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The content: the last read, read again first if the file changed (looked at no
    /// more than once per [`FILE_RECHECK`]).
    pub fn get(&self, now: Instant) -> T {
        {
            let loaded = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if now.saturating_duration_since(loaded.checked) < FILE_RECHECK {
                return loaded.value.clone();
            }
        }
        let mut loaded = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(loaded.checked) < FILE_RECHECK {
            return loaded.value.clone();
        }
        loaded.checked = now;
        let stamp = stamp(&self.path);
        if stamp.is_some() && stamp != loaded.stamp {
            match read(&self.path, self.parse) {
                Ok((value, stamp)) => {
                    loaded.value = value;
                    loaded.stamp = stamp;
                    tracing::info!(file = %self.path.display(), "a secret file changed: its new content is in use");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a secret file changed but cannot be used: the last good content stays in use");
                    loaded.stamp = stamp;
                }
            }
        }
        loaded.value.clone()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read<T>(
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Result<(T, Option<(SystemTime, u64)>), String> {
    let fail = |reason: String| format!("{}: {reason}", path.display());
    // The stamp is taken before the read: a change during it shows as a change next time.
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    if meta.len() > MAX_FILE {
        return Err(fail("larger than 1 MiB".into()));
    }
    let before = meta.modified().ok().map(|m| (m, meta.len()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let value = parse(&text).map_err(fail)?;
    Ok((value, before))
}
