//! `routero-operator plan`: what applying manifests would change on the gateway, before it lands. It reads the
//! manifests and the live gateway, never writes, and needs no cluster.
//!
//! One diff, not two: each object's changes come from the functions the controllers act on
//! (`team::create_request`/`update_request`, `member::user_update`/`membership_changes`, `key::key_update`), and
//! each change carries the very write the controller then makes (`writes`), so "no change" here means zero gateway
//! writes there. What plan cannot see is the cluster: a key's Secret (a lost Secret re-issues its key) and a
//! resource's status (provenance proofs; the teams a member joined from here, which it leaves when they leave its
//! spec: plan shows a departure for a team of this namespace that lists the person and their spec no longer does).
pub mod manifests;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::controller::key::{
    alias_refusal, alias_taken, key_update, models_refusal, team_not_ours as key_team_not_ours,
};
use crate::controller::member::{
    DEFAULT_USER_ID, Membership, membership_changes, protected_refusal, reserved_user,
    role_refusal, team_not_ours, team_role, user_update,
};
use crate::controller::ownership::{Claim, OWNER_KEY, Owner, Standing, UID_KEY, owner_id};
use crate::controller::team::{create_request, update_request};
use crate::crd::common::cross_namespace;
use crate::crd::{RouteroKey, RouteroMember, RouteroTeam};
use crate::gateway::types::{KeyRow, Metadata, TeamRow, UserRow};
use crate::gateway::{Gateway, GatewayError};
pub use manifests::Manifests;

/// What applying would do to one gateway object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Adopt,
    Delete,
    /// The operator would refuse it (`Ready=False` with `reason`): owned elsewhere, not adoptable here, a tenancy rule.
    Conflict,
    /// Nothing: the gateway matches.
    None,
}

/// A managed field's value on the gateway now (`old`, null when absent) and after applying (`new`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// A gateway call the controller makes for this change: the endpoint, and for updates the exact body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Write {
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// One object's change.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The gateway object, as people name it: `team 'finance'`, `user 'alice@x.com'`, `key alias 'ds-prod'`.
    pub gateway: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// What the change does to keys and access, in words ("deleting team finance revokes 3 keys").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<String>,
    /// For a conflict: the reason and message the resource's `Ready` condition would carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Write>,
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// Exit status for a pull-request check: 0 nothing changes, 2 something would, 1 something would be refused.
    pub fn exit_code(&self) -> u8 {
        if self.changes.iter().any(|c| c.action == Action::Conflict) {
            1
        } else if self.changes.iter().any(|c| c.action != Action::None) {
            2
        } else {
            0
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// How the operator that will apply the manifests is set up, as far as its decisions go.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--admin-namespaces` of the operator.
    pub admin_namespaces: Vec<String>,
    /// Also plan deletions: gateway objects owned by the manifests' namespaces that no manifest names any more.
    pub prune: bool,
}

/// The gateway as plan read it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub teams: BTreeMap<String, TeamRow>,
    pub users: BTreeMap<String, UserRow>,
    /// Live keys under each alias the manifests name (and its Recreate alias `<alias>.next`).
    pub aliases: BTreeMap<String, Vec<KeyRow>>,
    /// The gateway's admin identities: the master key's and the admin key's user.
    pub admin_identities: BTreeSet<String>,
    /// With `--prune`: every team, user and key, to find what the manifests no longer name.
    pub all_teams: Vec<TeamRow>,
    pub all_users: Vec<UserRow>,
    pub all_keys: Vec<KeyRow>,
}

/// Reads what the manifests touch on the gateway (read only).
pub async fn observe(
    gw: &Gateway,
    m: &Manifests,
    settings: &Settings,
) -> Result<Observed, GatewayError> {
    let mut o = Observed::default();
    for t in &m.teams {
        let id = t.team_id();
        if let Some(row) = gw.team_info(&id).await? {
            o.teams.insert(id, row);
        }
    }
    for u in &m.members {
        let id = u.user_id();
        if let Some(row) = gw.user_info(&id).await? {
            o.users.insert(id, row);
        }
    }
    for k in &m.keys {
        for alias in [k.alias(), crate::crd::key::next_alias(&k.alias())] {
            let rows = gw.keys_by_alias(&alias).await?;
            o.aliases.insert(alias, rows);
        }
    }
    o.admin_identities.insert(DEFAULT_USER_ID.into());
    o.admin_identities.extend(gw.admin_user().await?);
    if settings.prune {
        o.all_teams = gw.every_team().await?;
        o.all_users = gw.every_user().await?;
        o.all_keys = gw.every_key().await?;
    }
    Ok(o)
}

/// The plan: pure, from the manifests and what was observed.
pub fn compute(m: &Manifests, o: &Observed, settings: &Settings) -> Plan {
    let mut changes = Vec::new();
    for t in &m.teams {
        changes.push(team(t, o, settings));
    }
    for u in &m.members {
        changes.push(member(u, m, o, settings));
    }
    for k in &m.keys {
        changes.push(key(k, m, o, settings));
    }
    if settings.prune {
        changes.extend(prune(m, o));
    }
    Plan { changes }
}

/// The resource's owner, as the controller computes it. Manifests have no uid yet: the uid marker decides nothing
/// (see `ownership::metadata_update`), so an empty one stands in, and write bodies omit it.
fn owner(kind: &str, ns: &str, name: &str) -> Owner {
    Owner {
        id: owner_id(kind, ns, name),
        uid: String::new(),
        namespace: ns.to_owned(),
    }
}

fn change(kind: &str, ns: &str, name: &str, gateway: String) -> Change {
    Change {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        gateway,
        action: Action::None,
        fields: Vec::new(),
        effects: Vec::new(),
        reason: None,
        message: None,
        writes: Vec::new(),
    }
}

impl Change {
    fn refuse(mut self, reason: &str, message: String) -> Self {
        self.action = Action::Conflict;
        self.reason = Some(reason.into());
        self.message = Some(message);
        self
    }

    fn field(&mut self, field: &str, old: Value, new: Value) {
        self.fields.push(FieldChange {
            field: field.into(),
            old,
            new,
        });
    }

    /// An update (an adoption when `adopting`) of the `changed` fields: `values` gives a field's old and new value;
    /// the metadata field shows the markers that differ.
    fn updated(
        &mut self,
        adopting: bool,
        changed: &[&str],
        held: Option<&Metadata>,
        sent: Option<&Metadata>,
        values: impl Fn(&str) -> (Value, Value),
    ) {
        self.action = if adopting {
            Action::Adopt
        } else {
            Action::Update
        };
        for f in changed {
            if *f == "metadata" {
                metadata_field(self, held, sent);
            } else {
                let (old, new) = values(f);
                self.field(f, old, new);
            }
        }
    }

    fn write(&mut self, endpoint: &str, body: Option<Value>) {
        self.writes.push(Write {
            endpoint: endpoint.into(),
            body: body.map(strip_uid),
        });
    }
}

/// A write body without the uid marker, which plan cannot know (the resource does not exist yet).
fn strip_uid(mut body: Value) -> Value {
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(UID_KEY);
    }
    body
}

fn name_of<K: kube::Resource>(obj: &K) -> (String, String) {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

/// The controller's claim on an existing object: `Ok(adopting)` where it may manage it, else the refusal.
fn claim(
    owner: &Owner,
    held: Option<&Metadata>,
    standing: Standing,
    what: &str,
) -> Result<bool, (&'static str, String)> {
    match owner.claim(held, standing, &format!("gateway {what}")) {
        Claim::Conflict(m) => Err(("Conflict", m)),
        Claim::Forbidden(m) => Err(("Forbidden", m)),
        claim => Ok(claim == Claim::Adopt),
    }
}

fn standing(adopt: bool, ns: &str, settings: &Settings) -> Standing {
    Standing {
        adopt,
        admin: settings.admin_namespaces.iter().any(|a| a == ns),
        proven: false,
    }
}

/// Our markers that differ, as the metadata field change people read (the merged map is in the write body).
fn metadata_field(c: &mut Change, held: Option<&Metadata>, sent: Option<&Metadata>) {
    let (Some(sent), held) = (sent, held.cloned().unwrap_or_default()) else {
        return;
    };
    let keys: Vec<&String> = sent
        .keys()
        .filter(|k| *k != UID_KEY && held.get(*k) != sent.get(*k))
        .collect();
    let pick = |m: &Metadata| -> Value {
        Value::Object(
            keys.iter()
                .filter_map(|k| m.get(*k).map(|v| ((*k).clone(), v.clone())))
                .collect(),
        )
    };
    c.field("metadata", pick(&held), pick(sent));
}

fn team(t: &RouteroTeam, o: &Observed, settings: &Settings) -> Change {
    let (ns, name) = name_of(t);
    let id = t.team_id();
    let owner = owner("RouteroTeam", &ns, &name);
    let mut c = change("RouteroTeam", &ns, &name, format!("team '{id}'"));
    let Some(row) = o.teams.get(&id) else {
        let req = create_request(&t.spec, &id, &owner);
        c.action = Action::Create;
        c.field("alias", Value::Null, json!(req.team_alias));
        for (f, v) in [
            ("models", json!(req.models)),
            ("maxBudget", json!(req.max_budget)),
            ("budgetDuration", json!(req.budget_duration)),
            ("tpmLimit", json!(req.tpm_limit)),
            ("rpmLimit", json!(req.rpm_limit)),
        ] {
            if !v.is_null() {
                c.field(f, Value::Null, v);
            }
        }
        c.write("/team/new", None);
        return c;
    };
    let adopting = match claim(
        &owner,
        row.metadata.as_ref(),
        standing(t.spec.adopt, &ns, settings),
        &c.gateway,
    ) {
        Ok(adopting) => adopting,
        Err((reason, m)) => return c.refuse(reason, m),
    };
    let Some((req, changed)) = update_request(&t.spec, &id, &owner, row) else {
        return c;
    };
    c.updated(
        adopting,
        &changed,
        row.metadata.as_ref(),
        req.metadata.as_ref(),
        |f| match f {
            "alias" => (json!(row.team_alias), json!(req.team_alias)),
            "models" => (json!(row.models), json!(req.models)),
            "maxBudget" => (json!(row.max_budget), json!(req.max_budget)),
            "budgetDuration" => (json!(row.budget_duration), json!(req.budget_duration)),
            "tpmLimit" => (json!(row.tpm_limit), json!(req.tpm_limit)),
            _ => (json!(row.rpm_limit), json!(req.rpm_limit)),
        },
    );
    if c.fields.iter().any(|f| f.field == "budgetDuration") {
        c.effects
            .push("a new budgetDuration restarts the team's budget window".into());
    }
    c.write("/team/update", serde_json::to_value(&req).ok());
    c
}

/// A RouteroTeam of the manifests as a member or key sees it: its gateway id, the gateway team's current row
/// (empty when this plan creates it), its allowlist, and whether the gateway team is (or by this plan becomes)
/// that RouteroTeam's own.
struct OwnTeam {
    id: String,
    row: TeamRow,
    models: Option<Vec<String>>,
    ours: bool,
}

/// RouteroTeam `name` of namespace `ns` as planned; `None` when no manifest names it.
fn own_team(
    name: &str,
    ns: &str,
    m: &Manifests,
    o: &Observed,
    settings: &Settings,
) -> Option<OwnTeam> {
    let t = m
        .teams
        .iter()
        .find(|t| name_of(*t) == (ns.to_owned(), name.to_owned()))?;
    let id = t.team_id();
    let row = o.teams.get(&id).cloned().unwrap_or_else(|| TeamRow {
        team_id: id.clone(),
        ..TeamRow::default()
    });
    Some(OwnTeam {
        ours: team(t, o, settings).action != Action::Conflict,
        id,
        row,
        models: t.spec.models.clone(),
    })
}

fn member(u: &RouteroMember, m: &Manifests, o: &Observed, settings: &Settings) -> Change {
    let (ns, name) = name_of(u);
    let user_id = u.user_id();
    let owner = owner("RouteroMember", &ns, &name);
    let mut c = change("RouteroMember", &ns, &name, format!("user '{user_id}'"));
    let admin_ns = settings.admin_namespaces.iter().any(|a| a == &ns);
    if let Some(message) = role_refusal(u.spec.role, &ns, admin_ns) {
        return c.refuse("Forbidden", message);
    }
    let mut wanted = Vec::new();
    for t in &u.spec.teams {
        if let Some(message) = cross_namespace("RouteroTeam", &t.name, t.namespace.as_deref(), &ns)
        {
            return c.refuse("Forbidden", message);
        }
        match own_team(&t.name, &ns, m, o, settings) {
            Some(own) if own.ours => wanted.push(Membership {
                name: t.name.clone(),
                team_id: own.id,
                role: t.role,
                team: own.row,
            }),
            Some(own) => return c.refuse("Forbidden", team_not_ours(&own.id, &t.name)),
            None => {
                let message = format!("RouteroTeam '{}' does not exist or is not Ready", t.name);
                return c.refuse("TeamNotReady", message);
            }
        }
    }
    match o.users.get(&user_id) {
        None => {
            if user_id == DEFAULT_USER_ID {
                return c.refuse("Forbidden", reserved_user(&user_id));
            }
            c.action = Action::Create;
            c.field("role", Value::Null, json!(u.spec.role.as_str()));
            c.field("email", Value::Null, json!(u.spec.email));
            if let Some(b) = u.spec.max_budget {
                c.field("maxBudget", Value::Null, json!(b));
            }
            c.write("/user/new", None);
        }
        Some(user) => {
            let identity = o.admin_identities.contains(&user_id);
            if let Some(message) = protected_refusal(user, identity, admin_ns) {
                return c.refuse("Forbidden", message);
            }
            let standing = standing(u.spec.adopt, &ns, settings);
            let adopting = match claim(&owner, user.metadata.as_ref(), standing, &c.gateway) {
                Ok(adopting) => adopting,
                Err((reason, m)) => return c.refuse(reason, m),
            };
            if let Some((req, changed)) = user_update(u, &owner, user) {
                c.updated(
                    adopting,
                    &changed,
                    user.metadata.as_ref(),
                    req.metadata.as_ref(),
                    |f| match f {
                        "role" => (json!(user.user_role), json!(req.user_role)),
                        "email" => (json!(user.user_email), json!(req.user_email)),
                        _ => (json!(user.max_budget), json!(req.max_budget)),
                    },
                );
                c.write("/user/update", serde_json::to_value(&req).ok());
            }
        }
    }
    for (mship, write) in membership_changes(&user_id, &wanted) {
        let held = mship
            .team
            .members_with_roles
            .iter()
            .find(|r| r.user_id.as_deref() == Some(user_id.as_str()))
            .and_then(|r| r.role.clone());
        c.field(
            &format!("teams[{}].role", mship.name),
            json!(held),
            json!(team_role(mship.role)),
        );
        if write.join {
            c.write("/team/member_add", Some(write.request.add_body()));
        } else {
            c.write(
                "/team/member_update",
                serde_json::to_value(&write.request).ok(),
            );
        }
    }
    // Departures: a team of this namespace that lists the person, which their spec no longer names.
    for t in &m.teams {
        let (tns, tname) = name_of(t);
        let Some(row) = o.teams.get(&t.team_id()) else {
            continue;
        };
        let ours = owner.names(row.metadata.as_ref(), "RouteroTeam", &tname);
        let listed = row
            .members_with_roles
            .iter()
            .any(|r| r.user_id.as_deref() == Some(user_id.as_str()));
        if tns == ns && ours && listed && !u.spec.teams.iter().any(|x| x.name == tname) {
            c.field(
                &format!("teams[{tname}].role"),
                json!("member"),
                Value::Null,
            );
            c.write(
                "/team/member_delete",
                Some(json!({"team_id": row.team_id, "user_id": user_id})),
            );
        }
    }
    if c.action == Action::None && !c.fields.is_empty() {
        c.action = Action::Update;
    }
    c
}

fn key(k: &RouteroKey, m: &Manifests, o: &Observed, settings: &Settings) -> Change {
    let (ns, name) = name_of(k);
    let alias = k.alias();
    let owner = owner("RouteroKey", &ns, &name);
    let mut c = change("RouteroKey", &ns, &name, format!("key alias '{alias}'"));
    let refs = std::iter::once(("RouteroTeam", &k.spec.team_ref))
        .chain(k.spec.member_ref.iter().map(|r| ("RouteroMember", r)));
    for (kind, r) in refs {
        if let Some(message) = cross_namespace(kind, &r.name, r.namespace.as_deref(), &ns) {
            return c.refuse("Forbidden", message);
        }
    }
    if let Some(message) = alias_refusal(&alias, &ns) {
        return c.refuse("Forbidden", message);
    }
    let team_name = &k.spec.team_ref.name;
    let allowed = match own_team(team_name, &ns, m, o, settings) {
        Some(t) if t.ours => t.models,
        Some(t) => return c.refuse("Forbidden", key_team_not_ours(&t.id, team_name)),
        None => {
            let message = format!("RouteroTeam '{team_name}' does not exist in namespace '{ns}'");
            return c.refuse("TeamNotReady", message);
        }
    };
    if let Some(message) = models_refusal(&k.spec.models, allowed.as_deref(), team_name) {
        return c.refuse("ModelNotAllowed", message);
    }
    if let Some(mref) = &k.spec.member_ref
        && !m
            .members
            .iter()
            .any(|x| name_of(x) == (ns.clone(), mref.name.clone()))
    {
        return c.refuse(
            "MemberNotReady",
            format!(
                "RouteroMember '{}' does not exist in namespace '{ns}'",
                mref.name
            ),
        );
    }
    let next = crate::crd::key::next_alias(&alias);
    let in_grace = o
        .aliases
        .get(&next)
        .and_then(|rows| rows.iter().find(|r| owner.owns(r.metadata.as_ref(), false)));
    let held = o.aliases.get(&alias).and_then(|rows| rows.first());
    let (row, row_alias) = match (in_grace, held) {
        // A Recreate rotation in its grace period: the new key carries `<alias>.next` until the old one goes.
        (Some(r), _) => (r, next.as_str()),
        (None, Some(r)) => (r, alias.as_str()),
        (None, None) => {
            c.action = Action::Create;
            c.field("alias", Value::Null, json!(alias));
            c.field("team", Value::Null, json!(team_name));
            if !k.spec.models.is_empty() {
                c.field("models", Value::Null, json!(k.spec.models));
            }
            if let Some(b) = k.spec.max_budget {
                c.field("maxBudget", Value::Null, json!(b));
            }
            if let Some(d) = &k.spec.duration {
                c.field("duration", Value::Null, json!(d));
            }
            c.effects.push(format!(
                "a new key is issued into Secret '{}'",
                k.secret_name()
            ));
            c.write("/key/generate", None);
            return c;
        }
    };
    let hash = row.token.clone().unwrap_or_default();
    let id = &hash[..hash.len().min(12)];
    if !owner.owns(row.metadata.as_ref(), false) {
        return match owner.claim(
            row.metadata.as_ref(),
            standing(k.spec.adopt, &ns, settings),
            &format!("gateway key {id} (alias '{alias}')"),
        ) {
            Claim::Adopt => {
                c.action = Action::Adopt;
                c.effects.push(format!(
                    "key {id} is taken over and a new value is delivered into Secret '{}': regenerated in place where \
                     the gateway offers it, else a new key while the old value keeps working for {}",
                    k.secret_name(),
                    k.spec
                        .rotation
                        .as_ref()
                        .and_then(|r| r.grace_period.as_deref())
                        .unwrap_or("no grace period (rotation.gracePeriod)")
                ));
                c.write("/key/regenerate or /key/generate", None);
                c
            }
            Claim::Forbidden(msg) => c.refuse("Forbidden", msg),
            Claim::Conflict(_) if !k.spec.adopt => {
                c.refuse("Conflict", alias_taken(&alias, row.metadata.as_ref()))
            }
            Claim::Conflict(msg) => c.refuse("Conflict", msg),
            // Not reached: `owns` said no, and plan proves nothing by status.
            Claim::Ours => c,
        };
    }
    let Some((req, changed)) = key_update(&k.spec, &owner, &hash, row_alias, row) else {
        return c;
    };
    c.updated(
        false,
        &changed,
        row.metadata.as_ref(),
        req.metadata.as_ref(),
        |f| match f {
            "alias" => (json!(row.key_alias), json!(req.key_alias)),
            "models" => (json!(row.models), json!(req.models)),
            "maxBudget" => (json!(row.max_budget), json!(req.max_budget)),
            _ => (json!(row.budget_duration), json!(req.budget_duration)),
        },
    );
    c.write("/key/update", serde_json::to_value(&req).ok());
    c
}

/// With `--prune`: gateway objects owned by a resource of the manifests' namespaces that no manifest names.
fn prune(m: &Manifests, o: &Observed) -> Vec<Change> {
    let namespaces: BTreeSet<String> = m
        .teams
        .iter()
        .map(|t| name_of(t).0)
        .chain(m.members.iter().map(|u| name_of(u).0))
        .chain(m.keys.iter().map(|k| name_of(k).0))
        .collect();
    let named: BTreeSet<String> = m
        .teams
        .iter()
        .map(|t| ("RouteroTeam", name_of(t)))
        .chain(m.members.iter().map(|u| ("RouteroMember", name_of(u))))
        .chain(m.keys.iter().map(|k| ("RouteroKey", name_of(k))))
        .map(|(kind, (ns, name))| owner_id(kind, &ns, &name))
        .collect();
    // The owner `<kind>/<ns>/<name>` of an object that a namespace of the manifests owns and no manifest names.
    let gone = |kind: &str, md: Option<&Metadata>| -> Option<(String, String)> {
        let o = md?.get(OWNER_KEY)?.as_str()?;
        let mut parts = o.splitn(3, '/');
        let (k, ns, name) = (parts.next()?, parts.next()?, parts.next()?);
        (k == kind && namespaces.contains(ns) && !named.contains(o))
            .then(|| (ns.to_owned(), name.to_owned()))
    };
    let live = |k: &&KeyRow| k.usable();
    // A key whose own RouteroKey is pruned is revoked by that deletion: listed once, there.
    let pruned_keys: BTreeSet<&str> = o
        .all_keys
        .iter()
        .filter(live)
        .filter(|k| gone("RouteroKey", k.metadata.as_ref()).is_some())
        .filter_map(|k| k.token.as_deref())
        .collect();
    // A deleted team or user: each of its live keys revoked first (DESIGN §4), then the object itself.
    let holder = |kind: &str,
                  (ns, name): (String, String),
                  gateway: String,
                  label: String,
                  held: &dyn Fn(&KeyRow) -> bool,
                  delete: &str| {
        let keys: Vec<&KeyRow> = o.all_keys.iter().filter(live).filter(|k| held(k)).collect();
        let own = keys
            .iter()
            .filter(|k| !k.token.as_deref().is_some_and(|t| pruned_keys.contains(t)))
            .count();
        let mut c = change(kind, &ns, &name, gateway);
        c.action = Action::Delete;
        c.effects
            .push(format!("deleting {label} revokes {} key(s)", keys.len()));
        for _ in 0..own {
            c.write("/key/delete", None);
        }
        c.write(delete, None);
        c
    };
    let mut out = Vec::new();
    for t in &o.all_teams {
        if let Some(owner) = gone("RouteroTeam", t.metadata.as_ref()) {
            let gateway = format!("team '{}'", t.team_id);
            let label = format!("team {}", t.team_alias.as_deref().unwrap_or(&t.team_id));
            let held = |k: &KeyRow| k.team_id.as_deref() == Some(t.team_id.as_str());
            out.push(holder(
                "RouteroTeam",
                owner,
                gateway,
                label,
                &held,
                "/team/delete",
            ));
        }
    }
    for u in &o.all_users {
        if let Some(owner) = gone("RouteroMember", u.metadata.as_ref()) {
            let gateway = format!("user '{}'", u.user_id);
            let label = format!("user {} (and their access)", u.user_id);
            let held = |k: &KeyRow| k.user_id.as_deref() == Some(u.user_id.as_str());
            out.push(holder(
                "RouteroMember",
                owner,
                gateway,
                label,
                &held,
                "/user/delete",
            ));
        }
    }
    for k in o.all_keys.iter().filter(live) {
        if let Some((ns, name)) = gone("RouteroKey", k.metadata.as_ref()) {
            let alias = k.key_alias.clone().unwrap_or_default();
            let mut c = change("RouteroKey", &ns, &name, format!("key alias '{alias}'"));
            c.action = Action::Delete;
            c.effects.push(format!(
                "revokes key alias '{alias}' (its Secret is removed)"
            ));
            c.write("/key/delete", None);
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
