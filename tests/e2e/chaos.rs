//! Chaos: random operator crashes at random points during issue, rotation (both strategies) and deletion, combined
//! with gateway faults (lost replies after commit, 5xx, 429, latency spikes). After each iteration the no-leak,
//! no-loss invariant must hold. `ROUTERO_CHAOS_ITERATIONS` sets the count (CI: 20; the ignored long test: 200);
//! `ROUTERO_CHAOS_SEED` replays one iteration. A failing seed is printed.
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::key::Bed;
use crate::support::fake_gateway::{FakeGateway, FakeRelease, Fault, FaultKind};
use crate::support::invariants;
use crate::support::testbed::{GatewayTarget, wait_for};

/// Workload Secrets removed or emptied while nobody asked for it: the "never lose a working key" half.
#[derive(Default)]
struct SecretLog {
    removed: Vec<String>,
    emptied: Vec<String>,
}

fn spawn_secret_monitor(
    secrets: Api<Secret>,
    log: Arc<Mutex<SecretLog>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg =
            watcher::Config::default().labels("app.kubernetes.io/managed-by=routero-operator");
        let mut events = std::pin::pin!(watcher(secrets, cfg).default_backoff());
        while let Some(ev) = events.next().await {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                Ok(watcher::Event::Delete(s)) if !s.name_any().starts_with("routero-pending-") => {
                    log.removed.push(s.name_any())
                }
                Ok(watcher::Event::Apply(s))
                    if !s.name_any().starts_with("routero-pending-")
                        && s.data
                            .as_ref()
                            .is_none_or(|d| d.get("apiKey").is_none_or(|v| v.0.is_empty())) =>
                {
                    log.emptied.push(s.name_any());
                }
                _ => {}
            }
        }
    })
}

fn random_fault(rng: &mut StdRng) -> Fault {
    let routes = [
        "POST /key/generate",
        "POST /key/regenerate",
        "POST /key/delete",
        "GET /key/info",
        "POST /key/update",
        "GET /key/list",
    ];
    let route = routes[rng.random_range(0..routes.len())];
    let kind = match rng.random_range(0..4) {
        0 => FaultKind::LoseResponse,
        1 => FaultKind::Status(if rng.random_bool(0.5) { 500 } else { 503 }),
        2 => FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        _ => FaultKind::Latency(Duration::from_millis(rng.random_range(100..1500))),
    };
    Fault::times(route, kind, rng.random_range(1..4)).after(rng.random_range(0..3))
}

async fn maybe_crash(bed: &mut Bed, rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
    if rng.random_bool(0.6) {
        if let Some(op) = bed.operator.take() {
            op.kill().await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        bed.start().await;
    }
}

async fn iteration(bed: &mut Bed, fake: &FakeGateway, seed: u64, monitor: &Arc<Mutex<SecretLog>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    *monitor.lock().unwrap_or_else(|p| p.into_inner()) = SecretLog::default();
    let mut deleted_keys = BTreeSet::new();
    let mut deleted_secrets = BTreeSet::new();
    let names: Vec<String> = (0..rng.random_range(1..4))
        .map(|i| format!("s{seed}-{i}"))
        .collect();

    for _ in 0..rng.random_range(1..4) {
        fake.fail(random_fault(&mut rng));
    }
    for name in &names {
        let strategy = if rng.random_bool(0.5) {
            "Regenerate"
        } else {
            "Recreate"
        };
        let grace = format!("{}s", rng.random_range(0..2));
        let mut spec = json!({"teamRef": {"name": "team"}, "rotation": {"strategy": strategy}});
        if strategy == "Recreate" && grace != "0s" {
            spec["rotation"]["gracePeriod"] = json!(grace);
        }
        bed.create_key(name, spec).await;
    }
    maybe_crash(bed, &mut rng).await;

    // Rotate some keys, possibly mid-issuance.
    for name in names.iter().filter(|_| rng.random_bool(0.5)) {
        let patch = json!({"metadata": {"annotations": {"routero.ai/rotate": format!("{seed}")}}});
        let _ = bed
            .keys
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
    fake.fail(random_fault(&mut rng));
    maybe_crash(bed, &mut rng).await;

    // Lose a Secret by hand, or delete a key, now and then.
    if rng.random_bool(0.3) {
        let name = &names[rng.random_range(0..names.len())];
        if bed
            .secrets
            .delete(name, &DeleteParams::default())
            .await
            .is_ok()
        {
            deleted_secrets.insert(name.clone());
        }
    }
    if rng.random_bool(0.4) {
        let name = &names[rng.random_range(0..names.len())];
        let _ = bed.keys.delete(name, &DeleteParams::default()).await;
        deleted_keys.insert(name.clone());
    }
    maybe_crash(bed, &mut rng).await;

    fake.clear_faults();
    if bed.operator.is_none() {
        bed.start().await;
    }
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if invariants::violations(&bed.client, &bed.ns, fake)
                .await
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if settled.is_err() {
        let problems = invariants::violations(&bed.client, &bed.ns, fake).await;
        panic!(
            "chaos seed {seed}: the invariant does not hold after 60 s: {problems:#?}\nreplay with ROUTERO_CHAOS_SEED={seed}"
        );
    }
    {
        let log = monitor.lock().unwrap_or_else(|p| p.into_inner());
        let unexpected: Vec<&String> = log
            .removed
            .iter()
            .filter(|n| {
                n.starts_with(&format!("s{seed}-"))
                    && !deleted_keys.contains(*n)
                    && !deleted_secrets.contains(*n)
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "chaos seed {seed}: Secrets holding a working key were deleted by the operator: {unexpected:?}"
        );
        assert!(
            log.emptied.is_empty(),
            "chaos seed {seed}: Secrets emptied: {:?}",
            log.emptied
        );
    }

    // Leave the namespace empty for the next iteration (and prove deletion converges too).
    let _ = bed
        .keys
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    wait_for(
        "iteration keys deleted",
        Duration::from_secs(60),
        || async {
            bed.keys
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let leaked: Vec<_> = fake
        .keys()
        .into_iter()
        .filter(|k| {
            k["metadata"]["routero.ai/owner"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("/s{seed}-")))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "chaos seed {seed}: keys left after deletion: {leaked:?}"
    );
}

async fn run(iterations: u64, release: FakeRelease) {
    let fake = FakeGateway::start().await;
    fake.set_release(release);
    fake.set_latency(Duration::from_millis(5));
    let target = GatewayTarget::fake(&fake);
    let mut bed = Bed::with_resync(target, "chaos", json!({}), Duration::from_secs(3)).await;
    let monitor = Arc::new(Mutex::new(SecretLog::default()));
    let watch = spawn_secret_monitor(bed.secrets.clone(), monitor.clone());
    let seeds: Vec<u64> = match std::env::var("ROUTERO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let base: u64 = rand::rng().random_range(0..1_000_000) * 1000;
            (0..iterations).map(|i| base + i).collect()
        }
    };
    for seed in seeds {
        eprintln!("chaos seed {seed}");
        iteration(&mut bed, &fake, seed, &monitor).await;
    }
    watch.abort();
    bed.stop().await;
}

fn iterations(default: u64) -> u64 {
    std::env::var("ROUTERO_CHAOS_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn chaos() {
    run(iterations(20), FakeRelease::Newest).await;
}

/// The same, with the fake imitating 1.98.0 (no `status` on `/key/info`, 404 for a deleted key), in fewer
/// iterations to keep the suite's time: its crash points are the same as the first's.
#[tokio::test]
async fn chaos_as_1_98() {
    run(iterations(8), FakeRelease::V1_98).await;
}

#[tokio::test]
#[ignore = "long mode: cargo nextest run --run-ignored only -E 'test(chaos_long)'"]
async fn chaos_long() {
    run(iterations(200), FakeRelease::Newest).await;
}
