//! The catalog's rhythm, driven by recording check results directly: a blip below the
//! threshold changes nothing, and a burst of changes is one notification.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_core::{CheckOutcome, FailureCategory};
use hale_testkit::{ServerConfig, TestServer};

mod common;
use common::*;

fn refused() -> CheckOutcome {
    CheckOutcome::failure(FailureCategory::ConnectionRefused, "refused (scripted)")
}

/// Counts the `tools/list_changed` notifications that arrive within `window`.
async fn count_tools_changed(
    notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>,
    window: Duration,
) -> usize {
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(note)) = tokio::time::timeout_at(deadline, notes.recv()).await {
        if note.method == "notifications/tools/list_changed" {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn a_blip_below_the_threshold_never_touches_the_catalog_and_a_burst_is_one_notification() {
    let a = TestServer::start(ServerConfig::default()).await.unwrap();
    let b = TestServer::start(ServerConfig::default()).await.unwrap();
    // Checks every 60 s: after the first round, only this test's records move the state.
    // Panic mode off: both backends go down here, and the test is about withdrawing them.
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: a, url: \"{}\"}}\n  - {{name: b, url: \"{}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 60s, unhealthyThreshold: 3, panicThreshold: 0%}}\n",
        a.url(),
        b.url()
    );
    let Started {
        stop, client, vmcp, ..
    } = start_with(&yaml, None).await;
    let before = names(&client.list_tools().await.unwrap());
    // The start-up change (empty catalog to full) is announced once; let it pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut notes = client.notifications();

    // Two failures of three, on both backends: a blip.
    for upstream in vmcp.upstreams().iter() {
        for _ in 0..2 {
            assert!(!upstream.health.record_check(refused()).routability_changed);
        }
    }
    vmcp.wake_catalog();
    assert_eq!(
        count_tools_changed(&mut notes, Duration::from_millis(400)).await,
        0,
        "no flapping"
    );
    assert_eq!(names(&client.list_tools().await.unwrap()), before);

    // The third failure on both, back to back: one rebuild, one notification.
    for upstream in vmcp.upstreams().iter() {
        assert!(upstream.health.record_check(refused()).routability_changed);
        vmcp.wake_catalog();
    }
    assert_eq!(
        count_tools_changed(&mut notes, Duration::from_millis(600)).await,
        1,
        "one notification per burst"
    );
    assert!(client.list_tools().await.unwrap().is_empty());

    stop.cancel();
    a.shutdown();
    b.shutdown();
}
