//! A server's own requests to its client (sampling, elicitation, roots), answered by
//! whoever made the request they belong to.
//!
//! A gateway cannot answer `sampling/createMessage` itself: only the end client it
//! serves can. So a request the server sends while answering one of ours (on that
//! request's own stream, as streamable HTTP servers do) goes to the handler given with
//! our request, and the handler's answer is posted back. Without a handler, and for
//! requests on the session's standalone stream, hale declines them (`-32601`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

/// A request from the server to the client.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRequest {
    /// E.g. `sampling/createMessage`, `elicitation/create`.
    pub method: String,
    /// Its params, if any.
    pub params: Option<Value>,
}

/// Why a server request could not be answered: sent back as a JSON-RPC error.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRequestError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

/// What a handler returns: the result object, or an error.
pub type ServerRequestFuture =
    Pin<Box<dyn Future<Output = Result<Value, ServerRequestError>> + Send>>;

/// Answers the server requests that belong to one of our requests.
pub type ServerRequestHandler = Arc<dyn Fn(ServerRequest) -> ServerRequestFuture + Send + Sync>;

/// Receives the notifications a server sends on one request's stream (progress, log
/// messages), so a gateway can pass them to the client whose request it is.
pub type NotificationSink = Arc<dyn Fn(crate::Notification) + Send + Sync>;

/// What to do with the messages a server sends while answering one request, on that
/// request's own stream. Without a hook, requests are declined and notifications go to
/// [`crate::McpClient::notifications`].
#[derive(Clone, Default)]
pub struct CallHooks {
    /// Answers the server's requests (sampling, elicitation).
    pub requests: Option<ServerRequestHandler>,
    /// Takes the server's notifications.
    pub notifications: Option<NotificationSink>,
}

impl std::fmt::Debug for CallHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHooks")
            .field("requests", &self.requests.is_some())
            .field("notifications", &self.notifications.is_some())
            .finish()
    }
}
