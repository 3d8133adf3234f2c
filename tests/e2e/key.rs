//! RouteroKey: issuance into Secrets, rotation, revocation, drift and crash safety, seen as a workload sees it
//! (the key in the Secret authenticates to the gateway, or is refused with 401).
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use routero_operator::crd::common::is_ready;
use routero_operator::crd::{RouteroKey, RouteroTeam};
use serde_json::{Value, json};

use crate::support::fake_gateway::{FakeGateway, FakeRelease};
use crate::support::gateway_reader::{GatewayReader, sha256_hex};
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, wait_for, wait_ready_of, wait_reason_of,
};

const WAIT: Duration = Duration::from_secs(40);

/// A namespace with its own operator, a Ready team and the clients a key test needs.
pub struct Bed {
    pub client: Client,
    pub ns: String,
    pub target: GatewayTarget,
    pub gw: GatewayReader,
    pub keys: Api<RouteroKey>,
    pub teams: Api<RouteroTeam>,
    pub secrets: Api<Secret>,
    pub team_id: String,
    pub operator: Option<Operator>,
    pub resync: Duration,
}

impl Bed {
    pub async fn new(target: GatewayTarget, prefix: &str, team_spec: Value) -> Self {
        Self::with_resync(target, prefix, team_spec, Duration::from_secs(2)).await
    }

    pub async fn with_resync(
        target: GatewayTarget,
        prefix: &str,
        team_spec: Value,
        resync: Duration,
    ) -> Self {
        let client = testbed::client().await;
        let ns = testbed::namespace(&client, prefix).await;
        let team_id = format!("{prefix}-{}", testbed::suffix());
        let mut bed = Self {
            gw: GatewayReader::new(&target),
            keys: Api::namespaced(client.clone(), &ns),
            teams: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            operator: None,
            resync,
            client,
            ns,
            target,
            team_id,
        };
        bed.start().await;
        bed.create_team("team", team_spec).await;
        bed
    }

    pub async fn start(&mut self) {
        let opts = OperatorOptions {
            resync: self.resync,
            ..Default::default()
        };
        self.operator = Some(Operator::start(&self.client, &self.target, &self.ns, opts).await);
    }

    pub async fn create_team(&self, name: &str, mut spec: Value) {
        spec["teamId"] = json!(self.team_id);
        let team: RouteroTeam = serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroTeam", "metadata": {"name": name}, "spec": spec})).expect("team");
        self.teams
            .create(&PostParams::default(), &team)
            .await
            .expect("create team");
        wait_for("team Ready", WAIT, || async {
            let t = self.teams.get(name).await.ok()?;
            is_ready(&t.status?.conditions, t.metadata.generation).then_some(())
        })
        .await;
    }

    pub async fn create_key(&self, name: &str, spec: Value) {
        let key: RouteroKey = serde_json::from_value(json!({"apiVersion": "routero.ai/v1alpha1", "kind": "RouteroKey", "metadata": {"name": name}, "spec": spec})).expect("key");
        self.keys
            .create(&PostParams::default(), &key)
            .await
            .expect("create key");
    }

    pub async fn ready_key(&self, name: &str) -> RouteroKey {
        wait_ready_of(&self.keys, name).await
    }

    pub async fn key_reason(&self, name: &str, reason: &str) -> RouteroKey {
        wait_reason_of(&self.keys, name, reason).await
    }

    /// The key value in a Secret's field.
    pub async fn secret_value(&self, secret: &str, field: &str) -> Option<String> {
        let s = self.secrets.get_opt(secret).await.ok()??;
        let bytes = s.data?.get(field)?.0.clone();
        String::from_utf8(bytes).ok()
    }

    pub async fn wait_secret_change(&self, secret: &str, field: &str, old: &str) -> String {
        wait_for("Secret holds a new key", WAIT, || async {
            self.secret_value(secret, field).await.filter(|v| v != old)
        })
        .await
    }

    pub async fn wait_status(&self, key: &str, status: u16) {
        wait_for(
            &format!("gateway answers {status} for the key"),
            WAIT,
            || async { (self.gw.status_with_key(key).await == status).then_some(()) },
        )
        .await;
    }

    /// The invariant of DESIGN §3: exactly one live key carries the alias, and it is the one in the Secret.
    pub async fn assert_single_key(&self, alias: &str, value: &str) {
        let rows = self.gw.keys_with_alias(alias).await;
        assert_eq!(
            rows.len(),
            1,
            "exactly one live key with alias {alias}: {rows:?}"
        );
        assert_eq!(
            rows[0]["token"],
            sha256_hex(value),
            "the live key is the one in the Secret"
        );
    }

    pub async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
    }
}

/// A team key: its Secret's key authenticates, and the gateway holds the alias, team, budget and our markers.
async fn issue_and_revoke(target: GatewayTarget) {
    let bed = Bed::new(
        target.clone(),
        "key-issue",
        json!({"maxBudget": 100, "models": []}),
    )
    .await;
    bed.create_key(
        "api",
        json!({"teamRef": {"name": "team"}, "maxBudget": 25, "duration": "30d",
               "secret": {"name": "llm", "keyField": "OPENAI_API_KEY", "baseUrlField": "OPENAI_BASE_URL", "labels": {"app": "chat"}}}),
    )
    .await;
    let k = bed.ready_key("api").await;
    let value = bed
        .secret_value("llm", "OPENAI_API_KEY")
        .await
        .expect("key in the Secret");
    assert_eq!(
        bed.secret_value("llm", "OPENAI_BASE_URL").await.as_deref(),
        Some(target.url.as_str())
    );
    assert_eq!(
        bed.gw.status_with_key(&value).await,
        200,
        "the Secret's key authenticates"
    );
    let alias = format!("{}.api", bed.ns);
    bed.assert_single_key(&alias, &value).await;
    let info = bed.gw.key(&sha256_hex(&value)).await.expect("key info");
    assert_eq!(info["key_alias"], alias);
    assert_eq!(info["team_id"], bed.team_id);
    assert_eq!(info["max_budget"].as_f64(), Some(25.0));
    assert!(
        info["user_id"].is_null(),
        "team keys are not tied to a person"
    );
    assert_eq!(
        info["metadata"]["routero.ai/owner"],
        format!("RouteroKey/{}/api", bed.ns)
    );
    let status = k.status.expect("status");
    assert_eq!(status.key_id.as_deref(), Some(&sha256_hex(&value)[..12]));
    assert!(status.expires_at.is_some());

    let secret = bed.secrets.get("llm").await.expect("secret");
    assert_eq!(
        secret.labels()["app.kubernetes.io/managed-by"],
        "routero-operator"
    );
    assert_eq!(secret.labels()["app"], "chat");
    assert_eq!(
        secret.annotations()["routero.ai/key-id"],
        &sha256_hex(&value)[..12]
    );
    assert!(secret.annotations().contains_key("routero.ai/rotated-at"));
    assert_eq!(secret.owner_references()[0].name, "api");
    assert!(
        !format!("{:?}", status.conditions).contains(&value),
        "no key material in conditions"
    );

    // Delete: the key is refused and the Secret is gone.
    bed.keys
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("Secret removed", WAIT, || async {
        bed.secrets
            .get_opt("llm")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    bed.wait_status(&value, 401).await;

    // Orphan: key and Secret stay, and the Secret loses its ownerReference so garbage collection keeps it.
    bed.create_key(
        "kept",
        json!({"teamRef": {"name": "team"}, "deletionPolicy": "Orphan"}),
    )
    .await;
    bed.ready_key("kept").await;
    let kept = bed.secret_value("kept", "apiKey").await.expect("key");
    bed.keys
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("RouteroKey gone", WAIT, || async {
        bed.keys.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        bed.gw.status_with_key(&kept).await,
        200,
        "orphaned key still works"
    );
    let s = bed.secrets.get("kept").await.expect("orphaned Secret kept");
    assert!(s.owner_references().is_empty());
    bed.gw
        .post("/key/delete", json!({"keys": [sha256_hex(&kept)]}))
        .await;
    bed.gw
        .post("/team/delete", json!({"team_ids": [bed.team_id.clone()]}))
        .await;
    bed.stop().await;
}

#[tokio::test]
async fn key_issue_and_revoke_on_real_litellm() {
    issue_and_revoke(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn key_issue_and_revoke_on_litellm_1_98() {
    issue_and_revoke(GatewayTarget::litellm_1_98()).await;
}

#[tokio::test]
async fn key_issue_and_revoke_on_fake_gateway() {
    let fake = FakeGateway::start().await;
    issue_and_revoke(GatewayTarget::fake(&fake)).await;
}

/// Recreate on the real gateway (which has no regenerate): the old key works through the grace period, then is
/// refused; the new key works; one key with the alias remains.
#[tokio::test]
async fn recreate_rotation_on_real_litellm() {
    recreate_rotation(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn recreate_rotation_on_litellm_1_98() {
    recreate_rotation(GatewayTarget::litellm_1_98()).await;
}

async fn recreate_rotation(target: GatewayTarget) {
    let bed = Bed::new(target, "key-recreate", json!({})).await;
    bed.create_key(
        "api",
        json!({"teamRef": {"name": "team"}, "rotation": {"strategy": "Auto", "gracePeriod": "4s"}}),
    )
    .await;
    bed.ready_key("api").await;
    let old = bed.secret_value("api", "apiKey").await.expect("key");
    let alias = format!("{}.api", bed.ns);

    bed.keys.patch("api", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"annotations": {"routero.ai/rotate": "2026-11-28T10:00:00Z"}}}))).await.expect("annotate");
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    assert_eq!(
        bed.gw.status_with_key(&new).await,
        200,
        "new key works at once"
    );
    assert_eq!(
        bed.gw.status_with_key(&old).await,
        200,
        "old key works during the grace period"
    );
    bed.wait_status(&old, 401).await;
    wait_for("one key with the alias", WAIT, || async {
        let rows = bed.gw.keys_with_alias(&alias).await;
        (rows.len() == 1 && rows[0]["token"] == sha256_hex(&new)).then_some(())
    })
    .await;
    let k = bed.ready_key("api").await;
    assert!(k.status.expect("status").last_rotation.is_some());
    // The same annotation value does not rotate again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.secret_value("api", "apiKey").await.as_deref(),
        Some(new.as_str())
    );
    bed.keys
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete");
    bed.wait_status(&new, 401).await;
    bed.gw
        .post("/team/delete", json!({"team_ids": [bed.team_id.clone()]}))
        .await;
    bed.stop().await;
}

/// Regenerate on the fake (licensed behaviour): in place, the old key dies at once, spend history is kept.
#[tokio::test]
async fn regenerate_rotation_on_fake_gateway() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-regen", json!({})).await;
    bed.create_key(
        "api",
        json!({"teamRef": {"name": "team"}, "rotation": {"strategy": "Regenerate", "every": "3s"}}),
    )
    .await;
    bed.ready_key("api").await;
    let old = bed.secret_value("api", "apiKey").await.expect("key");
    fake.edit_key(&sha256_hex(&old), |row| {
        row.insert("spend".into(), json!(1.5));
    });
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    assert_eq!(
        bed.gw.status_with_key(&old).await,
        401,
        "old key dies at once"
    );
    assert_eq!(bed.gw.status_with_key(&new).await, 200);
    bed.assert_single_key(&format!("{}.api", bed.ns), &new)
        .await;
    let info = bed.gw.key(&sha256_hex(&new)).await.expect("info");
    assert_eq!(info["spend"].as_f64(), Some(1.5), "spend history kept");
    assert!(fake.count("POST /key/regenerate") >= 1);
    assert_eq!(
        fake.count("POST /key/delete"),
        0,
        "regenerate replaces in place"
    );
    bed.stop().await;
}

/// A Secret deleted by hand: the old key (whose value may be exposed) is revoked and a new one issued.
#[tokio::test]
async fn deleted_secret_revokes_and_reissues() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-lost", json!({})).await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let old = bed.secret_value("api", "apiKey").await.expect("key");
    bed.secrets
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete secret");
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    bed.wait_status(&old, 401).await;
    assert_eq!(bed.gw.status_with_key(&new).await, 200);
    bed.assert_single_key(&format!("{}.api", bed.ns), &new)
        .await;

    // Edited by hand: same treatment.
    let patch = json!({"stringData": {"apiKey": "sk-typed-in-by-someone-000000"}});
    bed.secrets
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit");
    let newer = wait_for("re-issued after edit", WAIT, || async {
        bed.secret_value("api", "apiKey")
            .await
            .filter(|v| v != &new && !v.starts_with("sk-typed"))
    })
    .await;
    bed.wait_status(&new, 401).await;
    bed.assert_single_key(&format!("{}.api", bed.ns), &newer)
        .await;
    bed.stop().await;
}

/// A key deleted or blocked out of band is re-issued; steady state makes no gateway writes.
#[tokio::test]
async fn drift_and_steady_state() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-drift", json!({})).await;
    // Three keys: listing them (one page, twice per resync) is cheaper than three reads, so the operator lists.
    for name in ["api", "b", "c"] {
        bed.create_key(
            name,
            json!({"teamRef": {"name": "team"}, "models": [], "maxBudget": 5}),
        )
        .await;
    }
    for name in ["api", "b", "c"] {
        bed.ready_key(name).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.reset_counts();
    tokio::time::sleep(Duration::from_secs(5)).await; // two resyncs at 2 s
    assert_eq!(
        fake.writes(),
        0,
        "steady state makes no gateway writes: {:?}",
        fake.counts()
    );
    // Resyncs read the keys from the operator's periodic listing, not one `/key/info` each.
    assert!(
        fake.count("GET /key/list") >= 2,
        "the operator lists its keys: {:?}",
        fake.counts()
    );
    assert_eq!(
        fake.count("GET /key/info"),
        0,
        "a quiet key is not read on its own: {:?}",
        fake.counts()
    );

    let old = bed.secret_value("api", "apiKey").await.expect("key");
    fake.edit_key(&sha256_hex(&old), |row| {
        row.insert("max_budget".into(), json!(1000.0));
    });
    wait_for("budget restored", WAIT, || async {
        (fake.key_by_hash(&sha256_hex(&old))?["max_budget"].as_f64() == Some(5.0)).then_some(())
    })
    .await;

    fake.delete_key_out_of_band(&sha256_hex(&old));
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    assert_eq!(bed.gw.status_with_key(&new).await, 200);
    bed.assert_single_key(&format!("{}.api", bed.ns), &new)
        .await;

    let (status, _) = bed
        .gw
        .post(
            "/key/update",
            json!({"key": sha256_hex(&new), "blocked": true}),
        )
        .await;
    assert_eq!(status, 200);
    let newest = bed.wait_secret_change("api", "apiKey", &new).await;
    assert_eq!(bed.gw.status_with_key(&newest).await, 200);
    bed.assert_single_key(&format!("{}.api", bed.ns), &newest)
        .await;
    bed.stop().await;
}

/// A key expired out of band is replaced on a gateway whose `/key/info` has no `status` (1.98.0): expiry is read
/// from `expires`, which both releases serve.
#[tokio::test]
async fn expired_key_is_replaced_on_a_gateway_without_status() {
    let fake = FakeGateway::start().await;
    fake.set_release(FakeRelease::V1_98);
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-expired", json!({})).await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.ready_key("api").await;
    let old = bed.secret_value("api", "apiKey").await.expect("key");
    assert!(fake.edit_key(&sha256_hex(&old), |row| {
        row.insert("expires".into(), json!("2020-01-01T00:00:00+00:00"));
    }));
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    assert_eq!(bed.gw.status_with_key(&new).await, 200);
    bed.assert_single_key(&format!("{}.api", bed.ns), &new)
        .await;
    bed.stop().await;
}

/// On a gateway holding many keys made elsewhere, listing them all would cost more than reading the operator's own
/// keys one by one: the operator stops after the first page and resyncs read each key, still correcting drift.
#[tokio::test]
async fn many_foreign_keys_mean_per_key_reads() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-foreign", json!({})).await;
    // 300 keys made outside the operator: 4 pages, 8 calls per resync, against 1 read for the one key below.
    for i in 0..300 {
        let (status, _) = bed
            .gw
            .post(
                "/key/generate",
                json!({"key_alias": format!("{}-foreign-{i}", bed.ns)}),
            )
            .await;
        assert_eq!(status, 200);
    }
    bed.create_key(
        "api",
        json!({"teamRef": {"name": "team"}, "models": [], "maxBudget": 5}),
    )
    .await;
    bed.ready_key("api").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.reset_counts();
    tokio::time::sleep(Duration::from_secs(5)).await; // two resyncs at 2 s, four listing attempts
    let counts = fake.counts();
    assert_eq!(fake.writes(), 0, "{counts:?}");
    assert!(
        fake.count("GET /key/info") >= 2,
        "resyncs read the key: {counts:?}"
    );
    // About five listing attempts (one per second from the operator's start); walking all 4 pages would be 20.
    assert!(
        fake.count("GET /key/list") <= 8,
        "only a first page per attempt, never a walk of every key: {counts:?}"
    );

    // Drift is still corrected, by the live reads.
    let value = bed.secret_value("api", "apiKey").await.expect("key");
    fake.edit_key(&sha256_hex(&value), |row| {
        row.insert("max_budget".into(), json!(1000.0));
    });
    wait_for("budget restored", WAIT, || async {
        (fake.key_by_hash(&sha256_hex(&value))?["max_budget"].as_f64() == Some(5.0)).then_some(())
    })
    .await;
    bed.stop().await;
}

/// An existing Secret the operator did not create is never overwritten.
#[tokio::test]
async fn unowned_secret_is_a_conflict() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-secret-conflict", json!({})).await;
    let mine: Secret = serde_json::from_value(
        json!({"metadata": {"name": "api"}, "stringData": {"apiKey": "hand-made"}}),
    )
    .expect("secret");
    bed.secrets
        .create(&PostParams::default(), &mine)
        .await
        .expect("create");
    let before = bed.secrets.get("api").await.expect("get");
    bed.create_key("api", json!({"teamRef": {"name": "team"}}))
        .await;
    let k = bed.key_reason("api", "SecretConflict").await;
    assert!(
        k.status.expect("status").conditions[0]
            .message
            .contains("Secret 'api'")
    );
    let after = bed.secrets.get("api").await.expect("get");
    assert_eq!(after.data, before.data, "bytes unchanged");
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "not written at all"
    );
    assert_eq!(fake.count("POST /key/generate"), 0, "no key issued");
    bed.stop().await;
}

/// Keys wait for their team; a deleted team revokes them and removes their Secrets; a new team re-issues them.
#[tokio::test]
async fn team_deletion_revokes_keys_and_recreation_reissues() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(
        GatewayTarget::fake(&fake),
        "key-team",
        json!({"models": ["smart/balanced"]}),
    )
    .await;
    bed.create_key("early", json!({"teamRef": {"name": "later"}}))
        .await;
    bed.key_reason("early", "TeamNotReady").await;
    bed.create_key(
        "greedy",
        json!({"teamRef": {"name": "team"}, "models": ["gpt-4o"]}),
    )
    .await;
    let k = bed.key_reason("greedy", "ModelNotAllowed").await;
    assert!(
        k.status.expect("status").conditions[0]
            .message
            .contains("gpt-4o")
    );
    assert_eq!(
        fake.count("POST /key/generate"),
        0,
        "no gateway call for keys that cannot be issued"
    );

    bed.create_key("a", json!({"teamRef": {"name": "team"}}))
        .await;
    bed.create_key(
        "b",
        json!({"teamRef": {"name": "team"}, "models": ["smart/balanced"]}),
    )
    .await;
    bed.ready_key("a").await;
    bed.ready_key("b").await;
    let a = bed.secret_value("a", "apiKey").await.expect("a");
    let b = bed.secret_value("b", "apiKey").await.expect("b");

    bed.teams
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    for (name, value) in [("a", &a), ("b", &b)] {
        bed.key_reason(name, "TeamNotReady").await;
        wait_for("Secret removed", WAIT, || async {
            bed.secrets
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
        bed.wait_status(value, 401).await;
    }
    // Once revoked, the keys stop naming a key id, and later resyncs do not look their aliases up again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["a", "b"] {
        let k = bed.keys.get(name).await.expect("key");
        assert_eq!(
            k.status.and_then(|s| s.key_id),
            None,
            "{name} no longer names a key"
        );
    }
    let lookups = fake.count("GET /key/list?key_alias");
    tokio::time::sleep(Duration::from_secs(5)).await; // two resyncs at 2 s
    assert_eq!(
        fake.count("GET /key/list?key_alias"),
        lookups,
        "no alias look-ups while the team stays gone"
    );

    bed.create_team("team", json!({"models": ["smart/balanced"]}))
        .await;
    for name in ["a", "b"] {
        bed.ready_key(name).await;
        let v = bed.secret_value(name, "apiKey").await.expect("re-issued");
        assert_eq!(bed.gw.status_with_key(&v).await, 200);
        bed.assert_single_key(&format!("{}.{name}", bed.ns), &v)
            .await;
    }
    bed.stop().await;
}

/// A key with a duration is renewed at the start of the last third of its life, before it can expire.
#[tokio::test]
async fn expiring_key_is_renewed() {
    let fake = FakeGateway::start().await;
    let bed = Bed::new(GatewayTarget::fake(&fake), "key-expiry", json!({})).await;
    bed.create_key("api", json!({"teamRef": {"name": "team"}, "duration": "9s", "rotation": {"strategy": "Recreate"}})).await;
    let k = bed.ready_key("api").await;
    let status = k.status.expect("status");
    assert!(
        status.expires_at.is_some() && status.next_rotation.is_some(),
        "expiry and renewal shown: {status:?}"
    );
    let old = bed.secret_value("api", "apiKey").await.expect("key");
    let start = std::time::Instant::now();
    let new = bed.wait_secret_change("api", "apiKey", &old).await;
    let renewed_after = start.elapsed();
    assert!(
        renewed_after < Duration::from_secs(9),
        "renewed before expiry ({renewed_after:?})"
    );
    assert_eq!(bed.gw.status_with_key(&new).await, 200);
    bed.wait_status(&old, 401).await;
    bed.stop().await;
}
