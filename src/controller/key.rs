//! The RouteroKey controller: issues, rotates and revokes gateway keys, delivered through Secrets.
//!
//! Crash safety (DESIGN §3): a new key value is chosen and written to a pending Secret first, then registered on
//! the gateway, then confirmed by its SHA-256 through `/key/info`, and only then copied into the workload Secret.
//! So the workload Secret only ever receives a key the gateway has confirmed, and a key the gateway holds is always
//! known to Kubernetes (in the pending or the workload Secret). Any crash resumes from the pending Secret.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::duration;
use super::key_value::{KeyValue, short_id};
use super::ownership::{
    Claim, Owner, Standing, budget_update, metadata_update, owner_id, unmarked,
};
use super::provenance;
use super::rotation;
use super::secret::{self, Intent, IntentKind};
use super::snapshot;
use super::status::{Outcome, apply_status};
use crate::crd::common::{cross_namespace, is_ready, ready_because};
use crate::crd::key::RotationStrategy;
use crate::crd::{DeletionPolicy, RouteroKey, RouteroKeyStatus};
use crate::error::{Error, Result};
use crate::gateway::GatewayError;
use crate::gateway::types::{KeyGenerate, KeyRegenerate, KeyRow, KeyUpdate, Metadata};

pub async fn reconcile(key: Arc<RouteroKey>, ctx: Arc<Context>) -> Result<Action> {
    let ctx: &Context = &ctx;
    super::finalized(
        key.clone(),
        ctx,
        |k| async move { Keys::new(&k, ctx)?.apply().await },
        |k| async move { Keys::new(&k, ctx)?.cleanup().await },
        |outcome| async move {
            if let Ok(k) = Keys::new(&key, ctx) {
                k.report(outcome, None, None).await;
            }
        },
    )
    .await
}

/// What the key is issued into: its RouteroTeam and gateway team id, and for a per-person key its RouteroMember and
/// gateway user id. The ids come from those resources' specs, never their status (which a tenant may write), and the
/// gateway objects must carry those very resources' owner markers before a key is issued into them.
struct Scope {
    team: String,
    team_id: String,
    member: Option<(String, String)>,
}

/// Whose a key named by a hash (read from a Secret, which a tenant may write) is, as the gateway says.
enum Holder {
    /// Ours: our owner marker, or no marker and a provenance proof in our status.
    Ours,
    /// Not on the gateway (or deleted).
    Gone,
    /// Someone else's, or nobody's: never deleted or regenerated from here.
    Foreign,
}

/// Why the key cannot be issued now (reported as `Ready=False`), or the scope it is issued in.
enum Dependencies {
    Ready(Scope),
    Blocked(Outcome),
    /// The team or member is gone or being deleted: the key is revoked and its Secret removed.
    Gone(&'static str, String),
}

/// One reconcile of one RouteroKey.
struct Keys<'a> {
    key: &'a RouteroKey,
    ctx: &'a Context,
    owner: Owner,
    actor: String,
    alias: String,
    secrets: Api<Secret>,
    ns: String,
    /// Operator state found in a Secret that named a key this resource does not own, and was dropped.
    tampered: std::sync::Mutex<Option<String>>,
    /// The metadata a key taken over in this pass gets with its regeneration (ours merged into what it held).
    adopting: std::sync::Mutex<Option<Metadata>>,
}

impl<'a> Keys<'a> {
    fn new(key: &'a RouteroKey, ctx: &'a Context) -> Result<Self> {
        let owner = Owner::of(key)?;
        let ns = key.namespace().unwrap_or_default();
        Ok(Self {
            actor: owner.actor(),
            owner,
            alias: key.alias(),
            secrets: Api::namespaced(ctx.client.clone(), &ns),
            key,
            ctx,
            ns,
            tampered: std::sync::Mutex::default(),
            adopting: std::sync::Mutex::default(),
        })
    }

    /// The alias a Recreate rotation's new key carries until the old one is deleted (aliases are unique).
    fn next_alias(&self) -> String {
        format!("{}.next", self.alias)
    }

    async fn apply(&self) -> Result<Action> {
        let scope = match self.dependencies().await? {
            Dependencies::Ready(scope) => scope,
            Dependencies::Blocked(outcome) => {
                self.report(outcome, None, None).await;
                return Ok(Action::requeue(self.ctx.resync_after()));
            }
            Dependencies::Gone(reason, message) => {
                // Look the aliases up only while this resource may still hold a key: not on every resync after.
                let held = self.key.status.as_ref().is_some_and(|s| s.key_id.is_some());
                let (revoked, removed) = self.revoke_everything(held).await?;
                if revoked > 0 || removed {
                    self.ctx
                        .event(
                            self.key,
                            true,
                            "Revoked",
                            format!(
                                "{message}: revoked the key and removed Secret '{}'",
                                self.key.secret_name()
                            ),
                        )
                        .await;
                }
                self.report_with(Outcome::blocked(reason, message), None, None, true)
                    .await;
                return Ok(Action::requeue(self.ctx.resync_after()));
            }
        };

        // A key read made there is not made again below.
        let mut read = None;
        if let Some(action) = self.quiet_from_caches(&mut read).await {
            return Ok(action);
        }
        let workload = self.secrets.get_opt(&self.key.secret_name()).await?;
        let pending = self
            .secrets
            .get_opt(&secret::pending_name(self.key))
            .await?;
        for s in workload.iter().chain(pending.iter()) {
            if !secret::is_ours(s, self.key) {
                let message = format!(
                    "Secret '{}' exists and was not created for this RouteroKey; it is left untouched",
                    s.name_any()
                );
                if !self.is_reported("SecretConflict") {
                    self.ctx
                        .event(self.key, true, "SecretConflict", message.clone())
                        .await;
                }
                self.report(Outcome::blocked("SecretConflict", message), None, None)
                    .await;
                return Ok(Action::requeue(self.ctx.resync_after()));
            }
        }

        // Finish whatever a previous pass (or a crashed operator) started.
        let mut workload = workload;
        if let Some(p) = &pending {
            match secret::read_pending(p) {
                Some(intent) => match self
                    .resolve(intent, workload.as_ref(), &scope, false)
                    .await?
                {
                    Resolved::Done(done) => workload = Some(done.0),
                    Resolved::Dropped => {}
                    Resolved::Blocked(outcome) => {
                        self.report(outcome, workload.as_ref(), None).await;
                        return Ok(Action::requeue(self.ctx.resync_after()));
                    }
                },
                // Unreadable: it never reached the gateway in a form we can confirm; start over.
                None => self.delete_secret(&secret::pending_name(self.key)).await?,
            }
        }

        let Some(current) = workload
            .as_ref()
            .and_then(|s| secret::key_in(s, &self.key.spec.secret.key_field).map(|v| (s, v)))
        else {
            // No key delivered yet, or the Secret was deleted or emptied: any key of ours is lost, so revoke it.
            return self.issue(&scope, workload.as_ref(), "issued").await;
        };
        let (secret, value) = current;
        if secret.annotations().get(secret::KEY_ID) != Some(&value.id()) {
            self.ctx.event(self.key, true, "SecretEdited", "the key in the Secret was changed by hand; revoking the old key and issuing a new one".into()).await;
            return self
                .issue(
                    &scope,
                    Some(secret),
                    "re-issued after the Secret was edited",
                )
                .await;
        }
        let now = jiff::Timestamp::now();
        let hash = value.hash();
        // A listed row that shows nothing to do spares the read; anything else is read live before acting.
        let listed = self
            .ctx
            .keys
            .row(&hash, snapshot::max_age(self.ctx.settings.resync))
            .filter(|row| self.quiet(secret, &hash, row, now));
        let info = match (listed, read.filter(|(h, _)| *h == hash)) {
            (Some(row), _) => Some(row),
            (None, Some((_, row))) => row,
            (None, None) => self.ctx.gateway.key_info(&hash).await?,
        };
        let info = match info {
            Some(info) if info.usable() => info,
            lost => {
                let (reason, why, what) = match lost {
                    Some(_) => (
                        "KeyUnusable",
                        "is blocked or expired on the gateway; replacing it",
                        "re-issued after it was blocked or expired",
                    ),
                    None => (
                        "KeyMissing",
                        "was deleted on the gateway; issuing a new one",
                        "re-issued after it was deleted on the gateway",
                    ),
                };
                self.ctx
                    .event(self.key, true, reason, format!("key {} {why}", value.id()))
                    .await;
                return self.issue(&scope, Some(secret), what).await;
            }
        };
        let standing = Standing {
            proven: unmarked(info.metadata.as_ref()) && self.proven(&hash).await?,
            ..Standing::default()
        };
        if let Claim::Conflict(message) | Claim::Forbidden(message) = self.owner.claim(
            info.metadata.as_ref(),
            standing,
            &format!("gateway key {}", value.id()),
        ) {
            self.report(
                Outcome::blocked("Conflict", message),
                Some(secret),
                Some(&info),
            )
            .await;
            return Ok(Action::requeue(self.ctx.resync_after()));
        }

        // A Recreate rotation in its grace period: retire the old key when the time comes.
        let mut secret = secret.clone();
        if let Some(old) = secret.annotations().get(secret::RETIRING_KEY).cloned() {
            let due = secret
                .annotations()
                .get(secret::RETIRE_AFTER)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| t <= now);
            if due {
                match self.holder(&old).await? {
                    Holder::Ours => {
                        self.ctx.gateway.key_delete(&old, &self.actor).await?;
                        self.ctx
                            .event(
                                self.key,
                                false,
                                "Retired",
                                format!(
                                    "deleted the previous key {} after the grace period",
                                    short_id(&old)
                                ),
                            )
                            .await;
                    }
                    Holder::Gone => {}
                    Holder::Foreign => {
                        self.untrusted(&format!(
                            "annotation {} on Secret '{}'",
                            secret::RETIRING_KEY,
                            secret.name_any()
                        ))
                        .await
                    }
                }
                let mut state = secret::operator_state(&secret);
                state.remove(secret::RETIRING_KEY);
                state.remove(secret::RETIRE_AFTER);
                secret = self.write_workload(Some(&secret), &value, &state).await?;
            }
        }
        let alias = if secret.annotations().contains_key(secret::RETIRING_KEY) {
            self.next_alias()
        } else {
            self.alias.clone()
        };

        if let Some((why, trigger)) = self.plan(&secret, &info).due(now) {
            return self.rotate(&scope, &secret, &value, why, trigger).await;
        }

        // Drift: correct managed fields on the gateway, then the Secret's own fields.
        if let Some((update, changed)) = self.key_update(&hash, &alias, &info)
            && self.ctx.gateway.key_update(&update, &self.actor).await?
        {
            self.ctx
                .event(
                    self.key,
                    false,
                    "Updated",
                    format!("updated {} of key {}", changed.join(", "), value.id()),
                )
                .await;
        }
        let want = secret::workload_secret(
            self.key,
            &value,
            self.ctx.gateway.base_url(),
            &secret::operator_state(&secret),
        );
        if !secret::matches(&secret, &want) {
            secret = self
                .write_workload(Some(&secret), &value, &secret::operator_state(&secret))
                .await?;
            self.ctx
                .event(
                    self.key,
                    false,
                    "SecretRestored",
                    format!(
                        "restored the labels, annotations and fields of Secret '{}'",
                        secret.name_any()
                    ),
                )
                .await;
        }
        Ok(self.available(&secret, &info, now).await)
    }

    /// Team and member must exist, be Ready, and allow the requested models.
    async fn dependencies(&self) -> Result<Dependencies> {
        let spec = &self.key.spec;
        let refs = std::iter::once(("RouteroTeam", &spec.team_ref))
            .chain(spec.member_ref.iter().map(|m| ("RouteroMember", m)));
        let refusals = refs
            .filter_map(|(kind, r)| {
                cross_namespace(kind, &r.name, r.namespace.as_deref(), &self.ns)
            })
            .chain(alias_refusal(&self.alias, &self.ns));
        if let Some(message) = refusals.into_iter().next() {
            if !self.is_reported("Forbidden") {
                self.ctx
                    .event(self.key, true, "Forbidden", message.clone())
                    .await;
            }
            return Ok(Dependencies::Blocked(Outcome::blocked(
                "Forbidden",
                message,
            )));
        }
        let team_name = &self.key.spec.team_ref.name;
        let team = match self.read(|c| &c.teams, team_name).await? {
            None => {
                return Ok(Dependencies::Gone(
                    "TeamNotReady",
                    format!(
                        "RouteroTeam '{team_name}' does not exist in namespace '{}'",
                        self.ns
                    ),
                ));
            }
            Some(t) if t.meta().deletion_timestamp.is_some() => {
                return Ok(Dependencies::Gone(
                    "TeamNotReady",
                    format!("RouteroTeam '{team_name}' is being deleted"),
                ));
            }
            Some(t) => t,
        };
        // The team's readiness is a hint to wait; its id comes from its spec, and the gateway team's marker is checked
        // before anything is issued into it (`verify`).
        let status = team.status.clone().unwrap_or_default();
        if !is_ready(&status.conditions, team.metadata.generation) {
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            let why = ready
                .map(|c| format!(" ({}: {})", c.reason, c.message))
                .unwrap_or_default();
            let message = format!("RouteroTeam '{team_name}' is not Ready{why}");
            // The team is down only because the gateway is: report the root cause, as the team does.
            if ready.is_some_and(|c| c.reason == "GatewayUnavailable") {
                return Ok(Dependencies::Blocked(Outcome::failed(
                    "GatewayUnavailable",
                    message,
                )));
            }
            return Ok(Dependencies::Blocked(Outcome::blocked(
                "TeamNotReady",
                message,
            )));
        }
        let team_id = team.team_id();
        if let Some(allowed) = team.spec.models.as_ref().filter(|m| !m.is_empty()) {
            let refused: Vec<&String> = self
                .key
                .spec
                .models
                .iter()
                .filter(|m| !allowed.contains(m))
                .collect();
            if !refused.is_empty() {
                return Ok(Dependencies::Blocked(Outcome::blocked(
                    "ModelNotAllowed",
                    format!(
                        "models {refused:?} are not in RouteroTeam '{team_name}' allowlist {allowed:?}"
                    ),
                )));
            }
        }
        let member = match &self.key.spec.member_ref {
            None => None,
            Some(m) => match self.read(|c| &c.members, &m.name).await? {
                None => {
                    return Ok(Dependencies::Gone(
                        "MemberNotReady",
                        format!(
                            "RouteroMember '{}' does not exist in namespace '{}'",
                            m.name, self.ns
                        ),
                    ));
                }
                Some(p) if p.meta().deletion_timestamp.is_some() => {
                    return Ok(Dependencies::Gone(
                        "MemberNotReady",
                        format!("RouteroMember '{}' is being deleted", m.name),
                    ));
                }
                Some(p)
                    if !p
                        .status
                        .as_ref()
                        .is_some_and(|s| is_ready(&s.conditions, p.metadata.generation)) =>
                {
                    return Ok(Dependencies::Blocked(Outcome::blocked(
                        "MemberNotReady",
                        format!("RouteroMember '{}' is not Ready", m.name),
                    )));
                }
                Some(p) => Some((m.name.clone(), p.user_id())),
            },
        };
        Ok(Dependencies::Ready(Scope {
            team: team_name.clone(),
            team_id,
            member,
        }))
    }

    /// A team or member from the key controller's cache (updated by the watch event that triggers this pass), or
    /// read live when the cache lacks it or shows it being deleted: absence and deletion lead to revocation, so
    /// they are confirmed by a live read.
    async fn read<K>(
        &self,
        pick: impl Fn(&super::context::Caches) -> &kube::runtime::reflector::Store<K>,
        name: &str,
    ) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + 'static,
    {
        if let Some(cached) = self.ctx.cached(pick, &self.ns, name)
            && cached.meta().deletion_timestamp.is_none()
        {
            return Ok(Some(cached.as_ref().clone()));
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        Ok(api.get_opt(name).await?)
    }

    /// A resync that the caches show has nothing to do: the workload Secret (from the watch cache) holds our key
    /// with its own id, no pending Secret exists, the Secret looks as the operator writes it, and the key (from the
    /// snapshot, else read) is quiet. Then no API-server GET and no gateway call is made; anything else falls through to the
    /// live reads of `apply`, which decide every write. A key read made here is left in `read` (hash, row).
    async fn quiet_from_caches(
        &self,
        read: &mut Option<(String, Option<KeyRow>)>,
    ) -> Option<Action> {
        let pending = secret::pending_name(self.key);
        if self
            .ctx
            .cached(|c| &c.secrets, &self.ns, &pending)
            .is_some()
        {
            return None;
        }
        let workload = self
            .ctx
            .cached(|c| &c.secrets, &self.ns, &self.key.secret_name())?;
        if !secret::is_ours(&workload, self.key) {
            return None;
        }
        let value = secret::key_in(&workload, &self.key.spec.secret.key_field)?;
        if workload.annotations().get(secret::KEY_ID) != Some(&value.id()) {
            return None;
        }
        let now = jiff::Timestamp::now();
        let hash = value.hash();
        // Not listed (listing costs more than reading, or not yet): read the key itself; still no API-server GET.
        let row = match self
            .ctx
            .keys
            .row(&hash, snapshot::max_age(self.ctx.settings.resync))
        {
            Some(row) => row,
            None => {
                // A failed read is left to the live path, which reports it.
                let row = self.ctx.gateway.key_info(&hash).await.ok()?;
                *read = Some((hash.clone(), row.clone()));
                row?
            }
        };
        if !self.quiet(&workload, &hash, &row, now) {
            return None;
        }
        let want = secret::workload_secret(
            self.key,
            &value,
            self.ctx.gateway.base_url(),
            &secret::operator_state(&workload),
        );
        if !secret::matches(&workload, &want) {
            return None;
        }
        Some(self.available(&workload, &row, now).await)
    }

    /// Reports the key in `secret` (as the gateway describes it in `info`) `Ready`, and when to look again.
    async fn available(&self, secret: &Secret, info: &KeyRow, now: jiff::Timestamp) -> Action {
        let id = secret
            .annotations()
            .get(secret::KEY_ID)
            .map_or("", String::as_str);
        let message = format!("key {id} is in Secret '{}'", secret.name_any());
        self.report(
            Outcome::ready("Available", message),
            Some(secret),
            Some(info),
        )
        .await;
        Action::requeue(self.next_wake(secret, info, now))
    }

    /// Before a key is issued into the scope: the gateway team, and the user of a per-person key, must carry the owner
    /// markers of exactly this key's RouteroTeam and RouteroMember. `None` when they do; else why not.
    async fn verify(&self, scope: &Scope) -> Result<Option<Outcome>> {
        let want = owner_id("RouteroTeam", &self.ns, &scope.team);
        match self.marker("team", &scope.team_id).await? {
            None => {
                return Ok(Some(Outcome::blocked(
                    "TeamNotReady",
                    format!("RouteroTeam '{}' has no gateway team yet", scope.team),
                )));
            }
            Some(owner) if owner.as_deref() != Some(want.as_str()) => {
                return Ok(Some(Outcome::blocked(
                    "Forbidden",
                    format!(
                        "gateway team '{}' is not managed by RouteroTeam '{}'; no key is issued into it",
                        scope.team_id, scope.team
                    ),
                )));
            }
            Some(_) => {}
        }
        if let Some((member, user_id)) = &scope.member {
            let want = owner_id("RouteroMember", &self.ns, member);
            match self.marker("user", user_id).await? {
                None => {
                    return Ok(Some(Outcome::blocked(
                        "MemberNotReady",
                        format!("RouteroMember '{member}' has no gateway user yet"),
                    )));
                }
                Some(owner) if owner.as_deref() != Some(want.as_str()) => {
                    return Ok(Some(Outcome::blocked(
                        "Forbidden",
                        format!(
                            "gateway user '{user_id}' is not managed by RouteroMember '{member}'; no key is issued for it"
                        ),
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The owner marker of gateway `team` or `user` `id` (`None`: there is no such object), from the markers the
    /// operator read recently, else read live and recorded.
    async fn marker(&self, kind: &'static str, id: &str) -> Result<Option<Option<String>>> {
        let max_age = snapshot::max_age(self.ctx.settings.resync);
        if let Some(owner) = self.ctx.markers.owner(kind, id, max_age) {
            return Ok(Some(owner));
        }
        let gw = &self.ctx.gateway;
        let metadata = match kind {
            "team" => gw.team_info(id).await?.map(|t| t.metadata),
            _ => gw.user_info(id).await?.map(|u| u.metadata),
        };
        let Some(metadata) = metadata else {
            return Ok(None);
        };
        self.ctx.markers.record(kind, id, metadata.as_ref());
        let owner = metadata
            .as_ref()
            .and_then(|m| m.get(super::ownership::OWNER_KEY))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Some(owner))
    }

    /// A warning Event for a refusal, once per reason (a refusal repeated at every resync is announced once).
    async fn announce(&self, outcome: &Outcome) {
        if !outcome.ready && !self.is_reported(&outcome.reason) {
            self.ctx
                .event(self.key, true, &outcome.reason, outcome.message.clone())
                .await;
        }
    }

    /// True when the key `hash` with gateway `metadata` is ours: our marker, or none and our proof for it.
    async fn ours(&self, hash: &str, metadata: Option<&Metadata>) -> Result<bool> {
        if unmarked(metadata) {
            return self.proven(hash).await;
        }
        Ok(self.owner.owns(metadata, false))
    }

    /// True when this resource's status holds the provenance proof for the key `hash`.
    async fn proven(&self, hash: &str) -> Result<bool> {
        let proofs = self.key.status.as_ref().map_or(&[][..], |s| &s.provenance);
        provenance::proven(self.ctx, &self.owner, "key", hash, proofs).await
    }

    /// Whose the key `hash` is, read live from the gateway: checked before any hash found in a Secret is deleted or
    /// regenerated.
    async fn holder(&self, hash: &str) -> Result<Holder> {
        Ok(match self.ctx.gateway.key_info(hash).await? {
            None => Holder::Gone,
            Some(row) if self.adoptable(&row) => Holder::Ours,
            Some(row) if self.ours(hash, row.metadata.as_ref()).await? => Holder::Ours,
            Some(_) => Holder::Foreign,
        })
    }

    /// Operator state in a Secret named a key this resource does not own: it is dropped and nothing is touched;
    /// a Warning Event says so, and the `Tampered` condition until the key is next issued or rotated.
    async fn untrusted(&self, what: &str) {
        let message = format!(
            "{what} named a gateway key this RouteroKey does not own; the state was dropped and the key left alone"
        );
        tracing::warn!(key = self.owner.id, "{message}");
        self.ctx
            .event(self.key, true, "UntrustedState", message.clone())
            .await;
        *self.tampered.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
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

    /// True when `row` (from the key snapshot) leaves nothing to do: the key is ours, usable and unexpired, matches
    /// the spec, no rotation or retirement is due. Only then may a resync skip its live `/key/info` read.
    fn quiet(&self, secret: &Secret, hash: &str, row: &KeyRow, now: jiff::Timestamp) -> bool {
        row.usable()
            && row
                .expires
                .as_deref()
                .and_then(parse_time)
                .is_none_or(|t| t > now)
            && self.owner.owns(row.metadata.as_ref(), false)
            && !secret.annotations().contains_key(secret::RETIRING_KEY)
            && self.plan(secret, row).due(now).is_none()
            && self.key_update(hash, &self.alias, row).is_none()
    }

    /// Managed fields that differ on the gateway, as a `/key/update` body (by hash).
    fn key_update(
        &self,
        hash: &str,
        alias: &str,
        info: &KeyRow,
    ) -> Option<(KeyUpdate, Vec<&'static str>)> {
        key_update(&self.key.spec, &self.owner, hash, alias, info)
    }

    /// Starts a fresh key: revokes any key of ours that holds the alias (its value is lost or exposed), records the
    /// new value in the pending Secret, then registers and delivers it.
    async fn issue(&self, scope: &Scope, workload: Option<&Secret>, what: &str) -> Result<Action> {
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
                Takeover::Replace(old) => {
                    let intent = Intent {
                        kind: self.strategy(),
                        next: KeyValue::generate(),
                        replaces: Some(old.clone()),
                        trigger,
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
        let standing = Standing {
            adopt: true,
            admin: self.ctx.is_admin_namespace(&self.ns),
            proven: false,
        };
        let what = format!("gateway key {} (alias '{}')", short_id(&token), self.alias);
        match self.owner.claim(row.metadata.as_ref(), standing, &what) {
            Claim::Ours => Ok(Takeover::Replace(token)),
            Claim::Adopt => {
                let merged = metadata_update(row.metadata.as_ref(), self.metadata());
                *self.adopting.lock().unwrap_or_else(|p| p.into_inner()) = merged;
                Ok(Takeover::Replace(token))
            }
            Claim::Conflict(m) => Ok(Takeover::Refused(Outcome::blocked("Conflict", m))),
            Claim::Forbidden(m) => Ok(Takeover::Refused(Outcome::blocked("Forbidden", m))),
        }
    }

    /// An unowned key this resource may adopt: `spec.adopt`, under this resource's own alias (or its Recreate
    /// alias), and an admin's decision (an admin namespace, or the key marked adoptable by this namespace). Such a
    /// key is treated as ours, so a Recreate takeover retires it after its grace period without writing to it first.
    fn adoptable(&self, row: &KeyRow) -> bool {
        let alias = row.key_alias.as_deref();
        self.key.spec.adopt
            && (alias == Some(self.alias.as_str()) || alias == Some(self.next_alias().as_str()))
            && self.owner.claim(
                row.metadata.as_ref(),
                Standing {
                    adopt: true,
                    admin: self.ctx.is_admin_namespace(&self.ns),
                    proven: false,
                },
                "",
            ) == Claim::Adopt
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
            if self.ours(token, row.metadata.as_ref()).await? {
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
                // Messages never name another tenant's resource: "elsewhere" is enough.
                let by = if super::ownership::owner_namespace(row.metadata.as_ref()).is_some() {
                    "a key managed elsewhere"
                } else {
                    "a key no resource manages (made outside the operator; spec.adopt: true takes it over where an \
                     admin allowed it)"
                };
                return Ok(Some(format!(
                    "key alias '{alias}' is already used on the gateway by {by}"
                )));
            }
        }
        Ok(None)
    }

    /// The rotation schedule of the key in `secret`, as the gateway describes it in `info`.
    fn plan<'s>(&'s self, secret: &'s Secret, info: &KeyRow) -> rotation::Plan<'s> {
        rotation::Plan {
            every: self
                .key
                .spec
                .rotation
                .as_ref()
                .and_then(|r| r.every.as_deref())
                .and_then(duration::parse),
            lifetime: self.key.spec.duration.as_deref().and_then(duration::parse),
            rotated_at: secret
                .annotations()
                .get(secret::ROTATED_AT)
                .and_then(|t| t.parse().ok()),
            expires: info.expires.as_deref().and_then(parse_time),
            requested: self
                .key
                .annotations()
                .get(secret::ROTATE)
                .map(String::as_str),
            handled: secret
                .annotations()
                .get(secret::ROTATE_HANDLED)
                .map(String::as_str),
        }
    }

    /// The next resync, or sooner when a rotation, renewal or retirement is due.
    fn next_wake(&self, secret: &Secret, info: &KeyRow, now: jiff::Timestamp) -> Duration {
        let plan = self.plan(secret, info);
        let retire = secret
            .annotations()
            .get(secret::RETIRE_AFTER)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        [plan.scheduled(), plan.renewal(), retire]
            .into_iter()
            .flatten()
            .map(|t| {
                Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
                    + Duration::from_millis(100)
            })
            .fold(self.ctx.resync_after(), Duration::min)
    }

    fn strategy(&self) -> IntentKind {
        match self
            .key
            .spec
            .rotation
            .as_ref()
            .map(|r| r.strategy)
            .unwrap_or_default()
        {
            RotationStrategy::Regenerate => IntentKind::Regenerate,
            RotationStrategy::Recreate => IntentKind::Recreate,
            RotationStrategy::Auto if self.ctx.regenerate_unsupported() => IntentKind::Recreate,
            RotationStrategy::Auto => IntentKind::Regenerate,
        }
    }

    async fn rotate(
        &self,
        scope: &Scope,
        secret: &Secret,
        value: &KeyValue,
        why: &str,
        trigger: Option<String>,
    ) -> Result<Action> {
        if secret.annotations().contains_key(secret::RETIRING_KEY) {
            // Still in a Recreate grace period: the next rotation waits until the old key is retired.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let intent = Intent {
            kind: self.strategy(),
            next: KeyValue::generate(),
            replaces: Some(value.hash()),
            trigger,
        };
        tracing::info!(key = self.owner.id, kind = ?intent.kind, why, "rotating key");
        let note = format!("rotated key {} to {} ({why})", value.id(), intent.next.id());
        self.start(intent, Some(secret), scope, "Rotated", note)
            .await
    }

    /// Records `intent` in the pending Secret, then carries it through; `note` is the Event once delivered.
    async fn start(
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
        match self.resolve(intent, workload, scope, true).await? {
            Resolved::Done(done) => {
                let (secret, info) = *done;
                self.ctx.event(self.key, false, reason, note).await;
                if reason == "Rotated" {
                    self.ctx.metrics.key_rotated();
                }
                // Ready in the same pass: the key was just confirmed, so there is nothing to read again.
                Ok(self.available(&secret, &info, jiff::Timestamp::now()).await)
            }
            Resolved::Blocked(outcome) => {
                self.report(outcome, workload, None).await;
                Ok(Action::requeue(self.ctx.resync_after()))
            }
            // Not for a fresh intent (nothing of it was read from a Secret); start over if it ever happens.
            Resolved::Dropped => Ok(Action::requeue(Duration::from_secs(1))),
        }
    }

    /// Carries a pending intent through: register on the gateway if not yet there, confirm by hash, deliver into
    /// the workload Secret, then drop the pending Secret. Safe to run again from any point.
    /// `fresh`: the value was chosen in this pass and the key it replaces was just read, so neither is looked up
    /// again before the register call.
    async fn resolve(
        &self,
        mut intent: Intent,
        workload: Option<&Secret>,
        scope: &Scope,
        fresh: bool,
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
                        metadata: self
                            .adopting
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take(),
                    };
                    match gw.key_regenerate(&req, &self.actor).await {
                        Ok(()) => {}
                        Err(e) if e.is_licence_gated() => {
                            self.ctx.set_regenerate_unsupported();
                            let auto = self
                                .key
                                .spec
                                .rotation
                                .as_ref()
                                .map(|r| r.strategy)
                                .unwrap_or_default()
                                == RotationStrategy::Auto;
                            if !auto {
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
        self.delete_secret(&secret::pending_name(self.key)).await?;
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
            field_manager: Some(super::status::MANAGER.into()),
            ..PostParams::default()
        };
        match self.secrets.get_opt(&p.name_any()).await? {
            None => drop(self.secrets.create(&pp, &p).await?),
            Some(existing) => {
                let mut p = p;
                p.metadata.resource_version = existing.resource_version();
                self.secrets.replace(&p.name_any(), &pp, &p).await?;
            }
        }
        Ok(())
    }

    /// Creates or replaces (with optimistic concurrency) the workload Secret with `value` and `state`.
    async fn write_workload(
        &self,
        existing: Option<&Secret>,
        value: &KeyValue,
        state: &BTreeMap<String, String>,
    ) -> Result<Secret> {
        let mut want = secret::workload_secret(self.key, value, self.ctx.gateway.base_url(), state);
        let pp = PostParams {
            field_manager: Some(super::status::MANAGER.into()),
            ..PostParams::default()
        };
        Ok(match existing.filter(|s| s.name_any() == want.name_any()) {
            None => self.secrets.create(&pp, &want).await?,
            Some(s) => {
                want.metadata.resource_version = s.resource_version();
                self.secrets.replace(&want.name_any(), &pp, &want).await?
            }
        })
    }

    async fn delete_secret(&self, name: &str) -> Result<()> {
        match self.secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes every gateway key this resource may hold (the delivered one, a pending one, a retiring one, and any
    /// of ours under its aliases; the aliases are looked up when `by_alias` or a Secret is still there), then removes
    /// its Secrets. A hash read from a Secret is revoked only when the gateway shows the key is ours. Returns how many
    /// keys were revoked and whether the workload Secret was removed.
    async fn revoke_everything(&self, by_alias: bool) -> Result<(usize, bool)> {
        let mut from_secrets = Vec::new();
        let workload = self
            .secrets
            .get_opt(&self.key.secret_name())
            .await?
            .filter(|s| secret::is_ours(s, self.key));
        let pending = self
            .secrets
            .get_opt(&secret::pending_name(self.key))
            .await?
            .filter(|s| secret::is_ours(s, self.key));
        if let Some(s) = &workload {
            from_secrets
                .extend(secret::key_in(s, &self.key.spec.secret.key_field).map(|v| v.hash()));
            from_secrets.extend(s.annotations().get(secret::RETIRING_KEY).cloned());
        }
        if let Some(p) = &pending {
            from_secrets.extend(secret::read_pending(p).map(|i| i.next.hash()));
        }
        let mut hashes = Vec::new();
        let look_up = by_alias || workload.is_some() || pending.is_some();
        for alias in [self.alias.clone(), self.next_alias()]
            .into_iter()
            .filter(|_| look_up)
        {
            for row in self.ctx.gateway.keys_by_alias(&alias).await? {
                let Some(token) = row.token.clone() else {
                    continue;
                };
                // A key taken over by Recreate is still in its grace period: it goes with the resource.
                let taken_over = workload.is_some() && self.adoptable(&row);
                if taken_over || self.ours(&token, row.metadata.as_ref()).await? {
                    hashes.push(token);
                }
            }
        }
        from_secrets.sort();
        from_secrets.dedup();
        from_secrets.retain(|h| !hashes.contains(h));
        for h in from_secrets {
            match self.holder(&h).await? {
                Holder::Ours => hashes.push(h),
                Holder::Gone => {}
                Holder::Foreign => {
                    self.untrusted(&format!("Secret '{}'", self.key.secret_name()))
                        .await
                }
            }
        }
        hashes.sort();
        hashes.dedup();
        let mut revoked = 0;
        for h in &hashes {
            if self.ctx.gateway.key_delete(h, &self.actor).await? {
                revoked += 1;
            }
        }
        if workload.is_some() {
            self.delete_secret(&self.key.secret_name()).await?;
        }
        if pending.is_some() {
            self.delete_secret(&secret::pending_name(self.key)).await?;
        }
        Ok((revoked, workload.is_some()))
    }

    /// Deletion: `Delete` revokes on the gateway (404 = done) and removes the Secrets; `Orphan` keeps the key and
    /// its Secret, dropping the Secret's ownerReference so garbage collection leaves it.
    async fn cleanup(&self) -> Result<Action> {
        if self.key.spec.deletion_policy == DeletionPolicy::Orphan {
            if let Some(p) = self
                .secrets
                .get_opt(&secret::pending_name(self.key))
                .await?
                .filter(|s| secret::is_ours(s, self.key))
            {
                // A pending value is not delivered to anyone: revoke it rather than leave it unknown (if it is ours).
                if let Some(intent) = secret::read_pending(&p) {
                    let hash = intent.next.hash();
                    if let Holder::Ours = self.holder(&hash).await? {
                        self.ctx.gateway.key_delete(&hash, &self.actor).await?;
                    }
                }
                self.delete_secret(&p.name_any()).await?;
            }
            if let Some(s) = self
                .secrets
                .get_opt(&self.key.secret_name())
                .await?
                .filter(|s| secret::is_ours(s, self.key))
            {
                let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
                self.secrets
                    .patch(
                        &s.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
            self.ctx
                .event(
                    self.key,
                    false,
                    "Orphaned",
                    "left the key and its Secret in place (deletionPolicy: Orphan)".into(),
                )
                .await;
            return Ok(Action::await_change());
        }
        let (revoked, _) = self.revoke_everything(true).await?;
        self.ctx
            .event(
                self.key,
                false,
                "Revoked",
                format!(
                    "revoked {revoked} key(s) and removed Secret '{}'",
                    self.key.secret_name()
                ),
            )
            .await;
        Ok(Action::await_change())
    }

    fn is_reported(&self, reason: &str) -> bool {
        self.key
            .status
            .as_ref()
            .is_some_and(|s| ready_because(&s.conditions, reason))
    }

    async fn report(&self, outcome: Outcome, secret: Option<&Secret>, info: Option<&KeyRow>) {
        self.report_with(outcome, secret, info, false).await;
    }

    /// `revoked`: the key was revoked and its Secret removed, so the status stops naming it.
    async fn report_with(
        &self,
        outcome: Outcome,
        secret: Option<&Secret>,
        info: Option<&KeyRow>,
        revoked: bool,
    ) {
        let key = self.key;
        let api: Api<RouteroKey> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let mut previous = key.status.clone().unwrap_or_default();
        if revoked {
            (previous.key_id, previous.expires_at, previous.next_rotation) = (None, None, None);
        }
        if outcome.synced {
            self.ctx
                .succeeded(&format!("{}/{}", self.ns, key.name_any()));
        }
        let delivered =
            secret.and_then(|s| secret::key_in(s, &key.spec.secret.key_field).map(|v| (s, v)));
        let mut conditions = outcome.conditions(&previous.conditions, key.metadata.generation);
        let new_key = delivered.as_ref().map(|(_, v)| v.id()) != previous.key_id;
        let tampered = self
            .tampered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match tampered {
            Some(message) => conditions.push(super::status::notice(
                &previous.conditions,
                TAMPERED,
                "UntrustedState",
                &message,
                key.metadata.generation,
            )),
            // Shown until a new key replaces the one whose Secret was tampered with.
            None if !new_key => conditions.extend(
                previous
                    .conditions
                    .iter()
                    .filter(|c| c.type_ == TAMPERED)
                    .cloned(),
            ),
            None => {}
        }
        // A proof is recorded for a newly delivered key once the gateway shows it with our marker (not on every
        // resync: the proof of a key already reported is in the list).
        let mut proofs = previous.provenance.clone();
        if let Some((_, value)) = &delivered
            && (new_key || proofs.is_empty())
            && info.is_some_and(|i| self.owner.owns(i.metadata.as_ref(), false))
            && let Ok(p) = provenance::proof(self.ctx, &self.owner, "key", &value.hash()).await
        {
            proofs = provenance::remember(&proofs, p);
        }
        let status = RouteroKeyStatus {
            conditions,
            observed_generation: key.metadata.generation,
            alias: Some(self.alias.clone()),
            key_id: delivered
                .as_ref()
                .map(|(_, v)| v.id())
                .or(previous.key_id.clone()),
            team_id: info.and_then(|i| i.team_id.clone()).or(previous.team_id),
            user_id: info.map_or(previous.user_id, |i| i.user_id.clone()),
            secret_name: Some(key.secret_name()),
            spend: info.and_then(|i| i.spend).or(previous.spend),
            expires_at: info.map_or(previous.expires_at, |i| {
                i.expires
                    .as_deref()
                    .and_then(parse_time)
                    .map(|t| t.to_string())
            }),
            last_rotation: secret
                .and_then(|s| s.annotations().get(secret::ROTATED_AT).cloned())
                .or(previous.last_rotation),
            next_rotation: match (secret, info) {
                (Some(s), Some(i)) => self.plan(s, i).next().map(|t| t.to_string()),
                _ => previous.next_rotation,
            },
            provenance: proofs,
        };
        self.ctx.metrics.observe_key(key, &status);
        if let Err(e) = apply_status(&api, key, key.status.as_ref(), &status).await {
            tracing::warn!(key = self.owner.id, error = %e, "could not write status");
        }
    }
}

/// The `/key/update` body (by hash) holding the managed fields of `spec` that differ from the gateway's `info`, and
/// their names; `None` when the key matches. One diff for the controller and `plan`.
pub fn key_update(
    spec: &crate::crd::RouteroKeySpec,
    owner: &Owner,
    hash: &str,
    alias: &str,
    info: &KeyRow,
) -> Option<(KeyUpdate, Vec<&'static str>)> {
    let mut req = KeyUpdate {
        key: hash.to_owned(),
        ..KeyUpdate::default()
    };
    let mut changed = Vec::new();
    if info.key_alias.as_deref() != Some(alias) {
        req.key_alias = Some(alias.to_owned());
        changed.push("alias");
    }
    let mut have = info.models.clone();
    let mut want = spec.models.clone();
    have.sort();
    want.sort();
    if have != want {
        req.models = Some(spec.models.clone());
        changed.push("models");
    }
    if let Some(b) = budget_update(spec.max_budget, info.max_budget) {
        req.max_budget = Some(b);
        changed.push("maxBudget");
    }
    if spec.budget_duration.is_some() && spec.budget_duration != info.budget_duration {
        req.budget_duration = spec.budget_duration.clone();
        changed.push("budgetDuration");
    }
    if let Some(merged) = metadata_update(info.metadata.as_ref(), owner.stamp(Metadata::new())) {
        req.metadata = Some(merged);
        changed.push("metadata");
    }
    (!changed.is_empty()).then_some((req, changed))
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
    /// A key this resource may take over: replace it (by its hash) with a rotation.
    Replace(String),
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

/// The alias-squatting rule: a dotted alias must begin with this namespace and a dot, because `<namespace>.<name>`
/// is every namespace's default and no tenant may take another's. Plain aliases (`ds-prod`) stay open to all.
fn alias_refusal(alias: &str, ns: &str) -> Option<String> {
    let prefix = format!("{ns}.");
    (alias.contains('.') && !alias.starts_with(&prefix)).then(|| {
        format!(
            "key alias '{alias}' is refused: an alias with a dot must begin with this namespace ('{prefix}'), so \
             that no namespace can take another's aliases"
        )
    })
}

/// The condition shown after operator state in a Secret was found naming a key this resource does not own.
pub const TAMPERED: &str = "Tampered";

/// Gateway timestamps come as `…Z` or `…+00:00`.
fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::alias_refusal;

    #[test]
    fn dotted_aliases_belong_to_their_namespace() {
        assert_eq!(alias_refusal("ds-prod", "finance"), None);
        assert_eq!(alias_refusal("finance.api", "finance"), None);
        assert_eq!(alias_refusal("finance.api.next", "finance"), None);
        let refused = alias_refusal("data-science.ds-prod", "finance").expect("refused");
        assert!(refused.contains("'finance.'"), "{refused}");
        // A namespace whose name prefixes another's gets no foothold in it.
        assert!(alias_refusal("fin.api", "finance").is_some());
        assert!(alias_refusal("finance-eu.api", "finance").is_some());
    }
}
