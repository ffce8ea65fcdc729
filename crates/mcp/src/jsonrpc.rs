//! JSON-RPC 2.0 messages as MCP uses them: built and read as `serde_json::Value`, so that
//! whatever a backend puts in a result (tool schemas, `_meta`, fields of newer protocol
//! revisions) passes through an aggregator untouched.

use serde_json::{Value, json};

/// A request with a numeric id.
pub(crate) fn request(id: u64, method: &str, params: Option<Value>) -> Value {
    match params {
        Some(params) => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        None => json!({"jsonrpc": "2.0", "id": id, "method": method}),
    }
}

/// A notification (no id, no answer).
pub(crate) fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

/// A successful response to a request the server sent us.
pub(crate) fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response to a request the server sent us.
pub(crate) fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A message from the server, sorted by kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// An answer to one of our requests.
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    /// A notification, such as `notifications/tools/list_changed`.
    Notification(Notification),
    /// A request from the server (ping, sampling, elicitation, roots).
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

/// A notification from a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method, e.g. `notifications/tools/list_changed`.
    pub method: String,
    /// Its params, if any.
    pub params: Option<Value>,
}

/// Reads one JSON-RPC message, or says what is wrong with it.
pub(crate) fn parse(message: Value) -> Result<Message, String> {
    let Value::Object(mut m) = message else {
        return Err(format!("expected a JSON object, got {}", kind(&message)));
    };
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("missing \"jsonrpc\": \"2.0\"".into());
    }
    let id = m.remove("id");
    let method = m.remove("method");
    match (id, method) {
        (Some(id), Some(Value::String(method))) => Ok(Message::Request {
            id,
            method,
            params: m.remove("params"),
        }),
        (None, Some(Value::String(method))) => Ok(Message::Notification(Notification {
            method,
            params: m.remove("params"),
        })),
        (Some(id), None) => {
            if let Some(result) = m.remove("result") {
                return Ok(Message::Response {
                    id,
                    outcome: Ok(result),
                });
            }
            let Some(Value::Object(mut e)) = m.remove("error") else {
                return Err("a response needs \"result\" or an \"error\" object".into());
            };
            let code = e
                .get("code")
                .and_then(Value::as_i64)
                .ok_or("error without a numeric code")?;
            let message = match e.remove("message") {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            Ok(Message::Response {
                id,
                outcome: Err(RpcError {
                    code,
                    message,
                    data: e.remove("data"),
                }),
            })
        }
        (_, Some(other)) => Err(format!("\"method\" must be a string, got {}", kind(&other))),
        (None, None) => Err("neither a request, a notification nor a response".into()),
    }
}

/// Reads a body that should hold one JSON-RPC message.
pub(crate) fn parse_bytes(body: &[u8]) -> Result<Message, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("invalid JSON ({e}): {}", preview(body)))?;
    parse(value)
}

/// The first bytes of a body, for error messages.
pub(crate) fn preview(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if body.len() > MAX {
        format!("{text}…")
    } else if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_string()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `_meta` keys of the 2026-07-28 request envelope: who asks, in which revision, with
/// what capabilities. They belong to one hop: a gateway that forwards a 2026-07-28
/// client's request on a handshake-era session must not pass them on (SDK 2.x servers
/// refuse a handshake-era request that carries them), and on a 2026-07-28 connection the
/// protocol version is the sender's own.
pub(crate) const ENVELOPE_KEYS: [&str; 6] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/logLevel",
    "io.modelcontextprotocol/serverInfo",
    "io.modelcontextprotocol/subscriptionId",
];

/// `message` as a handshake-era session must carry it: without the 2026-07-28 envelope
/// in `params._meta` (and without a `_meta` left empty by that). Borrowed when there was
/// nothing to take out, which is every request of a handshake-era client.
pub(crate) fn handshake_era(message: &Value) -> std::borrow::Cow<'_, Value> {
    let carries =
        |m: &serde_json::Map<String, Value>| ENVELOPE_KEYS.iter().any(|k| m.contains_key(*k));
    match message.pointer("/params/_meta") {
        Some(Value::Object(meta)) if carries(meta) => {}
        _ => return std::borrow::Cow::Borrowed(message),
    }
    let mut message = message.clone();
    if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut)
        && let Some(Value::Object(meta)) = params.get_mut("_meta")
    {
        for key in ENVELOPE_KEYS {
            meta.remove(key);
        }
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    std::borrow::Cow::Owned(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_era_request_loses_the_2026_envelope_and_keeps_the_rest() {
        let modern = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "t", "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "c"},
                      "progressToken": 7, "traceparent": "00-ab-cd-01"}}});
        let legacy = handshake_era(&modern);
        assert_eq!(
            legacy["params"]["_meta"],
            json!({"progressToken": 7, "traceparent": "00-ab-cd-01"})
        );
        assert_eq!(legacy["params"]["name"], "t");
        // Nothing left of `_meta`: no empty object either.
        let bare = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert_eq!(handshake_era(&bare)["params"], json!({}));
        // A handshake-era client's request is passed as it is, not copied.
        let plain = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"});
        assert!(matches!(
            handshake_era(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn sorts_messages_by_kind() {
        assert_eq!(
            parse(json!({"jsonrpc":"2.0","id":3,"result":{}})),
            Ok(Message::Response {
                id: json!(3),
                outcome: Ok(json!({}))
            })
        );
        assert_eq!(
            parse(
                json!({"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"Method not found"}})
            ),
            Ok(Message::Response {
                id: json!("a"),
                outcome: Err(RpcError {
                    code: -32601,
                    message: "Method not found".into(),
                    data: None
                })
            })
        );
        assert_eq!(
            parse(json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})),
            Ok(Message::Notification(Notification {
                method: "notifications/tools/list_changed".into(),
                params: None
            }))
        );
        assert_eq!(
            parse(json!({"jsonrpc":"2.0","id":9,"method":"ping"})),
            Ok(Message::Request {
                id: json!(9),
                method: "ping".into(),
                params: None,
            })
        );
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        assert!(
            parse_bytes(b"<html>oops</html>")
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(parse(json!([1, 2])).unwrap_err().contains("an array"));
        assert!(parse(json!({"id": 1, "result": {}})).is_err());
        assert!(parse(json!({"jsonrpc":"2.0","id":1})).is_err());
    }
}
