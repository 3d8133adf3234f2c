//! The plan's diff, one test per kind of change, without I/O.
use super::*;
use crate::controller::ownership::ADOPTABLE_BY_KEY;
use crate::gateway::types::TeamMemberRow;

fn manifests(yaml: &str) -> Manifests {
    let mut m = Manifests::default();
    let mut refusals = Vec::new();
    manifests::parse(yaml, Some("ds"), &mut m, &mut refusals).expect("yaml");
    assert!(refusals.is_empty(), "{refusals:?}");
    m
}

const WORKSPACE: &str = "
apiVersion: routero.ai/v1alpha1
kind: RouteroTeam
metadata: {name: finance}
spec: {maxBudget: 900, budgetDuration: 1mo, models: [eu/balanced]}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroMember
metadata: {name: lead}
spec: {email: lead@company.com, teams: [{name: finance, role: admin}]}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroKey
metadata: {name: ledger}
spec: {teamRef: {name: finance}, models: [eu/balanced], maxBudget: 50}
";

fn marked(kind: &str, name: &str) -> Option<Metadata> {
    let mut m = Metadata::new();
    m.insert(OWNER_KEY.into(), json!(owner_id(kind, "ds", name)));
    m.insert(UID_KEY.into(), json!("u-1"));
    Some(m)
}

fn settings() -> Settings {
    Settings {
        admin_namespaces: vec!["platform".into()],
        prune: false,
    }
}

/// The gateway after the operator applied WORKSPACE with the finance budget at 800.
fn applied() -> Observed {
    let mut o = Observed::default();
    o.teams.insert(
        "finance".into(),
        TeamRow {
            team_id: "finance".into(),
            team_alias: Some("finance".into()),
            models: vec!["eu/balanced".into()],
            max_budget: Some(800.0),
            budget_duration: Some("1mo".into()),
            metadata: marked("RouteroTeam", "finance"),
            members_with_roles: vec![TeamMemberRow {
                user_id: Some("lead@company.com".into()),
                user_email: None,
                role: Some("admin".into()),
            }],
            ..TeamRow::default()
        },
    );
    o.users.insert(
        "lead@company.com".into(),
        UserRow {
            user_id: "lead@company.com".into(),
            user_email: Some("lead@company.com".into()),
            user_role: Some("internal_user".into()),
            metadata: marked("RouteroMember", "lead"),
            ..UserRow::default()
        },
    );
    o.aliases.insert(
        "ds.ledger".into(),
        vec![KeyRow {
            token: Some("ab".repeat(32)),
            key_alias: Some("ds.ledger".into()),
            team_id: Some("finance".into()),
            models: vec!["eu/balanced".into()],
            max_budget: Some(50.0),
            metadata: marked("RouteroKey", "ledger"),
            ..KeyRow::default()
        }],
    );
    o
}

fn only(plan: &Plan, kind: &str) -> Change {
    plan.changes
        .iter()
        .find(|c| c.kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in {plan:?}"))
}

#[test]
fn an_empty_gateway_gets_everything_created() {
    let plan = compute(&manifests(WORKSPACE), &Observed::default(), &settings());
    assert!(
        plan.changes.iter().all(|c| c.action == Action::Create),
        "{plan:?}"
    );
    let team = only(&plan, "RouteroTeam");
    assert!(team.fields.contains(&FieldChange {
        field: "maxBudget".into(),
        old: Value::Null,
        new: json!(900.0)
    }));
    let member = only(&plan, "RouteroMember");
    let endpoints: Vec<_> = member.writes.iter().map(|w| w.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["/user/new", "/team/member_add"]);
    assert_eq!(plan.exit_code(), 2);
    assert!(render::text(&plan).starts_with("Plan: 3 to create, 0 to update"));
}

#[test]
fn a_changed_field_is_an_update_with_old_and_new_and_the_controllers_body() {
    let plan = compute(&manifests(WORKSPACE), &applied(), &settings());
    let team = only(&plan, "RouteroTeam");
    assert_eq!(team.action, Action::Update);
    assert_eq!(
        team.fields,
        [FieldChange {
            field: "maxBudget".into(),
            old: json!(800.0),
            new: json!(900.0)
        }]
    );
    assert_eq!(
        team.writes,
        [Write {
            endpoint: "/team/update".into(),
            body: Some(json!({"team_id": "finance", "max_budget": 900.0}))
        }]
    );
    assert_eq!(only(&plan, "RouteroMember").action, Action::None);
    assert_eq!(only(&plan, "RouteroKey").action, Action::None);
    let text = render::text(&plan);
    assert!(
        text.contains(
            "~ RouteroTeam ds/finance: update team 'finance'\n    maxBudget: 800.0 → 900.0"
        ),
        "{text}"
    );
}

#[test]
fn a_matching_gateway_plans_nothing_and_exits_zero() {
    let mut o = applied();
    if let Some(t) = o.teams.get_mut("finance") {
        t.max_budget = Some(900.0);
    }
    let plan = compute(&manifests(WORKSPACE), &o, &settings());
    assert!(
        plan.changes.iter().all(|c| c.action == Action::None),
        "{plan:?}"
    );
    assert_eq!(plan.exit_code(), 0);
}

#[test]
fn role_and_membership_changes() {
    let m = manifests(&WORKSPACE.replace("role: admin", "role: user").replace(
        "email: lead@company.com,",
        "email: lead@company.com, role: internal_user_viewer,",
    ));
    let plan = compute(&m, &applied(), &settings());
    let member = only(&plan, "RouteroMember");
    assert_eq!(member.action, Action::Update);
    let fields: Vec<_> = member.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["role", "teams[finance].role"]);
    let endpoints: Vec<_> = member.writes.iter().map(|w| w.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["/user/update", "/team/member_update"]);
}

#[test]
fn adoption_where_an_admin_allowed_it_and_a_conflict_elsewhere() {
    let m = manifests(&WORKSPACE.replace(
        "spec: {maxBudget: 900",
        "spec: {adopt: true, maxBudget: 900",
    ));
    let mut o = applied();
    let team = o.teams.get_mut("finance").expect("team");
    team.metadata = None;
    // Not marked for this namespace: the operator would refuse the adoption, and so does plan.
    let plan = compute(&m, &o, &settings());
    let c = only(&plan, "RouteroTeam");
    assert_eq!(
        (c.action, c.reason.as_deref()),
        (Action::Conflict, Some("Forbidden"))
    );
    assert!(
        c.message
            .as_deref()
            .unwrap_or_default()
            .contains(ADOPTABLE_BY_KEY)
    );
    assert_eq!(plan.exit_code(), 1);
    // Marked adoptable by ds: adopt, stamping the owner marker.
    let mut md = Metadata::new();
    md.insert(ADOPTABLE_BY_KEY.into(), json!("ds"));
    o.teams.get_mut("finance").expect("team").metadata = Some(md);
    let plan = compute(&m, &o, &settings());
    let c = only(&plan, "RouteroTeam");
    assert_eq!(c.action, Action::Adopt);
    assert!(
        c.fields
            .iter()
            .any(|f| f.field == "metadata" && f.new[OWNER_KEY] == json!("RouteroTeam/ds/finance"))
    );
    // Owned by a resource elsewhere: a conflict that does not name it.
    let mut other = Metadata::new();
    other.insert(OWNER_KEY.into(), json!("RouteroTeam/tenant-b/finance"));
    o.teams.get_mut("finance").expect("team").metadata = Some(other);
    let c = only(&compute(&m, &o, &settings()), "RouteroTeam");
    assert_eq!(c.action, Action::Conflict);
    assert!(!c.message.unwrap_or_default().contains("tenant-b"));
}

#[test]
fn a_hand_made_key_is_taken_over_only_with_adopt() {
    let mut o = applied();
    let row = o
        .aliases
        .get_mut("ds.ledger")
        .and_then(|r| r.first_mut())
        .expect("key");
    let mut md = Metadata::new();
    md.insert(ADOPTABLE_BY_KEY.into(), json!("ds"));
    row.metadata = Some(md);
    let c = only(
        &compute(&manifests(WORKSPACE), &o, &settings()),
        "RouteroKey",
    );
    assert_eq!(c.action, Action::Conflict);
    assert!(c.message.unwrap_or_default().contains("spec.adopt: true"));
    let adopting = manifests(&WORKSPACE.replace("maxBudget: 50}", "maxBudget: 50, adopt: true}"));
    let c = only(&compute(&adopting, &o, &settings()), "RouteroKey");
    assert_eq!(c.action, Action::Adopt);
    assert!(c.effects[0].contains("a new value is delivered"), "{c:?}");
}

#[test]
fn tenancy_refusals_carry_the_operators_messages() {
    let m = manifests(
        "apiVersion: routero.ai/v1alpha1
kind: RouteroMember
metadata: {name: boss}
spec: {email: boss@company.com, role: proxy_admin}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroKey
metadata: {name: squat}
spec: {teamRef: {name: finance}, alias: other.api}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroKey
metadata: {name: wide}
spec: {teamRef: {name: finance}, models: [smart/balanced]}
---
apiVersion: routero.ai/v1alpha1
kind: RouteroTeam
metadata: {name: finance}
spec: {models: [eu/balanced]}
",
    );
    let plan = compute(&m, &applied(), &settings());
    let reasons: Vec<_> = plan
        .changes
        .iter()
        .map(|c| (c.name.as_str(), c.reason.as_deref()))
        .collect();
    assert!(
        reasons.contains(&("boss", Some("Forbidden"))),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("squat", Some("Forbidden"))),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("wide", Some("ModelNotAllowed"))),
        "{reasons:?}"
    );
}

fn deletions(plan: &Plan) -> Vec<&Change> {
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .collect()
}

fn pruned(o: &Observed) -> Plan {
    let settings = Settings {
        prune: true,
        ..settings()
    };
    compute(&manifests(WORKSPACE), o, &settings)
}

#[test]
fn prune_deletes_what_no_manifest_names_and_counts_the_keys() {
    let mut o = applied();
    let mut gone = TeamRow {
        team_id: "old".into(),
        team_alias: Some("old".into()),
        metadata: marked("RouteroTeam", "old"),
        ..TeamRow::default()
    };
    o.all_teams = vec![o.teams["finance"].clone(), gone.clone()];
    gone.team_id = "foreign".into();
    gone.metadata = None;
    o.all_teams.push(gone);
    o.all_keys = (0..3)
        .map(|i| KeyRow {
            token: Some(format!("{i}")),
            team_id: Some("old".into()),
            ..KeyRow::default()
        })
        .collect();
    let plan = pruned(&o);
    let deletes = deletions(&plan);
    assert_eq!(
        deletes.len(),
        1,
        "only what this namespace owned: {deletes:?}"
    );
    assert_eq!(deletes[0].effects, ["deleting team old revokes 3 key(s)"]);
    assert_eq!(
        deletes[0].writes.len(),
        4,
        "each key revoked, then the team"
    );

    // One of those keys belongs to a RouteroKey that is pruned as well: its revocation is listed once, there.
    o.all_keys[0].metadata = marked("RouteroKey", "gone-key");
    o.all_keys[0].key_alias = Some("ds.gone-key".into());
    let plan = pruned(&o);
    let deletes = deletions(&plan);
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert_eq!(deletes[0].effects, ["deleting team old revokes 3 key(s)"]);
    assert_eq!(deletes[0].writes.len(), 3);
    assert_eq!(deletes[1].kind, "RouteroKey");
    let key_deletes = plan
        .changes
        .iter()
        .flat_map(|c| &c.writes)
        .filter(|w| w.endpoint == "/key/delete")
        .count();
    assert_eq!(key_deletes, 3, "each key revoked once");
}
