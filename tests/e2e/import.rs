//! `import` round trips on the real LiteLLM: a workspace built by hand with the guide's curl calls is read, its
//! manifests are applied with `kubectl apply`, and the operator adopts everything with zero gateway writes to teams,
//! users and memberships (only the keys get new values, by design), every resource `Ready`, no field reported
//! changed, and the hand-made key still working through its grace period.
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use routero_operator::crd::{RouteroKey, RouteroMember, RouteroTeam};
use routero_operator::gateway::{AdminKey, Gateway, GatewayConfig};
use routero_operator::import::{self, Import, KeyImport, Options};
use secrecy::SecretString;
use serde_json::json;

use crate::support::gateway_reader::{GatewayReader, sha256_hex};
use crate::support::recording_proxy::RecordingProxy;
use crate::support::testbed::{
    self, GatewayTarget, Operator, OperatorOptions, kubectl, wait_for, wait_ready_of,
};

/// The guide's workspace, made as its curl steps make it: teams by alias (the gateway picks UUID ids), allowlists
/// set afterwards with `/team/update`, two people by e-mail (UUID user ids), the lead in data-science, and the
/// team key `ds-prod` with `duration: 90d`. Returns the team ids, the people's user ids and ds-prod's raw value.
struct Seed {
    teams: Vec<String>,
    lead: String,
    auditor: String,
    ds_prod: String,
    alias: String,
}

async fn seed(gw: &GatewayReader, s: &str) -> Seed {
    let mut teams = Vec::new();
    for (alias, budget, models) in [
        ("data-science", 2000, None),
        ("customer-ops", 500, Some("smart/balanced")),
        ("finance", 800, Some("eu/balanced")),
        ("engineering", 1500, None),
    ] {
        let (status, body) = gw
            .post(
                "/team/new",
                json!({"team_alias": format!("{alias}-{s}"), "max_budget": budget, "budget_duration": "1mo"}),
            )
            .await;
        assert_eq!(status, 200, "team/new: {body}");
        let id = body["team_id"].as_str().expect("team id").to_owned();
        if let Some(m) = models {
            let (status, body) = gw
                .post("/team/update", json!({"team_id": id, "models": [m]}))
                .await;
            assert_eq!(status, 200, "team/update: {body}");
        }
        teams.push(id);
    }
    let mut people = Vec::new();
    for (who, role) in [
        ("data-lead", "internal_user"),
        ("controller", "internal_user_viewer"),
    ] {
        let (status, body) = gw
            .post(
                "/user/new",
                json!({"user_email": format!("{who}-{s}@company.com"), "user_role": role, "auto_create_key": false}),
            )
            .await;
        assert_eq!(status, 200, "user/new: {body}");
        people.push(body["user_id"].as_str().expect("user id").to_owned());
    }
    let (status, body) = gw
        .post(
            "/team/member_add",
            json!({"team_id": teams[0], "member": {"user_id": people[0], "role": "user"}}),
        )
        .await;
    assert_eq!(status, 200, "team/member_add: {body}");
    let alias = format!("ds-prod-{s}");
    let (status, body) = gw
        .post(
            "/key/generate",
            json!({"team_id": teams[0], "key_alias": alias, "duration": "90d"}),
        )
        .await;
    assert_eq!(status, 200, "key/generate: {body}");
    Seed {
        teams,
        lead: people[0].clone(),
        auditor: people[1].clone(),
        ds_prod: body["key"].as_str().expect("raw key").to_owned(),
        alias,
    }
}

fn gateway(target: &GatewayTarget) -> Gateway {
    Gateway::new(GatewayConfig::new(
        target.url.clone(),
        AdminKey::Static(SecretString::from(target.admin_key.clone())),
    ))
    .expect("gateway client")
}

/// Reads, converts and marks, as `routero-operator import` does.
async fn run_import(target: &GatewayTarget, opts: &Options) -> Import {
    let gw = gateway(target);
    let observed = import::observe(&gw, opts).await.expect("read the gateway");
    let imported = import::convert(&observed, opts);
    import::mark(&gw, &imported, "test/import")
        .await
        .expect("mark");
    imported
}

/// Gateway writes that adoption must not make: anything but a key's new value.
fn forbidden_writes(proxy: &RecordingProxy) -> Vec<String> {
    proxy
        .writes()
        .into_iter()
        .filter(|w| !matches!(w.as_str(), "POST /key/generate" | "POST /key/regenerate"))
        .collect()
}

/// Applies the import's output with `kubectl apply` under an operator that reaches the gateway through a recording
/// proxy, waits for every resource to be `Ready`, lets two resyncs pass, and asserts the adoption wrote nothing but
/// the keys' new values and reported no field changed. Returns the RouteroKeys' names.
async fn adopt(
    target: &GatewayTarget,
    ns: &str,
    imported: &Import,
) -> (Vec<String>, RecordingProxy, Operator) {
    let client = testbed::client().await;
    let proxy = RecordingProxy::start(&target.url).await;
    let through = proxy.target(target);
    let resync = Duration::from_secs(3);
    let op = Operator::start(
        &client,
        &through,
        ns,
        OperatorOptions {
            resync,
            ..Default::default()
        },
    )
    .await;
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&imported.yaml().expect("yaml")),
    );
    assert!(ok, "kubectl apply: {err}");
    let teams: Api<RouteroTeam> = Api::namespaced(client.clone(), ns);
    let members: Api<RouteroMember> = Api::namespaced(client.clone(), ns);
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), ns);
    let name = |m: &kube::api::ObjectMeta| m.name.clone().unwrap_or_default();
    for t in &imported.teams {
        wait_ready_of(&teams, &name(&t.metadata)).await;
    }
    for m in &imported.members {
        wait_ready_of(&members, &name(&m.metadata)).await;
    }
    let key_names: Vec<String> = imported.keys.iter().map(|k| name(&k.metadata)).collect();
    for k in &key_names {
        wait_ready_of(&keys, k).await;
    }
    // Two resyncs more.
    tokio::time::sleep(resync * 2 + Duration::from_secs(1)).await;
    assert_eq!(
        forbidden_writes(&proxy),
        Vec::<String>::new(),
        "adopting the import's output writes nothing but the keys' new values"
    );
    let reasons = testbed::event_reasons(&client, ns).await;
    assert!(
        !reasons.iter().any(|r| r == "Updated" || r == "Created"),
        "no field reported changed: {reasons:?}"
    );
    if !key_names.is_empty() {
        assert!(reasons.iter().any(|r| r == "Adopted"), "{reasons:?}");
    }
    (key_names, proxy, op)
}

async fn the_seed_workspace_round_trips(target: GatewayTarget) {
    let gw = GatewayReader::new(&target);
    let s = testbed::suffix();
    let seed = seed(&gw, &s).await;
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "import-seed").await;
    let opts = Options {
        namespace: ns.clone(),
        teams: seed.teams.clone(),
        users: vec![seed.auditor.clone()],
        all: false,
        keys: KeyImport::Adopt,
        grace_period: "24h".into(),
        admin_roles: false,
    };
    let imported = run_import(&target, &opts).await;
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
    assert_eq!(
        (
            imported.teams.len(),
            imported.members.len(),
            imported.keys.len()
        ),
        (4, 2, 1)
    );
    let team_ids: Vec<_> = imported
        .teams
        .iter()
        .map(|t| t.spec.team_id.clone())
        .collect();
    assert_eq!(
        team_ids,
        seed.teams.iter().cloned().map(Some).collect::<Vec<_>>(),
        "gateway-made UUIDs kept exactly"
    );
    let ds = &imported.keys[0];
    assert_eq!(ds.spec.duration.as_deref(), Some("90d"));
    assert_eq!(ds.spec.alias.as_deref(), Some(seed.alias.as_str()));

    let (key_names, _proxy, _op) = adopt(&target, &ns, &imported).await;
    let key_name = key_names[0].clone();

    // The budgets, allowlists, roles and membership are as they were made.
    let finance = gw.team(&seed.teams[2]).await.expect("finance");
    assert_eq!(finance["max_budget"], json!(800.0));
    assert_eq!(finance["models"], json!(["eu/balanced"]));
    let lead = gw.user(&seed.lead).await.expect("lead");
    assert_eq!(lead["user_info"]["user_role"], "internal_user");
    let auditor = gw.user(&seed.auditor).await.expect("auditor");
    assert_eq!(auditor["user_info"]["user_role"], "internal_user_viewer");

    // The Secret holds a new, working value; the hand-made value keeps working through the grace period.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(&key_name).await.expect("ds-prod Secret");
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get("apiKey"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("key in Secret");
    assert_ne!(value, seed.ds_prod);
    assert_eq!(gw.status_with_key(&value).await, 200, "the new value works");
    assert_eq!(
        gw.status_with_key(&seed.ds_prod).await,
        200,
        "the old value keeps working for the grace period"
    );
    let new_row = gw.key(&sha256_hex(&value)).await.expect("new key row");
    assert_eq!(new_row["team_id"], json!(seed.teams[0]));
    assert!(
        new_row["expires"].is_string(),
        "90d carried over: {new_row}"
    );

    // The Secret is lost during the grace period: a new key is issued, and the taken-over key, which no Secret holds
    // any more, is revoked with the lost one instead of blocking the alias as a conflict.
    secrets
        .delete(&key_name, &Default::default())
        .await
        .expect("delete the Secret");
    let reissued = wait_for(
        "a new key in a new Secret",
        Duration::from_secs(60),
        || async {
            let s = secrets.get_opt(&key_name).await.ok().flatten()?;
            let v = s.data.as_ref()?.get("apiKey")?;
            let v = String::from_utf8_lossy(&v.0).into_owned();
            (v != value).then_some(v)
        },
    )
    .await;
    wait_ready_of(
        &Api::<RouteroKey>::namespaced(client.clone(), &ns),
        &key_name,
    )
    .await;
    let reasons = testbed::event_reasons(&client, &ns).await;
    assert!(!reasons.iter().any(|r| r == "Conflict"), "{reasons:?}");
    assert_eq!(
        gw.status_with_key(&reissued).await,
        200,
        "the new value works"
    );
    let old = gw.key(&sha256_hex(&seed.ds_prod)).await;
    assert!(
        old.as_ref().is_none_or(|r| r["status"] == "deleted"),
        "the taken-over key went with the lost Secret: {old:?}"
    );
}

#[tokio::test]
async fn the_seed_workspace_round_trips_on_real_litellm() {
    the_seed_workspace_round_trips(GatewayTarget::litellm()).await;
}

#[tokio::test]
async fn the_seed_workspace_round_trips_on_litellm_1_98() {
    the_seed_workspace_round_trips(GatewayTarget::litellm_1_98()).await;
}

/// Keys: a per-person key comes with its member; a key with no alias, one of a person not imported, and one
/// with no team are listed with the reason, and nothing is marked for them; a re-import writes nothing.
#[tokio::test]
async fn keys_import_with_their_people_and_the_rest_is_listed() {
    let target = GatewayTarget::litellm();
    let gw = GatewayReader::new(&target);
    let s = testbed::suffix();
    let seed = seed(&gw, &s).await;
    let (_, outsider) = gw
        .post(
            "/user/new",
            json!({"user_email": format!("outsider-{s}@company.com"), "user_role": "internal_user", "auto_create_key": false}),
        )
        .await;
    let outsider = outsider["user_id"].as_str().expect("user id").to_owned();
    let mut made = Vec::new();
    for body in [
        json!({"team_id": seed.teams[0], "user_id": seed.lead, "key_alias": format!("lead-notebook-{s}")}),
        json!({"team_id": seed.teams[0]}),
        json!({"team_id": seed.teams[0], "user_id": outsider, "key_alias": format!("outsider-{s}")}),
    ] {
        let (status, reply) = gw.post("/key/generate", body).await;
        assert_eq!(status, 200, "key/generate: {reply}");
        made.push(reply["token"].as_str().unwrap_or_default().to_owned());
    }
    let client = testbed::client().await;
    let ns = testbed::namespace(&client, "import-keys").await;
    let opts = Options {
        namespace: ns.clone(),
        teams: vec![seed.teams[0].clone()],
        users: vec![],
        all: false,
        keys: KeyImport::Adopt,
        grace_period: "1h".into(),
        admin_roles: false,
    };
    let imported = run_import(&target, &opts).await;
    let notebook = imported
        .keys
        .iter()
        .find(|k| k.spec.alias.as_deref() == Some(&format!("lead-notebook-{s}")))
        .expect("the per-person key is imported");
    let lead = imported
        .members
        .iter()
        .find(|m| m.spec.user_id.as_deref() == Some(seed.lead.as_str()))
        .expect("the lead is imported");
    assert_eq!(
        notebook.spec.member_ref.as_ref().map(|m| &m.name),
        lead.metadata.name.as_ref()
    );
    let why = |token: &str| {
        imported
            .skipped
            .iter()
            .find(|k| k.what.starts_with(&format!("key {}", &token[..12])))
            .map(|k| k.why.clone())
            .unwrap_or_else(|| panic!("key {token} is listed: {:?}", imported.skipped))
    };
    assert!(why(&made[1]).contains("no alias"));
    assert!(why(&made[2]).contains("not imported"));
    // Nothing is marked for what was left out.
    let row = gw.key(&made[2]).await.expect("outsider key");
    assert!(
        row["metadata"].get("routero.ai/adoptable-by").is_none(),
        "{row}"
    );
    let ds = gw.key(&sha256_hex(&seed.ds_prod)).await.expect("ds-prod");
    assert_eq!(ds["metadata"]["routero.ai/adoptable-by"], json!(ns));

    // Applied: the lead's per-person key is taken over for that person, with zero writes to teams and people.
    let (_, _proxy, op) = adopt(&target, &ns, &imported).await;
    let keys: Api<RouteroKey> = Api::namespaced(client.clone(), &ns);
    let taken = keys
        .get(notebook.metadata.name.as_deref().unwrap_or_default())
        .await
        .expect("notebook key");
    let status = taken.status.expect("status");
    assert_eq!(status.user_id.as_deref(), Some(seed.lead.as_str()));
    op.stop().await;

    // A second import finds everything marked already, keeps the names, and writes nothing.
    let proxy = RecordingProxy::start(&target.url).await;
    let through = proxy.target(&target);
    let again = run_import(&through, &opts).await;
    assert_eq!(proxy.writes(), Vec::<String>::new());
    let names = |i: &Import| -> Vec<Option<String>> {
        i.teams
            .iter()
            .map(|t| t.metadata.name.clone())
            .chain(i.members.iter().map(|m| m.metadata.name.clone()))
            .collect()
    };
    assert_eq!(names(&again), names(&imported));
}

/// Where the gateway regenerates keys, an adopted key is taken over in place: same alias and row, its budget and
/// the metadata others set kept, our markers added in the same call, the hand-made value dead at once. A key not
/// marked adoptable by the namespace is refused, and left working.
#[tokio::test]
async fn a_key_is_taken_over_in_place_where_the_gateway_regenerates() {
    use crate::key::Bed;
    use crate::support::fake_gateway::FakeGateway;
    use crate::support::testbed::{assert_events, wait_reason_of};

    let fake = FakeGateway::start().await;
    fake.set_regenerate_enabled(true);
    let bed = Bed::new(GatewayTarget::fake(&fake), "adopt-regen", json!({})).await;
    let s = testbed::suffix();
    let mut made = Vec::new();
    for (alias, marked) in [
        (format!("hand-{s}"), true),
        (format!("unmarked-{s}"), false),
    ] {
        let mut metadata = json!({"cost-center": "7"});
        if marked {
            metadata["routero.ai/adoptable-by"] = json!(bed.ns);
        }
        let (status, reply) = bed
            .gw
            .post(
                "/key/generate",
                json!({"team_id": bed.team_id, "key_alias": alias, "max_budget": 25, "metadata": metadata}),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        made.push(reply["key"].as_str().expect("raw key").to_owned());
    }
    for (name, alias) in [
        ("hand", format!("hand-{s}")),
        ("unmarked", format!("unmarked-{s}")),
    ] {
        bed.create_key(
            name,
            json!({"teamRef": {"name": "team"}, "alias": alias, "maxBudget": 25, "adopt": true,
                   "rotation": {"strategy": "Regenerate"}}),
        )
        .await;
    }
    bed.ready_key("hand").await;
    let value = bed.secret_value("hand", "apiKey").await.expect("delivered");
    let row = bed
        .gw
        .key(&sha256_hex(&value))
        .await
        .expect("regenerated row");
    assert_eq!(row["key_alias"], json!(format!("hand-{s}")));
    assert_eq!(row["max_budget"], json!(25.0));
    assert_eq!(row["metadata"]["cost-center"], "7");
    assert_eq!(
        row["metadata"]["routero.ai/owner"],
        json!(format!("RouteroKey/{}/hand", bed.ns))
    );
    assert!(
        bed.gw.key(&sha256_hex(&made[0])).await.is_none(),
        "regenerated in place"
    );
    assert_eq!(bed.gw.keys_with_alias(&format!("hand-{s}")).await.len(), 1);
    assert_events(&bed.client, &bed.ns, &["Adopted"]).await;

    let refused = wait_reason_of(&bed.keys, "unmarked", "Forbidden").await;
    let message = refused
        .status
        .and_then(|st| st.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("routero.ai/adoptable-by"), "{message}");
    assert!(
        bed.gw.key(&sha256_hex(&made[1])).await.is_some(),
        "left working"
    );
}
