//! JSON-RPC as the client edge reads and writes it: one message per POST, answers as
//! bytes ready for a JSON body or an SSE event.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// A JSON-RPC error that hale (or a backend, relayed) answers with.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// The JSON-RPC code (hale's own are in [`hale_mcp::codes`]).
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured details.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data`.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The JSON-RPC `error` object.
    pub fn to_value(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            e["data"] = data.clone();
        }
        e
    }
}

/// One message a client sent.
#[derive(Debug)]
pub(crate) enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// The client's answer to a request of ours (sampling, elicitation).
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

#[derive(Deserialize)]
struct Raw {
    jsonrpc: Option<String>,
    id: Option<Value>,
    method: Option<String>,
    #[serde(default)]
    params: Value,
    result: Option<Value>,
    error: Option<Value>,
}

/// Why a body is not one JSON-RPC message: the HTTP status and the error to answer with.
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub(crate) status: StatusCode,
    pub(crate) error: RpcError,
}

/// Reads one JSON-RPC message. Batches (a 2025-03-26 feature removed since) and anything
/// that is not JSON-RPC 2.0 are refused with 400 and a JSON-RPC error.
pub(crate) fn parse(body: &[u8]) -> Result<Incoming, Unreadable> {
    let bad = |code: i64, message: String| Unreadable {
        status: StatusCode::BAD_REQUEST,
        error: RpcError::new(code, message),
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(bad(
            -32600,
            "JSON-RPC batches are not supported: send one message per POST".into(),
        ));
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| bad(-32700, format!("parse error: {e}")))?;
    if raw.jsonrpc.as_deref() != Some("2.0") {
        return Err(bad(
            -32600,
            "not a JSON-RPC 2.0 message (\"jsonrpc\": \"2.0\" is missing)".into(),
        ));
    }
    let params = match raw.params {
        Value::Null => json!({}),
        p @ Value::Object(_) => p,
        _ => return Err(bad(-32600, "params must be an object".into())),
    };
    match (raw.method, raw.id) {
        (Some(method), Some(id)) if is_id(&id) => Ok(Incoming::Request { id, method, params }),
        (Some(_), Some(_)) => Err(bad(-32600, "the id must be a string or a number".into())),
        (Some(method), None) => Ok(Incoming::Notification { method, params }),
        (None, Some(id)) => match (raw.result, raw.error) {
            (Some(result), None) => Ok(Incoming::Response {
                id,
                outcome: Ok(result),
            }),
            (None, Some(error)) => Ok(Incoming::Response {
                id,
                outcome: Err(error),
            }),
            _ => Err(bad(
                -32600,
                "a response carries exactly one of result and error".into(),
            )),
        },
        (None, None) => Err(bad(
            -32600,
            "neither a request, a notification nor a response".into(),
        )),
    }
}

fn is_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// The answer to request `id`, written straight out (no copy of the result).
pub(crate) fn answer(id: &Value, outcome: &Result<Value, RpcError>) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    let written = serde_json::to_writer(&mut out, id).and_then(|()| match outcome {
        Ok(result) => {
            out.extend_from_slice(b",\"result\":");
            serde_json::to_writer(&mut out, result)
        }
        Err(e) => {
            out.extend_from_slice(b",\"error\":");
            serde_json::to_writer(&mut out, &e.to_value())
        }
    });
    if written.is_err() {
        // Values always serialize; this is only a guard.
        return Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"cannot write the answer\"}}");
    }
    out.push(b'}');
    Bytes::from(out)
}

/// A notification.
pub(crate) fn notification(method: &str, params: &Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string())
}

/// A request of ours to the client.
pub(crate) fn request(id: &str, method: &str, params: &Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
}

/// One JSON-RPC message as an SSE event.
pub(crate) fn sse_event(message: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(message.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(message);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_rpc() {
        let ok: Value =
            serde_json::from_slice(&answer(&json!("a"), &Ok(json!({"x": [1]})))).unwrap();
        assert_eq!(
            ok,
            json!({"jsonrpc": "2.0", "id": "a", "result": {"x": [1]}})
        );
        let err: Value =
            serde_json::from_slice(&answer(&json!(2), &Err(RpcError::new(-31001, "gone"))))
                .unwrap();
        assert_eq!(
            err,
            json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -31001, "message": "gone"}})
        );
    }

    #[test]
    fn the_four_shapes_and_what_is_refused() {
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Incoming::Request { .. })
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification { .. })
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#),
            Ok(Incoming::Response { outcome: Ok(_), .. })
        ));
        for (body, code) in [
            (&b"{not json"[..], -32700),
            (
                b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
                -32600,
            ),
            (b"{\"id\":1,\"method\":\"ping\"}", -32600),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
                -32600,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[1]}",
                -32600,
            ),
            (b"{\"jsonrpc\":\"2.0\"}", -32600),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.error.code, code, "{}", String::from_utf8_lossy(body));
        }
        // Deeper than serde_json's recursion limit: an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let wrapped = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{deep}}}}}"#);
        assert_eq!(parse(wrapped.as_bytes()).unwrap_err().error.code, -32700);
    }
}
