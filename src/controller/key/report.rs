//! What the RouteroKey's status and Events say about a pass.
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{Keys, parse_time};
use crate::controller::provenance;
use crate::controller::secret;
use crate::controller::secret_view::SecretView;
use crate::controller::status::{Outcome, apply_status};
use crate::crd::common::ready_because;
use crate::crd::{RouteroKey, RouteroKeyStatus};
use crate::gateway::types::KeyRow;

impl<'a> Keys<'a> {
    /// Reports the key in `secret` (as the gateway describes it in `info`) `Ready`, and when to look again.
    pub(super) async fn available(
        &self,
        secret: &SecretView,
        info: &KeyRow,
        now: jiff::Timestamp,
    ) -> Action {
        let id = secret.annotation(secret::KEY_ID).unwrap_or_default();
        let message = format!("key {id} is in Secret '{}'", secret.name_any());
        self.report_with(
            Outcome::ready("Available", message),
            Some(secret),
            Some(info),
            false,
        )
        .await;
        Action::requeue(self.next_wake(secret, info, now))
    }

    /// A warning Event for a refusal, once per reason (a refusal repeated at every resync is announced once).
    pub(super) async fn announce(&self, outcome: &Outcome) {
        if !outcome.ready && !self.is_reported(&outcome.reason) {
            self.ctx
                .event(self.key, true, &outcome.reason, outcome.message.clone())
                .await;
        }
    }

    pub(super) fn is_reported(&self, reason: &str) -> bool {
        self.key
            .status
            .as_ref()
            .is_some_and(|s| ready_because(&s.conditions, reason))
    }

    pub(super) async fn report(
        &self,
        outcome: Outcome,
        secret: Option<&Secret>,
        info: Option<&KeyRow>,
    ) {
        let secret = secret.map(SecretView::of);
        self.report_with(outcome, secret.as_ref(), info, false)
            .await;
    }

    /// `revoked`: the key was revoked and its Secret removed, so the status stops naming it.
    pub(super) async fn report_with(
        &self,
        outcome: Outcome,
        secret: Option<&SecretView>,
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
        let delivered = secret.and_then(|s| s.key_in(&key.spec.secret.key_field).map(|v| (s, v)));
        let mut conditions = outcome.conditions(&previous.conditions, key.metadata.generation);
        let new_key = delivered.as_ref().map(|(_, v)| v.id()) != previous.key_id;
        let tampered = self
            .tampered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match tampered {
            Some(message) => conditions.push(crate::controller::status::notice(
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
                .and_then(|s| s.annotation(secret::ROTATED_AT).map(str::to_owned))
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

/// The condition shown after operator state in a Secret was found naming a key this resource does not own.
pub const TAMPERED: &str = "Tampered";
