//! What a testkit server offers: tools, resources, prompts, and how it answers each MCP
//! method. Transport-free: the HTTP front ends feed it parsed messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// Where the server puts, in a `tools/list` request's params, what the session's client
/// declared (a 2026-07-28 request carries it in `_meta`).
pub(crate) const DECLARED: &str = "_declaredCapabilities";

/// Server-to-client requests waiting for the client's answer, by request id.
pub(crate) type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// How a request being answered talks back to its client before the answer: notifications
/// (logging, progress) and requests (sampling, elicitation) travel on the request's own
/// stream; the client's answers to those requests come back as POSTs and find their way
/// here through `waiting`.
pub(crate) struct Outbound {
    pub(crate) stream: Option<mpsc::UnboundedSender<Value>>,
    pub(crate) waiting: Waiting,
    /// The calling session, for the per-session tools.
    pub(crate) session: Option<String>,
}

static NEXT_SERVER_REQUEST: AtomicU64 = AtomicU64::new(1);

impl Outbound {
    fn notify(&self, message: Value) {
        if let Some(stream) = &self.stream {
            let _ = stream.send(message);
        }
    }

    /// Sends a request to the client and waits (up to 60 s) for its result.
    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let Some(stream) = &self.stream else {
            return Err(
                "this server answers with JSON bodies, so it cannot ask the client anything".into(),
            );
        };
        let id = format!(
            "testkit-{}",
            NEXT_SERVER_REQUEST.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), tx);
        let _ =
            stream.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let answer = tokio::time::timeout(Duration::from_secs(60), rx).await;
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let answer = answer
            .map_err(|_| format!("the client did not answer {method} within 60s"))?
            .map_err(|_| format!("{method} was abandoned"))?;
        match (answer.get("result"), answer.get("error")) {
            (Some(result), _) => Ok(result.clone()),
            (_, Some(error)) => Err(format!("the client refused {method}: {error}")),
            _ => Err(format!(
                "the client's answer to {method} has neither result nor error"
            )),
        }
    }
}

/// The protocol versions the server accepts in `initialize`, newest first.
pub(crate) const PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// A 1×1 transparent PNG, for image fixtures.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
/// A tiny WAV header, for audio fixtures.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";

/// The server's tools, which tests may add to and remove from at run time.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// Offers the 2026-07-28 fixtures too.
    modern: bool,
    tools: RwLock<Vec<Value>>,
    page_size: usize,
    /// Per session: the remembered value and the count.
    memory: std::sync::Mutex<std::collections::HashMap<String, (Option<String>, u64)>>,
    /// The scheme of its resource URIs (`test` by default).
    scheme: String,
    /// Tools failing every other call (the first, the third, …), with their call counts:
    /// a gray failure a consecutive-failure count never sees.
    flaky: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required},
    })
}

fn base_tools() -> Vec<Value> {
    vec![
        tool(
            "echo",
            "Returns its text.",
            json!({"text": {"type": "string"}}),
            &["text"],
        ),
        tool(
            "add",
            "Adds two numbers.",
            json!({"a": {"type": "number"}, "b": {"type": "number"}}),
            &["a", "b"],
        ),
        tool(
            "list_roots",
            "Asks the client for its roots (listed only to clients that declared roots).",
            json!({}),
            &[],
        ),
        tool(
            "sleep",
            "Waits for ms milliseconds, then answers.",
            json!({"ms": {"type": "integer", "minimum": 0}}),
            &["ms"],
        ),
        // Fixtures named as the MCP conformance suite's server scenarios expect them.
        tool(
            "test_simple_text",
            "Returns simple text content.",
            json!({}),
            &[],
        ),
        tool(
            "test_image_content",
            "Returns image content.",
            json!({}),
            &[],
        ),
        tool(
            "test_audio_content",
            "Returns audio content.",
            json!({}),
            &[],
        ),
        tool(
            "test_embedded_resource",
            "Returns an embedded resource.",
            json!({}),
            &[],
        ),
        tool(
            "test_multiple_content_types",
            "Returns mixed content.",
            json!({}),
            &[],
        ),
        tool(
            "test_tool_with_logging",
            "Logs while it runs.",
            json!({}),
            &[],
        ),
        tool(
            "test_tool_with_progress",
            "Reports progress while it runs.",
            json!({}),
            &[],
        ),
        tool(
            "test_error_handling",
            "Always fails with isError.",
            json!({}),
            &[],
        ),
        tool(
            "test_sampling",
            "Asks the client's LLM (sampling/createMessage).",
            json!({"prompt": {"type": "string"}}),
            &["prompt"],
        ),
        tool(
            "test_elicitation",
            "Asks the client's user (elicitation/create).",
            json!({"message": {"type": "string"}}),
            &["message"],
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicitation with defaults.",
            json!({}),
            &[],
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Elicitation with every enum form.",
            json!({}),
            &[],
        ),
    ]
}

impl Catalog {
    pub(crate) fn new(page_size: usize, session_tools: bool, modern: bool) -> Self {
        let mut tools = base_tools();
        if modern {
            // The 2026-07-28 input_required fixtures (answered in `mrtr`).
            for name in [
                "test_input_required_result_elicitation",
                "test_input_required_result_sampling",
                "test_input_required_result_list_roots",
                "test_input_required_result_request_state",
                "test_input_required_result_multiple_inputs",
                "test_input_required_result_multi_round",
                "test_input_required_result_tampered_state",
                "test_input_required_result_capabilities",
            ] {
                tools.push(tool(
                    name,
                    "Asks the client for input first (input_required).",
                    json!({}),
                    &[],
                ));
            }
        }
        if session_tools {
            tools.extend([
                tool(
                    "remember",
                    "Keeps a value for the calling session.",
                    json!({"value": {"type": "string"}}),
                    &["value"],
                ),
                tool(
                    "recall",
                    "Returns the calling session's value, or \"nothing\".",
                    json!({}),
                    &[],
                ),
                tool(
                    "count",
                    "Counts the calling session's calls of count.",
                    json!({}),
                    &[],
                ),
            ]);
        }
        Catalog {
            modern,
            tools: RwLock::new(tools),
            page_size: page_size.max(1),
            memory: std::sync::Mutex::new(std::collections::HashMap::new()),
            scheme: "test".into(),
            flaky: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The per-session tools: state kept by the caller's session id.
    fn session_tool(&self, name: &str, args: &Value, out: &Outbound) -> Option<Value> {
        if !matches!(name, "remember" | "recall" | "count") || !self.has_tool(name) {
            return None;
        }
        let key = out.session.clone().unwrap_or_default();
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = memory.entry(key).or_default();
        let text = match name {
            "remember" => {
                entry.0 = args
                    .get("value")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                "ok".to_string()
            }
            "recall" => entry.0.clone().unwrap_or_else(|| "nothing".into()),
            _ => {
                entry.1 += 1;
                entry.1.to_string()
            }
        };
        Some(json!({"content": [{"type": "text", "text": text}]}))
    }

    fn has_tool(&self, name: &str) -> bool {
        self.tools
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|t| t["name"] == name)
    }

    /// Adds a tool that echoes its arguments; false if the name is taken.
    pub(crate) fn add_tool(&self, name: &str) -> bool {
        let mut tools = self
            .tools
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tools.iter().any(|t| t["name"] == name) {
            return false;
        }
        tools.push(tool(
            name,
            "Added at run time; echoes its arguments.",
            json!({}),
            &[],
        ));
        true
    }

    /// Makes tool `name` fail every other call from now on (`false`: answer again).
    pub(crate) fn set_flaky(&self, name: &str, flaky: bool) {
        let mut map = self
            .flaky
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flaky {
            map.entry(name.to_string()).or_insert(0);
        } else {
            map.remove(name);
        }
    }

    /// Whether this call of tool `name` fails (it is flaky, and this is an odd call).
    fn fails_now(&self, name: &str) -> bool {
        let mut map = self
            .flaky
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get_mut(name).is_some_and(|n| {
            *n += 1;
            *n % 2 == 1
        })
    }

    /// Removes a tool; false if there was none by that name.
    pub(crate) fn remove_tool(&self, name: &str) -> bool {
        let mut tools = self
            .tools
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = tools.len();
        tools.retain(|t| t["name"] != name);
        tools.len() != before
    }

    /// The names of the current tools, as a client that declared no capabilities is
    /// shown them (`list_roots` only goes to clients that declared roots).
    pub(crate) fn tool_names(&self) -> Vec<String> {
        self.tools
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .filter(|n| n != "list_roots")
            .collect()
    }

    /// Answers one request, talking to the client on the way through `out`. `Err` is a
    /// JSON-RPC error `(code, message)`.
    pub(crate) async fn answer(
        &self,
        method: &str,
        params: &Value,
        out: &Outbound,
    ) -> Result<Value, (i64, String)> {
        match method {
            "initialize" => Ok(initialize(params)),
            "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => {
                Ok(json!({}))
            }
            "tools/list" => {
                let mut tools = self
                    .tools
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                // As server-everything does: a tool that needs the client's roots is
                // listed only to clients that declared `roots`.
                let declared = params.get(DECLARED).or_else(|| {
                    params.pointer("/_meta/io.modelcontextprotocol~1clientCapabilities")
                });
                if declared.and_then(|d| d.get("roots")).is_none() {
                    tools.retain(|t| t["name"] != "list_roots");
                }
                self.page(params, "tools", tools)
            }
            "tools/call" => self.call(params, out).await,
            "resources/list" => self.page(params, "resources", self.resources()),
            "resources/templates/list" => Ok(json!({"resourceTemplates": [{
                "uriTemplate": format!("{}://template/{{id}}/data", self.scheme),
                "name": "template",
                "mimeType": "application/json",
            }]})),
            "resources/read" => self.read_resource(params),
            "prompts/list" => {
                let mut all = prompts();
                if self.modern {
                    all.push(json!({"name": "test_input_required_result_prompt",
                        "description": "Asks the client for context first (input_required)."}));
                }
                self.page(params, "prompts", all)
            }
            "prompts/get" => get_prompt(params),
            "completion/complete" => Ok(
                json!({"completion": {"values": ["paris", "park", "party"], "total": 3, "hasMore": false}}),
            ),
            other => Err((-32601, format!("Method not found: {other}"))),
        }
    }

    fn page(&self, params: &Value, field: &str, items: Vec<Value>) -> Result<Value, (i64, String)> {
        let start = match params.get("cursor").and_then(Value::as_str) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| (-32602, format!("Invalid cursor {c:?}")))?,
        };
        let end = (start + self.page_size).min(items.len());
        let mut page = json!({ field: items.get(start..end).unwrap_or_default() });
        if end < items.len() {
            page["nextCursor"] = json!(end.to_string());
        }
        Ok(page)
    }

    async fn call(&self, params: &Value, out: &Outbound) -> Result<Value, (i64, String)> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let args = params.get("arguments").cloned().unwrap_or(json!({}));
        if self.fails_now(name) {
            return Err((-32603, format!("{name}: its upstream API failed")));
        }
        if let Some(result) = self.session_tool(name, &args, out) {
            return Ok(result);
        }
        let text = |t: String| Ok(json!({"content": [{"type": "text", "text": t}]}));
        match name {
            "echo" => text(
                args.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            "add" => {
                let num = |k: &str| args.get(k).and_then(Value::as_f64);
                match (num("a"), num("b")) {
                    (Some(a), Some(b)) => text(format!("{}", a + b)),
                    _ => Err((-32602, "add needs numbers a and b".into())),
                }
            }
            "sleep" => {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms}ms"))
            }
            "test_simple_text" => text("This is a simple text response for testing.".into()),
            "test_image_content" => {
                Ok(json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}))
            }
            "test_audio_content" => {
                Ok(json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}))
            }
            "test_embedded_resource" => Ok(json!({"content": [{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."}}]})),
            "test_multiple_content_types" => Ok(json!({"content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}},
            ]})),
            "test_tool_with_logging" => {
                for (i, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .iter()
                .enumerate()
                {
                    out.notify(json!({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "logger": "test-tool", "data": message}}));
                    if i < 2 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                text("Tool with logging executed successfully".into())
            }
            "test_tool_with_progress" => {
                let token = params.pointer("/_meta/progressToken").cloned();
                for progress in [0, 50, 100] {
                    if let Some(token) = &token {
                        out.notify(json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": progress, "total": 100,
                                       "message": format!("Completed step {progress} of 100")}}));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                text(format!("{}", token.unwrap_or(Value::Null)))
            }
            "test_error_handling" => Ok(json!({"isError": true, "content": [{"type": "text",
                "text": "This tool intentionally returns an error for testing"}]})),
            "list_roots" => match out.request("roots/list", json!({})).await {
                Ok(result) => {
                    let roots = result
                        .get("roots")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    text(format!("{roots} roots"))
                }
                Err(e) => Ok(tool_error(e)),
            },
            "test_sampling" => {
                let prompt = args
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let request = json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                                     "maxTokens": 100});
                match out.request("sampling/createMessage", request).await {
                    Ok(result) => {
                        let reply = result
                            .pointer("/content/text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        text(format!("LLM response: {reply}"))
                    }
                    Err(e) => Ok(tool_error(e)),
                }
            }
            "test_elicitation"
            | "test_elicitation_sep1034_defaults"
            | "test_elicitation_sep1330_enums" => {
                let request = elicitation(name, &args);
                match out.request("elicitation/create", request).await {
                    Ok(result) => text(format!(
                        "Elicitation completed: action={}, content={}",
                        result
                            .get("action")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        result.get("content").cloned().unwrap_or(Value::Null)
                    )),
                    Err(e) => Ok(tool_error(e)),
                }
            }
            _ if self.tool_names().iter().any(|t| t == name) => text(format!("{name} {args}")),
            _ => Err((-32602, format!("Tool {name} not found"))),
        }
    }
}

fn tool_error(message: String) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": message}]})
}

/// The `elicitation/create` params of the conformance suite's elicitation tools.
fn elicitation(tool: &str, args: &Value) -> Value {
    match tool {
        "test_elicitation_sep1034_defaults" => json!({
            "message": "Please review and update the form fields with defaults",
            "requestedSchema": {"type": "object", "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {"type": "string", "description": "User status",
                           "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "description": "Verification status", "default": true},
            }},
        }),
        "test_elicitation_sep1330_enums" => json!({
            "message": "Please select options from the enum fields",
            "requestedSchema": {"type": "object", "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}]},
                "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                               "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}]}},
            }},
        }),
        _ => json!({
            "message": args.get("message").and_then(Value::as_str).unwrap_or("Please provide your information"),
            "requestedSchema": {"type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            }, "required": ["username", "email"]},
        }),
    }
}

fn initialize(params: &Value) -> Value {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "logging": {},
            "completions": {},
        },
        "serverInfo": {"name": "hale-testkit", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn resources() -> Vec<Value> {
    vec![
        json!({"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"}),
        json!({"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png"}),
        json!({"uri": "test://watched-resource", "name": "watched-resource", "mimeType": "text/plain"}),
    ]
}

impl Catalog {
    /// Its resources use `scheme` (`test` as the conformance suite expects, or another
    /// so that several servers side by side offer URIs of their own).
    pub(crate) fn with_resource_scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_string();
        self
    }

    fn resources(&self) -> Vec<Value> {
        let mut all = resources();
        for r in &mut all {
            if let Some(uri) = r["uri"].as_str().map(|u| self.own_uri(u)) {
                r["uri"] = Value::String(uri);
            }
        }
        all
    }

    /// `test://…` as this catalog names it.
    fn own_uri(&self, uri: &str) -> String {
        match uri.strip_prefix("test://") {
            Some(rest) => format!("{}://{rest}", self.scheme),
            None => uri.to_string(),
        }
    }

    fn read_resource(&self, params: &Value) -> Result<Value, (i64, String)> {
        let asked = params
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let prefix = format!("{}://", self.scheme);
        let Some(rest) = asked.strip_prefix(&prefix) else {
            return read_resource(params);
        };
        let mut answer = read_resource(&json!({"uri": format!("test://{rest}")}))?;
        for c in answer["contents"].as_array_mut().into_iter().flatten() {
            c["uri"] = Value::String(asked.to_string());
        }
        Ok(answer)
    }
}

fn read_resource(params: &Value) -> Result<Value, (i64, String)> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let contents = match uri {
        "test://static-text" => json!({"uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}),
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
        "test://watched-resource" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"})
        }
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
        {
            Some(id) => json!({"uri": uri, "mimeType": "application/json",
                "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
            None => return Err((-32002, format!("Resource not found: {uri}"))),
        },
    };
    Ok(json!({"contents": [contents]}))
}

fn prompts() -> Vec<Value> {
    vec![
        json!({"name": "test_simple_prompt", "description": "A simple prompt without arguments"}),
        json!({"name": "test_prompt_with_arguments", "description": "A prompt with arguments",
            "arguments": [{"name": "arg1", "description": "First test argument", "required": true},
                          {"name": "arg2", "description": "Second test argument", "required": true}]}),
        json!({"name": "test_prompt_with_embedded_resource", "description": "A prompt with an embedded resource",
            "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]}),
        json!({"name": "test_prompt_with_image", "description": "A prompt with image content"}),
    ]
}

fn get_prompt(params: &Value) -> Result<Value, (i64, String)> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let arg = |k: &str| {
        params
            .pointer(&format!("/arguments/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({"type": "text", "text": "This is a simple prompt for testing."}),
        )],
        "test_prompt_with_arguments" => vec![user(json!({"type": "text",
            "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}))],
        "test_prompt_with_embedded_resource" => vec![
            user(
                json!({"type": "resource", "resource": {"uri": arg("resourceUri"), "mimeType": "text/plain",
                "text": "Embedded resource content for testing."}}),
            ),
            user(json!({"type": "text", "text": "Please process the embedded resource above."})),
        ],
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."})),
        ],
        _ => return Err((-32602, format!("Prompt {name} not found"))),
    };
    Ok(json!({"messages": messages}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tool the server answers is also advertised (a call-only fixture would pass
    /// the conformance suite yet be invisible to real clients).
    #[tokio::test]
    async fn every_fixture_the_server_answers_is_listed() {
        let catalog = Catalog::new(100, false, false);
        let names = catalog.tool_names();
        for fixture in [
            "echo",
            "add",
            "sleep",
            "test_simple_text",
            "test_image_content",
            "test_audio_content",
            "test_embedded_resource",
            "test_multiple_content_types",
            "test_tool_with_logging",
            "test_tool_with_progress",
            "test_error_handling",
            "test_sampling",
            "test_elicitation",
            "test_elicitation_sep1034_defaults",
            "test_elicitation_sep1330_enums",
        ] {
            assert!(
                names.iter().any(|n| n == fixture),
                "{fixture} is not listed"
            );
        }
        let out = Outbound {
            stream: None,
            waiting: Waiting::default(),
            session: None,
        };
        let unknown = catalog
            .answer("tools/call", &json!({"name": "nope"}), &out)
            .await;
        assert!(unknown.is_err());
    }
}
