//! Types shared by the three kinds: conditions, references, policies, and the duration patterns the gateway accepts.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind.
pub const GROUP: &str = "routero.ai";

/// Gateway durations: `s`, `m` (minutes!), `h`, `d`, `w`, `mo` (months). `1month` or `1M` are refused.
pub const DURATION_PATTERN: &str = "^[1-9][0-9]{0,5}(s|m|h|d|w|mo)$";
/// Budget windows: minute and second windows are refused because `1m` is a frequent typo for a month.
pub const BUDGET_DURATION_PATTERN: &str = "^[1-9][0-9]{0,4}(h|d|w|mo)$";
/// Gateway ids (team_id, user_id): what the gateway stores and what fits in a label-free URL query.
pub const ID_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9._@-]{0,126}[A-Za-z0-9])?$";

/// What happens on the gateway when the Kubernetes resource is deleted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete (or revoke) the gateway object.
    #[default]
    Delete,
    /// Leave the gateway object as it is.
    Orphan,
}

/// A reference to another Routero resource in the same namespace (tenancy: references never cross namespaces).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalRef {
    /// Name of the resource in this resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Optional, and if set it must be this resource's own namespace: cross-namespace references are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The tenancy rule (DESIGN §4): a reference resolves in the referring resource's own namespace only.
/// Returns the refusal message for a reference that names another namespace.
pub fn cross_namespace(
    kind: &str,
    name: &str,
    referenced: Option<&str>,
    own: &str,
) -> Option<String> {
    match referenced {
        Some(ns) if ns != own => Some(format!(
            "{kind} '{name}' in namespace '{ns}' is refused: references resolve only in this resource's namespace '{own}'"
        )),
        _ => None,
    }
}

/// A status condition, as in `metav1.Condition`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` (the object is usable now) or `Synced` (the last reconcile succeeded).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason such as `Created`, `Conflict`, `GatewayUnavailable`.
    pub reason: String,
    /// A human-readable message; never contains key material.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Finds a condition by type.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the `Ready` condition already gives `reason` (its Event went out when it was first set).
pub fn ready_because(conditions: &[Condition], reason: &str) -> bool {
    condition(conditions, "Ready").is_some_and(|c| c.reason == reason)
}

/// True when `Ready=True` was computed for the current generation.
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    condition(conditions, "Ready").is_some_and(|c| {
        c.is_true() && (generation.is_none() || c.observed_generation == generation)
    })
}
