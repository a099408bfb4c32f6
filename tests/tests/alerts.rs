//! The chart's PrometheusRule and Grafana dashboard: every expression is valid PromQL (parsed by
//! promql-parser, the same grammar `promtool check rules` applies) and names only series the
//! operator or the gateway export (read from their own registries), every alert has a severity, a
//! summary and a description. No control plane: `helm template` only.

use std::collections::BTreeSet;
use std::process::Command;

/// The chart rendered with the alerts and the dashboard on.
fn rendered() -> Vec<serde_yaml::Value> {
    let tools = xtask::tools::ensure().expect("the cached tools (helm)");
    let chart = xtask::paths::workspace_root().join("charts").join("govpaas");
    let out = Command::new(&tools.helm)
        .args(["template", "govpaas"])
        .arg(&chart)
        .args(["--namespace", "govpaas-system", "--kube-version", "1.37.2"])
        .args(["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"])
        .output()
        .expect("helm template");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    text.split("\n---")
        .filter_map(|document| serde_yaml::from_str::<serde_yaml::Value>(document).ok())
        .filter(|document| !document.is_null())
        .collect()
}

fn of_kind<'a>(documents: &'a [serde_yaml::Value], kind: &str) -> Vec<&'a serde_yaml::Value> {
    documents.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

/// Every series name the two processes export: counters with `_total`, histograms with their
/// `_bucket`, `_sum` and `_count`. A family shows only once it has a series, so each is touched
/// first, as a running process would.
fn exported() -> BTreeSet<String> {
    let telemetry = govpaas_operator::telemetry::Telemetry::new();
    {
        let mut timer = telemetry.metrics.reconcile("tenant");
        timer.failed("Kube");
    }
    telemetry.metrics.set_managed("tenant", 1);
    telemetry.metrics.set_rotation_phase("Stable");
    telemetry.metrics.set_leader(true);
    let operator = telemetry.metrics.render();

    use govpaas_gateway::metrics::{Metrics, RefusalReason, StatusLabels};
    let metrics = Metrics::default();
    metrics.request(Some(&("H49.12".to_owned(), "land-records".to_owned())), 200, None, 0.01);
    metrics.refused(RefusalReason::HandshakeRefused);
    metrics.handshake_failed(&std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    metrics.exchanges.get_or_create(&StatusLabels { status: 200 }).inc();
    metrics.audit_written(&Ok::<(), ()>(()));
    metrics.watch_budget("request", govpaas_gateway::body::BodyBudget::new(1024));
    let gateway = metrics.render();
    let mut names = BTreeSet::new();
    for line in operator.lines().chain(gateway.lines()) {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => ["bucket", "sum", "count"].iter().all(|suffix| names.insert(format!("{name}_{suffix}"))),
            _ => names.insert(name.to_owned()),
        };
    }
    // Read when scraped, once their source exists (the route table, the audit log, the certificate).
    names.extend(govpaas_gateway::metrics::SCRAPED_GAUGES.iter().map(|name| format!("lgsp_gateway_{name}")));
    names
}

/// The govpaas series an expression reads.
fn series_in(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["govpaas_", "lgsp_gateway_"] {
        for (at, _) in expression.match_indices(prefix) {
            let preceded = expression[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded {
                continue;
            }
            let name: String =
                expression[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            names.insert(name);
        }
    }
    names
}

fn check_expression(expression: &str, known: &BTreeSet<String>, context: &str) {
    promql_parser::parser::parse(expression).unwrap_or_else(|error| panic!("{context}: {expression:?}: {error}"));
    let used = series_in(expression);
    assert!(!used.is_empty(), "{context}: {expression:?} reads no govpaas series");
    for name in used {
        assert!(known.contains(&name), "{context}: {name} is exported by neither the operator nor the gateway");
    }
}

#[test]
fn every_alert_is_valid_promql_over_exported_series_and_explained() {
    let documents = rendered();
    let known = exported();
    let rules = of_kind(&documents, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    let mut alerts = Vec::new();
    for group in rules[0]["spec"]["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("an alert name").to_owned();
            check_expression(rule["expr"].as_str().expect("an expression"), &known, &alert);
            assert!(matches!(rule["labels"]["severity"].as_str(), Some("warning" | "critical")), "{alert}: a severity");
            for annotation in ["summary", "description"] {
                let text = rule["annotations"][annotation].as_str().unwrap_or_default();
                assert!(text.len() > 20, "{alert}: a {annotation}");
            }
            if let Some(duration) = rule["for"].as_str() {
                promql_parser::util::parse_duration(duration)
                    .unwrap_or_else(|e| panic!("{alert}: for {duration}: {e}"));
            }
            alerts.push(alert);
        }
    }
    // What the operations guide promises to alert on.
    for expected in [
        "GovpaasCertificateRenewalOverdue",
        "GovpaasReconcileErrors",
        "GovpaasCaRotationStalled",
        "LgspGatewayServerErrors",
        "LgspGatewayAuditWriteFailures",
    ] {
        assert!(alerts.iter().any(|a| a == expected), "{expected} in {alerts:?}");
    }
}

#[test]
fn the_dashboard_is_valid_json_whose_panels_read_exported_series() {
    let documents = rendered();
    let known = exported();
    let config_map = of_kind(&documents, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"].as_str() == Some("govpaas-dashboard"))
        .expect("the dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"].as_str(), Some("1"));
    let json = config_map["data"]["govpaas-province.json"].as_str().expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            check_expression(target["expr"].as_str().expect("an expression"), &known, title);
        }
    }

    // Quota for capacity planning, from the operator's govpaas_tenant_quota: what is in use against
    // each tenant's own share, for the resource the `resource` variable picks.
    let expressions = |panel: &serde_json::Value| -> Vec<String> {
        panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect()
    };
    let quota_panels: Vec<&serde_json::Value> = panels
        .iter()
        .filter(|p| expressions(p).iter().any(|e| series_in(e).contains("govpaas_tenant_quota")))
        .collect();
    assert!(quota_panels.len() >= 3, "{} quota panels", quota_panels.len());
    let all: Vec<String> = quota_panels.iter().flat_map(|p| expressions(p)).collect();
    assert!(
        all.iter().any(|e| e.contains("share=\"used\"") && e.contains("share=\"own\"") && e.contains(" / ")),
        "a panel of use against the own share: {all:?}"
    );
    assert!(all.iter().any(|e| e.contains("resource=\"$resource\"")), "{all:?}");
    let variable = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "resource")
        .expect("a `resource` variable");
    let offered: Vec<&str> =
        variable["options"].as_array().expect("options").iter().filter_map(|o| o["value"].as_str()).collect();
    let resources: Vec<&str> = govpaas_crds::quota::Resource::ALL.iter().map(|r| r.field()).collect();
    assert_eq!(
        offered, resources,
        "the variable offers each quota resource, as the metric's `resource` label names it"
    );
}

#[test]
fn an_unknown_series_or_bad_promql_is_caught() {
    let known = exported();
    assert!(known.contains("lgsp_gateway_requests_total") && known.contains("govpaas_reconcile_errors_total"));
    assert!(known.contains("lgsp_gateway_request_duration_seconds_bucket"), "{known:?}");
    let unknown = std::panic::catch_unwind(|| check_expression("rate(govpaas_made_up_total[5m])", &known, "test"));
    assert!(unknown.is_err(), "an unknown series passed");
    let broken =
        std::panic::catch_unwind(|| check_expression("sum(rate(govpaas_reconciles_total[5m])", &known, "test"));
    assert!(broken.is_err(), "unbalanced parentheses passed");
}
