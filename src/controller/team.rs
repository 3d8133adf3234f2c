//! The RouteroTeam controller: observe the gateway team, diff the managed fields, act, then report status.
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::context::Context;
use super::ownership::{Claim, Owner, Standing, budget_update, metadata_update, unmarked};
use super::provenance;
use super::snapshot;
use super::status::{Outcome, apply_status};
use crate::crd::Condition;
use crate::crd::common::ready_because;
use crate::crd::team::budget_used_percent;
use crate::crd::{RouteroTeam, RouteroTeamSpec, RouteroTeamStatus};
use crate::error::Result;
use crate::gateway::GatewayError;
use crate::gateway::client::KeyHolder;
use crate::gateway::types::{Metadata, TeamRow, TeamWrite};

pub async fn reconcile(team: Arc<RouteroTeam>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<RouteroTeam> =
        Api::namespaced(ctx.client.clone(), &team.namespace().unwrap_or_default());
    let ctx: &Context = &ctx;
    super::finalized(
        team.clone(),
        ctx,
        |t| async move { apply(&t, ctx).await },
        |t| async move { cleanup(&t, ctx).await },
        |outcome| async move { report(&api, &team, ctx, None, outcome).await },
    )
    .await
}

/// Observe, diff, act. `Ok` carries the outcome to report; `Err` is a failed reconcile that is retried with backoff.
async fn apply(team: &RouteroTeam, ctx: &Context) -> Result<Action> {
    let owner = Owner::of(team)?;
    let team_id = team.team_id();
    let api: Api<RouteroTeam> =
        Api::namespaced(ctx.client.clone(), &team.namespace().unwrap_or_default());
    let actor = owner.actor();
    let gw = &ctx.gateway;

    // A resync the snapshot shows has nothing to do makes no gateway call; anything else is read live below, and
    // only a live read decides a write.
    if let Some(row) = quiet(team, ctx, &owner, &team_id) {
        ctx.markers.record("team", &team_id, row.metadata.as_ref());
        let outcome = Outcome::ready(
            "Available",
            format!("gateway team '{team_id}' matches the spec"),
        );
        report(&api, team, ctx, Some(&row), outcome).await;
        return Ok(Action::requeue(ctx.resync_after()));
    }
    let observed = gw.team_info(&team_id).await?;
    if let Some(t) = &observed {
        ctx.markers.record("team", &team_id, t.metadata.as_ref());
    }
    let (outcome, row) = match observed {
        None => {
            let row = match gw
                .team_new(&create_request(&team.spec, &team_id, &owner), &actor)
                .await
            {
                Ok(row) => row,
                // Created by a concurrent writer (or an earlier attempt whose reply was lost): decide on the next pass.
                Err(GatewayError::Api {
                    status: 400,
                    message,
                    ..
                }) if message.contains("already exists") => {
                    return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            };
            ctx.event(
                team,
                false,
                "Created",
                format!("created gateway team '{team_id}'"),
            )
            .await;
            (
                Outcome::ready("Available", format!("gateway team '{team_id}' created")),
                Some(row),
            )
        }
        Some(current) => match owner.claim(
            current.metadata.as_ref(),
            Standing {
                adopt: team.spec.adopt,
                admin: ctx.is_admin_namespace(&owner.namespace),
                proven: unmarked(current.metadata.as_ref())
                    && provenance::proven(ctx, &owner, "team", &team_id, proofs(team)).await?,
            },
            &format!("gateway team '{team_id}'"),
        ) {
            Claim::Conflict(message) => {
                if !is_reported(team, "Conflict") {
                    ctx.event(team, true, "Conflict", message.clone()).await;
                }
                (Outcome::blocked("Conflict", message), None)
            }
            Claim::Forbidden(message) => {
                if !is_reported(team, "Forbidden") {
                    ctx.event(team, true, "Forbidden", message.clone()).await;
                }
                (Outcome::blocked("Forbidden", message), None)
            }
            claim => {
                let adopted = claim == Claim::Adopt;
                match update_request(&team.spec, &team_id, &owner, &current) {
                    None => (
                        Outcome::ready(
                            "Available",
                            format!("gateway team '{team_id}' matches the spec"),
                        ),
                        Some(current),
                    ),
                    Some((req, changed)) => {
                        let row = gw.team_update(&req, &actor).await?;
                        let (reason, note) = if adopted {
                            (
                                "Adopted",
                                format!(
                                    "adopted gateway team '{team_id}' (set {})",
                                    changed.join(", ")
                                ),
                            )
                        } else {
                            (
                                "Updated",
                                format!(
                                    "updated {} of gateway team '{team_id}'",
                                    changed.join(", ")
                                ),
                            )
                        };
                        ctx.event(team, false, reason, note.clone()).await;
                        (Outcome::ready("Available", note), Some(row))
                    }
                }
            }
        },
    };
    // What the gateway holds after this pass (created, adopted or updated): a key's ownership check reads it.
    if let Some(r) = &row {
        ctx.markers.record("team", &team_id, r.metadata.as_ref());
        ctx.teams.remember(r);
    }
    report(&api, team, ctx, row.as_ref(), outcome).await;
    Ok(Action::requeue(ctx.resync_after()))
}

/// Deletion: `Delete` revokes each of the gateway team's keys, then removes the team, if it is ours (404 = done);
/// `Orphan` and foreign teams are left alone. The keys go explicitly rather than by the gateway's cascade, which
/// versions handle differently (DESIGN §4).
async fn cleanup(team: &RouteroTeam, ctx: &Context) -> Result<Action> {
    let team_id = team.team_id();
    let id = team_id.as_str();
    // A team on its way out is no longer a place to issue keys into, whatever was read of it.
    ctx.markers.forget("team", id);
    ctx.teams.forget(id);
    let proven = provenance::proven(ctx, &Owner::of(team)?, "team", id, proofs(team)).await?;
    super::release(
        team,
        ctx,
        team.spec.deletion_policy,
        &format!("gateway team '{id}'"),
        " after revoking each of its keys",
        proven,
        async {
            Ok(ctx
                .gateway
                .team_info(id)
                .await?
                .map(|row| super::Held::deletable(row.metadata)))
        },
        |actor| async move {
            super::revoke_keys(ctx, KeyHolder::Team, id, &actor).await?;
            ctx.gateway.team_delete(id, &actor).await
        },
    )
    .await
}

/// The team's row from the snapshot, when it shows the team ours and matching the spec: nothing to do. Ownership
/// proven only by status (an unmarked team) is left to the live path.
fn quiet(team: &RouteroTeam, ctx: &Context, owner: &Owner, team_id: &str) -> Option<TeamRow> {
    let row = ctx
        .teams
        .row(team_id, snapshot::max_age(ctx.settings.resync))?;
    let standing = Standing {
        adopt: team.spec.adopt,
        admin: ctx.is_admin_namespace(&owner.namespace),
        proven: false,
    };
    let ours = owner.claim(row.metadata.as_ref(), standing, team_id) == Claim::Ours;
    (ours && update_request(&team.spec, team_id, owner, &row).is_none()).then_some(row)
}

/// Writes the status; a failure is logged because the next reconcile writes it again.
async fn report(
    api: &Api<RouteroTeam>,
    team: &RouteroTeam,
    ctx: &Context,
    row: Option<&TeamRow>,
    outcome: Outcome,
) {
    let previous = team.status.clone().unwrap_or_default();
    let key = format!(
        "{}/{}",
        team.namespace().unwrap_or_default(),
        team.name_any()
    );
    if outcome.synced {
        ctx.succeeded(&key);
    }
    let mut conditions = outcome.conditions(&previous.conditions, team.metadata.generation);
    // Every team shows it: each tenant has one, and keys and members depend on one. A gateway outside the tested
    // range still gets served; the condition tells people why something may behave unlike the docs.
    if let Some((reason, message)) = ctx.gateway_version().and_then(|v| v.warning()) {
        conditions.push(super::status::notice(
            &previous.conditions,
            GATEWAY_VERSION,
            reason,
            &message,
            team.metadata.generation,
        ));
    }
    let spend_today = match row {
        Some(r) => {
            // Read at most once per few resyncs per team (see `Context::daily_spend`), else the last reading.
            let (daily, notice) = match ctx.daily_spend(&r.team_id) {
                Some(last) => last,
                None => {
                    let read = daily_spend(ctx, &r.team_id, previous.spend_today).await;
                    ctx.record_daily_spend(&r.team_id, read.clone());
                    read
                }
            };
            conditions.push(notice.condition(&previous.conditions, team.metadata.generation));
            daily
        }
        None => {
            conditions.extend(
                previous
                    .conditions
                    .iter()
                    .filter(|c| c.type_ == DAILY_SPEND)
                    .cloned(),
            );
            previous.spend_today
        }
    };
    let spend = row.and_then(|r| r.spend).or(previous.spend);
    let max_budget = row.map_or(previous.max_budget, |r| r.max_budget);
    let status = RouteroTeamStatus {
        conditions,
        observed_generation: team.metadata.generation,
        team_id: if row.is_some() {
            Some(team.team_id())
        } else {
            previous.team_id
        },
        spend,
        max_budget,
        budget_reset_at: row.map_or(previous.budget_reset_at, |r| r.budget_reset_at.clone()),
        budget_used_percent: budget_used_percent(spend, max_budget),
        spend_today,
        // Recorded whenever the team is seen as ours; a failure to make the proof keeps the last one.
        provenance: match row {
            Some(_) => match Owner::of(team) {
                Ok(owner) => provenance::proof(ctx, &owner, "team", &team.team_id())
                    .await
                    .ok()
                    .or(previous.provenance),
                Err(_) => previous.provenance,
            },
            None => previous.provenance,
        },
    };
    ctx.metrics.observe_team(team, &status);
    if let Err(e) = apply_status(api, team, team.status.as_ref(), &status).await {
        tracing::warn!(team = key, error = %e, "could not write status");
    }
}

/// The condition a RouteroTeam carries while the gateway's release is outside the tested range (or unknown).
pub const GATEWAY_VERSION: &str = "GatewayVersion";

/// The condition that says whether daily spend is reported.
pub const DAILY_SPEND: &str = "DailySpend";

/// Whether the gateway gave today's spend, as the `DailySpend` condition reports it.
#[derive(Clone, Debug)]
pub enum DailyNotice {
    Reported,
    NotServed,
    Unavailable(String),
}

impl DailyNotice {
    fn condition(&self, previous: &[Condition], generation: Option<i64>) -> Condition {
        let (ok, reason, message) = match self {
            Self::Reported => (
                true,
                "Reported",
                "spendToday is read from the gateway's /team/daily/activity".to_owned(),
            ),
            Self::NotServed => (
                false,
                "NotServed",
                "the gateway does not serve /team/daily/activity: daily spend is not reported (spend and budget are)"
                    .to_owned(),
            ),
            Self::Unavailable(why) => (
                false,
                "Unavailable",
                format!("could not read /team/daily/activity: {why}; the last daily spend is kept"),
            ),
        };
        super::status::flag(previous, DAILY_SPEND, ok, reason, &message, generation)
    }
}

/// Today's (UTC) spend from the daily activity table. It never fails the reconcile: a gateway without the endpoint
/// is remembered and not asked again, and any other failure keeps the last value.
async fn daily_spend(
    ctx: &Context,
    team_id: &str,
    last: Option<f64>,
) -> (Option<f64>, DailyNotice) {
    if ctx.daily_activity_unsupported() {
        return (None, DailyNotice::NotServed);
    }
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    match ctx.gateway.team_daily_spend(team_id, &today).await {
        Ok(Some(spend)) => (Some(spend), DailyNotice::Reported),
        Ok(None) => {
            ctx.set_daily_activity_unsupported();
            (None, DailyNotice::NotServed)
        }
        Err(e) => (last, DailyNotice::Unavailable(e.to_string())),
    }
}

fn proofs(team: &RouteroTeam) -> &[String] {
    team.status
        .as_ref()
        .and_then(|s| s.provenance.as_ref())
        .map(std::slice::from_ref)
        .unwrap_or_default()
}

fn is_reported(team: &RouteroTeam, reason: &str) -> bool {
    team.status
        .as_ref()
        .is_some_and(|s| ready_because(&s.conditions, reason))
}

fn spec_metadata(spec: &RouteroTeamSpec) -> Metadata {
    spec.metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// The `/team/new` body: every set field, the alias defaulting to the id, and our ownership markers.
pub fn create_request(spec: &RouteroTeamSpec, team_id: &str, owner: &Owner) -> TeamWrite {
    TeamWrite {
        team_id: team_id.into(),
        team_alias: Some(spec.alias.clone().unwrap_or_else(|| team_id.into())),
        models: spec.models.clone(),
        max_budget: spec.max_budget,
        budget_duration: spec.budget_duration.clone(),
        tpm_limit: spec.tpm_limit,
        rpm_limit: spec.rpm_limit,
        metadata: Some(owner.stamp(spec_metadata(spec))),
    }
}

/// The `/team/update` body holding only the managed fields that differ, and the names of those fields; `None` when
/// the gateway already matches. `budget_duration` is sent only on a real change because sending it restarts the
/// budget window.
pub fn update_request(
    spec: &RouteroTeamSpec,
    team_id: &str,
    owner: &Owner,
    current: &TeamRow,
) -> Option<(TeamWrite, Vec<&'static str>)> {
    let mut req = TeamWrite {
        team_id: team_id.into(),
        ..TeamWrite::default()
    };
    let mut changed = Vec::new();
    if let Some(alias) = &spec.alias
        && current.team_alias.as_ref() != Some(alias)
    {
        req.team_alias = Some(alias.clone());
        changed.push("alias");
    }
    if let Some(models) = &spec.models
        && !same_set(models, &current.models)
    {
        req.models = Some(models.clone());
        changed.push("models");
    }
    if let Some(budget) = budget_update(spec.max_budget, current.max_budget) {
        req.max_budget = Some(budget);
        changed.push("maxBudget");
    }
    if let Some(d) = &spec.budget_duration
        && current.budget_duration.as_ref() != Some(d)
    {
        req.budget_duration = Some(d.clone());
        changed.push("budgetDuration");
    }
    if spec.tpm_limit.is_some() && spec.tpm_limit != current.tpm_limit {
        req.tpm_limit = spec.tpm_limit;
        changed.push("tpmLimit");
    }
    if spec.rpm_limit.is_some() && spec.rpm_limit != current.rpm_limit {
        req.rpm_limit = spec.rpm_limit;
        changed.push("rpmLimit");
    }
    if let Some(merged) =
        metadata_update(current.metadata.as_ref(), owner.stamp(spec_metadata(spec)))
    {
        req.metadata = Some(merged);
        changed.push("metadata");
    }
    (!changed.is_empty()).then_some((req, changed))
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            id: "RouteroTeam/ns/finance".into(),
            uid: "u1".into(),
            namespace: "ns".into(),
        }
    }

    fn spec() -> RouteroTeamSpec {
        RouteroTeamSpec {
            max_budget: Some(800.0),
            budget_duration: Some("1mo".into()),
            models: Some(vec!["eu/balanced".into()]),
            ..RouteroTeamSpec::default()
        }
    }

    fn row_from(req: &TeamWrite) -> TeamRow {
        TeamRow {
            team_id: req.team_id.clone(),
            team_alias: req.team_alias.clone(),
            models: req.models.clone().unwrap_or_default(),
            max_budget: req.max_budget,
            budget_duration: req.budget_duration.clone(),
            metadata: req.metadata.clone(),
            ..TeamRow::default()
        }
    }

    #[test]
    fn a_freshly_created_team_needs_no_update() {
        let create = create_request(&spec(), "finance", &owner());
        assert_eq!(create.team_alias.as_deref(), Some("finance"));
        assert_eq!(
            update_request(&spec(), "finance", &owner(), &row_from(&create)),
            None
        );
    }

    #[test]
    fn only_differing_fields_are_sent() {
        let mut row = row_from(&create_request(&spec(), "finance", &owner()));
        row.models = vec!["smart/balanced".into()];
        row.max_budget = Some(800.0000000001);
        let (req, changed) = update_request(&spec(), "finance", &owner(), &row).expect("update");
        assert_eq!(changed, vec!["models"]);
        assert_eq!(req.models, Some(vec!["eu/balanced".to_string()]));
        assert_eq!(req.max_budget, None);
        assert_eq!(
            req.budget_duration, None,
            "budget_duration resets the window, so it is not re-sent"
        );
        assert_eq!(req.metadata, None);
    }

    #[test]
    fn unset_fields_are_not_managed() {
        let spec = RouteroTeamSpec::default();
        let mut row = row_from(&create_request(&spec, "t", &owner()));
        row.models = vec!["x".into()];
        row.max_budget = Some(5.0);
        row.budget_duration = Some("7d".into());
        assert_eq!(update_request(&spec, "t", &owner(), &row), None);
    }

    #[test]
    fn metadata_update_sends_the_merged_map() {
        let mut s = spec();
        s.metadata.insert("cost-center".into(), "42".into());
        let mut row = row_from(&create_request(&spec(), "finance", &owner()));
        row.metadata
            .get_or_insert_default()
            .insert("someone-else".into(), "kept".into());
        let (req, changed) = update_request(&s, "finance", &owner(), &row).expect("update");
        assert_eq!(changed, vec!["metadata"]);
        let m = req.metadata.expect("metadata");
        assert_eq!(m.get("someone-else"), Some(&Value::String("kept".into())));
        assert_eq!(m.get("cost-center"), Some(&Value::String("42".into())));
        assert_eq!(
            m.get("routero.ai/owner"),
            Some(&Value::String("RouteroTeam/ns/finance".into()))
        );
    }

    #[test]
    fn adoption_stamps_ownership() {
        let row = TeamRow {
            team_id: "finance".into(),
            max_budget: Some(800.0),
            budget_duration: Some("1mo".into()),
            models: vec!["eu/balanced".into()],
            ..TeamRow::default()
        };
        let (req, changed) = update_request(&spec(), "finance", &owner(), &row).expect("update");
        assert_eq!(changed, vec!["metadata"]);
        assert!(
            req.metadata
                .expect("metadata")
                .contains_key("routero.ai/uid")
        );
    }
}
