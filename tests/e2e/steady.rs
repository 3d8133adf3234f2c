//! Steady state from caches: a quiet key resync makes no API-server GET and no gateway read, and a cache never
//! delays what a change requires (a team's deletion revokes its keys in the pass it triggers).
use std::time::Duration;

use kube::api::DeleteParams;
use serde_json::json;

use crate::key::Bed;
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::{GatewayTarget, wait_for};

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
