//! Drift: the gateway key and its Secret are compared with the spec at every pass, and corrected. A resync whose
//! caches show nothing to correct (`quiet_from_caches`) makes no API-server GET and no gateway call.
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Keys, Scope, Step, parse_time};
use crate::controller::key_value::KeyValue;
use crate::controller::ownership::{Owner, budget_update, metadata_update};
use crate::controller::secret;
use crate::controller::secret_view::SecretView;
use crate::controller::snapshot;
use crate::error::Result;
use crate::gateway::types::{KeyRow, KeyUpdate, Metadata};

impl<'a> Keys<'a> {
    /// A resync that the caches show has nothing to do: the workload Secret (from the watch cache) holds our key
    /// with its own id, no pending Secret exists, the Secret looks as the operator writes it, and the key (from the
    /// snapshot, else read) is quiet. Then no API-server GET and no gateway call is made; anything else falls through to the
    /// live reads of `apply`, which decide every write. A key read made here is left in `read` (hash, row).
    pub(super) async fn quiet_from_caches(
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
        if !workload.is_owned_by(self.key) {
            return None;
        }
        let value = workload.key_in(&self.key.spec.secret.key_field)?;
        if workload.annotation(secret::KEY_ID) != Some(value.id().as_str()) {
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
            value,
            self.ctx.gateway.base_url(),
            &workload.operator_state(),
        );
        if !workload.covers(&SecretView::of(&want)) {
            return None;
        }
        Some(self.available(&workload, &row, now).await)
    }

    /// The gateway's row for the delivered key `hash`: a listed row that shows nothing to do spares the read (as does
    /// one `quiet_from_caches` already made, in `read`); anything else is read live before acting. A key deleted,
    /// blocked or expired on the gateway ends the pass with a new key issued in its place.
    pub(super) async fn live(
        &self,
        scope: &Scope,
        secret: &Secret,
        value: &KeyValue,
        hash: &str,
        read: Option<(String, Option<KeyRow>)>,
        now: jiff::Timestamp,
    ) -> Result<Step<KeyRow>> {
        let listed = self
            .ctx
            .keys
            .row(hash, snapshot::max_age(self.ctx.settings.resync))
            .filter(|row| self.quiet(&SecretView::of(secret), hash, row, now));
        let info = match (listed, read.filter(|(h, _)| *h == hash)) {
            (Some(row), _) => Some(row),
            (None, Some((_, row))) => row,
            (None, None) => self.ctx.gateway.key_info(hash).await?,
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
                return Ok(Step::Break(self.issue(scope, Some(secret), what).await?));
            }
        };
        Ok(Step::Continue(info))
    }

    /// True when `row` (from the key snapshot) leaves nothing to do: the key is ours, usable and unexpired, matches
    /// the spec, no rotation or retirement is due. Only then may a resync skip its live `/key/info` read.
    fn quiet(&self, secret: &SecretView, hash: &str, row: &KeyRow, now: jiff::Timestamp) -> bool {
        row.usable()
            && row
                .expires
                .as_deref()
                .and_then(parse_time)
                .is_none_or(|t| t > now)
            && self.owner.owns(row.metadata.as_ref(), false)
            && secret.annotation(secret::RETIRING_KEY).is_none()
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

    /// Drift: correct managed fields on the gateway, then the Secret's own fields. Returns the workload Secret as it
    /// is afterwards.
    pub(super) async fn correct_drift(
        &self,
        mut secret: Secret,
        value: &KeyValue,
        hash: &str,
        alias: &str,
        info: &KeyRow,
    ) -> Result<Secret> {
        if let Some((update, changed)) = self.key_update(hash, alias, info)
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
            value,
            self.ctx.gateway.base_url(),
            &secret::operator_state(&secret),
        );
        if !secret::matches(&secret, &want) {
            secret = self
                .write_workload(Some(&secret), value, &secret::operator_state(&secret))
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
        Ok(secret)
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
