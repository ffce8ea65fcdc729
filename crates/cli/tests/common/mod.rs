//! Helpers shared by the end-to-end tests of the `hale` binary.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::time::Duration;

use hale_mcp::{McpClient, Notification};
use serde_json::Value;
use tokio::sync::broadcast::Receiver;

pub(crate) fn has(tools: &[Value], name: &str) -> bool {
    tools.iter().any(|t| t["name"] == name)
}

/// Waits, notification by notification, until the advertised tools pass `test`: the
/// client learns of the change from `tools/list_changed`, not by polling.
pub(crate) async fn tools_changed_until(
    client: &McpClient,
    notes: &mut Receiver<Notification>,
    within: Duration,
    test: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    tokio::time::timeout(within, async {
        loop {
            while notes.recv().await.unwrap().method != "notifications/tools/list_changed" {}
            let tools = client.list_tools().await.unwrap();
            if test(&tools) {
                return tools;
            }
        }
    })
    .await
    .expect("a tools/list_changed notification after which the tools changed as expected")
}
