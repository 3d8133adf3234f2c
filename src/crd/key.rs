//! `RouteroKey`: a virtual key whose value the operator writes into a Kubernetes Secret.
use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    BUDGET_DURATION_PATTERN, Condition, DURATION_PATTERN, DeletionPolicy, LocalRef,
};

/// Key aliases the gateway's optional format check accepts.
pub const ALIAS_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_./@-]{0,253}[A-Za-z0-9]$";
/// A Secret name (DNS subdomain).
pub const SECRET_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";
/// A Secret data key.
pub const SECRET_FIELD_PATTERN: &str = "^[-._a-zA-Z0-9]{1,253}$";

/// A virtual key on the gateway, delivered to workloads through a Secret.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "routero.ai",
    version = "v1alpha1",
    kind = "RouteroKey",
    namespaced,
    status = "RouteroKeyStatus",
    shortname = "rkey",
    category = "routero",
    printcolumn(name = "Team", type_ = "string", json_path = ".spec.teamRef.name"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Key ID", type_ = "string", json_path = ".status.keyId"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        priority = 1
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "string",
        json_path = ".status.nextRotation",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.teamRef == oldSelf.teamRef").message("teamRef is immutable: create a new RouteroKey for another team").field_path(".teamRef"))]
#[x_kube(validation = Rule::new(
    "has(self.memberRef) == has(oldSelf.memberRef) && (!has(self.memberRef) || self.memberRef == oldSelf.memberRef)"
).message("memberRef is immutable").field_path(".memberRef"))]
#[serde(rename_all = "camelCase")]
pub struct RouteroKeySpec {
    /// The RouteroTeam (same namespace) the key belongs to.
    pub team_ref: LocalRef,
    /// A RouteroMember (same namespace): makes this a per-person key that dies with the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_ref: Option<LocalRef>,
    /// The gateway key alias, unique across the gateway. Defaults to `<namespace>.<name>`. An alias with a dot must
    /// begin with this namespace and a dot (`<namespace>.…`), so no namespace can take another's default aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ALIAS_PATTERN))]
    pub alias: Option<String>,
    /// Lifetime of each issued key (`30d`, `12h`, ...). The operator renews it before it runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    /// Models this key may call: a subset of the team's allowlist. Empty means whatever the team allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 255)))]
    pub models: Vec<String>,
    /// Hard budget in USD for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// Budget window for `maxBudget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BUDGET_DURATION_PATTERN))]
    pub budget_duration: Option<String>,
    /// Where the key is written.
    #[serde(default)]
    pub secret: KeySecret,
    /// Automatic rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// `Delete` revokes the key on the gateway and removes the Secret; `Orphan` keeps both.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over an existing gateway key under this alias that no resource owns (allowed in the admin namespaces,
    /// or where an admin marked it `routero.ai/adoptable-by: <namespace>`, as `import` does). A key's value cannot
    /// be read back, so a new value is delivered into the Secret by a rotation: Regenerate in place where the
    /// gateway offers it (id, spend and budget kept), else Recreate: a new key, while the old value keeps working
    /// for `rotation.gracePeriod` before the old key is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// The Secret the key is written into.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.baseUrlField) || self.baseUrlField != self.keyField").message("baseUrlField must differ from keyField"))]
#[serde(rename_all = "camelCase")]
pub struct KeySecret {
    /// Secret name. Defaults to the RouteroKey's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SECRET_NAME_PATTERN))]
    pub name: Option<String>,
    /// Data field holding the key.
    #[serde(default = "default_key_field")]
    #[schemars(regex(pattern = SECRET_FIELD_PATTERN))]
    pub key_field: String,
    /// Optional data field holding the gateway URL (for example `OPENAI_BASE_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SECRET_FIELD_PATTERN))]
    pub base_url_field: Option<String>,
    /// Extra labels on the Secret. Keys under `routero.ai/` are reserved for the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('routero.ai/'))").message("spec.secret.labels: keys under routero.ai/ are reserved for the operator's own state"))]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the Secret. Keys under `routero.ai/` are reserved for the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('routero.ai/'))").message("spec.secret.annotations: keys under routero.ai/ are reserved for the operator's own state"))]
    pub annotations: BTreeMap<String, String>,
}

fn default_key_field() -> String {
    "apiKey".to_owned()
}

impl Default for KeySecret {
    fn default() -> Self {
        Self {
            name: None,
            key_field: default_key_field(),
            base_url_field: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// How the key is rotated.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq,
)]
pub enum RotationStrategy {
    /// Regenerate, falling back to Recreate when the gateway has no regenerate.
    #[default]
    Auto,
    /// Replace the key in place (spend history kept; the old key dies at once).
    Regenerate,
    /// Issue a new key, swap the Secret, delete the old key after `gracePeriod`.
    Recreate,
}

/// When and how to rotate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate this often (`30d`, `12h`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub every: Option<String>,
    #[serde(default)]
    pub strategy: RotationStrategy,
    /// With Recreate: how long the old key keeps working after the Secret holds the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub grace_period: Option<String>,
}

/// What the operator last saw of the key. Never holds key material: `keyId` is a prefix of the key's SHA-256.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteroKeyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The gateway key alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The first 12 hex digits of the SHA-256 of the key in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
    /// The operator's proofs that this resource created its recent gateway keys (made with its admin key, so they
    /// cannot be forged): they let those keys be revoked even when their owner markers were wiped on the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provenance: Vec<String>,
}

/// The alias a Recreate rotation's new key carries until the old one is deleted (aliases are unique).
pub fn next_alias(alias: &str) -> String {
    format!("{alias}.next")
}

impl RouteroKey {
    /// How the key is rotated (`Auto` when the spec says nothing).
    pub fn rotation_strategy(&self) -> RotationStrategy {
        self.spec
            .rotation
            .as_ref()
            .map(|r| r.strategy)
            .unwrap_or_default()
    }

    /// The gateway alias: `spec.alias`, else `<namespace>.<name>`.
    pub fn alias(&self) -> String {
        self.spec.alias.clone().unwrap_or_else(|| {
            format!(
                "{}.{}",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// The Secret name: `spec.secret.name`, else the resource name.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret
            .name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
