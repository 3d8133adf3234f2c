//! The central admin's view, as the chart ships it: the Grafana dashboard and the Prometheus alerting rules, both
//! generated from the queries below, so neither can name a metric the operator does not export without a test
//! failing (`routero-operator dashboard` and `routero-operator rules` print them; the chart stores the output).
use serde_json::{Value, json};

/// The dashboard's template variables, as they appear in panel queries.
pub const NAMESPACE_VAR: &str = "$namespace";
pub const TEAM_VAR: &str = "$team";

/// The label filter every team- and key-scoped query carries.
const SCOPE: &str = r#"namespace=~"$namespace",team_id=~"$team""#;

/// One query of a panel, with its legend.
#[derive(Clone, Debug)]
pub struct Query {
    pub expr: String,
    pub legend: &'static str,
}

/// One dashboard panel.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: &'static str,
    pub description: &'static str,
    /// Grafana panel type: `timeseries`, `bargauge` or `stat`.
    pub kind: &'static str,
    /// Grafana unit: `currencyUSD`, `percent`, `s`, `short`, `reqps`.
    pub unit: &'static str,
    pub queries: Vec<Query>,
}

fn q(expr: impl Into<String>, legend: &'static str) -> Query {
    Query {
        expr: expr.into(),
        legend,
    }
}

/// The projected spend at the budget reset: today's spend plus the last hour's burn rate until the reset.
fn projected(scope: &str) -> String {
    format!(
        "routero_team_spend_usd{{{scope}}} + clamp_min(deriv(routero_team_spend_usd{{{scope}}}[1h]), 0) * \
         clamp_min(routero_team_budget_reset_timestamp_seconds{{{scope}}} - time(), 0)"
    )
}

/// The dashboard's panels, top to bottom.
pub fn panels() -> Vec<Panel> {
    let key_scope = SCOPE;
    vec![
        Panel {
            title: "Spend against budget",
            description: "Each team's spend in its current budget window and its budget, as the gateway reports them.",
            kind: "timeseries",
            unit: "currencyUSD",
            queries: vec![
                q(
                    format!("sum by (namespace, team_id) (routero_team_spend_usd{{{SCOPE}}})"),
                    "{{namespace}}/{{team_id}} spend",
                ),
                q(
                    format!("sum by (namespace, team_id) (routero_team_max_budget_usd{{{SCOPE}}})"),
                    "{{namespace}}/{{team_id}} budget",
                ),
            ],
        },
        Panel {
            title: "Budget used",
            description: "Spend as a percentage of the budget; 80 % and 100 % are the alert thresholds.",
            kind: "bargauge",
            unit: "percent",
            queries: vec![q(
                format!(
                    "100 * routero_team_spend_usd{{{SCOPE}}} / (routero_team_max_budget_usd{{{SCOPE}}} > 0)"
                ),
                "{{namespace}}/{{team_id}}",
            )],
        },
        Panel {
            title: "Projected spend at the budget reset",
            description: "Spend now plus the last hour's burn rate until the reset: a bar past the budget is a \
                          projected overrun.",
            kind: "bargauge",
            unit: "currencyUSD",
            queries: vec![q(projected(SCOPE), "{{namespace}}/{{team_id}}")],
        },
        Panel {
            title: "Time to the budget reset",
            description: "How long until the gateway zeroes each team's spend.",
            kind: "stat",
            unit: "s",
            queries: vec![q(
                format!("routero_team_budget_reset_timestamp_seconds{{{SCOPE}}} - time()"),
                "{{namespace}}/{{team_id}}",
            )],
        },
        Panel {
            title: "Spend today",
            description: "Each team's spend today (UTC), from the gateway's daily activity table (teams whose \
                          gateway lacks it have no series; their DailySpend condition says so).",
            kind: "timeseries",
            unit: "currencyUSD",
            queries: vec![q(
                format!("routero_team_daily_spend_usd{{{SCOPE}}}"),
                "{{namespace}}/{{team_id}}",
            )],
        },
        Panel {
            title: "Top keys by spend",
            description: "The ten managed keys (RouteroKeys) that spent most.",
            kind: "bargauge",
            unit: "currencyUSD",
            queries: vec![q(
                format!("topk(10, routero_key_spend_usd{{{key_scope}}})"),
                "{{namespace}}/{{key}}",
            )],
        },
        Panel {
            title: "Keys by state",
            description: "Managed keys by their Ready reason, keys due for rotation, keys expiring within 7 days, \
                          and keys in Conflict or Forbidden.",
            kind: "stat",
            unit: "short",
            queries: vec![
                q(
                    format!("count by (reason) (routero_key_ready{{{key_scope}}})"),
                    "{{reason}}",
                ),
                q(format!("sum(routero_key_ready{{{key_scope}}})"), "Ready"),
                q(
                    format!(
                        "sum(routero_key_rotation_due_timestamp_seconds{{{key_scope}}} <= bool time())"
                    ),
                    "rotation due",
                ),
                q(
                    format!(
                        "sum(routero_key_expiry_timestamp_seconds{{{key_scope}}} - time() <= bool 604800)"
                    ),
                    "expiring within 7 days",
                ),
                q(
                    format!(
                        "count(routero_key_ready{{{key_scope},reason=~\"Conflict|Forbidden\"}}) or \
                         0 * count(routero_key_ready{{{key_scope}}})"
                    ),
                    "Conflict or Forbidden",
                ),
            ],
        },
        Panel {
            title: "Rotations and revocations",
            description: "Keys rotated and keys revoked per hour, all namespaces.",
            kind: "timeseries",
            unit: "short",
            queries: vec![
                q(
                    "sum(increase(routero_key_rotations_total[1h]))",
                    "rotations",
                ),
                q(
                    "sum(increase(routero_key_revocations_total[1h]))",
                    "revocations",
                ),
            ],
        },
        Panel {
            title: "Gateway latency by endpoint (p95)",
            description: "95th percentile of the operator's gateway admin API calls.",
            kind: "timeseries",
            unit: "s",
            queries: vec![q(
                "histogram_quantile(0.95, sum by (le, endpoint) \
                 (rate(routero_gateway_request_duration_seconds_bucket[5m])))",
                "{{endpoint}}",
            )],
        },
        Panel {
            title: "Gateway errors by endpoint",
            description: "Gateway answers other than 2xx, and calls that got no answer (transport), per second.",
            kind: "timeseries",
            unit: "reqps",
            queries: vec![q(
                "sum by (endpoint, status) \
                 (rate(routero_gateway_request_duration_seconds_count{status!~\"2..\"}[5m]))",
                "{{endpoint}} {{status}}",
            )],
        },
        Panel {
            title: "Reconcile errors by kind and reason",
            description: "Failed reconciles per second, by kind and the condition reason they were reported with.",
            kind: "timeseries",
            unit: "short",
            queries: vec![q(
                "sum by (kind, reason) (rate(routero_reconcile_errors_total[5m]))",
                "{{kind}} {{reason}}",
            )],
        },
    ]
}

/// One alerting rule.
#[derive(Clone, Debug)]
pub struct Alert {
    pub name: &'static str,
    /// The alert condition.
    pub expr: String,
    /// The quantity the condition compares: it has series whenever the metrics it reads are exported, so a test can
    /// prove the rule reads real metrics even while the alert does not fire.
    pub signal: String,
    pub for_: &'static str,
    pub severity: &'static str,
    pub summary: &'static str,
    pub runbook: &'static str,
}

const BUDGET_RATIO: &str = "routero_team_spend_usd / (routero_team_max_budget_usd > 0)";
const GATEWAY_FAILING: &str = "sum(rate(routero_gateway_request_duration_seconds_count{status=~\"5..|transport\"}[5m])) \
     / sum(rate(routero_gateway_request_duration_seconds_count[5m]))";

/// The alerting rules, one group.
pub fn alerts() -> Vec<Alert> {
    let projected = projected("");
    let projected = projected.replace("{}", "");
    vec![
        Alert {
            name: "RouteroTeamBudget80Percent",
            expr: format!("{BUDGET_RATIO} >= 0.8 < 1"),
            signal: BUDGET_RATIO.into(),
            for_: "5m",
            severity: "warning",
            summary: "Team {{ $labels.namespace }}/{{ $labels.team_id }} has spent {{ $value | humanizePercentage }} of its budget",
            runbook: "The team has used 80 % of its budget for this window; at 100 % the gateway refuses its calls \
                      until the reset. Check who spends: `routero-operator spend -n {{ $labels.namespace }} --keys`. \
                      Tell the team lead; raise `spec.maxBudget` on the RouteroTeam if the spend is expected.",
        },
        Alert {
            name: "RouteroTeamBudgetExhausted",
            expr: format!("{BUDGET_RATIO} >= 1"),
            signal: BUDGET_RATIO.into(),
            for_: "1m",
            severity: "critical",
            summary: "Team {{ $labels.namespace }}/{{ $labels.team_id }} has spent its whole budget",
            runbook: "The gateway now refuses the team's LLM calls (budget_exceeded) until the budget resets \
                      (`kubectl get rteam -n {{ $labels.namespace }} -o wide` shows when). Either wait for the reset \
                      or raise `spec.maxBudget` on the RouteroTeam; find the spenders with \
                      `routero-operator spend -n {{ $labels.namespace }} --keys`.",
        },
        Alert {
            name: "RouteroTeamBudgetProjectedOverrun",
            expr: format!(
                "({projected}) > routero_team_max_budget_usd > 0 \
                 and routero_team_spend_usd < routero_team_max_budget_usd"
            ),
            signal: projected.clone(),
            for_: "30m",
            severity: "warning",
            summary: "Team {{ $labels.namespace }}/{{ $labels.team_id }} is on course to exceed its budget before the reset",
            runbook: "At the last hour's burn rate the team's spend reaches its budget before the gateway resets it. \
                      Look at the dashboard's projected-spend panel and the top keys; warn the team lead, or raise \
                      `spec.maxBudget` ahead of time if the burn is expected.",
        },
        Alert {
            name: "RouteroKeyNotReady",
            expr: "routero_key_ready == 0".into(),
            signal: "routero_key_ready".into(),
            for_: "10m",
            severity: "warning",
            summary: "RouteroKey {{ $labels.namespace }}/{{ $labels.key }} is not Ready ({{ $labels.reason }})",
            runbook: "The key's workload has no working key. `kubectl describe rkey -n {{ $labels.namespace }} \
                      {{ $labels.key }}` shows the Ready condition's message: TeamNotReady (fix the RouteroTeam), \
                      Conflict (the alias or team belongs to another owner), Forbidden (refused by tenancy rules) or \
                      GatewayUnavailable (see RouteroGatewayUnavailable).",
        },
        Alert {
            name: "RouteroKeyRotationOverdue",
            expr: "time() - routero_key_rotation_due_timestamp_seconds > 3600".into(),
            signal: "time() - routero_key_rotation_due_timestamp_seconds".into(),
            for_: "5m",
            severity: "warning",
            summary: "RouteroKey {{ $labels.namespace }}/{{ $labels.key }} was due for rotation over an hour ago",
            runbook: "The operator rotates a key in the pass after it is due, so an hour late means rotation keeps \
                      failing. Check the key's conditions and Events (`kubectl describe rkey`), the operator's logs, \
                      and whether the gateway answers (RouteroGatewayUnavailable). A Regenerate strategy on a gateway \
                      without a licence fails: use Auto or Recreate.",
        },
        Alert {
            name: "RouteroGatewayUnavailable",
            expr: format!("{GATEWAY_FAILING} > 0.5"),
            signal: GATEWAY_FAILING.into(),
            for_: "5m",
            severity: "critical",
            summary: "Most of the operator's gateway calls fail ({{ $value | humanizePercentage }})",
            runbook: "The gateway's admin API answers 5xx or not at all, so no key, team or member changes take \
                      effect (existing keys keep working if the gateway serves LLM calls). Check the gateway's \
                      pods and database, and the dashboard's gateway-errors panel for the failing endpoints.",
        },
        Alert {
            name: "RouteroOperatorNoLeader",
            expr: "max(routero_leader) < 1 or absent(routero_leader)".into(),
            signal: "max(routero_leader)".into(),
            for_: "5m",
            severity: "critical",
            summary: "No routero-operator replica runs the controllers",
            runbook: "No replica holds the leader Lease (or none is scraped), so nothing is reconciled: new keys are \
                      not issued and rotations stop. Check the operator's pods, their logs, and the Lease \
                      (`kubectl get lease -n <operator namespace>`); the operator needs RBAC on coordination.k8s.io \
                      Leases.",
        },
    ]
}

/// A panel's query with the template variables set: `.*` selects everything, as Grafana's "All" does.
pub fn instantiate(expr: &str, namespace: &str, team: &str) -> String {
    expr.replace(NAMESPACE_VAR, namespace)
        .replace(TEAM_VAR, team)
}

fn variable(name: &str, label: &str, query: &str) -> Value {
    json!({
        "name": name, "label": label, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": format!("{name}-values")},
        "definition": query,
        "refresh": 2, "includeAll": true, "multi": true, "allValue": ".*",
        "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
        "sort": 1
    })
}

/// The Grafana dashboard (JSON model), with `datasource`, `namespace` and `team` template variables.
pub fn dashboard() -> Value {
    let mut y = 0;
    let panels: Vec<Value> = panels()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (w, h) = if p.kind == "stat" { (12, 6) } else { (12, 8) };
            let x = if i % 2 == 0 { 0 } else { 12 };
            let pos = json!({"x": x, "y": y, "w": w, "h": h});
            if i % 2 == 1 {
                y += 8;
            }
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    json!({
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": t.expr, "legendFormat": t.legend,
                        "refId": char::from(b'A' + j as u8).to_string()
                    })
                })
                .collect();
            json!({
                "id": i + 1, "type": p.kind, "title": p.title, "description": p.description,
                "gridPos": pos,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": targets
            })
        })
        .collect();
    json!({
        "title": "Routero: spend, budgets and keys",
        "uid": "routero-operator",
        "tags": ["routero", "llm-gateway"],
        "editable": false,
        "schemaVersion": 39,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "timezone": "utc",
        "templating": {"list": [
            {
                "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
                "current": {"selected": true, "text": "Prometheus", "value": "prometheus"}
            },
            variable("namespace", "Namespace", "label_values(routero_team_spend_usd, namespace)"),
            variable(
                "team",
                "Team",
                "label_values(routero_team_spend_usd{namespace=~\"$namespace\"}, team_id)"
            ),
        ]},
        "panels": panels
    })
}

/// The dashboard as the chart stores it.
pub fn dashboard_json() -> String {
    // A Value always serialises.
    let mut out = serde_json::to_string_pretty(&dashboard()).unwrap_or_default();
    out.push('\n');
    out
}

/// The alerting rules as a Prometheus rule file (`groups:`), which `promtool` checks and the chart's
/// PrometheusRule carries as its spec.
pub fn rules() -> Value {
    let rules: Vec<Value> = alerts()
        .iter()
        .map(|a| {
            json!({
                "alert": a.name,
                "expr": a.expr,
                "for": a.for_,
                "labels": {"severity": a.severity},
                "annotations": {
                    "summary": a.summary,
                    "runbook": a.runbook,
                }
            })
        })
        .collect();
    json!({"groups": [{"name": "routero-operator", "rules": rules}]})
}

pub fn rules_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&rules())
}

/// Every `routero_*` metric name a query reads (histogram and counter suffixes included).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("routero_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_reads_routero_metrics_and_scoped_ones_take_both_variables() {
        for p in panels() {
            for t in &p.queries {
                assert!(!metric_names(&t.expr).is_empty(), "{}: {}", p.title, t.expr);
                if t.expr.contains("team_id=~") {
                    assert!(t.expr.contains(NAMESPACE_VAR) && t.expr.contains(TEAM_VAR));
                }
            }
        }
        let d = dashboard();
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(vars, ["datasource", "namespace", "team"]);
    }

    #[test]
    fn every_alert_has_a_runbook_and_reads_its_signal() {
        for a in alerts() {
            assert!(a.runbook.len() > 80, "{}", a.name);
            for name in metric_names(&a.signal) {
                assert!(a.expr.contains(&name), "{} reads {name}", a.name);
            }
        }
    }

    #[test]
    fn metric_names_are_found_with_their_suffixes() {
        assert_eq!(
            metric_names("sum(rate(routero_a_total[5m])) / routero_b_bucket{x=\"routero_c\"}"),
            ["routero_a_total", "routero_b_bucket", "routero_c"]
        );
    }
}
