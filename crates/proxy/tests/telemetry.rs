//! OpenTelemetry through `hale proxy`: a client's trace continues through the proxy to
//! the server, whose request carries the proxy's CLIENT span as its parent in `_meta`
//! and in the `traceparent` header — and every other byte of the body as the client
//! sent it.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hale_core::CheckLoopConfig;
use hale_proxy::{Proxy, ProxyConfig};
use hale_testkit::otlp::OtlpReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A request's body and its `traceparent` header.
type Seen = (String, Option<String>);

#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Seen>>>);

impl Respond for Keep {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let header = req
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.0
            .lock()
            .unwrap()
            .push((String::from_utf8_lossy(&req.body).into_owned(), header));
        ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}),
        )
    }
}

#[tokio::test]
async fn a_clients_trace_goes_through_the_proxy_and_only_the_traceparent_changes() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = MockServer::start().await;
    let keep = Keep::default();
    Mock::given(method("POST"))
        .respond_with(keep.clone())
        .mount(&server)
        .await;
    let config = ProxyConfig {
        drain_timeout: Duration::from_secs(1),
        telemetry: hale_telemetry::Overrides {
            endpoint: Some(otlp.url().to_string()),
            service_name: Some("proxy-under-test".into()),
            ..hale_telemetry::Overrides::default()
        },
        ..ProxyConfig::new(
            &format!("{}/mcp", server.uri()),
            CheckLoopConfig {
                interval: Duration::from_secs(60),
                ..CheckLoopConfig::default()
            },
        )
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    let running = tokio::spawn(proxy.run(stop.clone()));

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = format!(
        r#"{{"jsonrpc":"2.0", "id":7,"method":"tools/call","params":{{"name":"get_weather","_meta":{{"progressToken":"p","traceparent":"{parent}","tracestate":"v=1"}},"arguments":{{"city":"Oslo","n":1.50}}}}}}"#
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\ntraceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let (sent, header) = keep
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(b, _)| b.contains("get_weather"))
        .cloned()
        .unwrap();
    let header = header.expect("a traceparent header");
    assert!(
        header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "_meta's context wins over the header's: {header}"
    );
    assert_ne!(header, parent);
    assert_eq!(
        sent,
        body.replace(parent, &header),
        "only the traceparent changed"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .unwrap()
        .unwrap();
    let spans = otlp.spans();
    let server_span = spans
        .iter()
        .find(|s| s.kind == "server" && s.name == "tools/call get_weather")
        .expect("SERVER span");
    assert_eq!(server_span.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(server_span.service, "proxy-under-test");
    assert_eq!(server_span.attr("client.address"), Some("127.0.0.1"));
    let client_span = spans
        .iter()
        .find(|s| s.kind == "client" && s.parent_span_id == server_span.span_id)
        .expect("CLIENT span");
    assert!(
        header.contains(&client_span.span_id),
        "the server's parent is the proxy's CLIENT span"
    );
}
