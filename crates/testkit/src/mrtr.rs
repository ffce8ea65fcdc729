//! The 2026-07-28 `input_required` fixtures (multi round-trip requests, SEP-2322) the
//! conformance suite calls: a tool or prompt that needs the client's input answers with
//! `resultType: "input_required"` and `inputRequests`, and completes when the client asks
//! again with `inputResponses` (and the `requestState` it was given).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// Answers `method` if it is one of the fixtures: `Some(result or error)`.
pub(crate) fn answer(method: &str, params: &Value) -> Option<Result<Value, (i64, String)>> {
    let name = params.get("name").and_then(Value::as_str)?;
    let responses = params.get("inputResponses").cloned().unwrap_or(Value::Null);
    let state = params.get("requestState").and_then(Value::as_str);
    let has = |key: &str| responses.get(key).is_some();
    let text = |t: String| Ok(json!({"content": [{"type": "text", "text": t}]}));
    Some(match (method, name) {
        ("tools/call", "test_input_required_result_elicitation") => {
            if has("user_name") {
                let who = responses
                    .pointer("/user_name/content/name")
                    .and_then(Value::as_str)
                    .unwrap_or("there");
                text(format!("Hello, {who}!"))
            } else {
                Ok(needs(
                    json!({"user_name": elicit("What is your name?", "name", "string")}),
                    None,
                ))
            }
        }
        ("tools/call", "test_input_required_result_sampling") => {
            if has("capital_question") {
                let said = responses
                    .pointer("/capital_question/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text(format!("The model said: {said}"))
            } else {
                Ok(needs(
                    json!({"capital_question": sample("What is the capital of France?", 100)}),
                    None,
                ))
            }
        }
        ("tools/call", "test_input_required_result_list_roots") => {
            if has("client_roots") {
                let root = responses
                    .pointer("/client_roots/roots/0/uri")
                    .and_then(Value::as_str)
                    .unwrap_or("(none)");
                text(format!("The first root is {root}"))
            } else {
                Ok(needs(
                    json!({"client_roots": {"method": "roots/list", "params": {}}}),
                    None,
                ))
            }
        }
        ("tools/call", "test_input_required_result_request_state") => {
            let want = sign("request-state");
            if has("confirm") && state == Some(want.as_str()) {
                text("state-ok: the request state came back intact".into())
            } else {
                Ok(needs(
                    json!({"confirm": elicit("Please confirm", "ok", "boolean")}),
                    Some(want),
                ))
            }
        }
        ("tools/call", "test_input_required_result_multiple_inputs") => {
            let want = sign("multiple");
            if has("user_name")
                && has("greeting")
                && has("client_roots")
                && state == Some(want.as_str())
            {
                text("All three inputs arrived".into())
            } else {
                Ok(needs(
                    json!({
                        "user_name": elicit("What is your name?", "name", "string"),
                        "greeting": sample("Generate a greeting", 50),
                        "client_roots": {"method": "roots/list", "params": {}},
                    }),
                    Some(want),
                ))
            }
        }
        ("tools/call", "test_input_required_result_multi_round") => {
            let (one, two) = (sign("round-1"), sign("round-2"));
            if has("step2") && state == Some(two.as_str()) {
                text("Both rounds done".into())
            } else if has("step1") && state == Some(one.as_str()) {
                Ok(needs(
                    json!({"step2": elicit("Step 2: What is your favorite color?", "color", "string")}),
                    Some(two),
                ))
            } else {
                Ok(needs(
                    json!({"step1": elicit("Step 1: What is your name?", "name", "string")}),
                    Some(one),
                ))
            }
        }
        ("tools/call", "test_input_required_result_tampered_state") => {
            let want = sign("tamper-proof");
            match state {
                Some(s) if s != want => {
                    Err((-32602, "requestState failed its integrity check".into()))
                }
                Some(_) if has("confirm") => text("state verified".into()),
                _ => Ok(needs(
                    json!({"confirm": elicit("Please confirm", "ok", "boolean")}),
                    Some(want),
                )),
            }
        }
        ("tools/call", "test_input_required_result_capabilities") => {
            if responses.is_object() {
                text("Thanks".into())
            } else {
                let caps = params
                    .pointer("/_meta/io.modelcontextprotocol~1clientCapabilities")
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut wanted = serde_json::Map::new();
                if caps.get("elicitation").is_some() {
                    wanted.insert(
                        "user_name".into(),
                        elicit("What is your name?", "name", "string"),
                    );
                }
                if caps.get("sampling").is_some() {
                    wanted.insert(
                        "capital_question".into(),
                        sample("What is the capital of France?", 100),
                    );
                }
                if wanted.is_empty() {
                    text("Nothing to ask a client that declared nothing".into())
                } else {
                    Ok(needs(Value::Object(wanted), None))
                }
            }
        }
        ("prompts/get", "test_input_required_result_prompt") => {
            if has("user_context") {
                let context = responses
                    .pointer("/user_context/content/context")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(
                    json!({"messages": [{"role": "user", "content": {"type": "text",
                    "text": format!("Use this context: {context}")}}]}),
                )
            } else {
                Ok(needs(
                    json!({"user_context": elicit("What context should the prompt use?", "context", "string")}),
                    None,
                ))
            }
        }
        _ => return None,
    })
}

fn needs(requests: Value, state: Option<String>) -> Value {
    let mut result = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(state) = state {
        result["requestState"] = Value::String(state);
    }
    result
}

fn elicit(message: &str, field: &str, kind: &str) -> Value {
    json!({"method": "elicitation/create", "params": {"message": message, "requestedSchema": {
        "type": "object", "properties": {field: {"type": kind}}, "required": [field]}}})
}

fn sample(text: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        "maxTokens": max_tokens}})
}

/// `label` with a keyed hash only this process knows: a state a client altered does not
/// verify.
fn sign(label: &str) -> String {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let mac = KEY.get_or_init(RandomState::new).hash_one(label);
    format!("{label}.{mac:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_completes_and_a_tampered_state_is_refused() {
        let first = answer(
            "tools/call",
            &json!({"name": "test_input_required_result_tampered_state"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(first["resultType"], "input_required");
        let state = first["requestState"].as_str().unwrap().to_string();
        let ok = answer("tools/call", &json!({"name": "test_input_required_result_tampered_state",
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}}, "requestState": state})).unwrap();
        assert!(ok.is_ok());
        let bad = answer(
            "tools/call",
            &json!({"name": "test_input_required_result_tampered_state",
            "inputResponses": {"confirm": {}}, "requestState": format!("{state}-TAMPERED")}),
        )
        .unwrap();
        assert_eq!(bad.unwrap_err().0, -32602);
    }
}
