//! The chart's dashboard and alerts against a real Prometheus: it scrapes the real operator while teams in two
//! namespaces spend, and every dashboard query and alert expression is evaluated through Prometheus's HTTP API.
//! promtool checks the rule file and runs its unit tests; the generated files must match the Rust source.
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use routero_operator::crd::common::is_ready;
use routero_operator::crd::{RouteroKey, RouteroTeam};
use routero_operator::gateway::{AdminKey, GatewayConfig};
use routero_operator::monitoring::{self, alerts, instantiate, metric_names, panels};
use routero_operator::operator::{self, OperatorConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};
use crate::support::prometheus::Prometheus;
use crate::support::testbed::{self, repo_dir, wait_for};
use crate::support::tools::{self, tool};

const DASHBOARD: &str = "charts/routero-operator/dashboards/routero-operator.json";
const RULES: &str = "charts/routero-operator/rules/routero-operator.rules.yaml";
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn generated_dashboard_and_rules_are_up_to_date() {
    let dashboard = std::fs::read_to_string(repo_dir().join(DASHBOARD)).unwrap_or_default();
    assert!(
        dashboard == monitoring::dashboard_json(),
        "{DASHBOARD} is stale: run `cargo run -- dashboard > {DASHBOARD}`"
    );
    let rules = std::fs::read_to_string(repo_dir().join(RULES)).unwrap_or_default();
    assert!(
        rules == monitoring::rules_yaml().expect("rules"),
        "{RULES} is stale: run `cargo run -- rules > {RULES}`"
    );
}

#[test]
fn promtool_checks_the_rules_and_each_alert_has_a_firing_and_a_silent_unit_test() {
    let promtool = tool("promtool");
    let check = tools::run(&promtool, &["check", "rules", RULES], "");
    assert!(
        check.ok,
        "promtool check rules:\n{}{}",
        check.stdout, check.stderr
    );
    let unit = tools::run(
        &promtool,
        &["test", "rules", "tests/monitoring/rules.test.yaml"],
        "",
    );
    assert!(
        unit.ok,
        "promtool test rules:\n{}{}",
        unit.stdout, unit.stderr
    );

    let text = std::fs::read_to_string(repo_dir().join("tests/monitoring/rules.test.yaml"))
        .expect("rule tests");
    let tests: Value = serde_yaml::from_str(&text).expect("rule tests YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in alerts() {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert.name);
        assert!(
            of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty())),
            "{}: no unit test where it stays silent",
            alert.name
        );
        assert!(
            of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "{}: no unit test where it fires",
            alert.name
        );
    }
}

fn team(name: &str, spec: Value) -> RouteroTeam {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("team")
}

fn key(name: &str, spec: Value) -> RouteroKey {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("key")
}

async fn ready<K: testbed::Conditioned>(api: &Api<K>, name: &str) {
    wait_for(&format!("{name} Ready"), WAIT, || async {
        let o = api.get(name).await.ok()?;
        is_ready(o.conditions(), o.meta().generation).then_some(())
    })
    .await;
}

/// The gateway hash of the key `alias`, as the fake holds it now.
fn key_hash(fake: &FakeGateway, alias: &str) -> Option<String> {
    fake.keys()
        .iter()
        .find(|k| k["key_alias"] == alias)
        .and_then(|k| k["token"].as_str().map(str::to_owned))
}

fn label(series: &Value, name: &str) -> String {
    series["metric"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn team_ids(result: &[Value]) -> BTreeSet<String> {
    result.iter().map(|s| label(s, "team_id")).collect()
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<routero_operator::Result<()>>,
}

async fn start_operator(client: Client, fake: &FakeGateway, namespaces: &[&str]) -> Running {
    let mut gateway = GatewayConfig::new(
        fake.url.clone(),
        AdminKey::Static(SecretString::from(fake.admin_key.clone())),
    );
    gateway.rate_limit = std::num::NonZeroU32::new(200).expect("nonzero");
    gateway.timeout = Duration::from_secs(5);
    let config = OperatorConfig {
        gateway,
        watch_namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        admin_namespaces: vec!["routero-system".into()],
        resync: Duration::from_secs(1),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        leader_election: None,
        alerting: None,
    };
    let (stop, rx) = oneshot::channel::<()>();
    let bound = operator::bind(client, config, async move {
        let _ = rx.await;
    })
    .await
    .expect("operator starts");
    let addr = bound.metrics_addr().expect("metrics address");
    Running {
        addr,
        stop,
        task: tokio::spawn(bound.run()),
    }
}

#[tokio::test]
async fn prometheus_evaluates_every_dashboard_query_and_alert_on_a_scenario_with_spend() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    fake.set_regenerate_enabled(true);
    let ds = testbed::namespace(&client, "mon-ds").await;
    let eng = testbed::namespace(&client, "mon-eng").await;
    let sfx = testbed::suffix();
    let (ds_id, eng_id, plat_id) = (
        format!("ds-{sfx}"),
        format!("eng-{sfx}"),
        format!("plat-{sfx}"),
    );
    let op = start_operator(client.clone(), &fake, &[&ds, &eng]).await;

    // The first team create meets an outage: a reconcile error and a gateway 503 to show.
    fake.fail(Fault::once("POST /team/new", FaultKind::Status(503)));
    let (ds_teams, eng_teams): (Api<RouteroTeam>, Api<RouteroTeam>) = (
        Api::namespaced(client.clone(), &ds),
        Api::namespaced(client.clone(), &eng),
    );
    let (ds_keys, eng_keys): (Api<RouteroKey>, Api<RouteroKey>) = (
        Api::namespaced(client.clone(), &ds),
        Api::namespaced(client.clone(), &eng),
    );
    let pp = PostParams::default();
    for (api, name, id, budget) in [
        (&ds_teams, "data-science", &ds_id, 100),
        (&eng_teams, "engineering", &eng_id, 100),
        (&eng_teams, "platform", &plat_id, 1000),
    ] {
        api.create(
            &pp,
            &team(
                name,
                json!({"teamId": id, "maxBudget": budget, "budgetDuration": "30d"}),
            ),
        )
        .await
        .expect("create team");
    }
    // ds-prod rotates every 20 s (a rotation to count); stray names no team (a key that is not Ready).
    ds_keys
        .create(
            &pp,
            &key(
                "ds-prod",
                json!({"teamRef": {"name": "data-science"}, "duration": "90d",
                       "rotation": {"every": "20s", "strategy": "Regenerate"}}),
            ),
        )
        .await
        .expect("create key");
    for (name, team) in [
        ("cursor-alice", "engineering"),
        ("temp", "engineering"),
        ("stray", "no-such-team"),
    ] {
        eng_keys
            .create(&pp, &key(name, json!({"teamRef": {"name": team}})))
            .await
            .expect("create key");
    }
    for (api, name) in [
        (&ds_teams, "data-science"),
        (&eng_teams, "engineering"),
        (&eng_teams, "platform"),
    ] {
        ready(api, name).await;
    }
    ready(&ds_keys, "ds-prod").await;
    ready(&eng_keys, "cursor-alice").await;
    ready(&eng_keys, "temp").await;
    // A revocation to count.
    eng_keys
        .delete("temp", &DeleteParams::default())
        .await
        .expect("delete key");

    // Spend: data-science at 85 %, engineering at 120 %, platform low but burning fast.
    for (id, spend, today) in [
        (&ds_id, 85.0, 12.5),
        (&eng_id, 120.0, 30.0),
        (&plat_id, 10.0, 10.0),
    ] {
        assert!(fake.edit_team(id, |row| {
            row.insert("spend".into(), json!(spend));
            row.insert("spend_today".into(), json!(today));
        }));
    }
    for (alias, spend) in [
        (format!("{ds}.ds-prod"), 40.0),
        (format!("{eng}.cursor-alice"), 75.0),
    ] {
        let hash = key_hash(&fake, &alias).expect("the key is on the gateway");
        assert!(fake.edit_key(&hash, |row| {
            row.insert("spend".into(), json!(spend));
        }));
    }
    // Prometheus starts scraping once the operator shows the spend, so a steady team's burn rate is zero.
    wait_for("the operator shows the spend", WAIT, || async {
        let text = reqwest::get(format!("http://{}/metrics", op.addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        [&ds_id, &eng_id]
            .iter()
            .all(|id| {
                text.lines().any(|l| {
                    l.starts_with("routero_team_spend_usd{")
                        && l.contains(&format!("team_id=\"{id}\""))
                        && !l.ends_with(" 0.0")
                })
            })
            .then_some(())
    })
    .await;
    let prometheus = Prometheus::start(&[op.addr]).await;
    let mut platform_spend = 10.0;
    wait_for(
        "Prometheus holds a rotation, a revocation and 20 s of samples",
        Duration::from_secs(120),
        || {
            platform_spend += 5.0;
            let spend = platform_spend;
            assert!(fake.edit_team(&plat_id, |row| {
                row.insert("spend".into(), json!(spend));
            }));
            let prometheus = &prometheus;
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let rotated = prometheus.query("routero_key_rotations_total > 0").await;
                let revoked = prometheus.query("routero_key_revocations_total > 0").await;
                let samples = prometheus
                    .query("count_over_time(routero_team_spend_usd[5m]) >= 20")
                    .await;
                (!rotated.is_empty() && !revoked.is_empty() && samples.len() >= 3).then_some(())
            }
        },
    )
    .await;

    // Every panel query returns series with every namespace and team selected, and every metric it reads exists.
    let mut read = BTreeSet::new();
    for panel in panels() {
        for q in &panel.queries {
            let expr = instantiate(&q.expr, ".*", ".*");
            let result = prometheus.query(&expr).await;
            assert!(
                !result.is_empty(),
                "panel {:?} query has no series: {expr}",
                panel.title
            );
            read.extend(metric_names(&q.expr));
        }
    }
    for alert in alerts() {
        read.extend(metric_names(&alert.expr));
    }
    for name in &read {
        assert!(
            !prometheus.series(name).await.is_empty(),
            "{name} is read by the dashboard or an alert but not exported"
        );
    }
    let dashboard = monitoring::dashboard();
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = var["query"]["query"].as_str() {
            for name in metric_names(q) {
                assert!(
                    !prometheus.series(&name).await.is_empty(),
                    "variable reads {name}"
                );
            }
        }
    }

    // The namespace variable scopes team and key panels to one tenant.
    let used = panels()
        .into_iter()
        .find(|p| p.title == "Budget used")
        .expect("budget panel");
    let scoped = prometheus
        .query(&instantiate(&used.queries[0].expr, &ds, ".*"))
        .await;
    assert_eq!(team_ids(&scoped), BTreeSet::from([ds_id.clone()]));
    let pct: f64 = scoped[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!((pct - 85.0).abs() < 1e-6, "85 % used: {pct}");

    // Each alert's signal has series; its expression fires exactly where the scenario says.
    for alert in alerts() {
        assert!(
            !prometheus.query(&alert.signal).await.is_empty(),
            "{}: its signal has no series: {}",
            alert.name,
            alert.signal
        );
        let firing = prometheus.query(&alert.expr).await;
        match alert.name {
            "RouteroTeamBudget80Percent" => {
                assert_eq!(
                    team_ids(&firing),
                    BTreeSet::from([ds_id.clone()]),
                    "{}",
                    alert.name
                )
            }
            "RouteroTeamBudgetExhausted" => {
                assert_eq!(
                    team_ids(&firing),
                    BTreeSet::from([eng_id.clone()]),
                    "{}",
                    alert.name
                )
            }
            "RouteroTeamBudgetProjectedOverrun" => {
                assert_eq!(
                    team_ids(&firing),
                    BTreeSet::from([plat_id.clone()]),
                    "{}",
                    alert.name
                )
            }
            "RouteroKeyNotReady" => {
                let keys: BTreeSet<String> = firing.iter().map(|s| label(s, "key")).collect();
                assert_eq!(keys, BTreeSet::from(["stray".to_owned()]), "{firing:?}");
                assert_eq!(label(&firing[0], "reason"), "TeamNotReady");
            }
            _ => assert!(firing.is_empty(), "{} fires: {firing:?}", alert.name),
        }
    }

    // The metrics carry no key material: the values the Secrets hold never appear.
    let text = reqwest::get(format!("http://{}/metrics", op.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(!text.contains("sk-"), "no key value in /metrics");

    if let Some(path) = std::env::var_os("ROUTERO_DASHBOARD_DATA") {
        dump(&prometheus, &path).await;
    }
    let _ = op.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), op.task).await;
}

/// Every panel's queries over the scenario, for docs/dashboard.png (scripts/render-dashboard.py plots them).
async fn dump(prometheus: &Prometheus, path: &std::ffi::OsStr) {
    let mut out = Vec::new();
    for panel in panels() {
        let mut queries = Vec::new();
        for q in &panel.queries {
            let expr = instantiate(&q.expr, ".*", ".*");
            let result = prometheus.query_range(&expr, 90, 1).await;
            queries.push(json!({"expr": expr, "legend": q.legend, "result": result}));
        }
        out.push(json!({"title": panel.title, "kind": panel.kind, "unit": panel.unit, "queries": queries}));
    }
    std::fs::write(
        path,
        serde_json::to_string_pretty(&json!({"panels": out})).expect("json"),
    )
    .expect("write dashboard data");
}
