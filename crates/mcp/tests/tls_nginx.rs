//! hale-mcp's client over TLS to a real TLS terminator: nginx (Debian's) in front of a
//! test server, with certificates made by a test CA. Each way a handshake goes wrong is
//! its own error, in the `tls` category, saying what to change.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_core::FailureCategory;
use hale_mcp::{ClientOptions, McpClient, McpError, Tls, TlsOptions, TransportKind};
use hale_testkit::nginx::{Nginx, NginxTls};
use hale_testkit::pki::{Pair, Pki};
use hale_testkit::{ServerConfig, TestServer, Transport};

fn nginx(server: &Pair, client_ca: Option<&std::path::Path>, backend: &TestServer) -> Nginx {
    Nginx::start(&NginxTls {
        server,
        client_ca,
        upstream: backend.addr(),
    })
    .unwrap()
}

async fn connect(url: &str, tls: TlsOptions) -> Result<McpClient, McpError> {
    connect_over(url, tls, TransportKind::StreamableHttp).await
}

async fn connect_over(
    url: &str,
    tls: TlsOptions,
    transport: TransportKind,
) -> Result<McpClient, McpError> {
    let options = ClientOptions {
        transport,
        request_timeout: Duration::from_secs(5),
        tls: Some(Tls::new(&tls).unwrap()),
        ..ClientOptions::default()
    };
    McpClient::connect(url, options).await
}

fn trusting(pki: &Pki) -> TlsOptions {
    TlsOptions {
        ca_bundle: Some(pki.ca.clone()),
        ..TlsOptions::default()
    }
}

/// The error's message, after checking it is a TLS failure.
fn tls_reason(result: Result<McpClient, McpError>) -> String {
    let e = result.map(|_| ()).unwrap_err();
    assert_eq!(e.category(), Some(FailureCategory::Tls), "{e}");
    e.to_string()
}

#[tokio::test]
async fn a_backend_behind_tls_is_reached_with_its_ca_over_both_transports() {
    let pki = Pki::new().unwrap();
    let streamable = TestServer::start(ServerConfig::default()).await.unwrap();
    let sse = TestServer::start(ServerConfig {
        transport: Transport::Sse,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let front = nginx(&pki.server, None, &streamable);
    let client = connect(&front.url("/mcp"), trusting(&pki)).await.unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());
    // By name too (the certificate carries localhost and 127.0.0.1).
    let client = connect(&front.localhost_url("/mcp"), trusting(&pki))
        .await
        .unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());

    let front = nginx(&pki.server, None, &sse);
    let client = connect_over(&front.url("/sse"), trusting(&pki), TransportKind::Sse)
        .await
        .unwrap();
    let echo = client
        .call_tool("echo", serde_json::json!({"text": "over TLS"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "over TLS");
}

#[tokio::test]
async fn each_certificate_problem_is_a_tls_failure_that_says_what_to_change() {
    let pki = Pki::new().unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();

    // Signed by a CA hale was not told about.
    let front = nginx(&pki.server, None, &backend);
    let e = tls_reason(connect(&front.url("/mcp"), TlsOptions::default()).await);
    assert!(
        e.contains("unknown issuer") && e.contains("caBundlePath"),
        "{e}"
    );

    // Expired.
    let front = nginx(&pki.expired, None, &backend);
    let e = tls_reason(connect(&front.url("/mcp"), trusting(&pki)).await);
    assert!(e.contains("expired"), "{e}");

    // For another name: refused by address, accepted with serverName.
    let front = nginx(&pki.other_name, None, &backend);
    let e = tls_reason(connect(&front.url("/mcp"), trusting(&pki)).await);
    assert!(
        e.contains("not valid for the name") && e.contains("serverName"),
        "{e}"
    );
    let named = TlsOptions {
        server_name: Some("backend.internal".into()),
        ..trusting(&pki)
    };
    let client = connect(&front.url("/mcp"), named).await.unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());

    // Plain HTTP spoken to a TLS port, and TLS to a plain one.
    let e = connect(
        &backend.url().replace("http://", "https://"),
        trusting(&pki),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.category(), Some(FailureCategory::Tls), "{e}");
    assert!(e.to_string().contains("scheme"), "{e}");
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_gets_one_when_configured() {
    let pki = Pki::new().unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let front = nginx(&pki.server, Some(&pki.ca), &backend);

    let e = tls_reason(connect(&front.url("/mcp"), trusting(&pki)).await);
    assert!(
        e.contains("requires a client certificate") && e.contains("clientCertPath"),
        "{e}"
    );
    // A certificate the server's CA did not sign.
    let stranger = TlsOptions {
        client_cert: Some(pki.stranger.cert.clone()),
        client_key: Some(pki.stranger.key.clone()),
        ..trusting(&pki)
    };
    let e = tls_reason(connect(&front.url("/mcp"), stranger).await);
    assert!(e.contains("refused the client certificate"), "{e}");

    let mtls = TlsOptions {
        client_cert: Some(pki.client.cert.clone()),
        client_key: Some(pki.client.key.clone()),
        ..trusting(&pki)
    };
    let client = connect(&front.url("/mcp"), mtls).await.unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rotated_ca_bundle_is_used_without_a_restart() {
    let pki = Pki::new().unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let front = nginx(&pki.server, None, &backend);
    let bundle = pki.dir.join("rotating-ca.pem");
    std::fs::copy(&pki.stranger_ca, &bundle).unwrap();
    let tls = Tls::new(&TlsOptions {
        ca_bundle: Some(bundle.clone()),
        ..TlsOptions::default()
    })
    .unwrap();
    let options = || ClientOptions {
        request_timeout: Duration::from_secs(5),
        tls: Some(tls.clone()),
        ..ClientOptions::default()
    };
    let e = McpClient::connect(&front.url("/mcp"), options())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("unknown issuer"), "{e}");

    std::fs::copy(&pki.ca, &bundle).unwrap();
    tokio::time::sleep(hale_mcp::FILE_RECHECK + Duration::from_millis(200)).await;
    let client = McpClient::connect(&front.url("/mcp"), options())
        .await
        .unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let pki = Pki::new().unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let front = nginx(&pki.stranger, None, &backend);
    let insecure = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    let client = connect(&front.url("/mcp"), insecure).await.unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());
}

#[test]
fn unusable_tls_files_are_refused_naming_the_key_and_file() {
    let pki = Pki::new().unwrap();
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cases = [
        (
            TlsOptions {
                ca_bundle: Some(garbage.clone()),
                ..TlsOptions::default()
            },
            "caBundlePath",
        ),
        (
            TlsOptions {
                client_cert: Some(pki.client.cert.clone()),
                ..TlsOptions::default()
            },
            "clientKeyPath",
        ),
        (
            TlsOptions {
                client_cert: Some(pki.client.cert.clone()),
                client_key: Some(garbage.clone()),
                ..TlsOptions::default()
            },
            "clientKeyPath",
        ),
        (
            // A key that belongs to another certificate.
            TlsOptions {
                client_cert: Some(pki.client.cert.clone()),
                client_key: Some(pki.server.key.clone()),
                ..TlsOptions::default()
            },
            "clientKeyPath",
        ),
        (
            TlsOptions {
                server_name: Some("not a name!".into()),
                ..TlsOptions::default()
            },
            "serverName",
        ),
    ];
    for (options, key) in cases {
        let e = Tls::new(&options).unwrap_err().to_string();
        assert!(e.starts_with(key), "{key}: {e}");
        assert!(!e.contains("PRIVATE KEY"), "a key's content in {e}");
    }
}
