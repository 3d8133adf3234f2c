//! Tenant isolation (DESIGN §4): a namespace must never touch what it does not own. One test per attack, named by
//! the threat. Each attack is made as a tenant would make it, with writes in its own namespace only (its three
//! kinds, their status, its Secrets), and each test reads the victim back from the gateway: the key still
//! authenticates, and role, email, budget and allowlist are unchanged. Each also checks the attacker's condition
//! and Event.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use routero_operator::crd::common::condition;
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use serde_json::{Value, json};

use crate::key::Bed;
use crate::member::{create_member, member_reason, ready_member};
use crate::support::fake_gateway::FakeGateway;
use crate::support::gateway_reader::{GatewayReader, sha256_hex};
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, suffix, wait_for, wait_ready_of, wait_reason_of,
};

const WAIT: Duration = Duration::from_secs(40);

/// A key the admin made by hand, outside the operator: its raw value and hash. It works before the attack.
async fn hand_made_key(gw: &GatewayReader, body: Value) -> (String, String) {
    let reply = admin_edit(gw, "/key/generate", body).await;
    let raw = reply["key"].as_str().expect("raw key").to_owned();
    assert_eq!(
        gw.status_with_key(&raw).await,
        200,
        "the victim's key works"
    );
    let hash = sha256_hex(&raw);
    (raw, hash)
}

/// A team the admin made by hand with `/team/new` (a gateway-made UUID id): its id.
async fn hand_made_team(gw: &GatewayReader, body: Value) -> String {
    let row = admin_edit(gw, "/team/new", body).await;
    row["team_id"].as_str().expect("team_id").to_owned()
}

/// A user the admin made by hand: (user_id, email).
async fn hand_made_user(gw: &GatewayReader, prefix: &str, role: &str) -> (String, String) {
    let user_id = format!("{prefix}-{}", suffix());
    let email = format!("{user_id}@company.com");
    admin_edit(gw, "/user/new", json!({"user_id": user_id, "user_email": email, "user_role": role, "auto_create_key": false})).await;
    (user_id, email)
}

/// An out-of-band change by the gateway admin (curl with the master key).
async fn admin_edit(gw: &GatewayReader, path: &str, body: Value) -> Value {
    let (status, reply) = gw.post(path, body).await;
    assert_eq!(status, 200, "{path}: {reply}");
    reply
}

/// The user's role and email as the gateway holds them.
async fn user_facts(gw: &GatewayReader, user_id: &str) -> (Value, Value) {
    let u = gw.user(user_id).await.expect("the victim user exists");
    (
        u["user_info"]["user_role"].clone(),
        u["user_info"]["user_email"].clone(),
    )
}

/// The team's budget and allowlist as the gateway holds them.
async fn team_facts(gw: &GatewayReader, team_id: &str) -> (Option<f64>, Value) {
    let t = gw.team(team_id).await.expect("the victim team exists");
    (t["max_budget"].as_f64(), t["models"].clone())
}

/// Waits until the RouteroKey shows `Tampered=True` (operator state found in a Secret was dropped).
async fn wait_tampered(keys: &Api<RouteroKey>, name: &str) -> String {
    wait_for(&format!("RouteroKey {name} Tampered"), WAIT, || async {
        let k = keys.get(name).await.ok()?;
        let c = condition(&k.status?.conditions, "Tampered")?.clone();
        (c.status == "True" && c.reason == "UntrustedState").then_some(c.message)
    })
    .await
}

async fn wait_deleted<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(&format!("{name} deleted"), WAIT, || async {
        api.get_opt(name)
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
}

/// A merge patch by the tenant of `spec` (as `kubectl apply` makes it: it bumps the generation, so the operator
/// reconciles) or of `status` (forged, as a tenant with status rights can write it).
async fn tenant_patch<K>(api: &Api<K>, name: &str, part: &str, value: Value)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let (pp, patch) = (PatchParams::default(), Patch::Merge(json!({ part: value })));
    let result = if part == "status" {
        api.patch_status(name, &pp, &patch).await
    } else {
        api.patch(name, &pp, &patch).await
    };
    result.unwrap_or_else(|e| panic!("tenant patches {part} of {name}: {e}"));
}

async fn forge_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    tenant_patch(api, name, "status", status).await;
}

async fn patch_spec<K>(api: &Api<K>, name: &str, spec: Value)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    tenant_patch(api, name, "spec", spec).await;
}

/// `Ready=True` conditions for the object's current generation, as a forged status would carry them.
fn forged_ready(generation: Option<i64>) -> Value {
    json!([
        {"type": "Ready", "status": "True", "reason": "Available", "message": "forged", "observedGeneration": generation},
        {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "message": "", "observedGeneration": generation},
    ])
}

/// Attack 1: `routero.ai/retiring-key` naming another key's hash made the operator delete it. The spec may no
/// longer carry `routero.ai/` state at all, and a hash written into the Secret by hand is checked on the gateway
/// before anything is deleted: the victim's key keeps working, and the RouteroKey shows `Tampered`.
#[tokio::test]
async fn a_secret_annotation_cannot_delete_someone_elses_key() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-retire", json!({})).await;
    let alias = format!("victim-{}", suffix());
    let (victim, victim_hash) = hand_made_key(&bed.gw, json!({"key_alias": alias})).await;

    // At admission: spec.secret labels and annotations may not carry the operator's own state.
    for field in ["annotations", "labels"] {
        let key: RouteroKey = serde_json::from_value(json!({
            "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey", "metadata": {"name": format!("via-{field}")},
            "spec": {"teamRef": {"name": "team"}, "secret": {field: {"routero.ai/retiring-key": victim_hash}}}
        }))
        .expect("key");
        let err = bed
            .keys
            .create(&PostParams::default(), &key)
            .await
            .expect_err("refused at admission");
        assert!(
            err.to_string().contains(&format!("spec.secret.{field}")),
            "the message names the field: {err}"
        );
    }

    // In the Secret itself, which the tenant may edit.
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let own = bed.secret_value("api", "apiKey").await.expect("own key");
    let forged = json!({"metadata": {"annotations": {
        "routero.ai/retiring-key": victim_hash, "routero.ai/retire-after": "2020-01-01T00:00:00Z"}}});
    bed.secrets
        .patch("api", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("tenant edits its Secret");
    let message = wait_tampered(&bed.keys, "api").await;
    assert!(message.contains("routero.ai/retiring-key"), "{message}");
    wait_for("the forged state is dropped", WAIT, || async {
        let s = bed.secrets.get("api").await.ok()?;
        (!s.annotations().contains_key("routero.ai/retiring-key")).then_some(())
    })
    .await;
    assert!(bed.gw.key(&victim_hash).await.is_some(), "victim key kept");
    assert_eq!(bed.gw.status_with_key(&victim).await, 200);
    testbed::assert_events(&bed.client, &bed.ns, &["UntrustedState"]).await;
    bed.ready_key("api").await;

    // Deleting the RouteroKey revokes its own key only, whatever its Secret names.
    let forged = json!({"metadata": {"annotations": {
        "routero.ai/retiring-key": victim_hash, "routero.ai/retire-after": "2999-01-01T00:00:00Z"}}});
    bed.secrets
        .patch("api", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("tenant edits its Secret");
    wait_deleted(&bed.keys, "api").await;
    bed.wait_status(&own, 401).await;
    assert_eq!(bed.gw.status_with_key(&victim).await, 200);
    assert_eq!(bed.gw.keys_with_alias(&alias).await.len(), 1);
    bed.stop().await;
}

/// Attack 1, the regenerate route: a pending Secret written by the tenant (owned by its RouteroKey, as the
/// operator writes one) asked to regenerate the victim's key into a value the tenant chose.
async fn pending_secret_cannot_regenerate(target: GatewayTarget, fake: Option<&FakeGateway>) {
    let bed = Bed::new(target, "t-pending", json!({})).await;
    let (victim, victim_hash) = hand_made_key(
        &bed.gw,
        json!({"key_alias": format!("victim-{}", suffix())}),
    )
    .await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    let k = bed.ready_key("api").await;
    let chosen = format!("sk-chosen-by-the-tenant-{}", suffix());
    let pending = Secret {
        metadata: ObjectMeta {
            name: Some("routero-pending-api".into()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".into(),
                    "routero-operator".into(),
                ),
                ("routero.ai/key".into(), "api".into()),
                ("routero.ai/pending".into(), "true".into()),
            ])),
            annotations: Some(BTreeMap::from([
                ("routero.ai/intent".into(), "regenerate".into()),
                ("routero.ai/replaces".into(), victim_hash.clone()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "routero.ai/v1alpha1".into(),
                kind: "RouteroKey".into(),
                name: "api".into(),
                uid: k.uid().expect("uid"),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "next".to_string(),
            ByteString(chosen.clone().into_bytes()),
        )])),
        ..Secret::default()
    };
    bed.secrets
        .create(&PostParams::default(), &pending)
        .await
        .expect("tenant writes a pending Secret");
    // Found at the next resync (2 s here).
    let message = wait_tampered(&bed.keys, "api").await;
    assert!(message.contains("routero.ai/replaces"), "{message}");
    wait_for("the forged pending Secret is dropped", WAIT, || async {
        bed.secrets
            .get_opt("routero-pending-api")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(bed.gw.key(&victim_hash).await.is_some(), "victim key kept");
    assert_eq!(bed.gw.status_with_key(&victim).await, 200);
    assert!(
        bed.gw.key(&sha256_hex(&chosen)).await.is_none(),
        "the tenant's value was never registered"
    );
    if let Some(fake) = fake {
        assert_eq!(fake.count("POST /key/regenerate"), 0, "no regenerate sent");
    }
    testbed::assert_events(&bed.client, &bed.ns, &["UntrustedState"]).await;
    bed.ready_key("api").await;
    bed.stop().await;
}

#[tokio::test]
async fn a_pending_secret_cannot_regenerate_someone_elses_key_on_real_litellm() {
    pending_secret_cannot_regenerate(GatewayTarget::litellm(), None).await;
}

/// The fake gateway has a licensed regenerate, so there the call would have succeeded: it is never sent.
#[tokio::test]
async fn a_pending_secret_cannot_regenerate_someone_elses_key_on_fake_gateway() {
    let fake = FakeGateway::start().await;
    pending_secret_cannot_regenerate(GatewayTarget::fake(&fake), Some(&fake)).await;
}

/// Attack 2: `adopt: true` on the admin's user demoted it and rewrote its email; deleting the RouteroMember would
/// then delete the admin and its keys. An admin's user is never touched from a tenant namespace, not even when an
/// admin marked it adoptable there.
#[tokio::test]
async fn a_tenant_cannot_take_over_the_admins_user() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-admin", json!({})).await;
    let (boss, boss_email) = hand_made_user(&bed.gw, "boss", "proxy_admin").await;
    let (boss_key, _) = hand_made_key(&bed.gw, json!({"user_id": boss})).await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    create_member(
        &members,
        "boss",
        json!({"email": "mallory@tenant.example", "userId": boss, "role": "internal_user", "adopt": true}),
    )
    .await;
    let m = member_reason(&members, "boss", "Forbidden").await;
    let message = m.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("admin role"), "{message}");
    assert_eq!(
        user_facts(&bed.gw, &boss).await,
        (json!("proxy_admin"), json!(boss_email))
    );

    // An adoptable-by marker does not hand over an admin either.
    admin_edit(
        &bed.gw,
        "/user/update",
        json!({"user_id": boss, "metadata": {"routero.ai/adoptable-by": bed.ns}}),
    )
    .await;
    patch_spec(&members, "boss", json!({"maxBudget": 1})).await;
    wait_for("refused again for the new generation", WAIT, || async {
        let m = members.get("boss").await.ok()?;
        let c = condition(&m.status?.conditions, "Ready")?.clone();
        (c.reason == "Forbidden" && c.observed_generation == m.metadata.generation).then_some(())
    })
    .await;

    // Deleting the RouteroMember leaves the admin and its key alone.
    wait_deleted(&members, "boss").await;
    assert_eq!(
        user_facts(&bed.gw, &boss).await,
        (json!("proxy_admin"), json!(boss_email))
    );
    assert_eq!(bed.gw.status_with_key(&boss_key).await, 200);
    testbed::assert_events(&bed.client, &bed.ns, &["Forbidden"]).await;
    bed.stop().await;
}

/// Variant: the gateway's own admin identities are never adopted, even from an admin namespace: the master key's
/// `default_user_id`, and the user the operator's admin key belongs to (here the operator runs with a virtual
/// proxy_admin key of a user made by hand).
#[tokio::test]
async fn the_gateways_admin_identities_are_never_adopted() {
    let client = testbed::client().await;
    let litellm = GatewayTarget::litellm();
    let gw = GatewayReader::new(&litellm);
    let (ops, ops_email) = hand_made_user(&gw, "ops", "proxy_admin").await;
    let (ops_key, _) = hand_made_key(&gw, json!({"user_id": ops})).await;
    let ns = testbed::namespace(&client, "t-identity").await;
    let target = GatewayTarget {
        url: litellm.url.clone(),
        admin_key: ops_key.clone(),
    };
    let opts = OperatorOptions {
        admin_namespaces: vec![ns.clone()],
        ..OperatorOptions::default()
    };
    let operator = Operator::start(&client, &target, &ns, opts).await;
    let members: Api<RouteroMember> = Api::namespaced(client.clone(), &ns);
    create_member(
        &members,
        "master",
        json!({"email": "someone@tenant.example", "userId": "default_user_id", "role": "proxy_admin", "adopt": true}),
    )
    .await;
    create_member(
        &members,
        "ops",
        json!({"email": "someone@tenant.example", "userId": ops, "role": "internal_user", "adopt": true}),
    )
    .await;
    member_reason(&members, "master", "Forbidden").await;
    let m = member_reason(&members, "ops", "Forbidden").await;
    let message = m.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("own admin identity"), "{message}");
    assert_eq!(
        user_facts(&gw, &ops).await,
        (json!("proxy_admin"), json!(ops_email))
    );
    wait_deleted(&members, "ops").await;
    assert_eq!(gw.status_with_key(&ops_key).await, 200);
    testbed::assert_events(&client, &ns, &["Forbidden"]).await;
    operator.stop().await;
}

/// Attack 3: `adopt: true` on a team made by hand set its budget to 1,000,000 and its allowlist to any model.
/// Adoption outside the admin namespaces needs the team to be marked adoptable by this namespace.
#[tokio::test]
async fn a_tenant_cannot_take_over_a_hand_made_team() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-team", json!({})).await;
    let victim = hand_made_team(
        &bed.gw,
        json!({"team_alias": format!("finance-{}", suffix()), "max_budget": 800, "models": ["eu/balanced"]}),
    )
    .await;
    let before = team_facts(&bed.gw, &victim).await;
    let thief: RouteroTeam = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "stolen"},
        "spec": {"teamId": victim, "adopt": true, "maxBudget": 1000000, "models": []}
    }))
    .expect("team");
    bed.teams
        .create(&PostParams::default(), &thief)
        .await
        .expect("create");
    let t = wait_reason_of(&bed.teams, "stolen", "Forbidden").await;
    let message = t.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("routero.ai/adoptable-by"), "{message}");
    assert_eq!(team_facts(&bed.gw, &victim).await, before);
    testbed::assert_events(&bed.client, &bed.ns, &["Forbidden"]).await;

    // Marked adoptable by another namespace: still refused here.
    admin_edit(
        &bed.gw,
        "/team/update",
        json!({"team_id": victim, "metadata": {"routero.ai/adoptable-by": "some-other-namespace"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(team_facts(&bed.gw, &victim).await, before);
    wait_reason_of(&bed.teams, "stolen", "Forbidden").await;

    wait_deleted(&bed.teams, "stolen").await;
    assert_eq!(
        team_facts(&bed.gw, &victim).await,
        before,
        "deleting the refused resource leaves the team"
    );
    bed.stop().await;
}

/// Variant: a forged status (`teamId` naming the team, `Ready`, and a provenance proof copied from another of the
/// tenant's own teams) stood in for ownership: it neither lifts the conflict nor lets deletion take the team.
#[tokio::test]
async fn a_forged_team_status_does_not_make_a_team_ours() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-tstatus", json!({})).await;
    let victim = hand_made_team(
        &bed.gw,
        json!({"team_alias": format!("eng-{}", suffix()), "max_budget": 1500}),
    )
    .await;
    let before = team_facts(&bed.gw, &victim).await;
    let own_proof = bed
        .teams
        .get("team")
        .await
        .expect("own team")
        .status
        .and_then(|s| s.provenance)
        .expect("the operator records a proof for its own team");
    let thief: RouteroTeam = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "thief"},
        "spec": {"teamId": victim, "maxBudget": 1000000}
    }))
    .expect("team");
    bed.teams
        .create(&PostParams::default(), &thief)
        .await
        .expect("create");
    let t = wait_reason_of(&bed.teams, "thief", "Conflict").await;
    forge_status(
        &bed.teams,
        "thief",
        json!({"teamId": victim, "provenance": own_proof, "conditions": forged_ready(t.metadata.generation)}),
    )
    .await;
    // A resync (2 s) later it is still a conflict, and nothing was written.
    wait_for("the conflict is reported again", WAIT, || async {
        let t = bed.teams.get("thief").await.ok()?;
        let ready = condition(&t.status?.conditions, "Ready")?.clone();
        (ready.reason == "Conflict").then_some(())
    })
    .await;
    assert_eq!(team_facts(&bed.gw, &victim).await, before);
    forge_status(
        &bed.teams,
        "thief",
        json!({"teamId": victim, "provenance": own_proof}),
    )
    .await;
    wait_deleted(&bed.teams, "thief").await;
    assert_eq!(team_facts(&bed.gw, &victim).await, before, "not deleted");
    bed.stop().await;
}

/// Attack 4: with the tenant's RouteroTeam status naming another tenant's team, a new key was issued into that
/// team. Keys take the team id from spec, and check the gateway team's owner marker before issuing.
#[tokio::test]
async fn a_forged_status_cannot_redirect_a_key() {
    let victim = Bed::new(GatewayTarget::litellm(), "t-victim", json!({})).await;
    // A long resync, so the forged statuses stay in place (status writes trigger no reconcile of the team).
    let bed = Bed::with_resync(
        GatewayTarget::litellm(),
        "t-redirect",
        json!({}),
        Duration::from_secs(300),
    )
    .await;
    let victim_keys = || async {
        let (status, body) = victim
            .gw
            .get("/team/info", &[("team_id", &victim.team_id)])
            .await;
        assert_eq!(status, 200, "{body}");
        body["keys"].as_array().expect("the team's keys").len()
    };
    let victim_keys_before = victim_keys().await;

    // (a) The tenant's own team, its status naming the victim's team: the key goes into the tenant's own team.
    let team = bed.teams.get("team").await.expect("team");
    forge_status(
        &bed.teams,
        "team",
        json!({"teamId": victim.team_id, "conditions": forged_ready(team.metadata.generation)}),
    )
    .await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let own = bed.secret_value("api", "apiKey").await.expect("key");
    let info = bed.gw.key(&sha256_hex(&own)).await.expect("key info");
    assert_eq!(
        info["team_id"], bed.team_id,
        "issued into its own spec's team"
    );

    // (b) A RouteroTeam whose spec names the victim's team (refused as a conflict), with a forged Ready status.
    let thief: RouteroTeam = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "thief"},
        "spec": {"teamId": victim.team_id}
    }))
    .expect("team");
    bed.teams
        .create(&PostParams::default(), &thief)
        .await
        .expect("create");
    let t = wait_reason_of(&bed.teams, "thief", "Conflict").await;
    forge_status(
        &bed.teams,
        "thief",
        json!({"teamId": victim.team_id, "conditions": forged_ready(t.metadata.generation)}),
    )
    .await;
    bed.create_key("redirect", json!({"teamRef": {"name": "thief"}}))
        .await;
    let k = bed.key_reason("redirect", "Forbidden").await;
    let message = k.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("not managed by RouteroTeam 'thief'"),
        "{message}"
    );
    assert!(
        bed.gw
            .keys_with_alias(&format!("{}.redirect", bed.ns))
            .await
            .is_empty()
    );
    assert_eq!(
        victim_keys().await,
        victim_keys_before,
        "no key in the victim's team"
    );

    // (c) A per-person key for a RouteroMember naming someone else's user, its status forged Ready.
    let (other, _) = hand_made_user(&bed.gw, "other", "internal_user").await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    create_member(
        &members,
        "ghost",
        json!({"email": "ghost@tenant.example", "userId": other}),
    )
    .await;
    let m = member_reason(&members, "ghost", "Conflict").await;
    forge_status(
        &members,
        "ghost",
        json!({"userId": other, "conditions": forged_ready(m.metadata.generation)}),
    )
    .await;
    bed.create_key(
        "personal",
        json!({"teamRef": {"name": "team"}, "memberRef": {"name": "ghost"}}),
    )
    .await;
    let k = bed.key_reason("personal", "Forbidden").await;
    let message = k.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("not managed by RouteroMember 'ghost'"),
        "{message}"
    );
    let user = bed.gw.user(&other).await.expect("user");
    assert!(
        user["keys"].as_array().is_none_or(|k| k.is_empty()),
        "no key issued for someone else's user: {}",
        user["keys"]
    );
    testbed::assert_events(&bed.client, &bed.ns, &["Conflict", "Forbidden"]).await;
    bed.stop().await;
    victim.stop().await;
}

/// Variant: a member's `status.teams` lists the teams it left; forged to name a team the person was added to by
/// an admin, it made the operator remove them from it.
#[tokio::test]
async fn a_forged_member_status_cannot_remove_people_from_other_teams() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-leave", json!({})).await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    let lead = format!("lead-{}@company.com", suffix());
    create_member(
        &members,
        "lead",
        json!({"email": lead, "teams": [{"name": "team"}]}),
    )
    .await;
    ready_member(&members, "lead").await;
    let other = hand_made_team(
        &bed.gw,
        json!({"team_alias": format!("board-{}", suffix())}),
    )
    .await;
    admin_edit(
        &bed.gw,
        "/team/member_add",
        json!({"team_id": other, "member": {"role": "user", "user_id": lead}}),
    )
    .await;
    let in_other = || async {
        bed.gw.team(&other).await.expect("team")["members_with_roles"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["user_id"] == lead))
    };
    assert!(in_other().await);
    forge_status(&members, "lead", json!({"teams": [bed.team_id, other]})).await;
    patch_spec(&members, "lead", json!({"maxBudget": 5})).await;
    let m = wait_ready_of(&members, "lead").await;
    assert_eq!(m.status.expect("status").teams, vec![bed.team_id.clone()]);
    assert!(in_other().await, "still in the team an admin added them to");
    bed.stop().await;
}

/// Deprovisioning cannot be dodged: an e-mail that is the member's identity cannot be edited (the old user would
/// live on with its access); with an explicit userId the e-mail is an ordinary field.
#[tokio::test]
async fn an_email_edit_cannot_dodge_deprovisioning() {
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "t-email").await;
    let members: Api<RouteroMember> = Api::namespaced(client.clone(), &ns);
    create_member(&members, "by-email", json!({"email": "a@company.com"})).await;
    create_member(
        &members,
        "by-id",
        json!({"email": "b@company.com", "userId": "b-123"}),
    )
    .await;
    let edit = json!({"spec": {"email": "changed@company.com"}});
    let err = members
        .patch("by-email", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("email is this member's gateway identity"),
        "{err}"
    );
    members
        .patch("by-id", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("an e-mail that is not the identity may change");
}

/// Deprovisioning cannot be dodged: owner markers wiped on the gateway (by hand, or by a tool that replaced the
/// metadata) do not stop a resource from deleting what it created, because its status holds the operator's proof.
#[tokio::test]
async fn wiped_owner_markers_do_not_dodge_deprovisioning() {
    let bed = Bed::with_resync(
        GatewayTarget::litellm(),
        "t-wiped",
        json!({}),
        Duration::from_secs(300),
    )
    .await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    let lead = format!("lead-{}@company.com", suffix());
    create_member(
        &members,
        "lead",
        json!({"email": lead, "teams": [{"name": "team"}]}),
    )
    .await;
    ready_member(&members, "lead").await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let value = bed.secret_value("api", "apiKey").await.expect("key");
    let hash = sha256_hex(&value);

    let wiped = json!({"wiped": "by hand"});
    for (path, body) in [
        ("/key/update", json!({"key": hash, "metadata": wiped})),
        ("/user/update", json!({"user_id": lead, "metadata": wiped})),
        (
            "/team/update",
            json!({"team_id": bed.team_id, "metadata": wiped}),
        ),
    ] {
        admin_edit(&bed.gw, path, body).await;
    }
    let owner = |row: Value| row["metadata"]["routero.ai/owner"].clone();
    assert_eq!(owner(bed.gw.key(&hash).await.expect("key")), Value::Null);
    assert_eq!(
        owner(bed.gw.team(&bed.team_id).await.expect("team")),
        Value::Null
    );

    wait_deleted(&bed.keys, "api").await;
    bed.wait_status(&value, 401).await;
    wait_deleted(&members, "lead").await;
    assert!(bed.gw.user(&lead).await.is_none(), "user deprovisioned");
    wait_deleted(&bed.teams, "team").await;
    assert!(bed.gw.team(&bed.team_id).await.is_none(), "team deleted");
    testbed::assert_events(&bed.client, &bed.ns, &["Revoked", "Deleted"]).await;
    bed.stop().await;
}

/// Alias squatting: `<namespace>.<name>` is every namespace's default alias, so no other namespace may take one
/// (it would block that namespace's keys). Dotted aliases of one's own namespace and plain aliases stay possible.
#[tokio::test]
async fn a_tenant_cannot_squat_another_namespaces_aliases() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "t-alias", json!({})).await;
    let generated = fake.count("POST /key/generate");
    bed.create_key(
        "squat",
        json!({"teamRef": {"name": "team"}, "alias": "data-science.ds-prod"}),
    )
    .await;
    let k = bed.key_reason("squat", "Forbidden").await;
    let message = k.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("must begin with this namespace"),
        "{message}"
    );
    assert_eq!(fake.count("POST /key/generate"), generated, "no key issued");
    testbed::assert_events(&bed.client, &bed.ns, &["Forbidden"]).await;

    let own = format!("{}.custom", bed.ns);
    let plain = format!("ds-prod-{}", suffix());
    bed.create_key("own", json!({"teamRef": {"name": "team"}, "alias": own}))
        .await;
    bed.create_key(
        "plain",
        json!({"teamRef": {"name": "team"}, "alias": plain}),
    )
    .await;
    bed.ready_key("own").await;
    bed.ready_key("plain").await;
    bed.stop().await;
}

/// Adoption by an admin's decision: a user marked `routero.ai/adoptable-by: <namespace>` is adopted from that
/// namespace (what `import` sets), and only from there.
#[tokio::test]
async fn a_user_marked_adoptable_is_adopted_only_by_that_namespace() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-adopt", json!({})).await;
    let (user, email) = hand_made_user(&bed.gw, "analyst", "internal_user").await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    admin_edit(
        &bed.gw,
        "/user/update",
        json!({"user_id": user, "metadata": {"routero.ai/adoptable-by": "another-namespace"}}),
    )
    .await;
    create_member(
        &members,
        "analyst",
        json!({"email": email, "userId": user, "role": "internal_user_viewer", "adopt": true}),
    )
    .await;
    member_reason(&members, "analyst", "Forbidden").await;
    assert_eq!(
        user_facts(&bed.gw, &user).await.0,
        json!("internal_user"),
        "untouched"
    );
    admin_edit(
        &bed.gw,
        "/user/update",
        json!({"user_id": user, "metadata": {"routero.ai/adoptable-by": bed.ns}}),
    )
    .await;
    ready_member(&members, "analyst").await;
    let u = bed.gw.user(&user).await.expect("user");
    assert_eq!(u["user_info"]["user_role"], "internal_user_viewer");
    assert_eq!(
        u["user_info"]["metadata"]["routero.ai/owner"],
        format!("RouteroMember/{}/analyst", bed.ns)
    );
    testbed::assert_events(&bed.client, &bed.ns, &["Forbidden", "Updated"]).await;
    bed.stop().await;
}

/// Variant: a member's `status.userId` naming the user stood in for ownership (the old "this resource already
/// manages it" shortcut): a forged one neither adopts a user made by hand nor lets deletion take it.
#[tokio::test]
async fn a_forged_member_status_does_not_make_a_user_ours() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-mstatus", json!({})).await;
    let (user, email) = hand_made_user(&bed.gw, "clerk", "internal_user").await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    create_member(
        &members,
        "clerk",
        json!({"email": "mallory@tenant.example", "userId": user, "role": "internal_user_viewer"}),
    )
    .await;
    let m = member_reason(&members, "clerk", "Conflict").await;
    forge_status(
        &members,
        "clerk",
        json!({"userId": user, "provenance": "00112233445566778899aabbccddeeff", "conditions": forged_ready(m.metadata.generation)}),
    )
    .await;
    wait_for("the conflict is reported again", WAIT, || async {
        let m = members.get("clerk").await.ok()?;
        (condition(&m.status?.conditions, "Ready")?.reason == "Conflict").then_some(())
    })
    .await;
    assert_eq!(
        user_facts(&bed.gw, &user).await,
        (json!("internal_user"), json!(email))
    );
    forge_status(
        &members,
        "clerk",
        json!({"userId": user, "provenance": "00112233445566778899aabbccddeeff"}),
    )
    .await;
    wait_deleted(&members, "clerk").await;
    assert_eq!(
        user_facts(&bed.gw, &user).await,
        (json!("internal_user"), json!(email)),
        "not deleted"
    );
    bed.stop().await;
}

/// Variant: a person the operator created from a tenant namespace, then promoted to proxy_admin by the gateway
/// admin, is out of that tenant's reach: no update reverts the role and deleting the RouteroMember leaves the user.
#[tokio::test]
async fn a_tenant_cannot_demote_or_delete_a_user_an_admin_promoted() {
    let bed = Bed::new(GatewayTarget::litellm(), "t-promoted", json!({})).await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    let lead = format!("lead-{}@company.com", suffix());
    create_member(&members, "lead", json!({"email": lead})).await;
    ready_member(&members, "lead").await;
    admin_edit(
        &bed.gw,
        "/user/update",
        json!({"user_id": lead, "user_role": "proxy_admin"}),
    )
    .await;
    patch_spec(&members, "lead", json!({"maxBudget": 3})).await;
    let m = member_reason(&members, "lead", "Forbidden").await;
    let message = m.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("admin role"), "{message}");
    assert_eq!(user_facts(&bed.gw, &lead).await.0, json!("proxy_admin"));
    wait_deleted(&members, "lead").await;
    assert_eq!(
        user_facts(&bed.gw, &lead).await.0,
        json!("proxy_admin"),
        "an admin's user is not deleted from a tenant namespace"
    );
    testbed::assert_events(&bed.client, &bed.ns, &["Forbidden"]).await;
    bed.stop().await;
}
