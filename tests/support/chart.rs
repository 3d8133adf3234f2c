//! Renders charts/routero-operator with helm and reads the result as JSON values.
use serde::Deserialize;
use serde_json::Value;

use super::tools::{self, Output};

pub const CHART: &str = "charts/routero-operator";
pub const RELEASE: &str = "routero";
pub const RELEASE_NAMESPACE: &str = "routero-system";

/// The only values without a default: everything else is the chart's default.
pub const REQUIRED_VALUES: &str = "
gateway:
  url: http://routero-gateway.routero-system:4000
  adminKeySecret:
    name: routero-admin
";

/// Every optional feature on (the namespaced mode is a separate check: it changes the RBAC kinds).
pub const ALL_FEATURES: &str = "
gateway:
  url: https://gateway.example.com
  adminKeySecret: {name: routero-admin, key: master-key}
  rateLimit: 50
  timeout: 15s
adminNamespaces: [platform, routero-system]
resyncInterval: 10m
logFormat: text
replicaCount: 2
leaderElection: {enabled: true, leaseName: routero-leader, leaseDuration: 20s}
alerting:
  enabled: true
  slackWebhookSecret: {name: routero-slack, key: url}
  alertTypes: [budget_alerts, spend_reports]
metrics:
  service: {annotations: {prometheus.io/scrape: \"true\"}}
  serviceMonitor: {enabled: true, labels: {release: prometheus}}
  grafanaDashboard: {enabled: true, namespace: monitoring, annotations: {grafana_folder: Routero}}
  prometheusRule: {enabled: true, labels: {release: prometheus}}
podDisruptionBudget: {enabled: true, minAvailable: 1}
networkPolicy:
  enabled: true
  metricsFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
  egress:
    - ports: [{port: 443, protocol: TCP}, {port: 6443, protocol: TCP}, {port: 4000, protocol: TCP}]
serviceAccount: {annotations: {example.com/role: routero}}
imagePullSecrets: [{name: regcred}]
podAnnotations: {example.com/team: platform}
podLabels: {example.com/tier: control}
priorityClassName: platform-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
     labelSelector: {matchLabels: {app.kubernetes.io/name: routero-operator}}}
extraEnv: [{name: RUST_BACKTRACE, value: \"1\"}]
";

/// `helm <args>` with `values` on stdin (pass `-f -` in `args` to use them).
pub fn helm(args: &[&str], values: &str) -> Output {
    tools::run(&tools::tool("helm"), args, values)
}

/// `helm template` of the chart with `values` (and the CRDs when `crds`), in the release namespace.
pub fn template(values: &str, crds: bool) -> Output {
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "-f",
        "-",
    ];
    if crds {
        args.push("--include-crds");
    }
    helm(&args, values)
}

/// The rendered objects of a successful `helm template`.
pub fn render(values: &str) -> Vec<Value> {
    let out = template(values, false);
    assert!(out.ok, "helm template failed:\n{}", out.stderr);
    documents(&out.stdout)
}

/// The documents of a YAML stream, as JSON values; empty documents are skipped.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The single object of `kind`, or a panic naming what was rendered.
pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {kind} among {:?}",
        kinds(objects)
    );
    found[0]
}

pub fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}
