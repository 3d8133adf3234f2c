//! `watchNamespaces` on a real API server: the chart rendered with two watched namespaces, its ServiceAccount,
//! Roles and RoleBindings applied, and the real operator run as that ServiceAccount (impersonated), with the
//! chart's flags and Lease. It reconciles in both namespaces on those Roles alone, and the API server refuses it
//! Secrets cluster-wide and in a namespace it does not watch.
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use routero_operator::crd::{RouteroKey, RouteroTeam};
use serde_json::{Value, json};

use super::{apply, assert_forbidden, chart_arg, eventually_allowed, start_operator};
use crate::support::chart::{RELEASE_NAMESPACE, REQUIRED_VALUES, one, render};
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::{self, GatewayTarget, wait_for, wait_ready_of};

fn team(name: &str, team_id: &str) -> RouteroTeam {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam",
        "metadata": {"name": name}, "spec": {"teamId": team_id, "maxBudget": 5}
    }))
    .expect("team")
}

fn key(name: &str) -> RouteroKey {
    serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey",
        "metadata": {"name": name}, "spec": {"teamRef": {"name": "team"}}
    }))
    .expect("key")
}

#[tokio::test]
async fn watch_namespaces_run_on_the_charts_roles_alone() {
    let admin = testbed::client().await;
    let suffix = testbed::suffix();
    let watched = [
        testbed::namespace(&admin, "watched-a").await,
        testbed::namespace(&admin, "watched-b").await,
    ];
    let unwatched = testbed::namespace(&admin, "unwatched").await;
    // A release of its own, so its ServiceAccount is bound by nothing but what this test applies.
    let release = format!("watch-{suffix}");
    let objects = render(&format!(
        "{REQUIRED_VALUES}fullnameOverride: {release}\nwatchNamespaces: [{}, {}]\n",
        watched[0], watched[1]
    ));
    assert!(
        !objects.iter().any(|o| o["kind"] == "ClusterRoleBinding"),
        "watchNamespaces binds nothing cluster-wide"
    );
    let rbac: Vec<Value> = objects
        .iter()
        .filter(|o| {
            ["ServiceAccount", "Role", "RoleBinding"]
                .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .cloned()
        .collect();
    apply(&rbac);

    let flag = chart_arg(&objects, "--watch-namespaces=").expect("--watch-namespaces");
    let watch: Vec<String> = flag.split(',').map(str::to_owned).collect();
    assert_eq!(watch, watched, "the chart passes both namespaces");
    let lease_name = chart_arg(&objects, "--lease-name=").expect("--lease-name");
    let sa = one(&objects, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .expect("ServiceAccount name")
        .to_owned();
    let identity = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{sa}");
    let sa_groups = format!("system:serviceaccounts:{RELEASE_NAMESPACE}");
    let op_client = testbed::impersonating(
        &identity,
        &["system:serviceaccounts", &sa_groups, "system:authenticated"],
    )
    .await;
    let all = ListParams::default();
    for ns in &watched {
        let teams: Api<RouteroTeam> = Api::namespaced(op_client.clone(), ns);
        eventually_allowed("the operator lists teams in a watched namespace", || {
            teams.list(&all)
        })
        .await;
    }

    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let (stop, task) = start_operator(&op_client, &target, &watch, RELEASE_NAMESPACE, &lease_name);

    let pp = PostParams::default();
    for (i, ns) in watched.iter().chain([&unwatched]).enumerate() {
        Api::<RouteroTeam>::namespaced(admin.clone(), ns)
            .create(&pp, &team("team", &format!("watch-{suffix}-{i}")))
            .await
            .expect("create team");
    }
    let keys: Api<RouteroKey> = Api::namespaced(admin.clone(), &watched[1]);
    keys.create(&pp, &key("key")).await.expect("create key");
    for ns in &watched {
        wait_ready_of(&Api::<RouteroTeam>::namespaced(admin.clone(), ns), "team").await;
    }
    wait_ready_of(&keys, "key").await;
    let secret = Api::<Secret>::namespaced(admin.clone(), &watched[1])
        .get("key")
        .await
        .expect("the key Secret, written on the Role alone");
    assert!(secret.data.is_some_and(|d| d.contains_key("apiKey")));

    // Real 403s for the operator's identity outside its namespaces.
    assert_forbidden(
        "the operator lists Secrets cluster-wide",
        Api::<Secret>::all(op_client.clone()).list(&all).await,
    );
    assert_forbidden(
        "the operator lists Secrets in an unwatched namespace",
        Api::<Secret>::namespaced(op_client.clone(), &unwatched)
            .list(&all)
            .await,
    );
    assert_forbidden(
        "the operator reads a Secret in an unwatched namespace",
        Api::<Secret>::namespaced(op_client.clone(), &unwatched)
            .get("any")
            .await,
    );
    assert_forbidden(
        "the operator lists RouteroTeams cluster-wide",
        Api::<RouteroTeam>::all(op_client.clone()).list(&all).await,
    );
    // The unwatched namespace's team is never touched: no finalizer, no status.
    let stranger = Api::<RouteroTeam>::namespaced(admin.clone(), &unwatched)
        .get("team")
        .await
        .expect("the unwatched team");
    assert!(
        stranger.finalizers().is_empty() && stranger.status.is_none(),
        "the operator left the unwatched namespace alone"
    );

    // Deletion runs the finalizers in both namespaces, still on the Roles alone.
    keys.delete("key", &DeleteParams::default())
        .await
        .expect("delete key");
    wait_for("key deleted", Duration::from_secs(40), || async {
        keys.get_opt("key").await.ok()?.is_none().then_some(())
    })
    .await;
    for ns in &watched {
        let teams: Api<RouteroTeam> = Api::namespaced(admin.clone(), ns);
        teams
            .delete("team", &DeleteParams::default())
            .await
            .expect("delete team");
        wait_for(
            &format!("team in {ns} deleted"),
            Duration::from_secs(40),
            || async { teams.get_opt("team").await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the operator stops within 30 s")
        .expect("the operator task ends cleanly");
}
