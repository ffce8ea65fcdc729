//! The operations material under `docs/` is checked like code: the Grafana dashboard, the
//! alert rules and the Kubernetes manifests parse, name only metrics hale exports, and
//! wire the probes to the endpoints that exist.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn docs(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn yaml_documents(path: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&docs(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn exported() -> BTreeSet<&'static str> {
    hale_vmcp::METRICS
        .iter()
        .chain(hale_proxy::METRICS)
        .copied()
        .collect()
}

/// Every `toolhive_…` name in `text`, with a histogram's `_bucket`/`_sum`/`_count`
/// series folded into the histogram's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("toolhive_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| exported().contains(base))
            .unwrap_or(name);
        // `toolhive_vmcp_*` in prose is a prefix, not a name.
        if !base.ends_with('_') {
            names.insert(base.to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn assert_all_exported(what: &str, names: &BTreeSet<String>) {
    let exported = exported();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} names metrics hale does not export: {unknown:?}"
    );
}

#[test]
fn the_grafana_dashboard_shows_every_metric_and_only_real_ones() {
    let dashboard: Value = serde_json::from_str(&docs("grafana/hale-dashboard.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() <= 24);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str() {
            exprs.push_str(query);
        }
    }
    let named = metric_names(&exprs);
    assert_all_exported("the dashboard", &named);
    let missing: Vec<&str> = exported()
        .into_iter()
        .filter(|m| !named.contains(*m))
        .collect();
    assert!(missing.is_empty(), "the dashboard never shows {missing:?}");
}

#[test]
fn the_alert_rules_cover_the_three_failures_and_name_real_metrics() {
    let [rules] = yaml_documents("prometheus/hale-alerts.yaml")
        .try_into()
        .unwrap();
    let mut alerts = BTreeSet::new();
    let mut exprs = String::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(alerts.insert(name.to_string()), "{name} twice");
            let expr = rule["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{name}: {expr}");
            exprs.push_str(expr);
            exprs.push('\n');
            assert!(
                ["critical", "warning", "info"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap()),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            assert!(
                rule["annotations"]["description"].is_string(),
                "{name}: description"
            );
        }
    }
    assert_all_exported("the alert rules", &metric_names(&exprs));
    for needed in [
        "HaleVmcpBackendDown",
        "HaleVmcpCircuitOpen",
        "HaleProxyAboutToShutDown",
    ] {
        assert!(alerts.contains(needed), "no {needed} alert");
    }
}

/// The containers of every Deployment in a manifest file, with the kinds of all its objects.
fn containers(path: &str) -> (Vec<Value>, Vec<Value>) {
    let objects = yaml_documents(path);
    let containers = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    (objects, containers)
}

fn probe_path(container: &Value, probe: &str) -> String {
    let get = &container[probe]["httpGet"];
    let port = get["port"].as_str().unwrap();
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port),
        "{probe} names port {port}, which the container does not declare"
    );
    get["path"].as_str().unwrap().to_string()
}

#[test]
fn the_vmcp_manifest_probes_health_and_readyz_and_its_configuration_loads() {
    let (objects, containers) = containers("kubernetes/vmcp.yaml");
    let vmcp = containers.iter().find(|c| c["name"] == "vmcp").unwrap();
    assert_eq!(probe_path(vmcp, "livenessProbe"), "/health");
    assert_eq!(probe_path(vmcp, "readinessProbe"), "/readyz");
    let args: Vec<&str> = vmcp["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..3], ["vmcp", "--config", "/etc/hale/vmcp.yaml"]);

    // The Secret's keys are files where the container mounts it: write them to a
    // directory of the test's own and point the configuration there, so that the token
    // files it names are checked to be the Secret's.
    let secret = objects.iter().find(|o| o["kind"] == "Secret").unwrap();
    let mount = vmcp["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "secrets")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = std::env::temp_dir().join(format!("hale-manifest-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (key, value) in secret["stringData"].as_object().unwrap() {
        std::fs::write(dir.join(key), value.as_str().unwrap()).unwrap();
    }
    let map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let text = map["data"]["vmcp.yaml"]
        .as_str()
        .unwrap()
        .replace(&mount, &dir.display().to_string());
    let config = hale_vmcp::VmcpConfig::from_yaml("vmcp.yaml", &text).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !config.listen.ip().is_loopback(),
        "a pod must listen beyond loopback"
    );
    assert!(
        config.incoming_auth.is_some(),
        "a pod listening beyond loopback needs incomingAuth"
    );
    let container_port = vmcp["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(u64::from(config.listen.port()), container_port);
    assert!(objects.iter().any(|o| o["kind"] == "Service"));
    assert_all_exported(
        "the vMCP manifest",
        &metric_names(&docs("kubernetes/vmcp.yaml")),
    );
}

#[test]
fn the_proxy_manifest_probes_health_and_its_variables_are_valid() {
    let (_, containers) = containers("kubernetes/proxy.yaml");
    let proxy = containers
        .iter()
        .find(|c| c["name"] == "hale-proxy")
        .unwrap();
    assert_eq!(probe_path(proxy, "livenessProbe"), "/health");
    assert_eq!(probe_path(proxy, "readinessProbe"), "/health");
    let vars: Vec<(String, String)> = proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        vars.iter()
            .filter(|(k, _)| k.starts_with("TOOLHIVE_HEALTH_CHECK_"))
            .count(),
        4
    );
    let (_, warnings) = hale_proxy::env::from_vars(vars);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn the_operations_guide_explains_every_metric() {
    let guide = docs("operations.md");
    let missing: Vec<&&str> = hale_vmcp::METRICS
        .iter()
        .chain(hale_proxy::METRICS)
        .filter(|m| !guide.contains(&format!("`{m}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not explain {missing:?}"
    );
    assert_all_exported("docs/operations.md", &metric_names(&guide));
}

#[test]
fn the_replicated_manifest_shares_sessions_through_redis_and_its_configuration_loads() {
    let (objects, containers) = containers("kubernetes/vmcp-replicas.yaml");
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "hale-vmcp")
        .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    let vmcp = containers.iter().find(|c| c["name"] == "vmcp").unwrap();
    assert_eq!(probe_path(vmcp, "readinessProbe"), "/readyz");
    let service = objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "hale-vmcp")
        .unwrap();
    assert!(
        service["spec"].get("sessionAffinity").is_none(),
        "with sessions in Redis no affinity is needed"
    );
    let map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let text = map["data"]["vmcp.yaml"].as_str().unwrap();
    // The password comes from the Secret through the variable passwordEnv names.
    let variable = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("passwordEnv: "))
        .unwrap();
    assert!(
        vmcp["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == variable
                && e["valueFrom"]["secretKeyRef"]["name"] == "hale-vmcp-redis"),
        "{variable} is not set from the Secret"
    );
    // (Setting a variable is not possible here: check the rest of the file without it.)
    let without = text.replace(&format!("passwordEnv: {variable}"), "");
    let config = hale_vmcp::VmcpConfig::from_yaml("vmcp.yaml", &without).unwrap();
    match &config.session_storage {
        hale_vmcp::config::SessionStorage::Redis(r) => {
            assert_eq!(r.address, "hale-vmcp-redis:6379");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == "hale-vmcp-redis")
    );
}
