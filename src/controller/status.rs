//! Conditions and status writes shared by the controllers.
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::Condition;

pub const MANAGER: &str = "routero-operator";

/// The outcome of one reconcile, as the two standard conditions show it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub ready: bool,
    pub synced: bool,
    pub reason: String,
    pub message: String,
}

impl Outcome {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: true,
            synced: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Reconciled as far as possible, but not usable (a conflict, a missing dependency).
    pub fn blocked(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            synced: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The reconcile itself failed.
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            synced: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `Ready` and `Synced`, keeping each one's transition time when its status is unchanged.
    pub fn conditions(&self, previous: &[Condition], generation: Option<i64>) -> Vec<Condition> {
        let synced_reason = if self.synced {
            "ReconcileSuccess"
        } else {
            self.reason.as_str()
        };
        let synced_message = if self.synced {
            ""
        } else {
            self.message.as_str()
        };
        vec![
            flag(
                previous,
                "Ready",
                self.ready,
                &self.reason,
                &self.message,
                generation,
            ),
            flag(
                previous,
                "Synced",
                self.synced,
                synced_reason,
                synced_message,
                generation,
            ),
        ]
    }
}

/// A condition beside `Ready` and `Synced` that reports something found (`True`), keeping its transition time.
pub fn notice(
    previous: &[Condition],
    type_: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    flag(previous, type_, true, reason, message, generation)
}

/// A condition beside `Ready` and `Synced` that is `True` or `False`, keeping its transition time.
pub fn flag(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .or_else(|| Some(jiff::Timestamp::now().to_string()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Writes `status` with server-side apply, unless it equals what the object already shows (steady state makes no
/// Kubernetes writes either).
pub async fn apply_status<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = Outcome::ready("Created", "ok").conditions(&[], Some(1));
        let mut old = first.clone();
        old[0].last_transition_time = Some("2020-01-01T00:00:00Z".into());
        let again = Outcome::ready("Updated", "ok").conditions(&old, Some(2));
        assert_eq!(
            again[0].last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
        assert_eq!(again[0].observed_generation, Some(2));
        let down = Outcome::failed("GatewayUnavailable", "503").conditions(&old, Some(2));
        assert_ne!(
            down[0].last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
        assert_eq!(down[0].status, "False");
        assert_eq!(down[1].reason, "GatewayUnavailable");
    }

    #[test]
    fn blocked_is_synced_but_not_ready() {
        let c = Outcome::blocked("Conflict", "owned by someone else").conditions(&[], None);
        assert_eq!(
            (c[0].status.as_str(), c[0].reason.as_str()),
            ("False", "Conflict")
        );
        assert_eq!(
            (c[1].status.as_str(), c[1].reason.as_str()),
            ("True", "ReconcileSuccess")
        );
    }
}
