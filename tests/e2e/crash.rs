//! Crash safety (fake gateway): a lost reply or an operator stopped at any step ends with exactly one gateway key
//! for the resource, equal to the Secret's, and no pending value left behind.
use std::time::Duration;

use serde_json::json;

use crate::key::Bed;
use crate::support::fake_gateway::{FakeGateway, FakeRelease, Fault, FaultKind};
use crate::support::gateway_reader::sha256_hex;
use crate::support::testbed::{GatewayTarget, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// The fake imitating `release`: every crash case runs as 1.108.7 (`newest::`) and as 1.98.0 (`as_1_98::`), whose
/// `/key/info` answers 404 for a deleted key and has no `status`, which the issuance and rotation proofs read.
async fn fake_as(release: FakeRelease) -> FakeGateway {
    let fake = FakeGateway::start().await;
    fake.set_release(release);
    fake
}

macro_rules! on_both_releases {
    ($($case:ident),* $(,)?) => {
        mod newest {
            use crate::support::fake_gateway::FakeRelease;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(FakeRelease::Newest).await;
                }
            )*
        }

        mod as_1_98 {
            use crate::support::fake_gateway::FakeRelease;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(FakeRelease::V1_98).await;
                }
            )*
        }
    };
}

on_both_releases!(
    lost_reply_on_generate,
    a_fresh_key_costs_one_gateway_call,
    a_reply_for_another_key_value_is_revoked_not_leaked,
    alias_taken_on_the_first_try_by_a_stale_key_of_ours,
    stopped_between_persisting_and_registering,
    stopped_after_registering_before_delivery,
    stopped_mid_rotation
);

async fn bed(fake: &FakeGateway, prefix: &str) -> Bed {
    Bed::new(GatewayTarget::fake(fake), prefix, json!({})).await
}

async fn assert_settled(bed: &Bed, fake: &FakeGateway, name: &str) -> String {
    bed.ready_key(name).await;
    let value = bed
        .secret_value(name, "apiKey")
        .await
        .expect("key in Secret");
    bed.assert_single_key(&format!("{}.{name}", bed.ns), &value)
        .await;
    let ours: Vec<_> = fake
        .keys()
        .into_iter()
        .filter(|k| k["metadata"]["routero.ai/owner"] == format!("RouteroKey/{}/{name}", bed.ns))
        .collect();
    assert_eq!(ours.len(), 1, "no leaked key: {ours:?}");
    assert!(
        bed.secrets
            .get_opt(&format!("routero-pending-{name}"))
            .await
            .expect("get")
            .is_none(),
        "pending Secret cleaned up"
    );
    value
}

/// Kills the operator once it has persisted key "api"'s pending value (its next gateway call hangs on a fault), then
/// lifts the faults, so the next operator starts from exactly that state.
async fn kill_once_pending(bed: &mut Bed, fake: &FakeGateway) {
    wait_for("pending Secret written", WAIT, || async {
        bed.secrets.get_opt("routero-pending-api").await.ok()?
    })
    .await;
    bed.operator.take().expect("operator").kill().await;
    fake.clear_faults();
}

async fn lost_reply_on_generate(release: FakeRelease) {
    let fake = fake_as(release).await;
    let bed = bed(&fake, "crash-lost").await;
    fake.fail(Fault::once("POST /key/generate", FaultKind::LoseResponse));
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    assert_settled(&bed, &fake, "api").await;
    assert!(fake.count("POST /key/generate") >= 1);
    bed.stop().await;
}

/// Issuance at one call: a freshly chosen value whose registering reply names its hash is not read back. The
/// crash cases below show where the reply is not proof enough.
async fn a_fresh_key_costs_one_gateway_call(release: FakeRelease) {
    let fake = fake_as(release).await;
    let bed = bed(&fake, "crash-fast").await;
    fake.reset_counts();
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    assert_settled(&bed, &fake, "api").await;
    // Let the pass that the workload Secret's creation triggers run too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.count("POST /key/generate"), 1, "{:?}", fake.counts());
    assert_eq!(fake.count("GET /key/info"), 0, "{:?}", fake.counts());
    // The team's ownership check used what the team controller read: no call per key.
    assert_eq!(fake.count("GET /team/info"), 0, "{:?}", fake.counts());
    bed.stop().await;
}

/// A gateway that ignores the chosen value answers 200 with a key of its own: that key is found by its token and
/// revoked (nobody holds its value), and the next try registers ours.
async fn a_reply_for_another_key_value_is_revoked_not_leaked(release: FakeRelease) {
    let fake = fake_as(release).await;
    let bed = bed(&fake, "crash-ignored").await;
    fake.fail(Fault::once("POST /key/generate", FaultKind::IgnoreKeyValue));
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    let value = assert_settled(&bed, &fake, "api").await;
    assert!(fake.count("POST /key/generate") >= 2);
    let revoked = fake.deleted_keys();
    assert_eq!(
        revoked.len(),
        1,
        "the gateway's own key was revoked: {revoked:?}"
    );
    assert_ne!(revoked[0]["token"], sha256_hex(&value));
    bed.stop().await;
}

/// "Alias already exists" on the very first try: a stale key of this resource holds the alias (here, made with its
/// markers out of band). It is revoked, ours registered, and the retry is confirmed by a read.
async fn alias_taken_on_the_first_try_by_a_stale_key_of_ours(release: FakeRelease) {
    let fake = fake_as(release).await;
    let bed = bed(&fake, "crash-alias").await;
    let alias = format!("{}.api", bed.ns);
    let stale = format!("sk-stale-{}", crate::support::testbed::suffix());
    let (status, body) = bed
        .gw
        .post(
            "/key/generate",
            json!({"key": stale, "key_alias": alias, "team_id": bed.team_id,
                   "metadata": {"routero.ai/owner": format!("RouteroKey/{}/api", bed.ns)}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    fake.reset_counts();
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    let value = assert_settled(&bed, &fake, "api").await;
    assert_ne!(value, stale);
    assert!(
        bed.gw
            .key(&sha256_hex(&stale))
            .await
            .is_none_or(|k| k["status"] == "deleted"),
        "stale key revoked"
    );
    assert!(
        fake.count("GET /key/info") >= 1,
        "the retry was confirmed by a read"
    );
    bed.stop().await;
}

async fn stopped_between_persisting_and_registering(release: FakeRelease) {
    let fake = fake_as(release).await;
    let mut bed = bed(&fake, "crash-persist").await;
    // Registration hangs; the operator is killed once the pending value is persisted.
    fake.fail(Fault::always(
        "POST /key/generate",
        FaultKind::Latency(Duration::from_secs(30)),
    ));
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    kill_once_pending(&mut bed, &fake).await;
    assert!(
        bed.secrets.get_opt("api").await.expect("get").is_none(),
        "no unconfirmed key delivered"
    );
    bed.start().await;
    assert_settled(&bed, &fake, "api").await;
    bed.stop().await;
}

async fn stopped_after_registering_before_delivery(release: FakeRelease) {
    let fake = fake_as(release).await;
    let mut bed = bed(&fake, "crash-register").await;
    // The key is committed on the gateway, its confirmation hangs, and the operator dies meanwhile.
    fake.fail(Fault::always(
        "GET /key/info",
        FaultKind::Latency(Duration::from_secs(30)),
    ));
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    wait_for("key registered", WAIT, || async {
        (fake.count("POST /key/generate") >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bed.operator.take().expect("operator").kill().await;
    fake.clear_faults();
    bed.start().await;
    let value = assert_settled(&bed, &fake, "api").await;
    assert_eq!(
        fake.count("POST /key/generate"),
        1,
        "the persisted value was confirmed, not replaced"
    );
    assert!(fake.key_by_hash(&sha256_hex(&value)).is_some());
    bed.stop().await;
}

async fn stopped_mid_rotation(release: FakeRelease) {
    for strategy in ["Regenerate", "Recreate"] {
        let fake = fake_as(release).await;
        let mut bed = bed(&fake, &format!("crash-rotate-{}", strategy.to_lowercase())).await;
        bed.create_key(
            "api",
            json!({"teamRef": {"name": "team"}, "rotation": {"strategy": strategy}}),
        )
        .await;
        bed.ready_key("api").await;
        let old = bed.secret_value("api", "apiKey").await.expect("key");
        tokio::time::sleep(Duration::from_secs(1)).await; // let the reconciles of the issuance settle
        // The rotation's write commits on the gateway, its reply is lost, and the operator dies before delivery.
        let route = if strategy == "Regenerate" {
            "POST /key/regenerate"
        } else {
            "POST /key/generate"
        };
        fake.fail(Fault::once(route, FaultKind::LoseResponse));
        // The first read (the steady-state check that finds the rotation due) passes; the confirmation hangs.
        fake.fail(
            Fault::always("GET /key/info", FaultKind::Latency(Duration::from_secs(30))).after(1),
        );
        let before = fake.count(route);
        bed.keys
            .patch(
                "api",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    &json!({"metadata": {"annotations": {"routero.ai/rotate": "1"}}}),
                ),
            )
            .await
            .expect("annotate");
        wait_for("rotation committed", WAIT, || async {
            (fake.count(route) > before).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        bed.operator.take().expect("operator").kill().await;
        fake.clear_faults();
        bed.start().await;
        let new = wait_for("rotated", WAIT, || async {
            bed.secret_value("api", "apiKey")
                .await
                .filter(|v| v != &old)
        })
        .await;
        wait_for("old key refused", WAIT, || async {
            (bed.gw.status_with_key(&old).await == 401).then_some(())
        })
        .await;
        // Recreate deletes the old key, then gives the new one its alias back (aliases are unique): for a moment
        // no key holds the alias. Wait for the end of the rotation before checking its outcome.
        let alias = format!("{}.api", bed.ns);
        wait_for("alias back on the new key", WAIT, || async {
            (bed.gw.keys_with_alias(&alias).await.len() == 1).then_some(())
        })
        .await;
        let settled = assert_settled(&bed, &fake, "api").await;
        assert_eq!(settled, new);
        assert_eq!(bed.gw.status_with_key(&new).await, 200, "{strategy}");
        bed.stop().await;
    }
}

/// A takeover by Regenerate, with the operator stopped after persisting the new value and before the regeneration:
/// the restarted operator regenerates the adopted key (without the markers the lost pass would have sent), finds it
/// still adoptable, stamps it, and delivers: one key under the alias, the Secret's, the hand-made value gone.
#[tokio::test]
async fn stopped_between_persisting_and_regenerating_a_takeover() {
    let fake = FakeGateway::start().await;
    fake.set_regenerate_enabled(true);
    let mut bed = bed(&fake, "crash-adopt").await;
    let alias = format!("{}.api", bed.ns);
    let (status, made) = bed
        .gw
        .post(
            "/key/generate",
            json!({"team_id": bed.team_id, "key_alias": alias,
                   "metadata": {"routero.ai/adoptable-by": bed.ns}}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let hand_made = made["key"].as_str().expect("raw key").to_owned();
    fake.fail(Fault::always(
        "POST /key/regenerate",
        FaultKind::Latency(Duration::from_secs(30)),
    ));
    bed.create_key(
        "api",
        json!({"teamRef": {"name": "team"}, "adopt": true, "rotation": {"strategy": "Regenerate"}}),
    )
    .await;
    kill_once_pending(&mut bed, &fake).await;
    bed.start().await;
    let value = assert_settled(&bed, &fake, "api").await;
    assert_ne!(value, hand_made);
    assert!(bed.gw.key(&sha256_hex(&hand_made)).await.is_none());
    let row = bed
        .gw
        .key(&sha256_hex(&value))
        .await
        .expect("the adopted key");
    assert_eq!(row["metadata"]["routero.ai/adoptable-by"], json!(bed.ns));
    bed.stop().await;
}
