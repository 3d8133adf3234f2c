//! Rotation: on a schedule (`rotation.every`), before the key's own expiry, or on request (the rotate annotation),
//! by Regenerate (same key id, spend and budget) or Recreate (a new key; the old one retires after a grace period).
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Keys, Scope, parse_time};
use crate::controller::duration;
use crate::controller::key_value::KeyValue;
use crate::controller::rotation;
use crate::controller::secret::{self, Intent, IntentKind};
use crate::controller::secret_view::SecretView;
use crate::crd::key::RotationStrategy;
use crate::error::Result;
use crate::gateway::types::KeyRow;

impl<'a> Keys<'a> {
    /// The rotation schedule of the key in `secret`, as the gateway describes it in `info`.
    pub(super) fn plan<'s>(&'s self, secret: &'s SecretView, info: &KeyRow) -> rotation::Plan<'s> {
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
                .annotation(secret::ROTATED_AT)
                .and_then(|t| t.parse().ok()),
            expires: info.expires.as_deref().and_then(parse_time),
            requested: self
                .key
                .annotations()
                .get(secret::ROTATE)
                .map(String::as_str),
            handled: secret.annotation(secret::ROTATE_HANDLED),
        }
    }

    /// The next resync, or sooner when a rotation, renewal or retirement is due.
    pub(super) fn next_wake(
        &self,
        secret: &SecretView,
        info: &KeyRow,
        now: jiff::Timestamp,
    ) -> Duration {
        let plan = self.plan(secret, info);
        let retire = secret
            .annotation(secret::RETIRE_AFTER)
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

    pub(super) fn strategy(&self) -> IntentKind {
        match self.key.rotation_strategy() {
            RotationStrategy::Regenerate => IntentKind::Regenerate,
            RotationStrategy::Recreate => IntentKind::Recreate,
            RotationStrategy::Auto if self.ctx.regenerate_unsupported() => IntentKind::Recreate,
            RotationStrategy::Auto => IntentKind::Regenerate,
        }
    }

    pub(super) async fn rotate(
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
            markers: None,
        };
        tracing::info!(key = self.owner.id, kind = ?intent.kind, why, "rotating key");
        let note = format!("rotated key {} to {} ({why})", value.id(), intent.next.id());
        self.start(intent, Some(secret), scope, "Rotated", note)
            .await
    }
}
