//! RouteroMember: roles, team membership, deprovisioning, and tenant isolation.
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use routero_operator::crd::RouteroMember;
use serde_json::{Value, json};

use crate::key::Bed;
use crate::support::fake_gateway::FakeGateway;
use crate::support::gateway_reader::{GatewayReader, sha256_hex};
use crate::support::testbed::{
    self, Conditioned, GatewayTarget, Operator, OperatorOptions, wait_for, wait_ready_of,
    wait_reason_of,
};
use routero_operator::crd::common::condition;

const WAIT: Duration = Duration::from_secs(40);

fn members(bed: &Bed) -> Api<RouteroMember> {
    Api::namespaced(bed.client.clone(), &bed.ns)
}

pub async fn create_member(api: &Api<RouteroMember>, name: &str, spec: Value) {
    let m: RouteroMember =
        serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroMember", "metadata": {"name": name}, "spec": spec})).expect("member");
    api.create(&PostParams::default(), &m)
        .await
        .expect("create member");
}

pub async fn ready_member(api: &Api<RouteroMember>, name: &str) -> RouteroMember {
    wait_ready_of(api, name).await
}

pub async fn member_reason(api: &Api<RouteroMember>, name: &str, reason: &str) -> RouteroMember {
    wait_reason_of(api, name, reason).await
}

/// The team's members on the gateway, read from the team side (user rows lag): user_id → role.
async fn team_members(gw: &GatewayReader, team_id: &str) -> Vec<(String, String)> {
    let Some(row) = gw.team(team_id).await else {
        return Vec::new();
    };
    row["members_with_roles"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            Some((
                m["user_id"].as_str()?.to_owned(),
                m["role"].as_str()?.to_owned(),
            ))
        })
        .filter(|(u, _)| u != "default_user_id")
        .collect()
}

async fn user_role(gw: &GatewayReader, user_id: &str) -> Option<String> {
    gw.user(user_id)
        .await
        .and_then(|u| u["user_info"]["user_role"].as_str().map(str::to_owned))
}

/// The user's guide, step 3, on the real gateway: the data-science lead as internal_user in the team; role and
/// team changes converge; deleting the person removes the user and revokes their key while the team's keys live on.
#[tokio::test]
async fn member_lifecycle_and_deprovisioning_on_real_litellm() {
    lifecycle_and_deprovisioning(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn member_lifecycle_and_deprovisioning_on_litellm_1_98() {
    lifecycle_and_deprovisioning(GatewayTarget::litellm_1_98()).await;
}

async fn lifecycle_and_deprovisioning(target: GatewayTarget) {
    let bed = Bed::new(
        target,
        "member",
        json!({"maxBudget": 2000, "budgetDuration": "1mo"}),
    )
    .await;
    let api = members(&bed);
    let lead = format!("data-lead-{}@company.com", testbed::suffix());
    create_member(
        &api,
        "data-lead",
        json!({"email": lead, "role": "internal_user", "teams": [{"name": "team"}]}),
    )
    .await;
    let m = ready_member(&api, "data-lead").await;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.user_id.clone()),
        Some(lead.clone())
    );
    assert_eq!(
        user_role(&bed.gw, &lead).await.as_deref(),
        Some("internal_user")
    );
    assert_eq!(
        team_members(&bed.gw, &bed.team_id).await,
        vec![(lead.clone(), "user".to_string())]
    );
    let user = bed.gw.user(&lead).await.expect("user");
    assert!(
        user["keys"].as_array().is_none_or(|k| k.is_empty()),
        "no key minted for nobody: {}",
        user["keys"]
    );

    // Role change converges.
    api.patch(
        "data-lead",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"role": "internal_user_viewer"}})),
    )
    .await
    .expect("patch");
    wait_for("role updated", WAIT, || async {
        (user_role(&bed.gw, &lead).await.as_deref() == Some("internal_user_viewer")).then_some(())
    })
    .await;

    // Team change converges: moved from the first team to a second one.
    let second = format!("{}-b", bed.team_id);
    let team2 = json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "second"}, "spec": {"teamId": second}});
    bed.teams
        .create(
            &PostParams::default(),
            &serde_json::from_value(team2).expect("team"),
        )
        .await
        .expect("create");
    api.patch(
        "data-lead",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"teams": [{"name": "second"}]}})),
    )
    .await
    .expect("patch");
    wait_for("moved to the second team", WAIT, || async {
        let in_second = team_members(&bed.gw, &second)
            .await
            .iter()
            .any(|(u, _)| u == &lead);
        let in_first = team_members(&bed.gw, &bed.team_id)
            .await
            .iter()
            .any(|(u, _)| u == &lead);
        (in_second && !in_first).then_some(())
    })
    .await;

    // A team key, a per-person key, and a key made outside the operator for the person.
    api.patch(
        "data-lead",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"teams": [{"name": "team"}, {"name": "second"}]}})),
    )
    .await
    .expect("patch");
    ready_member(&api, "data-lead").await;
    bed.create_key("shared", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.create_key(
        "lead-key",
        json!({"teamRef": {"name": "team"}, "memberRef": {"name": "data-lead"}}),
    )
    .await;
    bed.ready_key("shared").await;
    bed.ready_key("lead-key").await;
    let shared = bed.secret_value("shared", "apiKey").await.expect("shared");
    let personal = bed
        .secret_value("lead-key", "apiKey")
        .await
        .expect("personal");
    assert_eq!(
        bed.gw.key(&sha256_hex(&personal)).await.expect("info")["user_id"],
        lead.as_str(),
        "per-person key bound to the user"
    );
    let outside = format!("sk-outside-{}", testbed::suffix().repeat(3));
    let (status, body) = bed
        .gw
        .post(
            "/key/generate",
            json!({"key": outside, "user_id": lead, "team_id": bed.team_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bed.gw.status_with_key(&personal).await, 200);

    api.delete("data-lead", &DeleteParams::default())
        .await
        .expect("delete member");
    wait_for("member gone", WAIT, || async {
        api.get_opt("data-lead").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        bed.gw.user(&lead).await.is_none(),
        "user deleted on the gateway"
    );
    bed.wait_status(&personal, 401).await;
    bed.wait_status(&outside, 401).await;
    bed.key_reason("lead-key", "MemberNotReady").await;
    wait_for("per-person Secret removed", WAIT, || async {
        bed.secrets
            .get_opt("lead-key")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(bed.gw.team(&bed.team_id).await.is_some(), "the team stays");
    assert_eq!(
        bed.gw.status_with_key(&shared).await,
        200,
        "the team's other keys keep working"
    );

    for name in ["lead-key", "shared"] {
        bed.keys
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete key");
    }
    for name in ["team", "second"] {
        bed.teams
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete team");
    }
    wait_for("teams deleted", WAIT, || async {
        bed.gw.team(&second).await.is_none().then_some(())
    })
    .await;
    bed.stop().await;
}

/// Each isolation breach is refused with a clear condition and an Event, and nothing changes on the gateway.
#[tokio::test]
async fn tenant_isolation() {
    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let bed = Bed::new(target.clone(), "tenant-a", json!({})).await;
    let api = members(&bed);
    bed.create_key(
        "good",
        json!({"teamRef": {"name": "team"}, "alias": format!("shared-alias-{}", bed.team_id)}),
    )
    .await;
    bed.ready_key("good").await;
    let good = bed.secret_value("good", "apiKey").await.expect("key");
    create_member(&api, "alice", json!({"email": "alice@company.com", "userId": format!("alice-{}", bed.team_id), "role": "internal_user"})).await;
    ready_member(&api, "alice").await;
    let writes = fake.writes();
    let tenant_a_routes = [
        "POST /user/new",
        "POST /user/update",
        "POST /user/delete",
        "POST /key/delete",
        "POST /key/update",
    ];
    let before: u64 = tenant_a_routes.iter().map(|r| fake.count(r)).sum();

    // Another tenant, with its own operator watching only its namespace.
    let ns_b = testbed::namespace(&bed.client, "tenant-b").await;
    let op_b = Operator::start(&bed.client, &target, &ns_b, OperatorOptions::default()).await;
    let keys_b: Api<routero_operator::crd::RouteroKey> = Api::namespaced(bed.client.clone(), &ns_b);
    let members_b: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &ns_b);
    let create_key_b = |name: &'static str, spec: Value| {
        let keys_b = keys_b.clone();
        async move {
            let k = serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey", "metadata": {"name": name}, "spec": spec})).expect("key");
            keys_b
                .create(&PostParams::default(), &k)
                .await
                .expect("create");
        }
    };
    let key_reason_b = |name: &'static str, reason: &'static str| {
        let keys_b = keys_b.clone();
        async move {
            let k = wait_reason_of(&keys_b, name, reason).await;
            condition(k.conditions(), "Ready")
                .map(|c| c.message.clone())
                .unwrap_or_default()
        }
    };

    // 1. A reference into another namespace.
    create_key_b(
        "steal-team",
        json!({"teamRef": {"name": "team", "namespace": bed.ns}}),
    )
    .await;
    let msg = key_reason_b("steal-team", "Forbidden").await;
    assert!(msg.contains(&ns_b) && msg.contains(&bed.ns), "{msg}");
    create_member(
        &members_b,
        "mallory",
        json!({"email": "m@company.com", "teams": [{"name": "team", "namespace": bed.ns}]}),
    )
    .await;
    member_reason(&members_b, "mallory", "Forbidden").await;

    // 2. An admin role outside the admin namespaces.
    create_member(
        &members_b,
        "root",
        json!({"email": "root@company.com", "role": "proxy_admin"}),
    )
    .await;
    let m = member_reason(&members_b, "root", "Forbidden").await;
    assert!(
        m.status.expect("status").conditions[0]
            .message
            .contains("admin namespaces")
    );

    // 3. Gateway objects owned by another namespace: the same userId, the same key alias.
    create_member(&members_b, "alice", json!({"email": "alice@company.com", "userId": format!("alice-{}", bed.team_id), "role": "proxy_admin_viewer"})).await;
    member_reason(&members_b, "alice", "Forbidden").await;
    members_b
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"role": "internal_user_viewer"}})),
        )
        .await
        .expect("patch");
    let m = member_reason(&members_b, "alice", "Conflict").await;
    let message = m.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("elsewhere") && !message.contains(&bed.ns),
        "never names another tenant's namespace: {message}"
    );

    let team_b = json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "own"}, "spec": {"teamId": format!("{}-b", bed.team_id)}});
    let teams_b: Api<routero_operator::crd::RouteroTeam> =
        Api::namespaced(bed.client.clone(), &ns_b);
    teams_b
        .create(
            &PostParams::default(),
            &serde_json::from_value(team_b).expect("team"),
        )
        .await
        .expect("create");
    create_key_b(
        "copycat",
        json!({"teamRef": {"name": "own"}, "alias": format!("shared-alias-{}", bed.team_id)}),
    )
    .await;
    let msg = key_reason_b("copycat", "Conflict").await;
    assert!(
        msg.contains("elsewhere") && !msg.contains(&bed.ns),
        "never names another tenant's namespace: {msg}"
    );

    // Nothing of tenant A changed on the gateway: no user created or modified, the key still works.
    let after: u64 = tenant_a_routes.iter().map(|r| fake.count(r)).sum();
    assert_eq!(
        after,
        before,
        "no user or key writes from the refused tenant: {:?}",
        fake.counts()
    );
    assert!(fake.writes() > writes, "tenant B's own team was created");
    assert_eq!(bed.gw.status_with_key(&good).await, 200);
    let alice = fake.user(&format!("alice-{}", bed.team_id)).expect("alice");
    assert_eq!(alice["user_role"], "internal_user");
    testbed::assert_events(&bed.client, &ns_b, &["Forbidden", "Conflict"]).await;

    // Admin roles are honoured in an admin namespace.
    let op_admin_ns = testbed::namespace(&bed.client, "admins").await;
    let op_admin = Operator::start(
        &bed.client,
        &target,
        &op_admin_ns,
        OperatorOptions {
            admin_namespaces: vec![op_admin_ns.clone()],
            ..Default::default()
        },
    )
    .await;
    let admins: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &op_admin_ns);
    create_member(&admins, "root", json!({"email": "root@company.com", "userId": format!("root-{}", bed.team_id), "role": "proxy_admin"})).await;
    ready_member(&admins, "root").await;
    assert_eq!(
        fake.user(&format!("root-{}", bed.team_id)).expect("root")["user_role"],
        "proxy_admin"
    );
    op_admin.stop().await;
    op_b.stop().await;
    let _ = bed.keys.get("good").await.map(|k| k.name_any());
    bed.stop().await;
}
