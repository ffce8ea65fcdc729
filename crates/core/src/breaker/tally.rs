//! Counting a closed breaker's quick successes without a lock or a shared write.
//!
//! A rate window needs every call in its denominator, so a success is no longer a no-op
//! once the breaker judges rates. Taking the lock for each, or even one `fetch_add` on a
//! shared counter, would multiply the closed path's cost (a locked add alone costs more
//! than the whole path did). Instead each thread owns one cache line of the tally and
//! bumps a monotonic count there with a plain load and store: no read-modify-write, no
//! line bouncing between cores. Whoever holds the breaker's lock (a failure, a slow call,
//! a status read, the once-a-second fold of a time window) sums what every line gained
//! since it last looked.
//!
//! Threads get their line from a process-wide pool of indices, returned when the thread
//! ends; the first [`LINES`] live threads own a line each, any beyond share one overflow
//! line updated with `fetch_add` (correct, only slower).

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines owned by one thread each: a tokio runtime's workers on most machines.
pub(super) const LINES: usize = 16;

/// One counter alone on its cache line pair (adjacent-line prefetch pulls two).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line(AtomicU64);

/// The per-thread success counts of one breaker.
#[derive(Debug, Default)]
pub(super) struct Tally {
    lines: [Line; LINES],
    overflow: Line,
}

/// What the lock holder saw last: each line's count at the previous fold.
#[derive(Debug, Default)]
pub(super) struct Seen {
    lines: [u64; LINES],
    overflow: u64,
}

impl Tally {
    /// Counts one success on the calling thread's line.
    #[inline]
    pub(super) fn bump(&self) {
        match thread_line() {
            Some(i) => {
                let line = &self.lines[i].0;
                // This thread is the line's only writer: a plain load and store suffice.
                line.store(
                    line.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Release,
                );
            }
            None => {
                self.overflow.0.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The successes counted since the previous fold into `seen`.
    pub(super) fn fold(&self, seen: &mut Seen) -> u64 {
        let mut gained = 0u64;
        for (line, last) in self.lines.iter().zip(seen.lines.iter_mut()) {
            let now = line.0.load(Ordering::Acquire);
            gained = gained.wrapping_add(now.wrapping_sub(*last));
            *last = now;
        }
        let now = self.overflow.0.load(Ordering::Acquire);
        gained = gained.wrapping_add(now.wrapping_sub(seen.overflow));
        seen.overflow = now;
        gained
    }
}

/// Indices given back by threads that ended.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next never-used index.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A thread's index; returned to the pool when the thread ends.
struct Owned(Cell<Option<usize>>);

impl Owned {
    fn take() -> Owned {
        let reused = FREE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let index = reused.or_else(|| {
            let next = NEXT.fetch_add(1, Ordering::Relaxed);
            (next < LINES as u64).then_some(next as usize)
        });
        Owned(Cell::new(index))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(i) = self.0.take() {
            FREE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(i);
        }
    }
}

thread_local! {
    static LINE: Owned = Owned::take();
}

/// The calling thread's own line, or `None` when every line is owned by another live
/// thread (or the thread is being torn down).
#[inline]
fn thread_line() -> Option<usize> {
    LINE.try_with(|o| o.0.get()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_success_of_every_thread_is_folded_exactly_once() {
        let tally = Arc::new(Tally::default());
        let mut seen = Seen::default();
        // More threads than lines: some share the overflow line.
        let threads: Vec<_> = (0..LINES + 8)
            .map(|_| {
                let tally = tally.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        tally.bump();
                    }
                })
            })
            .collect();
        let mut folded = 0;
        for t in threads {
            folded += tally.fold(&mut seen);
            t.join().unwrap_or_else(|_| panic!("bump thread"));
        }
        folded += tally.fold(&mut seen);
        assert_eq!(folded, (LINES as u64 + 8) * 1000);
        assert_eq!(tally.fold(&mut seen), 0, "nothing is folded twice");
    }
}
