//! `routero-operator spend` (the binary) on the real API server: each output form, the percentage column of
//! `kubectl get rteam`, daily spend from the gateway or a condition saying it is not served, and a view-only
//! identity that reads its own namespace and is refused everywhere else.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use routero_operator::crd::common::{condition, is_ready};
use routero_operator::crd::{RouteroKey, RouteroTeam};
use serde_json::{Value, json};

use crate::rbac::apply;
use crate::rbac::personas::{DeleteOnDrop, builtin_user_roles, persona_roles, role_binding};
use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, kubeconfig_path, kubectl, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

fn team(name: &str, spec: Value) -> RouteroTeam {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("team")
}

fn key(name: &str, team: &str) -> RouteroKey {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
        "metadata": {"name": name}, "spec": {"teamRef": {"name": team}}
    }))
    .expect("key")
}

/// Runs the binary with `kubeconfig`; returns success, stdout and stderr.
fn spend(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_routero-operator"))
        .arg("spend")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("ROUTERO_ADMIN_KEY")
        .output()
        .expect("run routero-operator spend");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two tenants on the fake gateway, reconciled by the real operator: data-science (one team at 82.5 %, one key)
/// and engineering (one team at 25 %).
struct Workspace {
    ds: String,
    eng: String,
    ds_id: String,
    ops: Vec<Operator>,
    _fake: FakeGateway,
}

async fn workspace(prefix: &str) -> Workspace {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let ds = testbed::namespace(&client, &format!("{prefix}-ds")).await;
    let eng = testbed::namespace(&client, &format!("{prefix}-eng")).await;
    let sfx = testbed::suffix();
    let (ds_id, eng_id) = (format!("ds-{sfx}"), format!("eng-{sfx}"));
    let mut ops = Vec::new();
    for ns in [&ds, &eng] {
        ops.push(
            Operator::start(
                &client,
                &GatewayTarget::fake(&fake),
                ns,
                OperatorOptions {
                    resync: Duration::from_secs(1),
                    ..OperatorOptions::default()
                },
            )
            .await,
        );
    }
    let pp = PostParams::default();
    let ds_teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ds);
    let eng_teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &eng);
    ds_teams
        .create(
            &pp,
            &team(
                "data-science",
                json!({"teamId": ds_id, "maxBudget": 500, "budgetDuration": "30d"}),
            ),
        )
        .await
        .expect("team");
    eng_teams
        .create(
            &pp,
            &team(
                "engineering",
                json!({"teamId": eng_id, "maxBudget": 800, "budgetDuration": "1mo"}),
            ),
        )
        .await
        .expect("team");
    Api::<RouteroKey>::namespaced(client.clone(), &ds)
        .create(&pp, &key("ds-prod", "data-science"))
        .await
        .expect("key");
    for (api, name) in [(&ds_teams, "data-science"), (&eng_teams, "engineering")] {
        wait_for(&format!("{name} on the gateway"), WAIT, || async {
            api.get(name).await.ok()?.status?.team_id.map(|_| ())
        })
        .await;
    }
    assert!(fake.edit_team(&ds_id, |row| {
        row.insert("spend".into(), json!(412.5));
        row.insert("spend_today".into(), json!(12.25));
    }));
    assert!(fake.edit_team(&eng_id, |row| {
        row.insert("spend".into(), json!(200.0));
    }));
    // Daily spend is read at most once per 4 resyncs (1 s here), so it may follow the spend by a few seconds.
    for (api, name, pct, today) in [
        (&ds_teams, "data-science", 82.5, Some(12.25)),
        (&eng_teams, "engineering", 25.0, None),
    ] {
        wait_for(&format!("{name} shows {pct} % used"), WAIT, || async {
            let t = api.get(name).await.ok()?;
            let s = t.status?;
            (is_ready(&s.conditions, t.metadata.generation)
                && s.budget_used_percent == Some(pct)
                && today.is_none_or(|d| s.spend_today == Some(d)))
            .then_some(())
        })
        .await;
    }
    let ds_keys: Api<RouteroKey> = Api::namespaced(client.clone(), &ds);
    wait_for("ds-prod Ready", WAIT, || async {
        let k = ds_keys.get("ds-prod").await.ok()?;
        is_ready(&k.status?.conditions, k.metadata.generation).then_some(())
    })
    .await;
    Workspace {
        ds,
        eng,
        ds_id,
        ops,
        _fake: fake,
    }
}

impl Workspace {
    async fn stop(self) {
        for op in self.ops {
            op.stop().await;
        }
    }
}

#[tokio::test]
async fn spend_reports_table_csv_and_json_and_kubectl_shows_percent_used() {
    let w = workspace("spend-forms").await;
    let kubeconfig = kubeconfig_path();

    let (ok, table, err) = spend(&kubeconfig, &["-n", &w.ds, "--keys"]);
    assert!(ok, "{err}");
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAMESPACE",
        "TEAM",
        "SPEND USD",
        "BUDGET USD",
        "USED",
        "RESETS AT",
    ] {
        assert!(header.contains(col), "{col} in {header:?}");
    }
    let row = table
        .lines()
        .find(|l| l.contains("data-science"))
        .unwrap_or_else(|| panic!("the team's row:\n{table}"));
    for cell in ["412.50", "500.00", "82.5%", "30d", "12.25", "true"] {
        assert!(row.contains(cell), "{cell} in {row:?}");
    }
    assert!(
        !table.contains("engineering"),
        "-n lists one namespace:\n{table}"
    );
    assert!(table.contains("1 team(s): 412.50 USD spent of 500.00 USD budgeted"));
    assert!(
        table
            .lines()
            .any(|l| l.contains("ds-prod") && l.contains(&format!("{}.ds-prod", w.ds))),
        "the key's row:\n{table}"
    );

    let (ok, csv, err) = spend(&kubeconfig, &["-n", &w.ds, "-o", "csv"]);
    assert!(ok, "{err}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("namespace,team,team_id,spend_usd,budget_usd,used,period,resets_at,today_usd,ready")
    );
    let fields: Vec<&str> = lines.next().expect("a team row").split(',').collect();
    assert_eq!(
        fields[..7],
        [
            w.ds.as_str(),
            "data-science",
            w.ds_id.as_str(),
            "412.5",
            "500",
            "82.5",
            "30d"
        ]
    );
    assert!(
        fields[7].parse::<jiff::Timestamp>().is_ok(),
        "reset time {:?}",
        fields[7]
    );
    assert_eq!(fields[8..], ["12.25", "true"]);

    let (ok, json_out, err) = spend(&kubeconfig, &["-A", "-o", "json", "--keys"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&json_out).expect("JSON");
    let teams = report["teams"].as_array().expect("teams");
    let ours: Vec<&Value> = teams
        .iter()
        .filter(|t| t["namespace"] == w.ds.as_str() || t["namespace"] == w.eng.as_str())
        .collect();
    assert_eq!(ours.len(), 2, "-A lists every namespace: {ours:?}");
    let eng = ours
        .iter()
        .find(|t| t["name"] == "engineering")
        .expect("eng");
    assert_eq!(eng["spend"], 200.0);
    assert_eq!(eng["budget"], 800.0);
    assert_eq!(eng["percentUsed"], 25.0);
    assert!(
        report["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["namespace"] == w.ds.as_str()
                && k["name"] == "ds-prod"
                && k["ready"] == true)
    );

    // The printer column: kubectl get rteam -A shows the percentage used.
    let (ok, out, err) = kubectl(&["get", "rteam", "-A"], None);
    assert!(ok, "{err}");
    let head = out.lines().next().unwrap_or_default();
    assert!(head.contains("USED %"), "{head}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&w.ds))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.split_whitespace().any(|c| c == "82.5"), "{line}");
    w.stop().await;
}

/// A kubeconfig for the test bed that impersonates `user`, as `kubectl --as` does.
fn impersonating_kubeconfig(user: &str) -> PathBuf {
    let (ok, raw, err) = kubectl(&["config", "view", "--raw", "--minify", "--flatten"], None);
    assert!(ok, "{err}");
    let mut config: Value = serde_yaml::from_str(&raw).expect("kubeconfig");
    let users = config["users"].as_array_mut().expect("users");
    for u in users {
        u["user"]["as"] = json!(user);
        u["user"]["as-groups"] = json!(["system:authenticated"]);
    }
    let path = std::env::temp_dir().join(format!("routero-spend-{}.kubeconfig", testbed::suffix()));
    std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
    path
}

#[tokio::test]
async fn spend_runs_as_a_namespace_viewer_and_sees_only_that_namespace() {
    let w = workspace("spend-view").await;
    let suffix = testbed::suffix();
    let release = format!("spend-{suffix}");
    let personas = persona_roles(&release);
    let _cleanup = DeleteOnDrop(
        personas
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect(),
    );
    let mut roles = builtin_user_roles();
    roles.extend(personas);
    apply(&roles);
    let user = format!("finance-{suffix}@example.com");
    apply(&[role_binding(&w.ds, "view", &user)]);
    let kubeconfig = impersonating_kubeconfig(&user);

    // Its own namespace, keys included, with nothing but view (RBAC reaches the authorizer within moments).
    let out = wait_for(
        "the viewer lists its namespace",
        Duration::from_secs(15),
        || {
            let out = spend(&kubeconfig, &["-n", &w.ds, "--keys", "-o", "json"]);
            async move { out.0.then_some(out.1) }
        },
    )
    .await;
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["teams"][0]["name"], "data-science");
    assert_eq!(report["teams"][0]["percentUsed"], 82.5);
    assert_eq!(report["keys"][0]["name"], "ds-prod");

    // Another tenant's namespace and the cluster-wide list are refused by the API server, and nothing leaks.
    let (ok, stdout, err) = spend(&kubeconfig, &["-n", &w.eng]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(err.contains("forbidden"), "{err}");
    assert!(!err.contains("engineering"), "{err}");
    let (ok, stdout, err) = spend(&kubeconfig, &["-A"]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(
        err.contains("forbidden") && err.contains("use -n NAMESPACE"),
        "{err}"
    );
    let _ = std::fs::remove_file(&kubeconfig);
    w.stop().await;
}

#[tokio::test]
async fn daily_spend_degrades_to_a_condition_where_the_gateway_lacks_it() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    fake.fail(Fault::always(
        "GET /team/daily/activity",
        FaultKind::Status(404),
    ));
    let ns = testbed::namespace(&client, "spend-nodaily").await;
    let op = Operator::start(
        &client,
        &GatewayTarget::fake(&fake),
        &ns,
        OperatorOptions {
            resync: Duration::from_secs(1),
            ..OperatorOptions::default()
        },
    )
    .await;
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let id = format!("nodaily-{}", testbed::suffix());
    teams
        .create(
            &PostParams::default(),
            &team("t", json!({"teamId": id, "maxBudget": 10})),
        )
        .await
        .expect("team");
    wait_for("the team on the gateway", WAIT, || async {
        teams.get("t").await.ok()?.status?.team_id.map(|_| ())
    })
    .await;
    assert!(fake.edit_team(&id, |row| drop(row.insert("spend".into(), json!(4.0)))));
    let t = wait_for(
        "Ready with spend and a NotServed DailySpend",
        WAIT,
        || async {
            let t = teams.get("t").await.ok()?;
            let s = t.status.clone()?;
            (is_ready(&s.conditions, t.metadata.generation) && s.budget_used_percent == Some(40.0))
                .then_some(t)
        },
    )
    .await;
    let s = t.status.expect("status");
    let daily = condition(&s.conditions, "DailySpend").expect("DailySpend condition");
    assert_eq!(
        (daily.status.as_str(), daily.reason.as_str()),
        ("False", "NotServed")
    );
    assert!(
        daily.message.contains("/team/daily/activity"),
        "{}",
        daily.message
    );
    assert_eq!(s.spend_today, None);
    assert!(condition(&s.conditions, "Synced").is_some_and(|c| c.is_true()));
    op.stop().await;
}

/// The real LiteLLM serves /team/daily/activity: the condition says the daily spend is reported.
#[tokio::test]
async fn daily_spend_is_read_from_the_real_gateway() {
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "spend-daily").await;
    let op = Operator::start(
        &client,
        &GatewayTarget::litellm(),
        &ns,
        OperatorOptions::default(),
    )
    .await;
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let id = format!("daily-{}", testbed::suffix());
    teams
        .create(
            &PostParams::default(),
            &team(
                "t",
                json!({"teamId": id, "maxBudget": 25, "budgetDuration": "30d"}),
            ),
        )
        .await
        .expect("team");
    let t = wait_for("Ready", WAIT, || async {
        let t = teams.get("t").await.ok()?;
        is_ready(&t.status.as_ref()?.conditions, t.metadata.generation).then_some(t)
    })
    .await;
    let s = t.status.expect("status");
    let daily = condition(&s.conditions, "DailySpend").expect("DailySpend condition");
    assert_eq!(
        (daily.status.as_str(), daily.reason.as_str()),
        ("True", "Reported"),
        "{}",
        daily.message
    );
    assert_eq!(s.spend_today, Some(0.0), "a new team spent nothing today");
    assert_eq!(s.budget_used_percent, Some(0.0));
    assert!(s.budget_reset_at.is_some());
    teams
        .delete("t", &Default::default())
        .await
        .expect("delete team");
    wait_for("team deleted", WAIT, || async {
        teams.get_opt("t").await.ok()?.is_none().then_some(())
    })
    .await;
    op.stop().await;
}
