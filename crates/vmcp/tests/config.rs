//! Every way a vmcp.yaml can be wrong, and the one message each gives.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_mcp::{ProbeMethod, TransportKind};
use hale_vmcp::VmcpConfig;
use hale_vmcp::config::{ConflictResolution, PartialFailureMode};

const GOOD: &str = r#"
name: team-tools
listen: 127.0.0.1:4483
backends:
  - {name: weather, url: "http://127.0.0.1:8081/mcp", transport: streamable-http}
  - {name: search,  url: "http://127.0.0.1:8082/sse", transport: sse}
aggregation:
  conflictResolution: prefix
  conflictResolutionConfig: {prefixFormat: "{workload}_", priorityOrder: [weather, search]}
  tools:
    - workload: weather
      filter: [forecast]
      overrides: {forecast: {name: weather_forecast, description: "Five days ahead"}}
operational:
  timeouts: {default: 30s, perWorkload: {search: 45s}}
  failureHandling:
    healthCheckInterval: 30s
    healthCheckTimeout: 10s
    healthCheckMethod: ping
    unhealthyThreshold: 3
    healthyThreshold: 1
    degradedLatency: 5s
    partialFailureMode: fail
    circuitBreaker: {enabled: true, failureThreshold: 5, timeout: 60s, maxTimeout: 5m, halfOpenMaxRequests: 1}
"#;

#[test]
fn the_spec_example_reads_as_written() {
    let c = VmcpConfig::from_yaml("vmcp.yaml", GOOD).unwrap();
    assert_eq!(c.name, "team-tools");
    assert_eq!(c.listen.to_string(), "127.0.0.1:4483");
    assert_eq!(c.backends.len(), 2);
    assert_eq!(c.backends[1].transport, TransportKind::Sse);
    assert_eq!(
        c.conflict_resolution,
        ConflictResolution::Prefix {
            format: "{workload}_".into()
        }
    );
    let weather = &c.tools["weather"];
    assert_eq!(
        weather.filter.as_deref(),
        Some(&["forecast".to_string()][..])
    );
    assert_eq!(
        weather.overrides["forecast"].name.as_deref(),
        Some("weather_forecast")
    );
    assert_eq!(c.timeout_for("search"), Duration::from_secs(45));
    assert_eq!(c.timeout_for("weather"), Duration::from_secs(30));
    assert_eq!(c.health.check_interval, Duration::from_secs(30));
    assert_eq!(c.health_check_method, ProbeMethod::Ping);
    assert_eq!(c.partial_failure_mode, PartialFailureMode::Fail);
    assert_eq!(c.breaker.max_timeout, Duration::from_secs(300));
    assert!(c.breaker_enabled);
}

#[test]
fn a_file_with_only_a_backend_means_toolhives_defaults() {
    let c = VmcpConfig::from_yaml(
        "vmcp.yaml",
        "backends:\n  - {name: a, url: \"http://127.0.0.1:1/mcp\"}\n",
    )
    .unwrap();
    assert_eq!(c.session_idle_timeout, Duration::from_secs(1800));
    assert_eq!(c.max_sessions_per_backend, 1000);
    assert!(c.allowed_hosts.is_empty() && c.allowed_origins.is_empty());
    assert_eq!(c.listen.to_string(), "127.0.0.1:4483");
    assert_eq!(c.health.check_interval, Duration::from_secs(30));
    assert_eq!(c.health.check_timeout, Duration::from_secs(10));
    assert_eq!(c.health.unhealthy_threshold, 3);
    assert_eq!(c.breaker.failure_threshold, 5);
    assert_eq!(c.breaker.timeout, Duration::from_secs(60));
    assert_eq!(c.default_timeout, Duration::from_secs(30));
}

/// `(what was changed, the YAML, the expected message)`.
#[test]
fn each_mistake_gives_one_message_naming_the_key_and_what_is_expected() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown top-level key",
            "backends: []\nlisten: 127.0.0.1:1\nbackend: []\n",
            "vmcp.yaml:3: backend: unknown field `backend`",
        ),
        (
            "unknown nested key",
            "operational:\n  failureHandling:\n    unhealthyTreshold: 3\n",
            "vmcp.yaml:3: operational.failureHandling.unhealthyTreshold: unknown field `unhealthyTreshold`",
        ),
        (
            "bad duration",
            "operational:\n  failureHandling:\n    healthCheckInterval: 10\n",
            "vmcp.yaml:3: operational.failureHandling.healthCheckInterval: invalid duration \"10\": missing unit",
        ),
        (
            "zero duration",
            "operational:\n  timeouts: {default: 0s}\n",
            "vmcp.yaml:2: operational.timeouts.default: expected a positive duration",
        ),
        (
            "threshold below 1",
            "operational:\n  failureHandling:\n    unhealthyThreshold: 0\n",
            "vmcp.yaml:3: operational.failureHandling.unhealthyThreshold: expected a whole number of at least 1, got 0",
        ),
        (
            "breaker threshold below 1",
            "operational:\n  failureHandling:\n    circuitBreaker: {failureThreshold: 0}\n",
            "operational.failureHandling.circuitBreaker.failureThreshold: expected a whole number of at least 1, got 0",
        ),
        (
            "negative threshold",
            "operational:\n  failureHandling:\n    healthyThreshold: -1\n",
            "operational.failureHandling.healthyThreshold",
        ),
        (
            "timeout not below the interval",
            "operational:\n  failureHandling:\n    healthCheckInterval: 10s\n    healthCheckTimeout: 10s\n",
            "vmcp.yaml:4: operational.failureHandling.healthCheckTimeout: expected less than healthCheckInterval (10s), got 10s",
        ),
        (
            "maxTimeout below timeout",
            "operational:\n  failureHandling:\n    circuitBreaker: {timeout: 2m, maxTimeout: 1m}\n",
            "operational.failureHandling.circuitBreaker.maxTimeout: expected at least circuitBreaker.timeout (120s), got 60s",
        ),
        (
            "duplicate backend",
            "backends:\n  - {name: a, url: \"http://127.0.0.1:1/mcp\"}\n  - {name: a, url: \"http://127.0.0.1:2/mcp\"}\n",
            "vmcp.yaml:3: backends[1].name: duplicate backend name \"a\"",
        ),
        (
            "bad URL",
            "backends:\n  - {name: a, url: \"ftp://127.0.0.1/mcp\"}\n",
            "vmcp.yaml:2: backends[0].url: \"ftp://127.0.0.1/mcp\": expected an http:// or https:// URL",
        ),
        (
            "not a URL",
            "backends:\n  - {name: a, url: \"http://\"}\n",
            "backends[0].url",
        ),
        (
            "bad transport",
            "backends:\n  - {name: a, url: \"http://127.0.0.1/mcp\", transport: stdio}\n",
            "backends[0].transport: unknown transport \"stdio\": expected streamable-http or sse",
        ),
        (
            "manual without overrides",
            "backends:\n  - {name: a, url: \"http://127.0.0.1/mcp\"}\naggregation:\n  conflictResolution: manual\n",
            "vmcp.yaml:4: aggregation.tools: conflictResolution manual resolves collisions only through overrides",
        ),
        (
            "unknown strategy",
            "aggregation:\n  conflictResolution: newest\n",
            "aggregation.conflictResolution: expected prefix, priority or manual, got \"newest\"",
        ),
        (
            "priority without order",
            "aggregation:\n  conflictResolution: priority\n",
            "aggregation.conflictResolutionConfig.priorityOrder: conflictResolution priority needs priorityOrder",
        ),
        (
            "priority naming an unknown backend",
            "backends:\n  - {name: a, url: \"http://127.0.0.1/mcp\"}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {priorityOrder: [a, b]}\n",
            "priorityOrder: \"b\" is not a configured backend",
        ),
        (
            "prefix without {workload}",
            "aggregation:\n  conflictResolutionConfig: {prefixFormat: \"x_\"}\n",
            "prefixFormat: expected a format containing {workload}",
        ),
        (
            "tool policy for an unknown backend",
            "aggregation:\n  tools:\n    - workload: ghost\n",
            "vmcp.yaml:3: aggregation.tools[0].workload: \"ghost\" is not a configured backend",
        ),
        (
            "timeout for an unknown backend",
            "operational:\n  timeouts: {perWorkload: {ghost: 5s}}\n",
            "operational.timeouts.perWorkload.ghost: \"ghost\" is not a configured backend",
        ),
        (
            "bad health check method",
            "operational:\n  failureHandling:\n    healthCheckMethod: GET\n",
            "operational.failureHandling.healthCheckMethod: unknown health check method \"GET\": expected ping or tools/list",
        ),
        (
            "bad partial failure mode",
            "operational:\n  failureHandling:\n    partialFailureMode: best-effort\n",
            "operational.failureHandling.partialFailureMode: expected fail or best_effort, got \"best-effort\"",
        ),
        (
            "bad listen address",
            "listen: localhost\n",
            "vmcp.yaml:1: listen: expected IP:PORT",
        ),
        ("not YAML at all", "backends: [\n", "vmcp.yaml:"),
        (
            "an empty file",
            "",
            "backends: expected at least one backend",
        ),
        (
            "whitespace only",
            "  \n\n",
            "backends: expected at least one backend",
        ),
        (
            "a name only",
            "name: tools\n",
            "backends: expected at least one backend",
        ),
        (
            "no backends",
            "backends: []\n",
            "backends: expected at least one backend",
        ),
        (
            "zero sessions per backend",
            "operational:\n  maxSessionsPerBackend: 0\n",
            "vmcp.yaml:2: operational.maxSessionsPerBackend: expected a whole number of at least 1",
        ),
    ];
    for (what, yaml, expected) in cases {
        let err = VmcpConfig::from_yaml("vmcp.yaml", yaml)
            .expect_err(what)
            .to_string();
        assert!(
            err.contains(expected),
            "{what}:\n  got      {err}\n  expected {expected}"
        );
        assert!(!err.contains('\n'), "{what}: one line: {err}");
    }
}

#[test]
fn backend_flags_build_a_configuration_and_refuse_bad_ones() {
    let listen = "127.0.0.1:0".parse().unwrap();
    let c = VmcpConfig::from_flags(
        "vmcp",
        listen,
        &[
            "a=http://127.0.0.1:1/mcp".into(),
            "b=http://127.0.0.1:2/sse@sse".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.backends[0].transport, TransportKind::StreamableHttp);
    assert_eq!(c.backends[1].transport, TransportKind::Sse);
    assert_eq!(c.backends[1].url, "http://127.0.0.1:2/sse");
    let err = VmcpConfig::from_flags("vmcp", listen, &["no-equals".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--backend: backends[0]: \"no-equals\": expected NAME=URL"),
        "{err}"
    );
    let err = VmcpConfig::from_flags(
        "vmcp",
        listen,
        &["a=http://x/mcp".into(), "a=http://y/mcp".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("duplicate backend name"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let err = VmcpConfig::from_file(std::path::Path::new("/nonexistent/vmcp.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/vmcp.yaml: cannot read the file"),
        "{err}"
    );
}

#[test]
fn each_auth_mistake_names_its_key_and_never_a_secret() {
    const B: &str = "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\"}\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown incomingAuth type",
            "incomingAuth: {type: ldap}\n",
            "vmcp.yaml:3: incomingAuth.type: expected anonymous, oidc or static, got \"ldap\"",
        ),
        (
            "oidc without audience",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\"}\n",
            "incomingAuth.audience: type oidc needs audience",
        ),
        (
            "incomingAuth as a bare word",
            "incomingAuth: anonymous\n",
            "vmcp.yaml:3: incomingAuth: expected a mapping ({key: value, …} or one `key: value` per line)",
        ),
        (
            "scopes not a list",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\", audience: a, requiredScopes: mcp}\n",
            "incomingAuth.requiredScopes: expected a list (such as [a, b] or one `- item` per line)",
        ),
        (
            "an audience that is a mapping",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\", audience: {a: 1}}\n",
            "incomingAuth.audience: expected a string or a list of strings",
        ),
        (
            "an empty audience list",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\", audience: []}\n",
            "incomingAuth.audience: expected the audience tokens must name (aud), or a list of them, got an empty one",
        ),
        (
            "oidc without issuer",
            "incomingAuth: {type: oidc, audience: x}\n",
            "incomingAuth.issuer: type oidc needs issuer",
        ),
        (
            "issuer not a URL",
            "incomingAuth: {type: oidc, issuer: id.example, audience: x}\n",
            "incomingAuth.issuer: expected an http:// or https:// URL",
        ),
        (
            "bad clock skew",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\", audience: x, clockSkew: 1h}\n",
            "incomingAuth.clockSkew: expected at most 10m",
        ),
        (
            "a scope with a space",
            "incomingAuth: {type: oidc, issuer: \"https://id.example\", audience: x, requiredScopes: [\"a b\"]}\n",
            "incomingAuth.requiredScopes: expected scope names without spaces",
        ),
        (
            "an oidc key on anonymous",
            "incomingAuth: {type: anonymous, issuer: \"https://id.example\"}\n",
            "incomingAuth.issuer: issuer applies to type oidc only, not anonymous",
        ),
        (
            "static without a file",
            "incomingAuth: {type: static}\n",
            "incomingAuth.tokensFile: type static needs tokensFile",
        ),
        (
            "static with a missing file",
            "incomingAuth: {type: static, tokensFile: /nonexistent/hale-tokens}\n",
            "incomingAuth.tokensFile: /nonexistent/hale-tokens: cannot read it",
        ),
        (
            "unknown statusAuth key",
            "operational:\n  statusAuth: {type: anonymous, user: x}\n",
            "operational.statusAuth.user: unknown field `user`",
        ),
        (
            "a reserved backend header",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", headers: {Mcp-Session-Id: s3cret-value}}\n",
            "backends[0].headers.Mcp-Session-Id: header \"Mcp-Session-Id\": hale sets this header itself",
        ),
        (
            "both tokenEnv and tokenFile",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", auth: {type: bearer, tokenEnv: A, tokenFile: /b}}\n",
            "backends[0].auth: type bearer needs exactly one of tokenEnv",
        ),
        (
            "an unset token variable",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", auth: {type: bearer, tokenEnv: HALE_TEST_NO_SUCH_VARIABLE}}\n",
            "backends[0].auth.tokenEnv: the environment variable HALE_TEST_NO_SUCH_VARIABLE is not set or empty",
        ),
        (
            "a missing token file",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", auth: {type: bearer, tokenFile: /nonexistent/token}}\n",
            "backends[0].auth.tokenFile: token file /nonexistent/token: cannot read it",
        ),
        (
            "Authorization twice",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", headers: {Authorization: Bearer s3cret-value}, auth: {type: bearer, tokenFile: /b}}\n",
            "backends[0].headers.Authorization: give the token either as headers.Authorization or with auth",
        ),
        (
            "an outgoing auth type",
            "backends:\n  - {name: kit, url: \"http://127.0.0.1:1/mcp\", auth: {type: basic}}\n",
            "backends[0].auth.type: expected bearer, got \"basic\"",
        ),
    ];
    for (what, yaml, expected) in cases {
        let text = if yaml.starts_with("backends:") {
            yaml.to_string()
        } else {
            format!("{B}{yaml}")
        };
        let err = VmcpConfig::from_yaml("vmcp.yaml", &text)
            .expect_err(what)
            .to_string();
        assert!(
            err.contains(expected),
            "{what}:\n  got      {err}\n  expected {expected}"
        );
        assert!(!err.contains("s3cret"), "{what}: a secret in {err}");
    }
}
