//! The RouteroMember controller: a person on the gateway, their role and team memberships, and deprovisioning.
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::key_value::KeyValue;
use super::ownership::{
    Claim, Owner, Standing, budget_update, metadata_update, owner_namespace, unmarked,
};
use super::provenance;
use super::status::{Outcome, apply_status};
use crate::crd::common::{cross_namespace, is_ready, ready_because};
use crate::crd::member::{MemberRole, TeamRole};
use crate::crd::{RouteroMember, RouteroMemberStatus, RouteroTeam};
use crate::error::{Error, Result};
use crate::gateway::GatewayError;
use crate::gateway::client::KeyHolder;
use crate::gateway::types::{Metadata, TeamMember, TeamRow, UserNew, UserRow, UserUpdate};

pub async fn reconcile(member: Arc<RouteroMember>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<RouteroMember> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let ctx: &Context = &ctx;
    super::finalized(
        member.clone(),
        ctx,
        |m| async move { apply(&m, ctx).await },
        |m| async move { cleanup(&m, ctx).await },
        |outcome| async move { report(&api, &member, ctx, None, None, outcome).await },
    )
    .await
}

/// A desired membership: the RouteroTeam, its gateway team id (from its spec) and the gateway team.
pub struct Membership {
    pub name: String,
    pub team_id: String,
    pub role: TeamRole,
    pub team: TeamRow,
}

/// Checks tenancy and dependencies before any gateway write, so a refused member is never half-applied. A team's id
/// comes from its spec, never its status (which a tenant may write), and the gateway team must carry that very
/// RouteroTeam's owner marker before the person joins it.
async fn desired_memberships(
    member: &RouteroMember,
    owner: &Owner,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Vec<Membership>, Outcome>> {
    if let Some(message) = role_refusal(member.spec.role, ns, ctx.is_admin_namespace(ns)) {
        return Ok(Err(Outcome::blocked("Forbidden", message)));
    }
    for t in &member.spec.teams {
        if let Some(message) = cross_namespace("RouteroTeam", &t.name, t.namespace.as_deref(), ns) {
            return Ok(Err(Outcome::blocked("Forbidden", message)));
        }
    }
    let teams: Api<RouteroTeam> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = Vec::new();
    for t in &member.spec.teams {
        let team = teams.get_opt(&t.name).await?;
        // Status readiness is only a hint to wait; the gateway team's marker is what decides.
        let Some(team) = team.filter(|team| {
            team.status
                .as_ref()
                .is_some_and(|s| is_ready(&s.conditions, team.metadata.generation))
        }) else {
            return Ok(Err(Outcome::blocked(
                "TeamNotReady",
                format!("RouteroTeam '{}' does not exist or is not Ready", t.name),
            )));
        };
        let team_id = team.team_id();
        match ctx.gateway.team_info(&team_id).await? {
            Some(row) if owner.names(row.metadata.as_ref(), "RouteroTeam", &t.name) => {
                out.push(Membership {
                    name: t.name.clone(),
                    team_id,
                    role: t.role,
                    team: row,
                })
            }
            Some(_) => {
                let message = team_not_ours(&team_id, &t.name);
                return Ok(Err(Outcome::blocked("Forbidden", message)));
            }
            None => {
                return Ok(Err(Outcome::blocked(
                    "TeamNotReady",
                    format!("RouteroTeam '{}' has no gateway team yet", t.name),
                )));
            }
        }
    }
    Ok(Ok(out))
}

/// Why a tenant resource may not touch this existing gateway user, whoever's marker it carries: an admin's user is
/// managed only from the admin namespaces, and the gateway's own admin identities are never managed at all.
async fn protected_user(
    ctx: &Context,
    ns: &str,
    user: &UserRow,
) -> std::result::Result<Option<String>, GatewayError> {
    let identity = is_gateway_admin_identity(ctx, &user.user_id).await?;
    Ok(protected_refusal(
        user,
        identity,
        ctx.is_admin_namespace(ns),
    ))
}

/// `protected_user`'s rule, given whether the user is one of the gateway's admin identities and whether the
/// resource lives in an admin namespace. Shared with `plan`.
pub fn protected_refusal(user: &UserRow, admin_identity: bool, admin_ns: bool) -> Option<String> {
    if admin_identity {
        return Some(format!(
            "gateway user '{}' is the gateway's own admin identity and is never managed by a RouteroMember",
            user.user_id
        ));
    }
    let admin_role = matches!(
        user.user_role.as_deref(),
        Some("proxy_admin" | "proxy_admin_viewer")
    );
    (admin_role && !admin_ns).then(|| {
        format!(
            "gateway user '{}' holds an admin role, which is managed only from the operator's admin namespaces",
            user.user_id
        )
    })
}

/// Admin roles are honoured only in the admin namespaces (DESIGN §4): the refusal for any other namespace.
pub fn role_refusal(role: MemberRole, ns: &str, admin_ns: bool) -> Option<String> {
    (role.is_admin() && !admin_ns).then(|| {
        format!(
            "role {} is honoured only in the operator's admin namespaces; namespace '{ns}' is not one of them",
            role.as_str(),
        )
    })
}

/// A membership refused because the gateway team is not RouteroTeam `name`'s own.
pub fn team_not_ours(team_id: &str, name: &str) -> String {
    format!(
        "gateway team '{team_id}' is not managed by RouteroTeam '{name}', so nobody joins it from here"
    )
}

/// A RouteroMember naming the master key's identity, which no resource may create or manage.
pub fn reserved_user(user_id: &str) -> String {
    format!("gateway user '{user_id}' is reserved for the gateway's master key")
}

/// `default_user_id` (the master key's identity) and the user the operator's admin key belongs to.
async fn is_gateway_admin_identity(
    ctx: &Context,
    user_id: &str,
) -> std::result::Result<bool, GatewayError> {
    if user_id == DEFAULT_USER_ID {
        return Ok(true);
    }
    Ok(ctx.gateway.admin_user().await?.as_deref() == Some(user_id))
}

/// The identity the gateway's master key acts as.
pub const DEFAULT_USER_ID: &str = "default_user_id";

async fn apply(member: &RouteroMember, ctx: &Context) -> Result<Action> {
    let ns = member.namespace().unwrap_or_default();
    let api: Api<RouteroMember> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner::of(member)?;
    let actor = owner.actor();
    let user_id = member.user_id();
    let gw = &ctx.gateway;

    let wanted = match desired_memberships(member, &owner, ctx, &ns).await? {
        Ok(w) => w,
        Err(outcome) => {
            let announce = outcome.reason == "Forbidden";
            return Ok(refuse(&api, member, ctx, outcome, announce).await);
        }
    };

    let user = match gw.user_info(&user_id).await? {
        None => {
            if user_id == DEFAULT_USER_ID {
                let outcome = Outcome::blocked("Forbidden", reserved_user(&user_id));
                return Ok(refuse(&api, member, ctx, outcome, true).await);
            }
            let req = UserNew {
                user_id: user_id.clone(),
                user_email: member.spec.email.clone(),
                user_role: member.spec.role.as_str().into(),
                max_budget: member.spec.max_budget,
                metadata: owner.stamp(Metadata::new()),
                auto_create_key: false,
            };
            match gw.user_new(&req, &actor).await {
                Ok(stray) => {
                    // The gateway may mint a key nobody holds despite auto_create_key:false: delete it at once.
                    if let Some(value) = stray.and_then(|k| {
                        KeyValue::from_bytes(secrecy::ExposeSecret::expose_secret(&k).as_bytes())
                    }) {
                        gw.key_delete(&value.hash(), &actor).await?;
                    }
                }
                Err(GatewayError::Api {
                    status: 409,
                    message,
                    ..
                }) => {
                    let message = format!("gateway user '{user_id}' cannot be created: {message}");
                    let outcome = Outcome::blocked("Conflict", message);
                    return Ok(refuse(&api, member, ctx, outcome, true).await);
                }
                Err(e) => return Err(e.into()),
            }
            ctx.event(
                member,
                false,
                "Created",
                format!(
                    "created gateway user '{user_id}' with role {}",
                    member.spec.role.as_str()
                ),
            )
            .await;
            gw.user_info(&user_id).await?.ok_or_else(|| {
                Error::Gateway(GatewayError::Api {
                    status: 500,
                    message: "user created but not found".into(),
                    retry_after: None,
                })
            })?
        }
        Some(user) => {
            // Checked before the claim: an admin's user is refused even to a resource whose marker it carries.
            if let Some(message) = protected_user(ctx, &ns, &user).await? {
                let outcome = Outcome::blocked("Forbidden", message);
                return Ok(refuse(&api, member, ctx, outcome, true).await);
            }
            let standing = Standing {
                adopt: member.spec.adopt,
                admin: ctx.is_admin_namespace(&ns),
                proven: unmarked(user.metadata.as_ref())
                    && provenance::proven(ctx, &owner, "user", &user_id, proofs(member)).await?,
            };
            match owner.claim(
                user.metadata.as_ref(),
                standing,
                &format!("gateway user '{user_id}'"),
            ) {
                Claim::Conflict(message) => {
                    let outcome = Outcome::blocked("Conflict", message);
                    return Ok(refuse(&api, member, ctx, outcome, true).await);
                }
                Claim::Forbidden(message) => {
                    let outcome = Outcome::blocked("Forbidden", message);
                    return Ok(refuse(&api, member, ctx, outcome, true).await);
                }
                Claim::Ours | Claim::Adopt => {
                    if let Some((req, changed)) = user_update(member, &owner, &user) {
                        gw.user_update(&req, &actor).await?;
                        ctx.event(
                            member,
                            false,
                            "Updated",
                            format!("updated {} of gateway user '{user_id}'", changed.join(", ")),
                        )
                        .await;
                    }
                    user
                }
            }
        }
    };

    // The user is ours now (created, adopted or restored): a per-person key's ownership check reads this.
    ctx.markers
        .record_owner("user", &user_id, Some(owner.id.clone()));

    // Memberships: add or change the ones in spec, remove the ones this resource added earlier and no longer wants.
    for (m, change) in membership_changes(&user_id, &wanted) {
        let role = change.request.role.as_str();
        if change.join {
            gw.team_member_add(&change.request, &actor).await?;
            ctx.event(
                member,
                false,
                "JoinedTeam",
                format!("added to team '{}' as {role}", m.name),
            )
            .await;
        } else {
            gw.team_member_update(&change.request, &actor).await?;
            ctx.event(
                member,
                false,
                "TeamRoleChanged",
                format!("role in team '{}' is now {role}", m.name),
            )
            .await;
        }
    }
    // The teams status lists were joined from here; status is writable by tenants, so a listed team is left only
    // when its gateway team belongs to a RouteroTeam of this namespace.
    let previous: Vec<String> = member
        .status
        .as_ref()
        .map(|s| s.teams.clone())
        .unwrap_or_default();
    for team_id in previous
        .iter()
        .filter(|t| !wanted.iter().any(|m| &m.team_id == *t))
    {
        let Some(team) = gw.team_info(team_id).await? else {
            continue;
        };
        if owner_namespace(team.metadata.as_ref()) != Some(ns.as_str()) {
            tracing::info!(
                member = owner.id,
                "status names a team of another namespace; left alone"
            );
            continue;
        }
        gw.team_member_delete(team_id, &user_id, &actor).await?;
        ctx.event(
            member,
            false,
            "LeftTeam",
            format!("removed from team '{team_id}'"),
        )
        .await;
    }
    let teams: Vec<String> = wanted.into_iter().map(|m| m.team_id).collect();
    let message = format!(
        "gateway user '{user_id}' has role {} in {} team(s)",
        member.spec.role.as_str(),
        teams.len()
    );
    report(
        &api,
        member,
        ctx,
        Some(&user),
        Some(teams),
        Outcome::ready("Available", message),
    )
    .await;
    Ok(Action::requeue(ctx.resync_after()))
}

fn proofs(member: &RouteroMember) -> &[String] {
    member
        .status
        .as_ref()
        .and_then(|s| s.provenance.as_ref())
        .map(std::slice::from_ref)
        .unwrap_or_default()
}

/// A membership to write: `join` (`/team/member_add`), else a role change (`/team/member_update`).
pub struct MembershipChange {
    pub join: bool,
    pub request: TeamMember,
}

/// The team role as the gateway spells it.
pub fn team_role(role: TeamRole) -> &'static str {
    match role {
        TeamRole::User => "user",
        TeamRole::Admin => "admin",
    }
}

/// The membership writes that bring the gateway teams to `wanted`: a join where the user is not listed, a role
/// change where the listed role differs. Only a listed member is updated: on a non-member `/team/member_update`
/// answers 404 on 1.108.7 but 200 with no change on 1.98.0, so its answer could not tell whether the role was set.
/// One diff for the controller and `plan`.
pub fn membership_changes<'w>(
    user_id: &str,
    wanted: &'w [Membership],
) -> Vec<(&'w Membership, MembershipChange)> {
    wanted
        .iter()
        .filter_map(|m| {
            let role = team_role(m.role);
            let listed = m
                .team
                .members_with_roles
                .iter()
                .find(|r| r.user_id.as_deref() == Some(user_id));
            let join = match listed {
                None => true,
                Some(r) if r.role.as_deref() != Some(role) => false,
                Some(_) => return None,
            };
            let request = TeamMember {
                team_id: m.team_id.clone(),
                user_id: user_id.to_owned(),
                role: role.into(),
            };
            Some((m, MembershipChange { join, request }))
        })
        .collect()
}

/// Managed user fields that differ, as a `/user/update` body addressed by user_id.
pub fn user_update(
    member: &RouteroMember,
    owner: &Owner,
    user: &UserRow,
) -> Option<(UserUpdate, Vec<&'static str>)> {
    let spec = &member.spec;
    let mut req = UserUpdate {
        user_id: user.user_id.clone(),
        ..UserUpdate::default()
    };
    let mut changed = Vec::new();
    if user.user_role.as_deref() != Some(spec.role.as_str()) {
        req.user_role = Some(spec.role.as_str().into());
        changed.push("role");
    }
    if !user
        .user_email
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(&spec.email))
    {
        req.user_email = Some(spec.email.clone());
        changed.push("email");
    }
    if let Some(b) = budget_update(spec.max_budget, user.max_budget) {
        req.max_budget = Some(b);
        changed.push("maxBudget");
    }
    if let Some(merged) = metadata_update(user.metadata.as_ref(), owner.stamp(Metadata::new())) {
        req.metadata = Some(merged);
        changed.push("metadata");
    }
    (!changed.is_empty()).then_some((req, changed))
}

/// Deprovisioning: `Delete`, if the user is ours (by marker, or by the status proof when the marker was wiped),
/// first revokes every key bound to it one by one (including keys made outside the operator), then deletes the
/// user, which removes it from every team. The explicit revocation is what makes it instant on every version: on
/// 1.98.0 the keys of a deleted user kept working until the auth cache expired. Per-person RouteroKeys see their
/// member go and remove their Secrets.
/// An admin's user is never deleted from a tenant namespace. `Orphan` leaves the user.
async fn cleanup(member: &RouteroMember, ctx: &Context) -> Result<Action> {
    let user_id = member.user_id();
    let id = user_id.as_str();
    let ns = member.namespace().unwrap_or_default();
    ctx.markers.forget("user", id);
    let proven = provenance::proven(ctx, &Owner::of(member)?, "user", id, proofs(member)).await?;
    let read = async {
        let Some(user) = ctx.gateway.user_info(id).await? else {
            return Ok(None);
        };
        let refusal = protected_user(ctx, &ns, &user).await?;
        Ok(Some(super::Held {
            metadata: user.metadata,
            refusal,
        }))
    };
    super::release(
        member,
        ctx,
        member.spec.deletion_policy,
        &format!("gateway user '{id}'"),
        " and their memberships, after revoking each of their keys",
        proven,
        read,
        |actor| async move {
            super::revoke_keys(ctx, KeyHolder::User, id, &actor).await?;
            ctx.gateway.user_delete(id, &actor).await
        },
    )
    .await
}

fn is_reported(member: &RouteroMember, reason: &str) -> bool {
    member
        .status
        .as_ref()
        .is_some_and(|s| ready_because(&s.conditions, reason))
}

/// Reports a member that cannot be applied now (`Ready=False`), with a warning Event when `announce` and the reason
/// is new, so a refusal repeated at every resync is announced once; it is tried again at the next resync.
async fn refuse(
    api: &Api<RouteroMember>,
    member: &RouteroMember,
    ctx: &Context,
    outcome: Outcome,
    announce: bool,
) -> Action {
    if announce && !is_reported(member, &outcome.reason) {
        ctx.event(member, true, &outcome.reason, outcome.message.clone())
            .await;
    }
    report(api, member, ctx, None, None, outcome).await;
    Action::requeue(ctx.resync_after())
}

/// `status.userId` is set only once the user is ours, so a later metadata wipe is restored, not a conflict.
async fn report(
    api: &Api<RouteroMember>,
    member: &RouteroMember,
    ctx: &Context,
    user: Option<&UserRow>,
    teams: Option<Vec<String>>,
    outcome: Outcome,
) {
    let previous = member.status.clone().unwrap_or_default();
    if outcome.synced {
        ctx.succeeded(&format!(
            "{}/{}",
            member.namespace().unwrap_or_default(),
            member.name_any()
        ));
    }
    let status = RouteroMemberStatus {
        conditions: outcome.conditions(&previous.conditions, member.metadata.generation),
        observed_generation: member.metadata.generation,
        user_id: if user.is_some() {
            Some(member.user_id())
        } else {
            previous.user_id
        },
        role: user.map_or(previous.role, |_| {
            Some(member.spec.role.as_str().to_owned())
        }),
        teams: teams.unwrap_or(previous.teams),
        spend: user.and_then(|u| u.spend).or(previous.spend),
        // Recorded whenever the user is seen as ours; a failure to make the proof keeps the last one.
        provenance: match (user, Owner::of(member)) {
            (Some(_), Ok(owner)) => provenance::proof(ctx, &owner, "user", &member.user_id())
                .await
                .ok()
                .or(previous.provenance),
            _ => previous.provenance,
        },
    };
    if let Err(e) = apply_status(api, member, member.status.as_ref(), &status).await {
        tracing::warn!(member = member.name_any(), error = %e, "could not write status");
    }
}
