//! Issuance: a new key value is recorded in the pending Secret, registered on the gateway, confirmed by its hash, and
//! only then delivered into the workload Secret (see the module's crash-safety note). Rotation and `spec.adopt`
//! takeovers start here too, as intents that replace a key.
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::controller::Action;

use super::{Holder, Keys, Scope, Step};
use crate::controller::duration;
use crate::controller::key_value::{KeyValue, short_id};
use crate::controller::ownership::{Claim, Standing, metadata_update};
use crate::controller::secret::{self, Intent, IntentKind};
use crate::controller::secret_view::SecretView;
use crate::controller::status::Outcome;
use crate::crd::key::RotationStrategy;
use crate::error::{Error, Result};
use crate::gateway::GatewayError;
use crate::gateway::types::{KeyGenerate, KeyRegenerate, KeyRow, Metadata};

impl<'a> Keys<'a> {
    /// Starts a fresh key: revokes any key of ours that holds the alias (its value is lost or exposed), records the
    /// new value in the pending Secret, then registers and delivers it.
    pub(super) async fn issue(
        &self,
        scope: &Scope,
        workload: Option<&Secret>,
        what: &str,
    ) -> Result<Action> {
        // A key was delivered before and is now lost: revoke whatever of ours holds either alias (a Secret lost in a
        // Recreate grace period leaves a key under each). A first issuance has nothing to revoke; a stale key from an
        // earlier resource of the same name is met, and revoked, when its alias refuses the new key.
        let delivered_before =
            workload.is_some() || self.key.status.as_ref().is_some_and(|s| s.key_id.is_some());
        let mut conflict = None;
        if delivered_before {
            conflict = self.clear_alias(&self.alias, None).await?;
            if conflict.is_none() {
                conflict = self.clear_alias(&self.next_alias(), None).await?;
            }
        }
        if let Some(conflict) = conflict {
            self.ctx
                .event(self.key, true, "Conflict", conflict.clone())
                .await;
            self.report(Outcome::blocked("Conflict", conflict), workload, None)
                .await;
            return Ok(Action::requeue(self.ctx.resync_after()));
        }
        let trigger = self.key.annotations().get(secret::ROTATE).cloned();
        if !delivered_before && self.key.spec.adopt {
            match self.takeover().await? {
                Takeover::None => {}
                Takeover::Refused(outcome) => {
                    self.announce(&outcome).await;
                    self.report(outcome, workload, None).await;
                    return Ok(Action::requeue(self.ctx.resync_after()));
                }
                Takeover::Replace { old, markers } => {
                    let intent = Intent {
                        kind: self.strategy(),
                        next: KeyValue::generate(),
                        replaces: Some(old.clone()),
                        trigger,
                        markers,
                    };
                    let note = format!(
                        "took over gateway key {} (alias '{}') and delivered a new value, key {}, into Secret '{}' by {}",
                        short_id(&old),
                        self.alias,
                        intent.next.id(),
                        self.key.secret_name(),
                        match intent.kind {
                            IntentKind::Regenerate => "regenerating it in place",
                            _ => "a new key; the old value keeps working for rotation.gracePeriod",
                        }
                    );
                    return self.start(intent, workload, scope, "Adopted", note).await;
                }
            }
        }
        let intent = Intent {
            kind: IntentKind::Issue,
            next: KeyValue::generate(),
            replaces: None,
            trigger,
            markers: None,
        };
        let note = format!(
            "key {} {what} into Secret '{}'",
            intent.next.id(),
            self.key.secret_name()
        );
        self.start(intent, workload, scope, "Issued", note).await
    }

    /// `spec.adopt` on a first issuance: the key already under the alias, if this resource may take it over (ours,
    /// or unowned and adoptable here). Its value cannot be read back, so it is replaced by a rotation.
    async fn takeover(&self) -> Result<Takeover> {
        let rows = self.ctx.gateway.keys_by_alias(&self.alias).await?;
        let Some((token, row)) = rows
            .into_iter()
            .find_map(|r| r.token.clone().map(|t| (t, r)))
        else {
            return Ok(Takeover::None);
        };
        let what = format!("gateway key {} (alias '{}')", short_id(&token), self.alias);
        match self
            .owner
            .claim(row.metadata.as_ref(), self.adopting(), &what)
        {
            Claim::Ours => Ok(Takeover::Replace {
                old: token,
                markers: None,
            }),
            Claim::Adopt => Ok(Takeover::Replace {
                old: token,
                markers: metadata_update(row.metadata.as_ref(), self.metadata()),
            }),
            Claim::Conflict(m) => Ok(Takeover::Refused(Outcome::blocked("Conflict", m))),
            Claim::Forbidden(m) => Ok(Takeover::Refused(Outcome::blocked("Forbidden", m))),
        }
    }

    /// An unowned key this resource may adopt: `spec.adopt`, under this resource's own alias (or its Recreate
    /// alias), and an admin's decision (an admin namespace, or the key marked adoptable by this namespace). Such a
    /// key is treated as ours, so a Recreate takeover retires it after its grace period without writing to it first.
    pub(super) fn adoptable(&self, row: &KeyRow) -> bool {
        let alias = row.key_alias.as_deref();
        self.key.spec.adopt
            && (alias == Some(self.alias.as_str()) || alias == Some(self.next_alias().as_str()))
            && self.owner.claim(row.metadata.as_ref(), self.adopting(), "") == Claim::Adopt
    }

    /// This resource's standing when it asks to adopt a key: admin namespaces and `adoptable-by` decide.
    fn adopting(&self) -> Standing {
        Standing {
            adopt: true,
            admin: self.ctx.is_admin_namespace(&self.ns),
            proven: false,
        }
    }

    /// Deletes our keys holding `alias` (except `keep`); a key holding it that is not ours is a conflict.
    async fn clear_alias(&self, alias: &str, keep: Option<&str>) -> Result<Option<String>> {
        for row in self.ctx.gateway.keys_by_alias(alias).await? {
            let Some(token) = row.token.as_deref() else {
                continue;
            };
            if Some(token) == keep {
                continue;
            }
            // A key this resource took over (by Recreate, in its grace period) goes with the one it delivered, as
            // it does when the resource is deleted (`revoke_everything`).
            let delivered = self.key.status.as_ref().is_some_and(|s| s.key_id.is_some());
            let taken_over = delivered && self.adoptable(&row);
            if taken_over || self.ours(token, row.metadata.as_ref()).await? {
                self.ctx.gateway.key_delete(token, &self.actor).await?;
                self.ctx
                    .event(
                        self.key,
                        true,
                        "Revoked",
                        format!(
                            "revoked key {} whose value is no longer held by its Secret",
                            short_id(token)
                        ),
                    )
                    .await;
            } else {
                return Ok(Some(alias_taken(alias, row.metadata.as_ref())));
            }
        }
        Ok(None)
    }

    /// Records `intent` in the pending Secret, then carries it through; `note` is the Event once delivered.
    pub(super) async fn start(
        &self,
        intent: Intent,
        workload: Option<&Secret>,
        scope: &Scope,
        reason: &str,
        note: String,
    ) -> Result<Action> {
        if let Some(outcome) = self.verify(scope).await? {
            self.announce(&outcome).await;
            self.report(outcome, workload, None).await;
            return Ok(Action::requeue(self.ctx.resync_after()));
        }
        self.write_pending(&intent).await?;
        match self
            .resolve(intent, workload, scope, true, Some((reason, note)))
            .await?
        {
            Resolved::Done(done) => {
                let (secret, info) = *done;
                if reason == "Rotated" {
                    self.ctx.metrics.key_rotated();
                }
                // Ready in the same pass: the key was just confirmed, so there is nothing to read again.
                Ok(self
                    .available(&SecretView::of(&secret), &info, jiff::Timestamp::now())
                    .await)
            }
            Resolved::Blocked(outcome) => {
                self.report(outcome, workload, None).await;
                Ok(Action::requeue(self.ctx.resync_after()))
            }
            // Not for a fresh intent (nothing of it was read from a Secret); start over if it ever happens.
            Resolved::Dropped => Ok(Action::requeue(Duration::from_secs(1))),
        }
    }

    /// Finishes whatever a previous pass (or a crashed operator) started, as recorded in the `pending` Secret.
    /// Returns the workload Secret as it is afterwards.
    pub(super) async fn resume(
        &self,
        pending: Option<&Secret>,
        mut workload: Option<Secret>,
        scope: &Scope,
    ) -> Result<Step<Option<Secret>>> {
        if let Some(p) = pending {
            match secret::read_pending(p) {
                Some(intent) => match self
                    .resolve(intent, workload.as_ref(), scope, false, None)
                    .await?
                {
                    Resolved::Done(done) => workload = Some(done.0),
                    Resolved::Dropped => {}
                    Resolved::Blocked(outcome) => {
                        self.report(outcome, workload.as_ref(), None).await;
                        return Ok(Step::Break(Action::requeue(self.ctx.resync_after())));
                    }
                },
                // Unreadable: it never reached the gateway in a form we can confirm; start over.
                None => self.delete_secret(&secret::pending_name(self.key)).await?,
            }
        }
        Ok(Step::Continue(workload))
    }

    /// Carries a pending intent through: register on the gateway if not yet there, confirm by hash, deliver into
    /// the workload Secret, then drop the pending Secret. Safe to run again from any point.
    /// `fresh`: the value was chosen in this pass and the key it replaces was just read, so neither is looked up
    /// again before the register call. `announce`: the Event (reason, note) that tells of the delivered key.
    async fn resolve(
        &self,
        mut intent: Intent,
        workload: Option<&Secret>,
        scope: &Scope,
        fresh: bool,
        announce: Option<(&str, String)>,
    ) -> Result<Resolved> {
        let hash = intent.next.hash();
        let gw = &self.ctx.gateway;
        let mut confirmed = if fresh {
            None
        } else {
            gw.key_info(&hash).await?
        };
        if confirmed.is_none() {
            // Never registered: the team and user it is for must prove, on the gateway, that they are ours (a fresh
            // intent was checked before it was written).
            if !fresh && let Some(outcome) = self.verify(scope).await? {
                self.delete_secret(&secret::pending_name(self.key)).await?;
                self.announce(&outcome).await;
                return Ok(Resolved::Blocked(outcome));
            }
            // A resumed intent's `replaces` was read from the pending Secret, which a tenant may write: the key it
            // names is regenerated (or retired after a Recreate) only when it is ours. A fresh intent's is the key
            // this pass just read and found ours.
            let mut old_live = fresh && intent.replaces.is_some();
            if let (false, Some(old)) = (fresh, &intent.replaces) {
                match self.holder(old).await? {
                    Holder::Ours => old_live = true,
                    Holder::Gone => {}
                    Holder::Foreign => {
                        self.untrusted(&format!(
                            "annotation {} on Secret '{}'",
                            secret::REPLACES,
                            secret::pending_name(self.key)
                        ))
                        .await;
                        self.delete_secret(&secret::pending_name(self.key)).await?;
                        return Ok(Resolved::Dropped);
                    }
                }
            }
            if intent.kind == IntentKind::Regenerate {
                if !old_live {
                    // Nothing left to regenerate: the new value becomes a fresh key.
                    intent.kind = IntentKind::Issue;
                } else {
                    let req = KeyRegenerate {
                        key: intent.replaces.clone().unwrap_or_default(),
                        new_key: intent.next.secret(),
                        duration: self.key.spec.duration.clone(),
                        metadata: intent.markers.take(),
                    };
                    match gw.key_regenerate(&req, &self.actor).await {
                        Ok(()) => {}
                        Err(e) if e.is_licence_gated() => {
                            self.ctx.set_regenerate_unsupported();
                            if self.key.rotation_strategy() != RotationStrategy::Auto {
                                self.delete_secret(&secret::pending_name(self.key)).await?;
                                return Ok(Resolved::Blocked(Outcome::failed(
                                    "RegenerateUnsupported",
                                    format!(
                                        "rotation strategy Regenerate: {e}; use Recreate or Auto"
                                    ),
                                )));
                            }
                            intent.kind = IntentKind::Recreate;
                            self.write_pending(&intent).await?;
                        }
                        Err(e) => self.confirm_after_error(&hash, e).await?,
                    }
                }
            }
            if intent.kind != IntentKind::Regenerate {
                let alias = if intent.kind == IntentKind::Recreate {
                    self.next_alias()
                } else {
                    self.alias.clone()
                };
                let req = self.generate_request(&intent.next, &alias, scope);
                match gw.key_generate(&req, &self.actor).await {
                    Ok(reply) => match registered(&reply, &hash, &req) {
                        // A value chosen in this pass was never sent before, so the gateway cannot be echoing an
                        // earlier request: a reply naming its hash, alias and team proves the row was created.
                        Registration::Proven if fresh => confirmed = Some(reply),
                        Registration::Proven => {}
                        // The gateway made a key of its own choosing (it ignored our value): nobody holds it,
                        // so it is revoked, never leaked; the pass fails and is retried.
                        Registration::Ignored(token) => {
                            gw.key_delete(&token, &self.actor).await?;
                            return Err(Error::Gateway(GatewayError::Api {
                                status: 500,
                                message: "the gateway registered a key value other than the one sent; revoked it, will retry".into(),
                                retry_after: None,
                            }));
                        }
                        Registration::Unproven => {}
                    },
                    // The alias is taken: by this very value (registered by an earlier attempt; the gateway checks the
                    // alias before the secret), or by a stale key of ours, which is revoked, or by someone else.
                    Err(GatewayError::Api {
                        status: 400,
                        message,
                        ..
                    }) if message.contains("already exists") => {
                        if gw.key_info(&hash).await?.is_none() {
                            if let Some(conflict) = self.clear_alias(&alias, Some(&hash)).await? {
                                self.delete_secret(&secret::pending_name(self.key)).await?;
                                return Ok(Resolved::Blocked(Outcome::blocked(
                                    "Conflict", conflict,
                                )));
                            }
                            // A retry after "alias already exists" is confirmed by reading, whatever it answers.
                            gw.key_generate(&req, &self.actor).await?;
                        }
                    }
                    Err(e) => self.confirm_after_error(&hash, e).await?,
                }
            }
            // Otherwise a 200 proves nothing (a repeated secret is accepted without a row): only /key/info does.
            if confirmed.is_none() {
                confirmed = gw.key_info(&hash).await?;
            }
            if confirmed.is_none() {
                return Err(Error::Gateway(GatewayError::Api {
                    status: 500,
                    message: "the gateway accepted the key but does not list it; will retry".into(),
                    retry_after: None,
                }));
            }
        }
        let kind = intent.kind;

        let now = jiff::Timestamp::now().to_string();
        let mut state = workload.map(secret::operator_state).unwrap_or_default();
        state.insert(secret::ROTATED_AT.into(), now);
        match &intent.trigger {
            Some(t) => state.insert(secret::ROTATE_HANDLED.into(), t.clone()),
            None => state.remove(secret::ROTATE_HANDLED),
        };
        if let (IntentKind::Recreate, Some(old)) = (kind, &intent.replaces) {
            let grace = self
                .key
                .spec
                .rotation
                .as_ref()
                .and_then(|r| r.grace_period.as_deref())
                .and_then(duration::parse)
                .unwrap_or_default();
            let after = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::try_from(grace).unwrap_or_default())
                .unwrap_or_else(|_| jiff::Timestamp::now());
            state.insert(secret::RETIRING_KEY.into(), old.clone());
            state.insert(secret::RETIRE_AFTER.into(), after.to_string());
        } else {
            state.remove(secret::RETIRING_KEY);
            state.remove(secret::RETIRE_AFTER);
        }
        let confirmed = confirmed.unwrap_or_default();
        // The pass this Secret write triggers finds the key here instead of reading it again.
        self.ctx.keys.remember(&hash, &confirmed);
        let written = self.write_workload(workload, &intent.next, &state).await?;
        // Delivered: its pending record goes, and the Event tells of it, at the same time; both before `Ready`.
        let announced = async {
            if let Some((reason, note)) = announce {
                self.ctx.event(self.key, false, reason, note).await;
            }
        };
        let pending = secret::pending_name(self.key);
        let (deleted, ()) = tokio::join!(self.delete_secret(&pending), announced);
        deleted?;
        Ok(Resolved::Done(Box::new((written, confirmed))))
    }

    /// After a failed register call whose outcome is unknown (lost reply, 5xx): the key may exist anyway.
    async fn confirm_after_error(&self, hash: &str, err: GatewayError) -> Result<()> {
        if err.is_unavailable() && matches!(self.ctx.gateway.key_info(hash).await, Ok(Some(_))) {
            return Ok(());
        }
        Err(err.into())
    }

    async fn write_pending(&self, intent: &Intent) -> Result<()> {
        let p = secret::pending_secret(self.key, intent);
        let pp = PostParams {
            field_manager: Some(crate::controller::status::MANAGER.into()),
            ..PostParams::default()
        };
        // Usually there is none: created without a read first. One already there (this pass's own, or one
        // `read_secrets` found ours) is replaced outright: whatever it held is overwritten either way.
        match self.secrets.create(&pp, &p).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.secrets.replace(&p.name_any(), &pp, &p).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn metadata(&self) -> Metadata {
        self.owner.stamp(Metadata::new())
    }

    fn generate_request(&self, value: &KeyValue, alias: &str, scope: &Scope) -> KeyGenerate {
        let spec = &self.key.spec;
        KeyGenerate {
            key: value.secret(),
            key_alias: alias.to_owned(),
            team_id: scope.team_id.clone(),
            user_id: scope.member.as_ref().map(|(_, user_id)| user_id.clone()),
            models: spec.models.clone(),
            max_budget: spec.max_budget,
            budget_duration: spec.budget_duration.clone(),
            duration: spec.duration.clone(),
            metadata: self.metadata(),
            key_type: "llm_api",
        }
    }
}

/// What a 200 from `/key/generate` says about the value sent.
enum Registration {
    /// The reply names the value's hash, with the alias and team sent.
    Proven,
    /// The reply names another key: the gateway made one of its own.
    Ignored(String),
    /// The reply says too little (no token, or another alias or team): confirm by reading.
    Unproven,
}

fn registered(reply: &KeyRow, hash: &str, req: &KeyGenerate) -> Registration {
    match reply.token.as_deref() {
        Some(t) if t != hash => Registration::Ignored(t.to_owned()),
        Some(_)
            if reply.key_alias.as_deref() == Some(req.key_alias.as_str())
                && reply.team_id.as_deref() == Some(req.team_id.as_str()) =>
        {
            Registration::Proven
        }
        _ => Registration::Unproven,
    }
}

/// What `spec.adopt` finds under the alias on a first issuance.
enum Takeover {
    /// No key: issue a fresh one.
    None,
    /// A key this resource may take over: replace `old` (its hash) with a rotation, sending `markers` with a
    /// regeneration when the key is adopted rather than already ours.
    Replace {
        old: String,
        markers: Option<Metadata>,
    },
    /// Someone else's, or not adoptable here.
    Refused(Outcome),
}

enum Resolved {
    /// The key is confirmed on the gateway (as the row describes it) and in this workload Secret.
    Done(Box<(Secret, KeyRow)>),
    Blocked(Outcome),
    /// The pending intent was untrustworthy and was dropped without a gateway call.
    Dropped,
}

/// The conflict of an alias held by a key that is not this resource's. Messages never name another tenant's
/// resource: "elsewhere" is enough.
pub fn alias_taken(alias: &str, holder: Option<&Metadata>) -> String {
    let by = if crate::controller::ownership::owner_namespace(holder).is_some() {
        "a key managed elsewhere"
    } else {
        "a key no resource manages (made outside the operator; spec.adopt: true takes it over where an admin allowed \
         it)"
    };
    format!("key alias '{alias}' is already used on the gateway by {by}")
}
