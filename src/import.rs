//! `routero-operator import`: brings a workspace built by hand on the gateway under management. It reads teams,
//! their members, users and keys, and writes RouteroTeam, RouteroMember and RouteroKey manifests holding only what
//! the gateway really holds (anything unset stays unmanaged), with ids kept exactly. It marks each imported gateway
//! object for the target namespace, as an admin: teams and users get `routero.ai/adoptable-by: <namespace>` and the
//! owner marker of the very resource written for them, so applying the manifests adopts them with zero gateway
//! writes; keys get `routero.ai/adoptable-by` only, because a key's value cannot be read back: the imported
//! RouteroKey (`spec.adopt: true`) takes the key over by its alias and delivers a new value into its Secret.
//!
//! The conversion (`convert`) is pure; reading (`observe`) and marking (`mark`) are the only I/O.
use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use serde_json::Value;

use crate::controller::key::alias_refusal;
use crate::controller::member::DEFAULT_USER_ID;
use crate::controller::ownership::{ADOPTABLE_BY_KEY, OWNER_KEY, metadata_update, owner_id};
use crate::crd::common::{BUDGET_DURATION_PATTERN, DeletionPolicy, ID_PATTERN, LocalRef};
use crate::crd::key::{ALIAS_PATTERN, KeySecret, Rotation, RotationStrategy};
use crate::crd::member::{EMAIL_PATTERN, MemberRole, MemberTeam, TeamRole};
use crate::crd::{
    RouteroKey, RouteroKeySpec, RouteroMember, RouteroMemberSpec, RouteroTeam, RouteroTeamSpec,
};
use crate::gateway::types::{KeyRow, KeyUpdate, Metadata, TeamRow, TeamWrite, UserRow, UserUpdate};
use crate::gateway::{Gateway, GatewayError};

/// What to import, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The namespace the manifests are for, and that the gateway objects are marked adoptable by.
    pub namespace: String,
    /// Gateway team ids to import (with their members and keys).
    pub teams: Vec<String>,
    /// Gateway user ids to import besides the teams' members (people in no team, such as auditors).
    pub users: Vec<String>,
    /// Every team, every user (also those in no team) and every key.
    pub all: bool,
    /// What becomes of keys.
    pub keys: KeyImport,
    /// `rotation.gracePeriod` of imported keys: how long the old value keeps working after a Recreate takeover.
    pub grace_period: String,
    /// Import users holding admin roles (only for an admin namespace of the operator, where they are honoured).
    pub admin_roles: bool,
}

/// What `import` does with keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyImport {
    /// A RouteroKey with `adopt: true` for each: applying it delivers a new value and takes the key over.
    Adopt,
    /// No RouteroKeys: the keys are left alone (listed on stderr).
    Skip,
}

/// The gateway as read: every team, user and key that may be in scope.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub teams: Vec<TeamRow>,
    pub users: Vec<UserRow>,
    pub keys: Vec<KeyRow>,
    /// The gateway's own admin identities (the master key's and the admin key's user): never imported.
    pub admin_identities: BTreeSet<String>,
}

/// Something the import did not express, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

/// A gateway object's metadata as the import marks it (the merged map: the gateway replaces metadata wholesale).
#[derive(Clone, Debug, PartialEq)]
pub enum Mark {
    Team { team_id: String, metadata: Metadata },
    User { user_id: String, metadata: Metadata },
    Key { hash: String, metadata: Metadata },
}

/// The manifests, what was left out, and the marks to place.
#[derive(Clone, Debug, Default)]
pub struct Import {
    pub teams: Vec<RouteroTeam>,
    pub members: Vec<RouteroMember>,
    pub keys: Vec<RouteroKey>,
    pub skipped: Vec<Skipped>,
    /// Normalisations worth telling (a key's duration worked out from its expiry, a member list cleaned).
    pub notes: Vec<String>,
    pub marks: Vec<Mark>,
}

/// Reads what the import needs: the chosen teams (or all), the users (their members, or all), and the keys.
pub async fn observe(gw: &Gateway, opts: &Options) -> Result<Observed, GatewayError> {
    let teams = if opts.all {
        gw.every_team().await?
    } else {
        let mut teams = Vec::new();
        for id in &opts.teams {
            match gw.team_info(id).await? {
                Some(t) => teams.push(t),
                None => {
                    return Err(GatewayError::Api {
                        status: 404,
                        message: format!("no gateway team with id '{id}'"),
                        retry_after: None,
                    });
                }
            }
        }
        teams
    };
    let users = if opts.all {
        gw.every_user().await?
    } else {
        let mut ids: BTreeSet<&str> = teams
            .iter()
            .flat_map(|t| &t.members_with_roles)
            .filter_map(|m| m.user_id.as_deref())
            .filter(|id| *id != DEFAULT_USER_ID)
            .collect();
        ids.extend(opts.users.iter().map(String::as_str));
        let mut users = Vec::new();
        for id in ids {
            users.extend(gw.user_info(id).await?);
        }
        users
    };
    let keys = gw.every_key().await?;
    let mut admin_identities = BTreeSet::from([DEFAULT_USER_ID.to_owned()]);
    admin_identities.extend(gw.admin_user().await?);
    Ok(Observed {
        teams,
        users,
        keys,
        admin_identities,
    })
}

/// The manifests for `observed`, for `opts.namespace`.
pub fn convert(observed: &Observed, opts: &Options) -> Import {
    let ns = opts.namespace.as_str();
    let mut out = Import::default();
    let mut names = Names::default();
    let in_scope = |t: &TeamRow| opts.all || opts.teams.contains(&t.team_id);

    // Teams.
    let mut team_names: BTreeMap<String, String> = BTreeMap::new();
    for row in observed.teams.iter().filter(|t| in_scope(t)) {
        let what = format!("team '{}'", row.team_id);
        if !valid(ID_PATTERN, &row.team_id) {
            out.skip(&what, "its id does not fit RouteroTeam spec.teamId");
            continue;
        }
        let name = match names.claim(
            "RouteroTeam",
            ns,
            row.metadata.as_ref(),
            row.team_alias.as_deref().unwrap_or(&row.team_id),
        ) {
            Ok(name) => name,
            Err(why) => {
                out.skip(&what, &why);
                continue;
            }
        };
        let budget_duration = row.budget_duration.clone().filter(|d| {
            let ok = valid(BUDGET_DURATION_PATTERN, d);
            if !ok {
                out.skip(
                    &format!("{what} budget_duration '{d}'"),
                    "not a budget window a RouteroTeam takes (h, d, w, mo): left unmanaged",
                );
            }
            ok
        });
        let spec = RouteroTeamSpec {
            team_id: Some(row.team_id.clone()),
            alias: row.team_alias.clone().filter(|a| !a.is_empty()),
            max_budget: row.max_budget,
            budget_duration,
            // An empty list on the gateway is its default ("any model"): left unmanaged rather than written.
            models: (!row.models.is_empty()).then(|| row.models.clone()),
            tpm_limit: row.tpm_limit,
            rpm_limit: row.rpm_limit,
            metadata: BTreeMap::new(),
            deletion_policy: DeletionPolicy::Delete,
            adopt: true,
        };
        if let Some(metadata) = marked(row.metadata.as_ref(), ns, Some(("RouteroTeam", &name))) {
            out.marks.push(Mark::Team {
                team_id: row.team_id.clone(),
                metadata,
            });
        }
        team_names.insert(row.team_id.clone(), name.clone());
        out.teams.push(RouteroTeam {
            metadata: meta(&name, ns),
            spec,
            status: None,
        });
    }

    // Users: the members of the imported teams, or every user with --all.
    let wanted_users: BTreeSet<&str> = observed
        .teams
        .iter()
        .filter(|t| team_names.contains_key(&t.team_id))
        .flat_map(|t| &t.members_with_roles)
        .filter_map(|m| m.user_id.as_deref())
        .collect();
    let mut member_names: BTreeMap<String, String> = BTreeMap::new();
    for user in &observed.users {
        if !opts.all
            && !wanted_users.contains(user.user_id.as_str())
            && !opts.users.contains(&user.user_id)
        {
            continue;
        }
        let what = format!("user '{}'", user.user_id);
        if observed.admin_identities.contains(&user.user_id) {
            // The master key joins every team it creates: that is the gateway's doing, not a membership to manage.
            continue;
        }
        let Some(role) = role(user.user_role.as_deref()) else {
            out.skip(
                &what,
                &format!(
                    "role {:?} is not one a RouteroMember takes",
                    user.user_role.as_deref().unwrap_or("none")
                ),
            );
            continue;
        };
        if role.is_admin() && !opts.admin_roles {
            out.skip(
                &what,
                &format!(
                    "holds the admin role {}, honoured only in the operator's admin namespaces (import with \
                     --admin-roles into one)",
                    role.as_str()
                ),
            );
            continue;
        }
        let Some(email) = user.user_email.clone().filter(|e| valid(EMAIL_PATTERN, e)) else {
            out.skip(&what, "has no e-mail address, which a RouteroMember needs");
            continue;
        };
        if !valid(ID_PATTERN, &user.user_id) {
            out.skip(&what, "its id does not fit RouteroMember spec.userId");
            continue;
        }
        let local = email.split('@').next().unwrap_or(&email);
        let name = match names.claim("RouteroMember", ns, user.metadata.as_ref(), local) {
            Ok(name) => name,
            Err(why) => {
                out.skip(&what, &why);
                continue;
            }
        };
        let teams = observed
            .teams
            .iter()
            .filter_map(|t| {
                let name = team_names.get(&t.team_id)?;
                let m = t
                    .members_with_roles
                    .iter()
                    .find(|m| m.user_id.as_deref() == Some(user.user_id.as_str()))?;
                let role = match m.role.as_deref() {
                    Some("admin") => TeamRole::Admin,
                    _ => TeamRole::User,
                };
                Some(MemberTeam {
                    name: name.clone(),
                    namespace: None,
                    role,
                })
            })
            .collect();
        if let Some(metadata) = marked(user.metadata.as_ref(), ns, Some(("RouteroMember", &name))) {
            out.marks.push(Mark::User {
                user_id: user.user_id.clone(),
                metadata,
            });
        }
        member_names.insert(user.user_id.clone(), name.clone());
        out.members.push(RouteroMember {
            metadata: meta(&name, ns),
            spec: RouteroMemberSpec {
                email,
                user_id: Some(user.user_id.clone()),
                role,
                teams,
                max_budget: user.max_budget,
                deletion_policy: DeletionPolicy::Delete,
                adopt: true,
            },
            status: None,
        });
    }

    // Keys of the imported teams (with --all: every key, so keys with no team are reported).
    for row in &observed.keys {
        let in_team = row.team_id.as_ref().and_then(|t| team_names.get(t));
        if in_team.is_none() && !(opts.all && row.team_id.is_none()) {
            continue;
        }
        let what = format!(
            "key {}{}",
            row.token.as_deref().map_or("?", |t| &t[..t.len().min(12)]),
            row.key_alias
                .as_deref()
                .map(|a| format!(" (alias '{a}')"))
                .unwrap_or_default()
        );
        let Some(team) = in_team else {
            out.skip(
                &what,
                "belongs to no team; a RouteroKey is issued into a RouteroTeam",
            );
            continue;
        };
        if let Some(why) = key_refusal(row, ns, &member_names, observed) {
            out.skip(&what, &why);
            continue;
        }
        if opts.keys == KeyImport::Skip {
            out.skip(&what, "left alone (--keys skip)");
            continue;
        }
        let (Some(token), Some(alias)) = (row.token.clone(), row.key_alias.clone()) else {
            continue;
        };
        let name = match names.claim("RouteroKey", ns, row.metadata.as_ref(), &alias) {
            Ok(name) => name,
            Err(why) => {
                out.skip(&what, &why);
                continue;
            }
        };
        let duration = row.expires.as_deref().and_then(|e| {
            let d = lifetime(row.created_at.as_deref()?, e);
            match &d {
                Some(d) => out.notes.push(format!(
                    "{what}: duration {d} worked out from its created_at and expires"
                )),
                None => out.skip(
                    &format!("{what} expiry"),
                    "its lifetime is not a whole number of days or hours: the new value gets no duration",
                ),
            }
            d
        });
        let budget_duration = row
            .budget_duration
            .clone()
            .filter(|d| valid(BUDGET_DURATION_PATTERN, d));
        if let Some(metadata) = marked(row.metadata.as_ref(), ns, None) {
            out.marks.push(Mark::Key {
                hash: token,
                metadata,
            });
        }
        out.keys.push(RouteroKey {
            metadata: meta(&name, ns),
            spec: RouteroKeySpec {
                team_ref: LocalRef {
                    name: team.clone(),
                    namespace: None,
                },
                member_ref: row
                    .user_id
                    .as_ref()
                    .and_then(|u| member_names.get(u))
                    .map(|m| LocalRef {
                        name: m.clone(),
                        namespace: None,
                    }),
                alias: Some(alias),
                duration,
                models: row.models.clone(),
                max_budget: row.max_budget,
                budget_duration,
                secret: KeySecret::default(),
                rotation: Some(Rotation {
                    every: None,
                    strategy: RotationStrategy::Auto,
                    grace_period: Some(opts.grace_period.clone()),
                }),
                deletion_policy: DeletionPolicy::Delete,
                adopt: true,
            },
            status: None,
        });
    }
    out
}

/// Why a key of an imported team cannot be taken over by a RouteroKey in `ns`, if it cannot.
fn key_refusal(
    row: &KeyRow,
    ns: &str,
    members: &BTreeMap<String, String>,
    observed: &Observed,
) -> Option<String> {
    let alias = row.key_alias.as_deref();
    if row.token.is_none() {
        return Some("the gateway listed it without its hash".into());
    }
    let Some(alias) = alias else {
        return Some("has no alias: a RouteroKey takes over a key by its alias".into());
    };
    if !valid(ALIAS_PATTERN, alias) {
        return Some("its alias does not fit RouteroKey spec.alias".into());
    }
    if let Some(refusal) = alias_refusal(alias, ns) {
        return Some(refusal);
    }
    if !row.usable() {
        return Some("is blocked, expired or revoked on the gateway".into());
    }
    if let Some(user) = &row.user_id
        && !members.contains_key(user)
    {
        return Some(if observed.admin_identities.contains(user) {
            format!("belongs to the gateway's admin identity '{user}', which is never imported")
        } else {
            format!("belongs to user '{user}', who is not imported")
        });
    }
    None
}

/// A key's lifetime as a `duration` (`90d`, `12h`), when expiry minus creation is within a minute of one.
fn lifetime(created: &str, expires: &str) -> Option<String> {
    let created: jiff::Timestamp = created.parse().ok()?;
    let expires: jiff::Timestamp = expires.parse().ok()?;
    let secs = expires.duration_since(created).as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600)] {
        let n = (secs + size / 2) / size;
        if n > 0 && (secs - n * size).abs() <= 60 {
            return Some(format!("{n}{unit}"));
        }
    }
    None
}

/// The gateway's role name as a RouteroMember's (the CRD's enum spells them as the gateway does).
fn role(role: Option<&str>) -> Option<MemberRole> {
    serde_json::from_value(Value::String(role?.to_owned())).ok()
}

/// `existing` with the admin's adoption marker for `ns` and, for teams and users, the owner marker of the resource
/// written for it; `None` when it carries them already (a re-import writes nothing).
fn marked(existing: Option<&Metadata>, ns: &str, owner: Option<(&str, &str)>) -> Option<Metadata> {
    let mut wanted = Metadata::new();
    wanted.insert(ADOPTABLE_BY_KEY.into(), Value::String(ns.into()));
    if let Some((kind, name)) = owner {
        wanted.insert(OWNER_KEY.into(), Value::String(owner_id(kind, ns, name)));
    }
    metadata_update(existing, wanted)
}

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..ObjectMeta::default()
    }
}

fn valid(pattern: &str, value: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|re| re.is_match(value))
}

/// Resource names handed out so far, per kind.
#[derive(Default)]
struct Names(BTreeMap<&'static str, BTreeSet<String>>);

impl Names {
    /// A free name of `kind` for a gateway object: the name its owner marker gives, when it names a resource of
    /// `kind` in `ns` (a re-import keeps its names), else one made from `base`. An object managed from elsewhere is
    /// refused.
    fn claim(
        &mut self,
        kind: &'static str,
        ns: &str,
        metadata: Option<&Metadata>,
        base: &str,
    ) -> Result<String, String> {
        let owner = metadata
            .and_then(|m| m.get(OWNER_KEY))
            .and_then(Value::as_str);
        let taken = self.0.entry(kind).or_default();
        let name = match owner {
            Some(o) => {
                let prefix = format!("{kind}/{ns}/");
                match o.strip_prefix(&prefix) {
                    Some(name) if !taken.contains(name) => name.to_owned(),
                    _ => return Err("is already managed by a resource elsewhere".into()),
                }
            }
            None => {
                let stem = sanitize(base);
                (1..)
                    .map(|n| {
                        if n == 1 {
                            stem.clone()
                        } else {
                            format!("{}-{n}", &stem[..stem.len().min(59)])
                        }
                    })
                    .find(|n| !taken.contains(n))
                    .unwrap_or(stem)
            }
        };
        taken.insert(name.clone());
        Ok(name)
    }
}

/// A resource name (an RFC 1123 label, which also suits the Secret named after a key) made from an alias, an
/// e-mail's local part or an id: lower case, runs of anything else as one `-`, at most 63 characters.
pub fn sanitize(base: &str) -> String {
    let mut out = String::new();
    for c in base.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "imported".into()
    } else {
        out
    }
}

impl Import {
    fn skip(&mut self, what: &str, why: &str) {
        self.skipped.push(Skipped {
            what: what.to_owned(),
            why: why.to_owned(),
        });
    }

    /// The manifests as one multi-document YAML stream: teams, then members, then keys.
    pub fn yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut docs = Vec::new();
        for t in &self.teams {
            docs.push(serde_yaml::to_string(t)?);
        }
        for m in &self.members {
            docs.push(serde_yaml::to_string(m)?);
        }
        for k in &self.keys {
            docs.push(serde_yaml::to_string(k)?);
        }
        let mut yaml = docs.join("---\n");
        if !yaml.ends_with('\n') {
            yaml.push('\n');
        }
        Ok(yaml)
    }
}

/// Places the marks the gateway does not carry yet (`convert` lists only those). Returns how many were written.
pub async fn mark(gw: &Gateway, import: &Import, actor: &str) -> Result<usize, GatewayError> {
    let mut written = 0;
    for m in &import.marks {
        let wanted = match m {
            Mark::Team { metadata, .. }
            | Mark::User { metadata, .. }
            | Mark::Key { metadata, .. } => metadata,
        };
        let metadata = Some(wanted.clone());
        match m {
            Mark::Team { team_id, .. } => {
                let req = TeamWrite {
                    team_id: team_id.clone(),
                    metadata,
                    ..TeamWrite::default()
                };
                gw.team_update(&req, actor).await?;
            }
            Mark::User { user_id, .. } => {
                let req = UserUpdate {
                    user_id: user_id.clone(),
                    metadata,
                    ..UserUpdate::default()
                };
                gw.user_update(&req, actor).await?;
            }
            Mark::Key { hash, .. } => {
                let req = KeyUpdate {
                    key: hash.clone(),
                    metadata,
                    ..KeyUpdate::default()
                };
                gw.key_update(&req, actor).await?;
            }
        }
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::types::TeamMemberRow;

    fn opts(all: bool) -> Options {
        Options {
            namespace: "data-science".into(),
            teams: vec!["7d2c9a8e-1111-4c4c-8d8d-000000000001".into()],
            users: vec![],
            all,
            keys: KeyImport::Adopt,
            grace_period: "24h".into(),
            admin_roles: false,
        }
    }

    fn member(user_id: &str, role: &str) -> TeamMemberRow {
        TeamMemberRow {
            user_id: Some(user_id.into()),
            user_email: None,
            role: Some(role.into()),
        }
    }

    /// The seed guide's workspace as LiteLLM 1.108.7 answers for it: a gateway-made team id, the master key's
    /// identity listed as a team admin, floats for budgets, an empty metadata map.
    fn seed() -> Observed {
        let team = TeamRow {
            team_id: "7d2c9a8e-1111-4c4c-8d8d-000000000001".into(),
            team_alias: Some("Data Science".into()),
            models: vec![],
            max_budget: Some(2000.0),
            budget_duration: Some("1mo".into()),
            metadata: Some(Metadata::new()),
            members_with_roles: vec![member(DEFAULT_USER_ID, "admin"), member("u-lead", "user")],
            ..TeamRow::default()
        };
        let other = TeamRow {
            team_id: "finance-id".into(),
            team_alias: Some("finance".into()),
            models: vec!["eu/balanced".into()],
            max_budget: Some(800.0),
            budget_duration: Some("1mo".into()),
            ..TeamRow::default()
        };
        let user = |id: &str, email: Option<&str>, role: &str| UserRow {
            user_id: id.into(),
            user_email: email.map(str::to_owned),
            user_role: Some(role.into()),
            ..UserRow::default()
        };
        let key =
            |token: &str, alias: Option<&str>, team: Option<&str>, user: Option<&str>| KeyRow {
                token: Some(token.into()),
                key_alias: alias.map(str::to_owned),
                team_id: team.map(str::to_owned),
                user_id: user.map(str::to_owned),
                expires: Some("2099-03-03T15:38:42.817000Z".into()),
                created_at: Some("2098-12-03T15:38:42.820000Z".into()),
                ..KeyRow::default()
            };
        Observed {
            teams: vec![team, other],
            users: vec![
                user("u-lead", Some("data-lead@company.com"), "internal_user"),
                user(
                    "u-auditor",
                    Some("controller@company.com"),
                    "internal_user_viewer",
                ),
                user("u-admin", Some("root@company.com"), "proxy_admin"),
                user(DEFAULT_USER_ID, None, "proxy_admin"),
            ],
            keys: vec![
                key(
                    "a1",
                    Some("ds-prod"),
                    Some("7d2c9a8e-1111-4c4c-8d8d-000000000001"),
                    None,
                ),
                key(
                    "a2",
                    None,
                    Some("7d2c9a8e-1111-4c4c-8d8d-000000000001"),
                    None,
                ),
                key(
                    "a3",
                    Some("lead-laptop"),
                    Some("7d2c9a8e-1111-4c4c-8d8d-000000000001"),
                    Some("u-lead"),
                ),
                key("a4", Some("orphan"), None, None),
                key(
                    "a5",
                    Some("elsewhere"),
                    Some("7d2c9a8e-1111-4c4c-8d8d-000000000001"),
                    Some("u-gone"),
                ),
                key(
                    "a6",
                    Some("other.ns-key"),
                    Some("7d2c9a8e-1111-4c4c-8d8d-000000000001"),
                    None,
                ),
            ],
            admin_identities: BTreeSet::from([DEFAULT_USER_ID.to_owned()]),
        }
    }

    #[test]
    fn a_chosen_team_brings_its_members_and_keys_with_ids_kept() {
        let import = convert(&seed(), &opts(false));
        assert_eq!(import.teams.len(), 1);
        let team = &import.teams[0];
        assert_eq!(team.metadata.name.as_deref(), Some("data-science"));
        assert_eq!(
            team.spec.team_id.as_deref(),
            Some("7d2c9a8e-1111-4c4c-8d8d-000000000001")
        );
        assert_eq!(team.spec.max_budget, Some(2000.0));
        assert_eq!(team.spec.models, None, "an empty allowlist stays unmanaged");
        // The master key's own membership is the gateway's doing: no member for it.
        let members: Vec<_> = import
            .members
            .iter()
            .map(|m| m.spec.email.as_str())
            .collect();
        assert_eq!(members, ["data-lead@company.com"]);
        assert_eq!(import.members[0].spec.user_id.as_deref(), Some("u-lead"));
        assert_eq!(import.members[0].spec.teams[0].name, "data-science");
        let keys: Vec<_> = import
            .keys
            .iter()
            .map(|k| k.spec.alias.as_deref())
            .collect();
        assert_eq!(keys, [Some("ds-prod"), Some("lead-laptop")]);
        let ds = &import.keys[0];
        assert_eq!(ds.spec.duration.as_deref(), Some("90d"));
        assert!(ds.spec.adopt);
        assert_eq!(ds.spec.team_ref.name, "data-science");
        assert_eq!(
            import.keys[1]
                .spec
                .member_ref
                .as_ref()
                .map(|m| m.name.as_str()),
            Some("data-lead")
        );
        // Nothing silently dropped: the keys it cannot express are listed with the reason.
        let skipped: Vec<_> = import.skipped.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "key a2",
                "key a5 (alias 'elsewhere')",
                "key a6 (alias 'other.ns-key')"
            ]
        );
        assert!(import.skipped[1].why.contains("not imported"));
    }

    #[test]
    fn all_reports_keys_without_a_team_and_admins() {
        let import = convert(&seed(), &opts(true));
        assert_eq!(import.teams.len(), 2);
        let emails: Vec<_> = import
            .members
            .iter()
            .map(|m| m.spec.email.as_str())
            .collect();
        assert_eq!(emails, ["data-lead@company.com", "controller@company.com"]);
        let why = |what: &str| {
            import
                .skipped
                .iter()
                .find(|s| s.what == what)
                .map(|s| s.why.clone())
                .unwrap_or_default()
        };
        assert!(why("user 'u-admin'").contains("--admin-roles"));
        assert!(why("key a4 (alias 'orphan')").contains("no team"));
        let with_admins = convert(
            &seed(),
            &Options {
                admin_roles: true,
                ..opts(true)
            },
        );
        assert_eq!(with_admins.members.len(), 3);
    }

    #[test]
    fn marks_name_the_resources_written_and_keep_what_was_there() {
        let mut observed = seed();
        observed.teams[0]
            .metadata
            .get_or_insert_default()
            .insert("cost-center".into(), "42".into());
        let import = convert(&observed, &opts(false));
        let Mark::Team { metadata, .. } = &import.marks[0] else {
            panic!("{:?}", import.marks[0]);
        };
        assert_eq!(metadata["cost-center"], "42");
        assert_eq!(metadata[ADOPTABLE_BY_KEY], "data-science");
        assert_eq!(metadata[OWNER_KEY], "RouteroTeam/data-science/data-science");
        let key = import
            .marks
            .iter()
            .find_map(|m| match m {
                Mark::Key { hash, metadata } if hash == "a1" => Some(metadata),
                _ => None,
            })
            .expect("ds-prod is marked");
        assert_eq!(key[ADOPTABLE_BY_KEY], "data-science");
        assert!(
            !key.contains_key(OWNER_KEY),
            "a key is taken over by its RouteroKey, so only marked adoptable"
        );
    }

    #[test]
    fn a_reimport_keeps_names_and_refuses_what_is_managed_elsewhere() {
        let mut observed = seed();
        let mut mine = Metadata::new();
        mine.insert(OWNER_KEY.into(), "RouteroTeam/data-science/ds".into());
        observed.teams[0].metadata = Some(mine);
        let mut theirs = Metadata::new();
        theirs.insert(OWNER_KEY.into(), "RouteroTeam/finance/finance".into());
        observed.teams[1].metadata = Some(theirs);
        let import = convert(&observed, &opts(true));
        let names: Vec<_> = import
            .teams
            .iter()
            .map(|t| t.metadata.name.as_deref())
            .collect();
        assert_eq!(names, [Some("ds")]);
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s.what == "team 'finance-id'" && s.why.contains("elsewhere"))
        );
        assert_eq!(
            import.members[0].spec.teams[0].name, "ds",
            "memberships follow the team's kept name"
        );
    }

    #[test]
    fn names_are_sanitized_and_unique() {
        assert_eq!(sanitize("Data Science"), "data-science");
        assert_eq!(sanitize("--eu/balanced__"), "eu-balanced");
        assert_eq!(sanitize("ÄÖ"), "imported");
        assert_eq!(sanitize(&"x".repeat(80)).len(), 63);
        let mut names = Names::default();
        let a = names.claim("RouteroKey", "ns", None, "ds prod");
        let b = names.claim("RouteroKey", "ns", None, "ds.prod");
        assert_eq!(
            (a.as_deref(), b.as_deref()),
            (Ok("ds-prod"), Ok("ds-prod-2"))
        );
    }

    #[test]
    fn lifetimes_become_durations_only_when_whole() {
        let created = "2026-12-03T15:38:42.820000Z";
        assert_eq!(
            lifetime(created, "2027-03-03T15:38:42.817000Z").as_deref(),
            Some("90d")
        );
        assert_eq!(
            lifetime(created, "2026-12-04T03:38:42.820000Z").as_deref(),
            Some("12h")
        );
        assert_eq!(lifetime(created, "2026-12-04T03:55:00Z"), None);
    }
}
