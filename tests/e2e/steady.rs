//! Steady state from caches: a quiet key resync makes no API-server GET and no gateway read, and a cache never
//! delays what a change requires (a team's deletion revokes its keys in the pass it triggers).
use std::time::Duration;

use kube::api::{DeleteParams, PostParams};
use routero_operator::crd::RouteroTeam;
use serde_json::json;

use crate::key::Bed;
use crate::support::fake_gateway::FakeGateway;
use crate::support::kube_recorder::recording_client;
use crate::support::testbed::{GatewayTarget, Operator, OperatorOptions, wait_for, wait_ready_of};

/// The objects a reconcile might read one by one: a GET of a single one is a path `…/<plural>/<name>`.
const READ_ONE: &[&str] = &["secrets", "routeroteams", "routerokeys", "routeromembers"];

/// Quiet resyncs of keys and teams, with the snapshots listed, make no API-server GET of a single object and no
/// per-object gateway read: only the listings (`/key/list`, `/v2/team/list`) reach the gateway.
#[tokio::test]
async fn quiet_resyncs_make_no_reads_but_the_listings() {
    let fake = FakeGateway::start().await;
    let resync = Duration::from_secs(2);
    let mut bed = Bed::with_resync(
        GatewayTarget::fake(&fake),
        "steady-quiet",
        json!({}),
        resync,
    )
    .await;
    // Two teams and three keys: listing one page twice per resync (2 calls) costs no more than reading each.
    let second: RouteroTeam = serde_json::from_value(json!({
        "apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": "second"},
        "spec": {"teamId": format!("{}-2", bed.team_id)}}))
    .expect("team");
    bed.teams
        .create(&PostParams::default(), &second)
        .await
        .expect("create team");
    wait_ready_of(&bed.teams, "second").await;
    for (name, team) in [("api", "team"), ("batch", "team"), ("web", "second")] {
        bed.create_key(name, json!({"teamRef": {"name": team}}))
            .await;
    }
    for name in ["api", "batch", "web"] {
        bed.ready_key(name).await;
    }
    // The operator again, on a client that records its requests.
    if let Some(op) = bed.operator.take() {
        op.stop().await;
    }
    let (client, log) = recording_client().await;
    let opts = OperatorOptions {
        resync,
        ..Default::default()
    };
    bed.operator = Some(Operator::start(&client, &bed.target, &bed.ns, opts).await);
    // Its start-up passes read live, and its first listings come after one interval: let two intervals pass.
    tokio::time::sleep(resync * 3).await;
    fake.reset_counts();
    log.clear();
    // About five resyncs of each of the 3 keys and the team.
    tokio::time::sleep(resync * 5).await;
    let calls = fake.counts();
    let reads: Vec<_> = log
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && !r.query.contains("watch"))
        .filter(|r| {
            let mut parts = r.path.rsplit('/');
            let (_name, plural) = (parts.next(), parts.next());
            plural.is_some_and(|p| READ_ONE.contains(&p))
        })
        .collect();
    assert!(
        reads.is_empty(),
        "API-server GETs in quiet resyncs: {reads:?}"
    );
    let listings = calls.get("GET /key/list").copied().unwrap_or(0);
    assert!(listings >= 4, "the key listing ran: {calls:?}");
    assert!(
        calls.get("GET /v2/team/list").copied().unwrap_or(0) >= 4,
        "the team listing ran: {calls:?}"
    );
    // A team's daily spend is read at most once per 4 intervals: at most twice per team in these 5.
    let daily = calls.get("GET /team/daily/activity").copied().unwrap_or(0);
    assert!(daily <= 4, "daily spend read {daily} times: {calls:?}");
    let others: Vec<_> = calls
        .iter()
        .filter(|(k, v)| {
            **v > 0
                && !matches!(
                    k.as_str(),
                    "GET /key/list" | "GET /v2/team/list" | "GET /team/daily/activity"
                )
        })
        .collect();
    assert!(
        others.is_empty(),
        "gateway calls besides the listings: {others:?}"
    );
    // Still quiet and still right: every key Ready, its value authenticating.
    for name in ["api", "batch", "web"] {
        bed.ready_key(name).await;
        let value = bed.secret_value(name, "apiKey").await.expect("key");
        bed.wait_status(&value, 200).await;
    }
    bed.stop().await;
}

/// The key controller reads its team from a cache; the deletion that triggers the pass is in that cache, so the
/// key is revoked at once, not at the next resync (5 minutes here).
#[tokio::test]
async fn a_team_deletion_revokes_its_keys_in_the_pass_it_triggers() {
    let fake = FakeGateway::start().await;
    let bed = Bed::with_resync(
        GatewayTarget::fake(&fake),
        "steady-del",
        json!({}),
        Duration::from_secs(300),
    )
    .await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let value = bed.secret_value("api", "apiKey").await.expect("key");
    bed.teams
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    wait_for(
        "the key's Secret is removed",
        Duration::from_secs(10),
        || async {
            bed.secret_value("api", "apiKey")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    bed.key_reason("api", "TeamNotReady").await;
    bed.wait_status(&value, 401).await;
    bed.stop().await;
}
