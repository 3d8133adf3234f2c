//! The RouteroKey controller: issues, rotates and revokes gateway keys, delivered through Secrets.
//!
//! Crash safety (DESIGN §3): a new key value is chosen and written to a pending Secret first, then registered on
//! the gateway, then confirmed by its SHA-256 through `/key/info`, and only then copied into the workload Secret.
//! So the workload Secret only ever receives a key the gateway has confirmed, and a key the gateway holds is always
//! known to Kubernetes (in the pending or the workload Secret). Any crash resumes from the pending Secret.
//!
//! Where things are: `apply` below is the whole pass, step by step; each step lives with its kind of work:
//! `deps` (team and member), `secrets` (the Secrets the key lives in), `issue` (new values, crash-safe, and
//! `spec.adopt` takeovers), `trust` (whose a key is), `retire` (the old key after a Recreate grace period),
//! `rotate` (schedule and strategy), `drift` (correcting the gateway key and its Secret), `revoke` (deletion and
//! lost dependencies) and `report` (status and Events).
use std::ops::ControlFlow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::Context;
use super::ownership::Owner;
use super::secret;
use super::secret_view::SecretView;
use super::status::Outcome;
use crate::crd::RouteroKey;
use crate::error::Result;

mod deps;
mod drift;
mod issue;
mod report;
mod retire;
mod revoke;
mod rotate;
mod secrets;
mod trust;

pub use deps::{alias_refusal, models_refusal, team_not_ours};
pub use drift::key_update;
pub use issue::alias_taken;
pub use report::TAMPERED;

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
}

/// A step of `apply`: go on with its result, or end the pass with this Action.
type Step<T> = ControlFlow<Action, T>;

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
        })
    }

    /// The alias a Recreate rotation's new key carries until the old one is deleted.
    fn next_alias(&self) -> String {
        crate::crd::key::next_alias(&self.alias)
    }

    /// One pass: what the key depends on, the Secrets it lives in, whatever a previous pass left unfinished; then
    /// the delivered key as the gateway shows it, which is issued, retired, rotated or corrected as due. Each step
    /// either hands its result to the next or ends the pass with its Action.
    async fn apply(&self) -> Result<Action> {
        let scope = match self.dependencies().await? {
            Dependencies::Ready(scope) => scope,
            Dependencies::Blocked(outcome) => {
                self.report(outcome, None, None).await;
                return Ok(Action::requeue(self.ctx.resync_after()));
            }
            Dependencies::Gone(reason, message) => return self.revoke_gone(reason, message).await,
        };

        // A key read made there is not made again below.
        let mut read = None;
        if let Some(action) = self.quiet_from_caches(&mut read).await {
            return Ok(action);
        }
        let (workload, pending) = match self.read_secrets().await? {
            Step::Continue(secrets) => secrets,
            Step::Break(action) => return Ok(action),
        };
        // Finish whatever a previous pass (or a crashed operator) started.
        let workload = match self.resume(pending.as_ref(), workload, &scope).await? {
            Step::Continue(workload) => workload,
            Step::Break(action) => return Ok(action),
        };

        let Some((secret, value)) = workload
            .as_ref()
            .and_then(|s| secret::key_in(s, &self.key.spec.secret.key_field).map(|v| (s, v)))
        else {
            // No key delivered yet, or the Secret was deleted or emptied: any key of ours is lost, so revoke it.
            return self.issue(&scope, workload.as_ref(), "issued").await;
        };
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
        let info = match self.live(&scope, secret, &value, &hash, read, now).await? {
            Step::Continue(info) => info,
            Step::Break(action) => return Ok(action),
        };
        if let Step::Break(action) = self.claim(&value, &hash, secret, &info).await? {
            return Ok(action);
        }

        let secret = self.retire(secret, &value, now).await?;
        let alias = self.current_alias(&secret);
        if let Some((why, trigger)) = self.plan(&SecretView::of(&secret), &info).due(now) {
            return self.rotate(&scope, &secret, &value, why, trigger).await;
        }
        let secret = self
            .correct_drift(secret, &value, &hash, &alias, &info)
            .await?;
        Ok(self.available(&SecretView::of(&secret), &info, now).await)
    }
}

/// Gateway timestamps come as `…Z` or `…+00:00`.
fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}
