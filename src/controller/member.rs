//! The RouteroMember controller: a person on the gateway, their role and team memberships, and deprovisioning.
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::key_value::KeyValue;
use super::ownership::{Claim, Owner, budget_update, metadata_update};
use super::status::{Outcome, apply_status};
use crate::crd::common::{cross_namespace, is_ready, ready_because};
use crate::crd::member::TeamRole;
use crate::crd::{RouteroMember, RouteroMemberStatus, RouteroTeam};
use crate::error::{Error, Result};
use crate::gateway::GatewayError;
use crate::gateway::types::{Metadata, TeamMember, UserNew, UserRow, UserUpdate};

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

/// A desired membership, resolved to its gateway team id.
struct Membership {
    team_id: String,
    role: TeamRole,
}

/// Checks tenancy and dependencies before any gateway call, so a refused member is never half-applied.
async fn desired_memberships(
    member: &RouteroMember,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Vec<Membership>, Outcome>> {
    if member.spec.role.is_admin() && !ctx.settings.admin_namespaces.iter().any(|a| a == ns) {
        return Ok(Err(Outcome::blocked(
            "Forbidden",
            format!(
                "role {} is honoured only in the operator's admin namespaces ({}); namespace '{ns}' is not one of them",
                member.spec.role.as_str(),
                ctx.settings.admin_namespaces.join(", ")
            ),
        )));
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
        let ready = team.as_ref().and_then(|team| {
            let status = team.status.as_ref()?;
            is_ready(&status.conditions, team.metadata.generation)
                .then(|| status.team_id.clone())
                .flatten()
        });
        match ready {
            Some(team_id) => out.push(Membership {
                team_id,
                role: t.role,
            }),
            None => {
                return Ok(Err(Outcome::blocked(
                    "TeamNotReady",
                    format!("RouteroTeam '{}' does not exist or is not Ready", t.name),
                )));
            }
        }
    }
    Ok(Ok(out))
}

async fn apply(member: &RouteroMember, ctx: &Context) -> Result<Action> {
    let ns = member.namespace().unwrap_or_default();
    let api: Api<RouteroMember> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner::of(member)?;
    let actor = owner.actor();
    let user_id = member.user_id();
    let gw = &ctx.gateway;

    let wanted = match desired_memberships(member, ctx, &ns).await? {
        Ok(w) => w,
        Err(outcome) => {
            let announce = outcome.reason == "Forbidden";
            return Ok(refuse(&api, member, ctx, outcome, announce).await);
        }
    };

    let user = match gw.user_info(&user_id).await? {
        None => {
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
            let previously =
                member.status.as_ref().and_then(|s| s.user_id.as_deref()) == Some(user_id.as_str());
            match owner.claim(
                user.metadata.as_ref(),
                member.spec.adopt || previously,
                &format!("gateway user '{user_id}'"),
            ) {
                Claim::Conflict(message) => {
                    let outcome = Outcome::blocked("Conflict", message);
                    return Ok(refuse(&api, member, ctx, outcome, true).await);
                }
                _ => {
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

    // Memberships: add or change the ones in spec, remove the ones this resource added earlier and no longer wants.
    for m in &wanted {
        let Some(team) = gw.team_info(&m.team_id).await? else {
            continue;
        };
        let role = match m.role {
            TeamRole::User => "user",
            TeamRole::Admin => "admin",
        };
        let change = TeamMember {
            team_id: m.team_id.clone(),
            user_id: user_id.clone(),
            role: role.into(),
        };
        match team
            .members_with_roles
            .iter()
            .find(|r| r.user_id.as_deref() == Some(user_id.as_str()))
        {
            None => {
                gw.team_member_add(&change, &actor).await?;
                ctx.event(
                    member,
                    false,
                    "JoinedTeam",
                    format!("added to team '{}' as {role}", m.team_id),
                )
                .await;
            }
            Some(r) if r.role.as_deref() != Some(role) => {
                gw.team_member_update(&change, &actor).await?;
                ctx.event(
                    member,
                    false,
                    "TeamRoleChanged",
                    format!("role in team '{}' is now {role}", m.team_id),
                )
                .await;
            }
            Some(_) => {}
        }
    }
    let previous: Vec<String> = member
        .status
        .as_ref()
        .map(|s| s.teams.clone())
        .unwrap_or_default();
    for team_id in previous
        .iter()
        .filter(|t| !wanted.iter().any(|m| &m.team_id == *t))
    {
        if gw.team_info(team_id).await?.is_some() {
            gw.team_member_delete(team_id, &user_id, &actor).await?;
            ctx.event(
                member,
                false,
                "LeftTeam",
                format!("removed from team '{team_id}'"),
            )
            .await;
        }
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

/// Managed user fields that differ, as a `/user/update` body addressed by user_id.
fn user_update(
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

/// Deprovisioning: `Delete` deletes the user if it is ours; the gateway then removes it from every team and deletes
/// every key bound to it (including keys made outside the operator). Per-person RouteroKeys see their member go and
/// revoke their keys and remove their Secrets. `Orphan` leaves the user.
async fn cleanup(member: &RouteroMember, ctx: &Context) -> Result<Action> {
    let user_id = member.user_id();
    let id = user_id.as_str();
    super::release(
        member,
        ctx,
        member.spec.deletion_policy,
        &format!("gateway user '{id}'"),
        ", their memberships and their keys",
        async { Ok(ctx.gateway.user_info(id).await?.map(|row| row.metadata)) },
        |actor| async move { ctx.gateway.user_delete(id, &actor).await },
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
    };
    if let Err(e) = apply_status(api, member, member.status.as_ref(), &status).await {
        tracing::warn!(member = member.name_any(), error = %e, "could not write status");
    }
}
