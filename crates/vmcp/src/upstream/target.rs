//! Where an upstream is and how hale's clients reach it: its configuration entry, the
//! deadlines and limits that apply, and its keep-alive connections (one pool per
//! thread, shared by every client of the backend).

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError, Pool};
use serde_json::Value;

use crate::config::BackendConfig;

/// One backend's address and client settings.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) config: BackendConfig,
    pub(crate) request_timeout: Duration,
    pub(crate) max_list_items: u32,
    pub(crate) pool: Pool,
}

/// Who a client is for.
pub(crate) enum ClientKind {
    /// A shared request client; `listen` for the one that hears notifications.
    Shared { listen: bool },
    /// A client session's own handshake-era session, with its capabilities and info,
    /// and who answers what the backend asks outside any call.
    Session {
        capabilities: Value,
        client_info: Value,
        asks: Option<hale_mcp::ServerRequestHandler>,
    },
}

/// The options of a client session's own backend session.
fn session_options(
    base: ClientOptions,
    capabilities: Value,
    client_info: Value,
    asks: Option<hale_mcp::ServerRequestHandler>,
) -> ClientOptions {
    // A client that declared roots is asked for them outside any call (servers ask
    // right after the handshake, on the session's GET stream): that stream is held open
    // for it, and what arrives on it goes to the client. Otherwise a session is a
    // header, not a connection: no GET stream unless the client subscribes to something.
    let listen = capabilities.get("roots").is_some();
    ClientOptions {
        capabilities: Some(capabilities),
        client_info: Some(client_info),
        listen,
        standalone_requests: asks.map(hale_mcp::StandaloneRequests),
        // Thousands of these may be held, mostly quiet; their notifications (outside a
        // call) are forwarded to the client as they come.
        notification_buffer: 4,
        // A client session's own backend session is a handshake-era session.
        era: hale_mcp::Era::Legacy,
        ..base
    }
}

impl Target {
    /// The backend's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Connects a client of `kind`.
    pub(crate) async fn connect(&self, kind: ClientKind) -> Result<McpClient, McpError> {
        let options = match kind {
            ClientKind::Shared { listen } => ClientOptions {
                // Sampling and elicitation requests are relayed to the calling client.
                relays_client_features: true,
                // What that lets it declare: callers who declared the same are shown
                // what these clients list.
                capabilities: Some(super::Profile::shared()),
                // The main slot's session listens for list changes and updates; the
                // workers' would only say the same again.
                listen,
                max_list_items: Some(self.max_list_items as usize),
                // 2026-07-28 where the backend speaks it; the handshake where it does not.
                era: hale_mcp::Era::Auto,
                ..self.base()
            },
            ClientKind::Session {
                capabilities,
                client_info,
                asks,
            } => session_options(self.base(), capabilities, client_info, asks),
        };
        McpClient::connect(&self.config.url, options).await
    }

    /// A client of backend session `session_id`, opened earlier by another replica (or
    /// before a restart), taken over with no handshake.
    pub(crate) async fn resume(
        &self,
        kind: ClientKind,
        session_id: &str,
        info: hale_mcp::ServerInfo,
    ) -> Result<McpClient, McpError> {
        let ClientKind::Session {
            capabilities,
            client_info,
            asks,
        } = kind
        else {
            return self.connect(kind).await;
        };
        let options = session_options(self.base(), capabilities, client_info, asks);
        McpClient::resume(&self.config.url, options, session_id, info).await
    }

    fn base(&self) -> ClientOptions {
        ClientOptions {
            transport: self.config.transport,
            request_timeout: self.request_timeout,
            client_name: "hale-vmcp".into(),
            pool: Some(self.pool.clone()),
            credentials: Some(self.config.credentials.clone()),
            ..ClientOptions::default()
        }
    }

    /// The options of the health probe: its own client, `server/discover` for a
    /// 2026-07-28 server and `ping` on a session otherwise.
    pub(crate) fn probe_options(&self) -> ClientOptions {
        ClientOptions {
            transport: self.config.transport,
            client_name: "hale-vmcp-health".into(),
            era: hale_mcp::Era::Auto,
            credentials: Some(self.config.credentials.clone()),
            tls: self.config.tls.clone(),
            ..ClientOptions::default()
        }
    }
}
