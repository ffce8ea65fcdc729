//! The proxy's own answers, for the few moments it must speak instead of the server.
//!
//! MCP clients end their whole session on an HTTP 5xx (the Python SDK does), so a JSON-RPC
//! request the proxy cannot deliver is answered with HTTP 200 and a JSON-RPC error for
//! that request's id, using hale's own codes ([`hale_mcp::codes`]). Only a message that
//! expects no answer (a notification, a response) gets a bare 503.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{ProxyBody, full};

/// What the proxy says, and the JSON-RPC error code it says it with.
#[derive(Clone, Debug)]
pub(crate) struct Said {
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl Said {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Said {
            code,
            message: message.into(),
        }
    }
}

/// The JSON-RPC error answers for every request in `body` (one message or a batch), or
/// `None` when nothing in it expects an answer (or it is not JSON-RPC at all).
pub(crate) fn errors_for(body: &[u8], said: &Said) -> Option<Bytes> {
    let message: Value = serde_json::from_slice(body).ok()?;
    let error = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": said.code, "message": said.message}});
    let is_request =
        |m: &Value| m.get("method").is_some() && m.get("id").is_some_and(|id| !id.is_null());
    let answer = match &message {
        Value::Array(batch) => {
            let answers: Vec<Value> = batch
                .iter()
                .filter(|m| is_request(m))
                .map(|m| error(&m["id"]))
                .collect();
            if answers.is_empty() {
                return None;
            }
            Value::Array(answers)
        }
        m if is_request(m) => error(&m["id"]),
        _ => return None,
    };
    Some(Bytes::from(answer.to_string()))
}

/// The answer to a request the proxy cannot deliver: 200 with JSON-RPC errors for its ids,
/// else 503 with a JSON-RPC error without an id.
pub(crate) fn to_request(body: &[u8], said: &Said) -> Response<ProxyBody> {
    match errors_for(body, said) {
        Some(errors) => json_response(StatusCode::OK, errors),
        None => rpc_error(StatusCode::SERVICE_UNAVAILABLE, said),
    }
}

/// An HTTP error status with a JSON-RPC error body (for answers that are not to a request:
/// 403, 413, 503 to a notification).
pub(crate) fn rpc_error(status: StatusCode, said: &Said) -> Response<ProxyBody> {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": said.code, "message": said.message}});
    let mut response = json_response(status, Bytes::from(body.to_string()));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// Marks an answer the proxy gave itself (the server was not reached, or the request was
/// refused before it was sent): its span says so.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Own;

fn json_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    response.extensions_mut().insert(Own);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said() -> Said {
        Said::new(-31001, "gone")
    }

    #[test]
    fn a_request_gets_an_error_for_its_id() {
        let out = errors_for(
            br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call"}"#,
            &said(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "a-1");
        assert_eq!(v["error"]["code"], -31001);
        assert_eq!(v["error"]["message"], "gone");
    }

    #[test]
    fn a_batch_gets_one_error_per_request_and_none_for_notifications() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#;
        let v: Value = serde_json::from_slice(&errors_for(body, &said()).unwrap()).unwrap();
        let ids: Vec<&Value> = v.as_array().unwrap().iter().map(|m| &m["id"]).collect();
        assert_eq!(ids, [&json!(1), &json!(2)]);
    }

    #[test]
    fn what_expects_no_answer_gets_503() {
        for body in [
            &br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#[..],
            br#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            b"not json",
            b"",
        ] {
            assert!(errors_for(body, &said()).is_none());
            assert_eq!(
                to_request(body, &said()).status(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(
            to_request(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#, &said()).status(),
            StatusCode::OK
        );
    }
}
