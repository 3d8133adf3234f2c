//! Deprovisioning is instant on every tested release: deleting a RouteroMember (RouteroTeam) revokes every key of
//! its user (team), keys made outside the operator included, before the next request, even while the key is in
//! use and so in the gateway's auth cache. On LiteLLM 1.98.0 `/user/delete` alone left such a key working for about
//! 60 s; the operator revokes each key explicitly first. And the revocation only ever reaches a user or team that
//! is the deleted resource's own.
use std::time::Duration;

use kube::Api;
use kube::api::DeleteParams;
use routero_operator::crd::RouteroMember;
use serde_json::json;

use crate::key::Bed;
use crate::member::{create_member, member_reason, ready_member};
use crate::support::fake_gateway::{FakeGateway, FakeRelease};
use crate::support::gateway_reader::{GatewayReader, sha256_hex};
use crate::support::testbed::{self, GatewayTarget, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// A key made with the admin key straight on the gateway (not by the operator) for `holder`.
async fn outside_key(gw: &GatewayReader, holder: serde_json::Value) -> String {
    let key = format!("sk-outside-{}", testbed::suffix().repeat(4));
    let mut body = json!({ "key": key });
    if let (Some(b), Some(h)) = (body.as_object_mut(), holder.as_object()) {
        b.extend(h.clone());
    }
    let (status, reply) = gw.post("/key/generate", body).await;
    assert_eq!(status, 200, "{reply}");
    key
}

/// The key is in use: it authenticates, several times, so the gateway has it in its auth cache.
async fn use_key(gw: &GatewayReader, key: &str) {
    for _ in 0..3 {
        assert_eq!(gw.status_with_key(key).await, 200, "the key works before");
    }
}

/// The first request after the deletion completed is refused, and so is every one after it.
async fn refused_from_the_next_request(gw: &GatewayReader, key: &str) {
    assert_eq!(
        gw.status_with_key(key).await,
        401,
        "the very next request with the revoked key is refused"
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gw.status_with_key(key).await, 401, "and stays refused");
    }
    assert!(
        gw.key(&sha256_hex(key))
            .await
            .is_none_or(|k| k["status"] == "deleted"),
        "the key is gone from the gateway"
    );
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    wait_for(&format!("{name} deleted"), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

async fn member_deletion_revokes_at_once(target: GatewayTarget) {
    let bed = Bed::new(target, "deprov-member", json!({})).await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    let email = format!("leaver-{}@company.com", testbed::suffix());
    create_member(
        &members,
        "leaver",
        json!({"email": email, "teams": [{"name": "team"}]}),
    )
    .await;
    ready_member(&members, "leaver").await;
    let outside = outside_key(&bed.gw, json!({"user_id": email})).await;
    use_key(&bed.gw, &outside).await;

    members
        .delete("leaver", &DeleteParams::default())
        .await
        .expect("delete member");
    gone(&members, "leaver").await;
    refused_from_the_next_request(&bed.gw, &outside).await;
    assert!(bed.gw.user(&email).await.is_none(), "the user is deleted");
    bed.gw
        .post("/team/delete", json!({"team_ids": [bed.team_id.clone()]}))
        .await;
    bed.stop().await;
}

#[tokio::test]
async fn member_deletion_revokes_keys_at_once_on_real_litellm() {
    member_deletion_revokes_at_once(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn member_deletion_revokes_keys_at_once_on_litellm_1_98() {
    member_deletion_revokes_at_once(GatewayTarget::litellm_1_98()).await;
}

/// The fake imitating 1.98.0's auth cache: without the explicit revocation this key would answer 200 for a minute.
#[tokio::test]
async fn member_deletion_revokes_keys_at_once_on_fake_gateway_as_1_98() {
    let fake = FakeGateway::start().await;
    fake.set_release(FakeRelease::V1_98);
    member_deletion_revokes_at_once(GatewayTarget::fake(&fake)).await;
}

async fn team_deletion_revokes_at_once(target: GatewayTarget) {
    let bed = Bed::new(target, "deprov-team", json!({})).await;
    let outside = outside_key(&bed.gw, json!({"team_id": bed.team_id})).await;
    use_key(&bed.gw, &outside).await;
    bed.teams
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    gone(&bed.teams, "team").await;
    refused_from_the_next_request(&bed.gw, &outside).await;
    assert!(
        bed.gw.team(&bed.team_id).await.is_none(),
        "the team is deleted"
    );
    bed.stop().await;
}

#[tokio::test]
async fn team_deletion_revokes_keys_at_once_on_real_litellm() {
    team_deletion_revokes_at_once(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn team_deletion_revokes_keys_at_once_on_litellm_1_98() {
    team_deletion_revokes_at_once(GatewayTarget::litellm_1_98()).await;
}

/// A tenant cannot aim the revocation at someone else's person: a RouteroMember naming a user another namespace
/// manages, or an unowned user an admin made by hand, is refused (`Conflict`), and deleting it revokes nothing:
/// both users' keys, in use, keep working, and both users stay.
async fn revocation_cannot_be_aimed(target: GatewayTarget) {
    let victim = Bed::new(target.clone(), "deprov-victim", json!({})).await;
    let victim_members: Api<RouteroMember> = Api::namespaced(victim.client.clone(), &victim.ns);
    let managed = format!("victim-{}@company.com", testbed::suffix());
    create_member(
        &victim_members,
        "victim",
        json!({"email": managed, "teams": [{"name": "team"}]}),
    )
    .await;
    ready_member(&victim_members, "victim").await;
    let unowned = format!("by-hand-{}@company.com", testbed::suffix());
    let (status, body) = victim
        .gw
        .post(
            "/user/new",
            json!({"user_id": unowned, "user_email": unowned, "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let managed_key = outside_key(&victim.gw, json!({"user_id": managed})).await;
    let unowned_key = outside_key(&victim.gw, json!({"user_id": unowned})).await;

    let tenant = Bed::new(target, "deprov-tenant", json!({})).await;
    let members: Api<RouteroMember> = Api::namespaced(tenant.client.clone(), &tenant.ns);
    for (name, user) in [("squat", &managed), ("grab", &unowned)] {
        create_member(&members, name, json!({"email": user, "teams": []})).await;
        member_reason(&members, name, "Conflict").await;
    }
    use_key(&victim.gw, &managed_key).await;
    use_key(&victim.gw, &unowned_key).await;
    for name in ["squat", "grab"] {
        members
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete member");
        gone(&members, name).await;
    }
    for (user, key) in [(&managed, &managed_key), (&unowned, &unowned_key)] {
        assert_eq!(
            victim.gw.status_with_key(key).await,
            200,
            "{user}'s key still works"
        );
        assert!(victim.gw.user(user).await.is_some(), "{user} stays");
    }
    victim_members
        .delete("victim", &DeleteParams::default())
        .await
        .expect("delete member");
    gone(&victim_members, "victim").await;
    refused_from_the_next_request(&victim.gw, &managed_key).await;
    victim
        .gw
        .post("/key/delete", json!({"keys": [sha256_hex(&unowned_key)]}))
        .await;
    victim
        .gw
        .post("/user/delete", json!({"user_ids": [unowned]}))
        .await;
    tenant.stop().await;
    victim.stop().await;
}

#[tokio::test]
async fn tenant_cannot_aim_revocation_on_real_litellm() {
    revocation_cannot_be_aimed(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn tenant_cannot_aim_revocation_on_litellm_1_98() {
    revocation_cannot_be_aimed(GatewayTarget::litellm_1_98()).await;
}
