//! List requests fan out: every routable upstream refreshes its lists at once, and
//! `fail` / `best_effort` decide what a failure among them does to the answer.

use futures_util::StreamExt;

use super::upstreams::Upstreams;
use crate::config::PartialFailureMode;

/// Refreshes every routable upstream's lists at once; returns the failures (under
/// `fail`, only the first: the rest are cancelled).
pub(crate) async fn fan_out(
    upstreams: &Upstreams,
    mode: PartialFailureMode,
) -> Vec<(String, String)> {
    let stop_at_first = mode == PartialFailureMode::Fail;
    let mut branches: futures_util::stream::FuturesUnordered<_> = upstreams
        .iter()
        .filter(|u| u.routable())
        .map(|u| async move { (u, u.refresh_lists().await) })
        .collect();
    let mut failures = Vec::new();
    while let Some((u, result)) = branches.next().await {
        if let Err(e) = result
            && u.health.unusable().is_none()
        {
            let name = u.name().to_string();
            metrics::counter!("toolhive_vmcp_partial_failures_total", "backend" => name.clone())
                .increment(1);
            failures.push((name, e));
            if stop_at_first {
                // `fail`: the answer is an error now; the other branches are cancelled
                // (dropped) rather than awaited.
                break;
            }
        }
    }
    failures
}

/// Lists the routable upstreams whose lists were never fetched (or were dropped as
/// stale); true if there were any. Nothing is asked of upstreams already listed.
pub(crate) async fn refresh_unlisted(upstreams: &Upstreams) -> bool {
    let unlisted: Vec<_> = upstreams
        .iter()
        .filter(|u| u.routable() && u.lists().is_none())
        .collect();
    let refreshed = !unlisted.is_empty();
    futures_util::future::join_all(unlisted.into_iter().map(|u| u.refresh_lists())).await;
    refreshed
}
