//! A handshake-era backend's requests to the client (sampling, elicitation, roots) during
//! a 2026-07-28 client's call, turned into `input_required` rounds (spec §10).
//!
//! A 2026-07-28 client has no stream for a server's requests: a server that needs its
//! input answers `resultType: "input_required"` with `inputRequests`, and the client asks
//! again with `inputResponses` and the `requestState` it was given. A legacy backend
//! instead sends its request mid-call and waits. So the vMCP runs such a call in a task
//! of its own; when the backend asks, the call is parked under a fresh, unguessable
//! `requestState` and the client gets `input_required`; the client's retry finds the
//! parked call, hands the backend its answers, and waits for the next step (another
//! round, or the result). A call nobody comes back for is dropped after its backend's
//! request timeout plus a grace period, which ends the backend's request with an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hale_mcp::ServerRequestError;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::message::RpcError;
use crate::route::{Caller, Router};

/// What every `requestState` of ours starts with (a backend's own states never do, and
/// pass through untouched).
const PREFIX: &str = "hale-bridge.";
/// How long a parked call waits for the client beyond its backend's request timeout.
const GRACE: Duration = Duration::from_secs(30);
/// At most this many calls wait for their clients at once.
const MAX_PARKED: usize = 10_000;

/// A backend's request, on its way to becoming one of the client's `inputRequests`.
#[derive(Debug)]
struct Ask {
    method: String,
    params: Value,
    reply: oneshot::Sender<Result<Value, ServerRequestError>>,
}

/// Calls waiting for their client's next round, by `requestState`.
#[derive(Debug)]
pub(crate) struct Bridge {
    parked: Mutex<HashMap<String, Parked>>,
    /// What the bound on waiting calls did.
    pub(crate) limit: crate::limits::LimitHits,
}

impl Default for Bridge {
    fn default() -> Self {
        Bridge {
            parked: Mutex::default(),
            limit: crate::limits::LimitHits::new("calls waiting for input (10,000)"),
        }
    }
}

/// A call in its own task, between rounds.
#[derive(Debug)]
struct Parked {
    asks: mpsc::UnboundedReceiver<Ask>,
    done: oneshot::Receiver<Result<Value, RpcError>>,
    /// The backend's requests of the last round, by input key.
    waiting: HashMap<String, oneshot::Sender<Result<Value, ServerRequestError>>>,
    /// Where what the backend sends meanwhile goes: the current round's stream.
    outlet: Arc<Mutex<Outlet>>,
    /// What the client said it can do (`_meta` of its first request).
    capabilities: Value,
    /// Who made the call: only they may go on with it.
    owner: Option<Arc<str>>,
    next_key: u32,
    /// How long each round may wait for the backend (its request timeout and a grace).
    within: Duration,
    expires: Instant,
    _task: Aborting,
}

/// The current round's stream, and the progress token the client waits on there.
#[derive(Debug)]
struct Outlet {
    to: mpsc::UnboundedSender<Bytes>,
    /// The token of the call's first request (what the backend was given)…
    first: Option<Value>,
    /// …and of the round the client waits on now: each retry is a request of its own,
    /// and the call's progress follows it there under that request's token.
    now: Option<Value>,
}

impl Outlet {
    /// `message` as the current round's client expects it.
    fn fit(&self, message: Bytes) -> Bytes {
        let (Some(first), Some(now)) = (&self.first, &self.now) else {
            return message;
        };
        if first == now || !message.windows(22).any(|w| w == b"notifications/progress") {
            return message;
        }
        let Ok(mut note) = serde_json::from_slice::<Value>(&message) else {
            return message;
        };
        match note.pointer_mut("/params/progressToken") {
            Some(token) if token == first => *token = now.clone(),
            _ => return message,
        }
        Bytes::from(note.to_string())
    }
}

fn progress_token(params: &Value) -> Option<Value> {
    params.pointer("/_meta/progressToken").cloned()
}

/// Aborts the call's task when its parked call is dropped (expired, or the vMCP stops).
#[derive(Debug)]
struct Aborting(tokio::task::JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// True if `params` carry a `requestState` of ours (a retry of a bridged call).
pub(crate) fn is_retry(params: &Value) -> bool {
    params
        .get("requestState")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with(PREFIX))
}

/// A 2026-07-28 caller of a bridged call.
pub(crate) struct Asker {
    /// Messages for the client before the answer (this round's stream).
    pub(crate) interim: mpsc::UnboundedSender<Bytes>,
    /// The log lines it asked for (see [`Caller::log_level`]).
    pub(crate) log_level: Option<Option<u8>>,
    /// Who is asking (the token's `sub`).
    pub(crate) sub: Option<Arc<str>>,
}

impl Bridge {
    /// Runs `method` for a 2026-07-28 caller through `router`, turning the backend's
    /// requests into `input_required` rounds, each waiting up to `timeout` (the backend's
    /// request timeout) plus a grace period; or, for a retry, goes on with the parked call.
    pub(crate) async fn call(
        &self,
        router: &Arc<Router>,
        asker: Asker,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        if is_retry(&params) {
            return self.resume(asker, &params).await;
        }
        let within = timeout + GRACE;
        let capabilities = params
            .pointer("/_meta/io.modelcontextprotocol~1clientCapabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let (asks_tx, asks) = mpsc::unbounded_channel();
        let (relay_tx, mut relay) = mpsc::unbounded_channel::<Bytes>();
        let first = progress_token(&params);
        let outlet = Arc::new(Mutex::new(Outlet {
            to: asker.interim.clone(),
            now: first.clone(),
            first,
        }));
        let to_client = outlet.clone();
        tokio::spawn(async move {
            while let Some(message) = relay.recv().await {
                let (tx, message) = {
                    let outlet = to_client.lock().unwrap_or_else(PoisonError::into_inner);
                    (outlet.to.clone(), outlet.fit(message))
                };
                let _ = tx.send(message);
            }
        });
        let inner = Caller {
            session: None,
            interim: relay_tx,
            log_level: asker.log_level,
            requests: to_rounds(asks_tx),
            profile: Some(crate::upstream::Profile::of(&capabilities)),
            personal: Default::default(),
        };
        let (done_tx, done) = oneshot::channel();
        let (router, method) = (router.clone(), method.to_string());
        let task = tokio::spawn(async move {
            let _ = done_tx.send(router.handle(&inner, &method, params).await);
        });
        let parked = Parked {
            asks,
            done,
            waiting: HashMap::new(),
            outlet,
            capabilities,
            owner: asker.sub,
            next_key: 0,
            within,
            expires: Instant::now() + within,
            _task: Aborting(task),
        };
        self.round(parked).await
    }

    /// The client's answers go to the backend's waiting requests; then the next round.
    async fn resume(&self, asker: Asker, params: &Value) -> Result<Value, RpcError> {
        let token = params
            .get("requestState")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parked = {
            let mut map = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            // Another caller's state is answered as an unknown one (and stays parked).
            match map.get(token) {
                Some(p) if p.owner == asker.sub => map.remove(token),
                _ => None,
            }
        };
        let Some(mut parked) = parked else {
            return Err(RpcError::new(
                -32602,
                "unknown or expired requestState: call again without it",
            ));
        };
        let responses = params.get("inputResponses").cloned().unwrap_or(Value::Null);
        for (key, reply) in parked.waiting.drain() {
            let answer = match responses.get(&key) {
                Some(result) => Ok(result.clone()),
                None => Err(ServerRequestError {
                    code: -32603,
                    message: format!("the client gave no answer for input {key}"),
                }),
            };
            let _ = reply.send(answer);
        }
        {
            let mut outlet = parked.outlet.lock().unwrap_or_else(PoisonError::into_inner);
            outlet.to = asker.interim;
            outlet.now = progress_token(params);
        }
        parked.expires = Instant::now() + parked.within;
        self.round(parked).await
    }

    /// Waits for the call's next step: its result, or the backend's next request(s), which
    /// park it and answer `input_required`.
    async fn round(&self, mut parked: Parked) -> Result<Value, RpcError> {
        let deadline = tokio::time::Instant::now() + parked.within;
        let first = loop {
            let step = tokio::select! {
                result = &mut parked.done => {
                    return result.unwrap_or_else(|_| Err(RpcError::new(-32603, "the call ended without a result")));
                }
                ask = parked.asks.recv() => ask,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RpcError::new(hale_mcp::codes::TIMEOUT, "the backend gave no result in time"));
                }
            };
            let Some(ask) = step else {
                // The call's task ended: its result is on its way.
                return (&mut parked.done).await.unwrap_or_else(|_| {
                    Err(RpcError::new(-32603, "the call ended without a result"))
                });
            };
            if let Some(ask) = declined_unless_declared(&parked.capabilities, ask) {
                break ask;
            }
        };
        let mut requests = Map::new();
        let mut ask = Some(first);
        while let Some(a) = ask.take() {
            let key = format!("hale-{}", parked.next_key);
            parked.next_key += 1;
            requests.insert(key.clone(), json!({"method": a.method, "params": a.params}));
            parked.waiting.insert(key, a.reply);
            // Requests the backend sent together go in one round.
            while let Ok(next) = parked.asks.try_recv() {
                if let Some(next) = declined_unless_declared(&parked.capabilities, next) {
                    ask = Some(next);
                    break;
                }
            }
        }
        let token = new_state();
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": token,
        });
        self.park(token, parked);
        Ok(result)
    }
}

/// The backend's requests during a bridged call become asks for the next round.
fn to_rounds(asks: mpsc::UnboundedSender<Ask>) -> hale_mcp::ServerRequestHandler {
    Arc::new(move |request: hale_mcp::ServerRequest| {
        let asks = asks.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let ask = Ask {
                method: request.method,
                params: request.params.unwrap_or_else(|| json!({})),
                reply,
            };
            if asks.send(ask).is_err() {
                return Err(ServerRequestError {
                    code: -32603,
                    message: "the client's call is gone".into(),
                });
            }
            answer.await.unwrap_or_else(|_| {
                Err(ServerRequestError {
                    code: -32603,
                    message: "the client did not answer".into(),
                })
            })
        }) as hale_mcp::ServerRequestFuture
    })
}

/// `ask` back if the client declared the capability its method needs; otherwise it is
/// answered with an error at once (as the backend would have been told had it known).
fn declined_unless_declared(capabilities: &Value, ask: Ask) -> Option<Ask> {
    let needed = match ask.method.as_str() {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => "",
    };
    if !needed.is_empty() && capabilities.get(needed).is_some() {
        return Some(ask);
    }
    let _ = ask.reply.send(Err(ServerRequestError {
        code: -32601,
        message: if needed.is_empty() {
            format!("{} cannot be relayed to a 2026-07-28 client", ask.method)
        } else {
            format!("the client did not declare the {needed} capability")
        },
    }));
    None
}

impl Bridge {
    fn park(&self, token: String, parked: Parked) {
        let mut map = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, p| p.expires > now);
        if map.len() >= MAX_PARKED {
            self.limit.hit("vmcp", MAX_PARKED as u32, "evicted");
            // Full of calls nobody came back for: the oldest goes.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(token, parked);
    }

    /// Calls waiting for their clients now.
    pub(crate) fn len(&self) -> usize {
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A fresh `requestState`: the prefix and 128 random bits.
fn new_state() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Never expected; the state still cannot collide within this process.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&n.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}
