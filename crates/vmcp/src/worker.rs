//! Which worker thread this is. The vMCP serves connections thread per core, as hale
//! proxy does: each worker runs a single-threaded runtime, and a connection lives on one
//! worker from accept to close. Each worker also has its own keep-alive connections and
//! shared session to every backend, so that a call and its backend exchange stay on one
//! thread: handing a request between threads cost more than all of hale's own work.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks this thread as worker `n`.
pub(crate) fn enter(n: usize) {
    WORKER.with(|w| w.set(Some(n)));
}

/// This thread's slot among `slots`: its worker number, or the last slot (the main
/// runtime: monitors, catalog upkeep, embedding hosts and tests).
pub(crate) fn slot(slots: usize) -> usize {
    WORKER
        .with(Cell::get)
        .filter(|&n| n + 1 < slots)
        .unwrap_or(slots - 1)
}

/// This thread's worker number, `None` off the workers (a per-thread pool then uses its
/// last pool, the main runtime's).
pub(crate) fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}
