//! Span, attribute and metric names: the OpenTelemetry semantic conventions for MCP
//! (`semantic-conventions-genai`, `model/mcp/`), and hale's own under `hale.`.
//! (The `opentelemetry-semantic-conventions` crate marks the MCP ones deprecated, having
//! moved them out; they are spelled here.)

pub const MCP_METHOD_NAME: &str = "mcp.method.name";
pub const MCP_SESSION_ID: &str = "mcp.session.id";
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
pub const ERROR_TYPE: &str = "error.type";
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";

/// The backend a CLIENT span's request went to (ToolHive's name for it too, below).
pub const MCP_BACKEND_NAME: &str = "mcp.backend.name";
/// ToolHive's attribute for the workload a request went to.
pub const TARGET_WORKLOAD_NAME: &str = "target.workload_name";
/// The backend's circuit state when the request was admitted (or refused).
pub const CIRCUIT_STATE: &str = "hale.circuit.state";
/// True when the breaker refused the request (it never reached the backend).
pub const CIRCUIT_REFUSED: &str = "hale.circuit.refused";
/// True when the request was sent again on a new backend session.
pub const RETRIED: &str = "hale.retried";
/// True when the backend session had been resumed (another replica's, or recovered).
pub const RESUMED: &str = "hale.session.resumed";

/// The root span of a traced health check.
pub const HEALTH_CHECK: &str = "health_check";

pub const SERVER_OPERATION_DURATION: &str = "mcp.server.operation.duration";
pub const CLIENT_OPERATION_DURATION: &str = "mcp.client.operation.duration";
pub const SERVER_SESSION_DURATION: &str = "mcp.server.session.duration";
