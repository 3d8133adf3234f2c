//! Whose a key is. Secrets (and so any hash read from one) may be written by a tenant: a key named there is managed,
//! regenerated or deleted only when the gateway shows it is ours.
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;

use super::{Holder, Keys, Step};
use crate::controller::key_value::KeyValue;
use crate::controller::ownership::{Claim, Standing, unmarked};
use crate::controller::provenance;
use crate::controller::status::Outcome;
use crate::error::Result;
use crate::gateway::types::{KeyRow, Metadata};

impl<'a> Keys<'a> {
    /// The delivered key must be ours (our owner marker, or none and our provenance proof): a key the gateway shows
    /// as someone else's ends the pass as a `Conflict`, and nothing is written to it.
    pub(super) async fn claim(
        &self,
        value: &KeyValue,
        hash: &str,
        secret: &Secret,
        info: &KeyRow,
    ) -> Result<Step<()>> {
        // A key this resource took over by regenerating it, when the pass that sent our markers with the
        // regeneration did not survive (a crash before the call): still adoptable, and the drift step stamps it.
        if self.adoptable(info) {
            return Ok(Step::Continue(()));
        }
        let standing = Standing {
            proven: unmarked(info.metadata.as_ref()) && self.proven(hash).await?,
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
                Some(info),
            )
            .await;
            return Ok(Step::Break(Action::requeue(self.ctx.resync_after())));
        }
        Ok(Step::Continue(()))
    }

    /// True when the key `hash` with gateway `metadata` is ours: our marker, or none and our proof for it.
    pub(super) async fn ours(&self, hash: &str, metadata: Option<&Metadata>) -> Result<bool> {
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
    pub(super) async fn holder(&self, hash: &str) -> Result<Holder> {
        Ok(match self.ctx.gateway.key_info(hash).await? {
            None => Holder::Gone,
            Some(row) if self.adoptable(&row) => Holder::Ours,
            Some(row) if self.ours(hash, row.metadata.as_ref()).await? => Holder::Ours,
            Some(_) => Holder::Foreign,
        })
    }

    /// Operator state in a Secret named a key this resource does not own: it is dropped and nothing is touched;
    /// a Warning Event says so, and the `Tampered` condition until the key is next issued or rotated.
    pub(super) async fn untrusted(&self, what: &str) {
        let message = format!(
            "{what} named a gateway key this RouteroKey does not own; the state was dropped and the key left alone"
        );
        tracing::warn!(key = self.owner.id, "{message}");
        self.ctx
            .event(self.key, true, "UntrustedState", message.clone())
            .await;
        *self.tampered.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }
}
