//! Revocation: when the RouteroKey is deleted (`deletionPolicy`), or its team or member is gone, every gateway key it
//! may hold is revoked and its Secrets removed.
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;

use super::{Holder, Keys};
use crate::controller::secret;
use crate::controller::status::Outcome;
use crate::crd::DeletionPolicy;
use crate::error::Result;

impl<'a> Keys<'a> {
    /// The team or member is gone or being deleted: the key is revoked and its Secret removed, and the status stops
    /// naming it.
    pub(super) async fn revoke_gone(
        &self,
        reason: &'static str,
        message: String,
    ) -> Result<Action> {
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
        Ok(Action::requeue(self.ctx.resync_after()))
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
    pub(super) async fn cleanup(&self) -> Result<Action> {
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
}
