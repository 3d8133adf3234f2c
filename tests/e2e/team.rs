//! RouteroTeam lifecycle against the real LiteLLM gateway and the in-repo fake: the same scenario on both.
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use routero_operator::crd::{DeletionPolicy, RouteroTeam};
use serde_json::{Value, json};

use crate::support::fake_gateway::{FakeGateway, Fault, FaultKind};
use crate::support::gateway_reader::GatewayReader;
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, wait_for, wait_ready_of, wait_reason_of,
};

const WAIT: Duration = Duration::from_secs(30);

/// The four teams of examples/workspace.yaml, each with a unique teamId because the real gateway's database is
/// shared by every run.
fn example_teams(suffix: &str) -> Vec<RouteroTeam> {
    let text = std::fs::read_to_string(testbed::repo_dir().join("examples/workspace.yaml"))
        .expect("read example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut team: RouteroTeam =
                serde::Deserialize::deserialize(doc).expect("example parses as RouteroTeam");
            team.spec.team_id = Some(format!("{}-{suffix}", team.name_any()));
            team
        })
        .collect()
}

pub async fn wait_ready(api: &Api<RouteroTeam>, name: &str) -> RouteroTeam {
    wait_ready_of(api, name).await
}

pub async fn wait_reason(api: &Api<RouteroTeam>, name: &str, reason: &str) -> RouteroTeam {
    wait_reason_of(api, name, reason).await
}

async fn wait_gone(api: &Api<RouteroTeam>, name: &str) {
    wait_for(&format!("team {name} deleted"), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

async fn lifecycle(client: Client, target: GatewayTarget) {
    let gw = GatewayReader::new(&target);
    let ns = testbed::namespace(&client, "team").await;
    let operator = Operator::start(
        &client,
        &target,
        &ns,
        OperatorOptions {
            resync: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    let api: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let suffix = testbed::suffix();
    let id = |name: &str| format!("{name}-{suffix}");

    // The four example teams are created with the right budgets, windows and allowlists.
    for team in example_teams(&suffix) {
        api.create(&PostParams::default(), &team)
            .await
            .expect("create team");
    }
    for (name, budget, models) in [
        ("data-science", 2000.0, json!([])),
        ("customer-ops", 500.0, json!(["smart/balanced"])),
        ("finance", 800.0, json!(["eu/balanced"])),
        ("engineering", 1500.0, json!([])),
    ] {
        let t = wait_ready(&api, name).await;
        assert_eq!(
            t.status.as_ref().and_then(|s| s.team_id.clone()),
            Some(id(name))
        );
        let row = gw
            .team(&id(name))
            .await
            .expect("team exists on the gateway");
        assert_eq!(f(&row["max_budget"]), budget, "{name} budget");
        assert_eq!(row["budget_duration"], "1mo", "{name} window");
        assert_eq!(row["models"], models, "{name} models");
        assert_eq!(
            row["metadata"]["routero.ai/owner"],
            format!("RouteroTeam/{ns}/{name}")
        );
        assert!(t.finalizers().iter().any(|f| f == "routero.ai/finalizer"));
        let status = t.status.expect("status");
        assert_eq!(status.max_budget, Some(budget));
        assert!(
            status.budget_reset_at.is_some(),
            "{name}: the gateway's budget reset time is shown"
        );
        assert_eq!(status.observed_generation, t.metadata.generation);
    }

    // Changing customer-ops' models updates the gateway.
    let patch = json!({"spec": {"models": ["smart/balanced", "smart/fast"]}});
    api.patch(
        "customer-ops",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .expect("patch models");
    wait_for(
        "customer-ops models updated on the gateway",
        WAIT,
        || async {
            (gw.team(&id("customer-ops")).await?["models"]
                == json!(["smart/balanced", "smart/fast"]))
            .then_some(())
        },
    )
    .await;

    // An out-of-band edit on the gateway is reverted by the next resync; fields we don't manage are kept.
    let (status, body) = gw.post("/team/update", json!({"team_id": id("finance"), "max_budget": 1.0, "models": ["gpt-4o"], "metadata": {"edited": "by-hand"}})).await;
    assert_eq!(status, 200, "{body}");
    wait_for("finance reverted", WAIT, || async {
        let row = gw.team(&id("finance")).await?;
        (f(&row["max_budget"]) == 800.0
            && row["models"] == json!(["eu/balanced"])
            && row["metadata"]["routero.ai/owner"] == format!("RouteroTeam/{ns}/finance"))
        .then_some(row)
    })
    .await;

    // A second namespace claiming the same teamId gets Conflict and never touches the first team.
    let ns2 = testbed::namespace(&client, "team-other").await;
    let operator2 = Operator::start(&client, &target, &ns2, OperatorOptions::default()).await;
    let api2: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns2);
    let mut thief = example_teams(&suffix)
        .into_iter()
        .find(|t| t.name_any() == "finance")
        .expect("finance");
    thief.spec.max_budget = Some(1.0);
    thief.spec.models = Some(vec!["gpt-4o".into()]);
    api2.create(&PostParams::default(), &thief)
        .await
        .expect("create thief");
    let t = wait_reason(&api2, "finance", "Conflict").await;
    let message = t.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("elsewhere") && !message.contains(&ns),
        "a conflict never names another tenant's namespace: {message}"
    );
    // Deleting the conflicting resource must not delete the team it never owned.
    api2.delete("finance", &DeleteParams::default())
        .await
        .expect("delete thief");
    wait_gone(&api2, "finance").await;
    let row = gw.team(&id("finance")).await.expect("finance still exists");
    assert_eq!(f(&row["max_budget"]), 800.0);
    assert_eq!(
        row["metadata"]["routero.ai/owner"],
        format!("RouteroTeam/{ns}/finance")
    );
    operator2.stop().await;

    // Delete removes the team; Orphan keeps it.
    api.delete("data-science", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "data-science").await;
    assert!(
        gw.team(&id("data-science")).await.is_none(),
        "data-science deleted on the gateway"
    );

    let orphan = json!({"spec": {"deletionPolicy": DeletionPolicy::Orphan}});
    api.patch(
        "engineering",
        &PatchParams::default(),
        &Patch::Merge(&orphan),
    )
    .await
    .expect("orphan");
    wait_ready(&api, "engineering").await;
    api.delete("engineering", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "engineering").await;
    assert!(
        gw.team(&id("engineering")).await.is_some(),
        "engineering kept on the gateway"
    );

    testbed::assert_events(&client, &ns, &["Created", "Updated", "Deleted", "Orphaned"]).await;

    // Clean up what the shared gateway still holds.
    for name in ["customer-ops", "finance"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        wait_gone(&api, name).await;
        assert!(gw.team(&id(name)).await.is_none());
    }
    gw.post("/team/delete", json!({"team_ids": [id("engineering")]}))
        .await;
    operator.stop().await;
}

#[tokio::test]
async fn team_lifecycle_on_real_litellm() {
    lifecycle(testbed::client().await, GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn team_lifecycle_on_litellm_1_98() {
    lifecycle(testbed::client().await, GatewayTarget::litellm_1_98()).await;
}

#[tokio::test]
async fn team_lifecycle_on_fake_gateway() {
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    lifecycle(testbed::client().await, target).await;
    // Three by the operator (data-science, customer-ops, finance), one by the test's own clean-up of the orphan:
    // deleting the conflicting resource and the Orphan one sent nothing.
    assert_eq!(fake.count("POST /team/delete"), 4, "{:?}", fake.counts());
}

/// Gateway down then up: the conditions show it, nothing is deleted, and it recovers by itself.
#[tokio::test]
async fn gateway_outage_is_reported_and_recovers() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let ns = testbed::namespace(&client, "outage").await;
    let operator = Operator::start(
        &client,
        &target,
        &ns,
        OperatorOptions {
            resync: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let api: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let teams = example_teams(&testbed::suffix());
    api.create(&PostParams::default(), &teams[0])
        .await
        .expect("create");
    let existing = wait_ready(&api, &teams[0].name_any()).await;
    let existing_id = existing.team_id();

    fake.fail(Fault::everywhere(FaultKind::Status(503)));
    api.create(&PostParams::default(), &teams[1])
        .await
        .expect("create during outage");
    let t = wait_reason(&api, &teams[1].name_any(), "GatewayUnavailable").await;
    let synced = t
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Synced")
        .expect("Synced");
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "GatewayUnavailable")
    );
    assert!(
        synced.message.contains("503"),
        "the gateway's answer is shown: {}",
        synced.message
    );
    // The existing team goes unavailable at its next resync, and a delete during the outage waits.
    wait_reason(&api, &teams[0].name_any(), "GatewayUnavailable").await;
    api.delete(&teams[0].name_any(), &DeleteParams::default())
        .await
        .expect("delete during outage");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        api.get_opt(&teams[0].name_any())
            .await
            .expect("get")
            .is_some(),
        "finalizer holds the resource while the gateway is down"
    );
    assert!(
        fake.team(&existing_id).is_some(),
        "nothing deleted during the outage"
    );

    fake.clear_faults();
    wait_ready(&api, &teams[1].name_any()).await;
    wait_gone(&api, &teams[0].name_any()).await;
    assert!(
        fake.team(&existing_id).is_none(),
        "the delete completed after recovery"
    );
    operator.stop().await;
}

/// Adoption: an unowned gateway team is taken over only with `adopt: true`, and outside the admin namespaces only
/// once an admin has marked it adoptable by this namespace.
#[tokio::test]
async fn unowned_team_needs_adopt() {
    let client = testbed::client().await;
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let gw = GatewayReader::new(&target);
    let ns = testbed::namespace(&client, "adopt").await;
    let opts = OperatorOptions {
        resync: Duration::from_secs(2),
        ..OperatorOptions::default()
    };
    let operator = Operator::start(&client, &target, &ns, opts).await;
    let api: Api<RouteroTeam> = Api::namespaced(client.clone(), &ns);
    let (status, _) = gw
        .post(
            "/team/new",
            json!({"team_id": "legacy", "max_budget": 10.0, "metadata": {"note": "made by hand"}}),
        )
        .await;
    assert_eq!(status, 200);

    let team: RouteroTeam = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": "legacy"}, "spec": {"maxBudget": 50.0}
    }))
    .expect("team");
    api.create(&PostParams::default(), &team)
        .await
        .expect("create");
    wait_reason(&api, "legacy", "Conflict").await;
    assert_eq!(
        f(&gw.team("legacy").await.expect("team")["max_budget"]),
        10.0,
        "not touched without adopt"
    );

    api.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"adopt": true}})),
    )
    .await
    .expect("adopt");
    // Not an admin namespace, and no admin said this namespace may adopt it.
    let t = wait_reason(&api, "legacy", "Forbidden").await;
    assert!(
        t.status.expect("status").conditions[0]
            .message
            .contains("routero.ai/adoptable-by")
    );
    assert_eq!(
        f(&gw.team("legacy").await.expect("team")["max_budget"]),
        10.0
    );

    // The admin marks it for this namespace (what `import` does); the next resync adopts it.
    let (status, _) = gw
        .post(
            "/team/update",
            json!({"team_id": "legacy", "metadata": {"note": "made by hand", "routero.ai/adoptable-by": ns}}),
        )
        .await;
    assert_eq!(status, 200);
    wait_ready(&api, "legacy").await;
    let row = gw.team("legacy").await.expect("team");
    assert_eq!(f(&row["max_budget"]), 50.0);
    testbed::assert_events(&client, &ns, &["Conflict", "Forbidden", "Adopted"]).await;
    assert_eq!(
        row["metadata"]["note"], "made by hand",
        "metadata merged, not replaced"
    );
    assert_eq!(
        row["metadata"]["routero.ai/owner"],
        format!("RouteroTeam/{ns}/legacy")
    );
    operator.stop().await;
}
