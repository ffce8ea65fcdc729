//! OpenTelemetry in the proxy (when it is on): a JSON-RPC request gets a SERVER span
//! (continuing the client's trace from `params._meta`, else the `traceparent` header)
//! and a CLIENT span under it for the hop to the server, whose context replaces the
//! `traceparent` in the request's `_meta` and in its headers (`tracestate` and `baggage`
//! pass as they came). The body is changed in that one place and nowhere else: the
//! value is spliced into the bytes the client sent (or `_meta` / `traceparent` added
//! where there was none), never re-serialized.

use hale_telemetry::{ClientCall, Incoming, Outcome, Outgoing, ServerCall, Telemetry};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The address a request's connection came from (put in its extensions by the
/// listener).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) std::net::IpAddr);

/// The spans of one forwarded request.
pub(crate) struct Traced {
    telemetry: &'static Telemetry,
    server: ServerCall,
    client: Option<ClientCall>,
}

impl Traced {
    /// The spans of the JSON-RPC request in `body` (none for a notification, a
    /// response, or anything else), with its context written into `body` and `headers`.
    pub(crate) fn start(
        target: &Uri,
        headers: &mut HeaderMap,
        body: &mut bytes::Bytes,
        peer: Option<Peer>,
    ) -> Option<Traced> {
        let telemetry = hale_telemetry::get()?;
        let message: Value = serde_json::from_slice(body).ok()?;
        let method = message.get("method")?.as_str()?;
        let id = message.get("id")?;
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let server = telemetry.server_call(&Incoming {
            method,
            params: &params,
            headers: Some(headers),
            request_id: id,
            session_id: headers.get("mcp-session-id").and_then(|v| v.to_str().ok()),
            protocol_version: headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok()),
            client_address: peer.map(|p| p.0),
        })?;
        let client = server.context().and_then(|parent| {
            telemetry.client_call(
                &Outgoing {
                    method,
                    params: &params,
                    backend: "target",
                    address: target.host(),
                    port: target.port_u16(),
                    transport: "tcp",
                    circuit: "closed",
                },
                parent,
            )
        });
        if let Some(client) = &client {
            let mut carrier = Value::Null;
            client.inject(&mut carrier);
            if let Some(traceparent) = carrier["_meta"]["traceparent"].as_str() {
                if let Some(spliced) = splice(body, traceparent) {
                    *body = bytes::Bytes::from(spliced);
                    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                if let Ok(v) = HeaderValue::from_str(traceparent) {
                    headers.insert("traceparent", v);
                }
            }
        }
        Some(Traced {
            telemetry,
            server,
            client,
        })
    }

    /// Ends both spans: the server's HTTP status, or the proxy's own answer.
    pub(crate) fn finish(self, status: StatusCode, own_answer: bool) {
        let outcome = if own_answer {
            Outcome::Failed {
                kind: "backend_unavailable",
                message: "the proxy answered itself: the server could not be reached",
            }
        } else if status.is_success() || status == StatusCode::ACCEPTED {
            Outcome::Ok { tool_error: false }
        } else {
            Outcome::Failed {
                kind: "http_status",
                message: status.canonical_reason().unwrap_or("HTTP error"),
            }
        };
        if let Some(client) = self.client {
            client.finish(outcome, self.telemetry);
        }
        self.server.finish(outcome, self.telemetry);
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    traceparent: Option<&'a RawValue>,
}

/// Where `inner` (a slice of `outer`) starts in it.
fn offset(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// `body` with `params._meta.traceparent` set to `traceparent`, every other byte as it
/// was; `None` if the body is not a JSON object whose `params` (if any) and `_meta` (if
/// any) are objects.
pub(crate) fn splice(body: &[u8], traceparent: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let quoted = serde_json::to_string(traceparent).ok()?;
    let envelope: Envelope<'_> = serde_json::from_str(text).ok()?;
    let edit = |at: usize, remove: usize, insert: &str| {
        let mut out = Vec::with_capacity(body.len() + insert.len());
        out.extend_from_slice(&body[..at]);
        out.extend_from_slice(insert.as_bytes());
        out.extend_from_slice(&body[at + remove..]);
        out
    };
    // Right after an object's `{`, what to insert before its first member.
    let into_object = |raw: &str, member: String| -> Option<Vec<u8>> {
        let at = offset(text, raw) + raw.find('{')? + 1;
        let empty = raw.trim_start()[1..].trim_start().starts_with('}');
        Some(edit(
            at,
            0,
            &if empty { member } else { format!("{member},") },
        ))
    };
    let Some(params) = envelope.params else {
        // No params: add them before the envelope's closing brace.
        let end = text.rfind('}')?;
        let before = text[..end].trim_end();
        let comma = if before.ends_with('{') { "" } else { "," };
        return Some(edit(
            end,
            0,
            &format!("{comma}\"params\":{{\"_meta\":{{\"traceparent\":{quoted}}}}}"),
        ));
    };
    if !params.get().trim_start().starts_with('{') {
        return None;
    }
    let inner: Params<'_> = serde_json::from_str(params.get()).ok()?;
    let Some(meta) = inner.meta else {
        return into_object(
            params.get(),
            format!("\"_meta\":{{\"traceparent\":{quoted}}}"),
        );
    };
    if !meta.get().trim_start().starts_with('{') {
        return None;
    }
    let fields: Meta<'_> = serde_json::from_str(meta.get()).ok()?;
    match fields.traceparent {
        Some(old) => Some(edit(offset(text, old.get()), old.get().len(), &quoted)),
        None => into_object(meta.get(), format!("\"traceparent\":{quoted}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn spliced(body: &str) -> String {
        String::from_utf8(splice(body.as_bytes(), NEW).unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn only_the_traceparent_changes_byte_for_byte() {
        let body = r#"{ "jsonrpc":"2.0",  "id":7, "method":"tools/call", "params":{"name":"x", "_meta": {"progressToken": 1, "traceparent" : "00-11111111111111111111111111111111-2222222222222222-01", "tracestate":"a=b"}, "arguments": {"z": 1.50}} }"#;
        assert_eq!(
            spliced(body),
            body.replace(
                "00-11111111111111111111111111111111-2222222222222222-01",
                NEW
            )
        );
    }

    #[test]
    fn a_missing_meta_or_traceparent_or_params_is_added_and_the_rest_kept() {
        assert_eq!(
            spliced(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"_meta":{{"traceparent":"{NEW}"}},"name":"x"}}}}"#
            )
        );
        assert_eq!(
            spliced(r#"{"id":1,"method":"m","params":{ }}"#),
            format!(r#"{{"id":1,"method":"m","params":{{"_meta":{{"traceparent":"{NEW}"}} }}}}"#)
        );
        assert_eq!(
            spliced(r#"{"id":1,"method":"m","params":{"_meta":{"progressToken":"p"}}}"#),
            format!(
                r#"{{"id":1,"method":"m","params":{{"_meta":{{"traceparent":"{NEW}","progressToken":"p"}}}}}}"#
            )
        );
        assert_eq!(
            spliced(r#"{"id":1,"method":"ping"}"#),
            format!(r#"{{"id":1,"method":"ping","params":{{"_meta":{{"traceparent":"{NEW}"}}}}}}"#)
        );
        let every: Value =
            serde_json::from_str(&spliced(r#"{"id":1,"method":"ping"}"#)).unwrap_or_default();
        assert_eq!(every["params"]["_meta"]["traceparent"], NEW);
    }

    #[test]
    fn what_is_not_an_object_is_left_alone() {
        for body in [
            r#"{"id":1,"method":"m","params":[1,2]}"#,
            r#"{"id":1,"method":"m","params":{"_meta":5}}"#,
            "[1]",
            "not json",
        ] {
            assert_eq!(splice(body.as_bytes(), NEW), None, "{body}");
        }
    }
}
