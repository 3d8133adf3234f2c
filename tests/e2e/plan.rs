//! `plan` against the controllers: it reports no change exactly when the operator then makes zero gateway writes,
//! and each change it reports is the write the operator makes (same endpoint, same body). Also the command itself:
//! exit codes for a pull-request check, and refusals worded as the API server words them.
use std::process::Command;
use std::time::Duration;

use kube::Api;
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use routero_operator::gateway::{AdminKey, Gateway, GatewayConfig};
use routero_operator::plan::{self, Action, Manifests, Plan, Settings, manifests};
use secrecy::SecretString;
use serde_json::Value;

use crate::support::fake_gateway::FakeGateway;
use crate::support::recording_proxy::RecordingProxy;
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, kubectl, wait_for, wait_ready_of,
};

fn workspace(s: &str, budget: u32, role: &str, team_role: &str, key_budget: u32) -> String {
    format!(
        "apiVersion: routero.ai/v1alpha1
kind: RouteroTeam
metadata: {{name: finance}}
spec: {{teamId: plan-{s}, maxBudget: {budget}, budgetDuration: 1mo, models: [eu/balanced]}}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroMember
metadata: {{name: lead}}
spec: {{email: lead-{s}@company.com, role: {role}, teams: [{{name: finance, role: {team_role}}}]}}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroKey
metadata: {{name: ledger}}
spec: {{teamRef: {{name: finance}}, models: [eu/balanced], maxBudget: {key_budget}}}
"
    )
}

fn parse(yaml: &str, ns: &str) -> Manifests {
    let mut m = Manifests::default();
    let mut refusals = Vec::new();
    manifests::parse(yaml, Some(ns), &mut m, &mut refusals).expect("yaml");
    assert!(refusals.is_empty(), "{refusals:?}");
    m
}

async fn planned(target: &GatewayTarget, m: &Manifests) -> Plan {
    let gw = Gateway::new(GatewayConfig::new(
        target.url.clone(),
        AdminKey::Static(SecretString::from(target.admin_key.clone())),
    ))
    .expect("gateway client");
    let settings = Settings::default();
    let observed = plan::observe(&gw, m, &settings).await.expect("observe");
    plan::compute(m, &observed, &settings)
}

/// The writes a plan announces, as `(endpoint, body)`; bodies only where plan knows them (updates).
fn announced(p: &Plan) -> Vec<(String, Option<Value>)> {
    let mut w: Vec<_> = p
        .changes
        .iter()
        .flat_map(|c| c.writes.iter())
        .map(|w| (w.endpoint.clone(), w.body.clone()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// The writes the proxy saw, in the same form: the body kept where plan gave one, without the uid marker.
fn made(proxy: &RecordingProxy, like: &[(String, Option<Value>)]) -> Vec<(String, Option<Value>)> {
    let mut w: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(route, _)| route.starts_with("POST "))
        .map(|(route, mut body)| {
            let endpoint = route.trim_start_matches("POST ").to_owned();
            if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("routero.ai/uid");
            }
            let keep = like.iter().any(|(e, b)| e == &endpoint && b.is_some());
            (endpoint, keep.then_some(body))
        })
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

async fn all_ready(client: &kube::Client, ns: &str) {
    wait_ready_of(
        &Api::<RouteroTeam>::namespaced(client.clone(), ns),
        "finance",
    )
    .await;
    wait_ready_of(
        &Api::<RouteroMember>::namespaced(client.clone(), ns),
        "lead",
    )
    .await;
    wait_ready_of(&Api::<RouteroKey>::namespaced(client.clone(), ns), "ledger").await;
}

#[tokio::test]
async fn plan_reports_exactly_the_writes_the_controller_makes() {
    let fake = FakeGateway::start().await;
    let direct = GatewayTarget::fake(&fake);
    let proxy = RecordingProxy::start(&direct.url).await;
    let through = proxy.target(&direct);
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "plan-eq").await;
    let s = testbed::suffix();
    let resync = Duration::from_secs(2);
    let _op = Operator::start(
        &client,
        &through,
        &ns,
        OperatorOptions {
            resync,
            ..Default::default()
        },
    )
    .await;

    // Created from nothing: one write per announced write.
    let first = workspace(&s, 800, "internal_user", "user", 50);
    let p = planned(&direct, &parse(&first, &ns)).await;
    assert!(
        p.changes.iter().all(|c| c.action == Action::Create),
        "{p:?}"
    );
    assert_eq!(p.exit_code(), 2);
    let (ok, _, err) = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&first));
    assert!(ok, "{err}");
    all_ready(&client, &ns).await;
    let want = announced(&p);
    assert_eq!(
        made(&proxy, &want),
        want,
        "the creates are the writes plan announced"
    );

    // Nothing to do: plan says so, and the controller writes nothing over two resyncs.
    let p = planned(&direct, &parse(&first, &ns)).await;
    assert!(p.changes.iter().all(|c| c.action == Action::None), "{p:?}");
    assert_eq!(p.exit_code(), 0);
    proxy.clear();
    tokio::time::sleep(resync * 2 + Duration::from_millis(500)).await;
    assert_eq!(proxy.writes(), Vec::<String>::new());

    // Changed fields of each kind: the bodies plan shows are the bodies the controller sends.
    // (A team admin role is a licensed feature that the gateway refuses; the role change is the person's own.)
    let second = workspace(&s, 900, "internal_user_viewer", "user", 75);
    let p = planned(&direct, &parse(&second, &ns)).await;
    let actions: Vec<_> = p.changes.iter().map(|c| c.action).collect();
    assert_eq!(actions, [Action::Update, Action::Update, Action::Update]);
    let member = &p.changes[1];
    assert_eq!(member.fields[0].old, "internal_user");
    assert_eq!(member.fields[0].new, "internal_user_viewer");
    let want = announced(&p);
    assert_eq!(
        want.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        ["/key/update", "/team/update", "/user/update"]
    );
    proxy.clear();
    let (ok, _, err) = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&second));
    assert!(ok, "{err}");
    wait_for("the changes to land", Duration::from_secs(40), || async {
        (proxy.writes().len() >= want.len()).then_some(())
    })
    .await;
    tokio::time::sleep(resync * 2).await;
    assert_eq!(made(&proxy, &want), want);
    let p = planned(&direct, &parse(&second, &ns)).await;
    assert_eq!(p.exit_code(), 0, "{p:?}");

    // Drift made out of band is planned back, and corrected with the same write. The operator may correct it
    // before plan reads it (its resync is 2 s, and a loaded machine slows plan): then the drift is made again.
    for attempt in 1.. {
        proxy.clear();
        let (status, _) = crate::support::gateway_reader::GatewayReader::new(&direct)
            .post(
                "/team/update",
                serde_json::json!({"team_id": format!("plan-{s}"), "max_budget": 1.0 + f64::from(attempt)}),
            )
            .await;
        assert_eq!(status, 200);
        let p = planned(&direct, &parse(&second, &ns)).await;
        let want = announced(&p);
        if want.is_empty() && attempt < 5 {
            continue;
        }
        assert_eq!(want.len(), 1, "{p:?}");
        wait_for(
            "the drift to be corrected",
            Duration::from_secs(40),
            || async { (!proxy.writes().is_empty()).then_some(()) },
        )
        .await;
        assert_eq!(made(&proxy, &want), want);
        break;
    }
}

fn plan_cli(
    target: &GatewayTarget,
    args: &[&str],
    stdin_file: &std::path::Path,
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_routero-operator"))
        .arg("plan")
        .args(["--gateway-url", &target.url, "-f"])
        .arg(stdin_file)
        .args(args)
        .env("ROUTERO_ADMIN_KEY", &target.admin_key)
        .output()
        .expect("run plan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command on the real LiteLLM: 2 while a change is pending, 0 once the operator applied it, 1 for a manifest
/// the API server would refuse, with the API server's own words.
#[tokio::test]
async fn plan_gates_a_pull_request_on_real_litellm() {
    let target = GatewayTarget::litellm();
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "plan-cli").await;
    let s = testbed::suffix();
    let dir = std::env::temp_dir().join(format!("routero-plan-{s}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("workspace.yaml");
    let yaml = workspace(&s, 800, "internal_user", "user", 50);
    std::fs::write(&file, &yaml).expect("write");

    let (code, out, err) = plan_cli(&target, &["-n", &ns], &file);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("Plan: 3 to create"), "{out}");
    assert!(
        out.contains(&format!(
            "+ RouteroTeam {ns}/finance: create team 'plan-{s}'"
        )),
        "{out}"
    );
    let (code, json_out, _) = plan_cli(&target, &["-n", &ns, "-o", "json"], &file);
    assert_eq!(code, 2);
    let parsed: Value = serde_json::from_str(&json_out).expect("json");
    assert_eq!(parsed["changes"][0]["action"], "create");

    let _op = Operator::start(&client, &target, &ns, OperatorOptions::default()).await;
    let (ok, _, err) = kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&yaml));
    assert!(ok, "{err}");
    all_ready(&client, &ns).await;
    let (code, out, err) = plan_cli(&target, &["-n", &ns], &file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 unchanged"), "{out}");

    // Refused as `kubectl apply` refuses it, in the same words.
    for (i, bad) in [
        "kind: RouteroTeam\nmetadata: {name: bad}\nspec: {maxBudget: -5, budgetDuration: 1m}",
        "kind: RouteroKey\nmetadata: {name: bad}\nspec: {teamRef: {name: finance}, secret: {baseUrlField: apiKey, annotations: {routero.ai/x: v}}}",
        "kind: RouteroMember\nmetadata: {name: bad}\nspec: {email: not-an-email, role: root}",
    ]
    .into_iter()
    .enumerate()
    {
        let doc = format!("apiVersion: routero.ai/v1alpha1\n{bad}\n");
        let f = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&f, &doc).expect("write");
        let (code, out, err) = plan_cli(&target, &["-n", &ns], &f);
        assert_eq!(code, 1, "{out}{err}");
        let (ok, _, server) = kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], Some(&doc));
        assert!(!ok, "the API server refuses it too");
        let reasons: Vec<&str> = err
            .lines()
            .filter_map(|l| l.split_once("/bad: ").map(|(_, r)| r))
            .collect();
        assert!(!reasons.is_empty(), "{err}");
        for r in reasons {
            assert!(server.contains(r), "plan said {r:?}; the API server said {server}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
