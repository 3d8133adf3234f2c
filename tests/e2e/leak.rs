//! Secrets stay secret: a full scenario (teams, keys, rotation by both strategies, a member with a per-person key,
//! deletion) with every log level on; no issued key value and no admin key appears in any log line, Event,
//! condition message or status field.
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use routero_operator::crd::{RouteroMember, RouteroTeam};
use serde_json::json;

use crate::key::Bed;
use crate::member::{create_member, ready_member};
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed::{GatewayTarget, wait_for};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_key_material_in_logs_events_or_status() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("this test owns the process's subscriber");

    let fake = FakeGateway::start().await;
    let target = GatewayTarget::fake(&fake);
    let bed = Bed::new(target, "leak", json!({"maxBudget": 10})).await;
    let members: Api<RouteroMember> = Api::namespaced(bed.client.clone(), &bed.ns);
    let mut seen: Vec<String> = Vec::new();

    create_member(
        &members,
        "lead",
        json!({"email": "lead@company.com", "teams": [{"name": "team"}]}),
    )
    .await;
    ready_member(&members, "lead").await;
    bed.create_key(
        "regen",
        json!({"teamRef": {"name": "team"}, "rotation": {"strategy": "Regenerate"}}),
    )
    .await;
    bed.create_key("recreate", json!({"teamRef": {"name": "team"}, "rotation": {"strategy": "Recreate"}, "secret": {"baseUrlField": "BASE"}})).await;
    bed.create_key(
        "personal",
        json!({"teamRef": {"name": "team"}, "memberRef": {"name": "lead"}}),
    )
    .await;
    for name in ["regen", "recreate", "personal"] {
        bed.ready_key(name).await;
        seen.push(bed.secret_value(name, "apiKey").await.expect("key"));
    }
    for (i, name) in ["regen", "recreate"].into_iter().enumerate() {
        let old = seen[i].clone();
        let patch = json!({"metadata": {"annotations": {"routero.ai/rotate": "leak-test"}}});
        bed.keys
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("rotate");
        seen.push(bed.wait_secret_change(name, "apiKey", &old).await);
    }
    // A lost Secret forces a revoke and a re-issue.
    bed.secrets
        .delete("personal", &DeleteParams::default())
        .await
        .expect("delete secret");
    seen.push(
        bed.wait_secret_change("personal", "apiKey", &seen[2].clone())
            .await,
    );

    // Snapshot every status before deletion.
    let mut documents = Vec::new();
    let lp = ListParams::default();
    for k in bed.keys.list(&lp).await.expect("keys") {
        documents.push(serde_json::to_string(&k).expect("json"));
    }
    for t in Api::<RouteroTeam>::namespaced(bed.client.clone(), &bed.ns)
        .list(&lp)
        .await
        .expect("teams")
    {
        documents.push(serde_json::to_string(&t).expect("json"));
    }
    for m in members.list(&lp).await.expect("members") {
        documents.push(serde_json::to_string(&m).expect("json"));
    }

    members
        .delete("lead", &DeleteParams::default())
        .await
        .expect("delete member");
    for name in ["regen", "recreate", "personal"] {
        bed.keys
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete key");
    }
    wait_for("keys gone", Duration::from_secs(40), || async {
        bed.keys
            .list(&lp)
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    bed.teams
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    wait_for("team gone", Duration::from_secs(40), || async {
        bed.teams
            .list(&lp)
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;

    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(bed.client.clone(), &bed.ns);
    let events = events.list(&lp).await.expect("events").items;
    assert!(
        events.len() >= 10,
        "the scenario recorded events: {}",
        events.len()
    );
    for e in &events {
        documents.push(serde_json::to_string(e).expect("json"));
    }
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(bed.client.clone(), &bed.ns);
    for e in core_events.list(&lp).await.expect("core events").items {
        documents.push(serde_json::to_string(&e).expect("json"));
    }
    bed.stop().await;

    let log_text =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        log_text.lines().count() > 100,
        "debug logging was on and captured ({} lines)",
        log_text.lines().count()
    );
    seen.sort();
    seen.dedup();
    assert!(seen.len() >= 6, "issued values: {}", seen.len());
    let secrets: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(fake.admin_key.as_str()))
        .collect();
    for (what, text) in std::iter::once(("operator log", &log_text))
        .chain(documents.iter().map(|d| ("status or event", d)))
    {
        for s in &secrets {
            assert!(!text.contains(s), "a key value appears in the {what}");
            // The bare random part too, in case a prefix was stripped.
            assert!(
                !text.contains(&s[3..]),
                "a key value's random part appears in the {what}"
            );
        }
    }
}
