//! HTTPS backends: reached through Debian's nginx terminating TLS (one of them asking
//! for a client certificate) with certificates from a CA the test makes; a backend whose
//! certificate is not trusted is unhealthy with a `tls` reason that says what to change,
//! and the others serve on.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use hale_testkit::nginx::{Nginx, NginxTls};
use hale_testkit::pki::Pki;
use hale_testkit::{ServerConfig, TestServer};
use hale_vmcp::VmcpConfig;
use serde_json::json;

#[tokio::test]
async fn https_and_mtls_backends_serve_and_an_untrusted_one_says_why() {
    let pki = Pki::new().unwrap();
    let kit = [
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    ];
    let plain = Nginx::start(&NginxTls {
        server: &pki.server,
        client_ca: None,
        upstream: kit[0].addr(),
    })
    .unwrap();
    let mutual = Nginx::start(&NginxTls {
        server: &pki.server,
        client_ca: Some(&pki.ca),
        upstream: kit[1].addr(),
    })
    .unwrap();
    let stranger = Nginx::start(&NginxTls {
        server: &pki.stranger,
        client_ca: None,
        upstream: kit[2].addr(),
    })
    .unwrap();
    let ca = pki.ca.display();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  - name: secure
    url: "{}"
    tls: {{caBundlePath: "{ca}"}}
  - name: mutual
    url: "{}"
    tls: {{caBundlePath: "{ca}", clientCertPath: "{}", clientKeyPath: "{}"}}
  - name: untrusted
    url: "{}"
    tls: {{caBundlePath: "{ca}"}}
operational:
  failureHandling: {{healthCheckInterval: 200ms, healthCheckTimeout: 150ms, unhealthyThreshold: 1}}
"#,
        plain.url("/mcp"),
        mutual.localhost_url("/mcp"),
        pki.client.cert.display(),
        pki.client.key.display(),
        stranger.url("/mcp"),
    );
    let s = start_with(&yaml, None).await;
    wait_for("untrusted unhealthy", async || {
        get_json(s.addr, "/status").await.1["backends"][2]["health"] == "unhealthy"
    })
    .await;
    let status = get_json(s.addr, "/status").await.1;
    let untrusted = &status["backends"][2];
    assert_eq!(untrusted["lastError"]["category"], "tls", "{untrusted}");
    let message = untrusted["lastError"]["message"].as_str().unwrap();
    assert!(
        message.contains("unknown issuer") && message.contains("caBundlePath"),
        "{message}"
    );
    assert_eq!(
        status["backends"][1]["tls"]["clientCertPath"],
        json!(pki.client.cert.display().to_string())
    );
    // Every file path, as configuration.md says: the key's path too (never the key).
    assert_eq!(
        status["backends"][1]["tls"]["clientKeyPath"],
        json!(pki.client.key.display().to_string())
    );
    assert!(
        !status.to_string().contains("PRIVATE KEY"),
        "a key in /status"
    );

    let c = &s.client;
    for tool in ["secure_echo", "mutual_echo"] {
        let r = c
            .call_tool(tool, json!({"text": "through TLS"}))
            .await
            .unwrap();
        assert_eq!(r["content"][0]["text"], "through TLS", "{tool}");
    }
    assert!(
        !names(&c.list_tools().await.unwrap()).contains(&"untrusted_echo".to_string()),
        "an untrusted backend's tools are not advertised"
    );
    s.stop.cancel();
}

#[test]
fn tls_mistakes_name_their_key() {
    let pki = Pki::new().unwrap();
    let cases = [
        (
            r#"{name: a, url: "http://127.0.0.1:1/mcp", tls: {insecureSkipVerify: true}}"#
                .to_string(),
            "backends[0].tls: tls applies to https:// URLs",
        ),
        (
            r#"{name: a, url: "https://127.0.0.1:1/mcp", tls: {caBundlePath: "/nonexistent.pem"}}"#
                .to_string(),
            "backends[0].tls.caBundlePath: /nonexistent.pem",
        ),
        (
            format!(
                r#"{{name: a, url: "https://127.0.0.1:1/mcp", tls: {{clientCertPath: "{}"}}}}"#,
                pki.client.cert.display()
            ),
            "backends[0].tls.clientKeyPath: clientCertPath is set without its key",
        ),
        (
            format!(
                r#"{{name: a, url: "https://127.0.0.1:1/mcp", tls: {{clientCertPath: "{}", clientKeyPath: "{}"}}}}"#,
                pki.client.cert.display(),
                pki.server.key.display()
            ),
            "backends[0].tls.clientKeyPath: the key does not go with the certificate",
        ),
        (
            r#"{name: a, url: "https://127.0.0.1:1/mcp", tls: {caBundle: "x"}}"#.to_string(),
            "caBundle",
        ),
    ];
    for (backend, expected) in cases {
        let yaml = format!("backends:\n  - {backend}\n");
        let e = VmcpConfig::from_yaml("vmcp.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{backend}\n  gave: {e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
    }
}
