//! `RouteroMember`: a person on the gateway, their role and their team memberships.
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{Condition, DeletionPolicy, ID_PATTERN};

/// Simple e-mail shape; the identity provider is the real authority.
pub const EMAIL_PATTERN: &str = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$";

/// A person on the gateway.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "routero.ai",
    version = "v1alpha1",
    kind = "RouteroMember",
    namespaced,
    status = "RouteroMemberStatus",
    shortname = "rmember",
    category = "routero",
    printcolumn(name = "User ID", type_ = "string", json_path = ".status.userId"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Teams",
        type_ = "string",
        json_path = ".status.teams",
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
#[x_kube(validation = Rule::new(
    "has(self.userId) == has(oldSelf.userId) && (!has(self.userId) || self.userId == oldSelf.userId)"
).message("userId is immutable: it is the person's identity on the gateway").field_path(".userId"))]
#[x_kube(validation = Rule::new("has(self.userId) || self.email == oldSelf.email").message(
    "email is this member's gateway identity while userId is unset, so it cannot be changed: create a RouteroMember \
     for the new address and delete this one (which deprovisions the old user and revokes its keys)"
).field_path(".email"))]
#[serde(rename_all = "camelCase")]
pub struct RouteroMemberSpec {
    /// The person's e-mail address.
    #[schemars(regex(pattern = EMAIL_PATTERN), length(max = 254))]
    pub email: String,
    /// The gateway user_id. Defaults to the e-mail address, which is then immutable too. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub user_id: Option<String>,
    /// Gateway role. `proxy_admin` and `proxy_admin_viewer` are honoured only in the operator's admin namespaces.
    #[serde(default)]
    pub role: MemberRole,
    /// Team memberships (RouteroTeams in this namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub teams: Vec<MemberTeam>,
    /// The person's own budget in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// `Delete` removes the person (and revokes their keys) on the gateway; `Orphan` keeps the user.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over an existing gateway user with this id that no resource owns.
    #[serde(default)]
    pub adopt: bool,
}

/// Gateway user roles.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Manages own keys; sees own spend.
    #[default]
    InternalUser,
    /// Read-only: views own keys and spend (the guide's "internal viewer").
    InternalUserViewer,
    /// Full gateway admin (admin namespaces only).
    ProxyAdmin,
    /// Read-only gateway admin (admin namespaces only).
    ProxyAdminViewer,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InternalUser => "internal_user",
            Self::InternalUserViewer => "internal_user_viewer",
            Self::ProxyAdmin => "proxy_admin",
            Self::ProxyAdminViewer => "proxy_admin_viewer",
        }
    }

    /// Admin roles are honoured only in the admin namespaces (DESIGN §4).
    pub fn is_admin(self) -> bool {
        matches!(self, Self::ProxyAdmin | Self::ProxyAdminViewer)
    }
}

/// Membership of one team.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct MemberTeam {
    /// A RouteroTeam in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Optional, and if set it must be this resource's own namespace: cross-namespace references are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Role inside the team.
    #[serde(default)]
    pub role: TeamRole,
}

/// Role inside a team.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    #[default]
    User,
    Admin,
}

/// What the operator last saw of the person.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteroMemberStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Gateway team ids the person belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// The operator's proof that this resource manages the gateway user (made with its admin key, so it cannot be
    /// forged): it lets the user be deprovisioned even when its owner marker was wiped on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

impl RouteroMember {
    /// The gateway identity: `spec.userId`, else the e-mail address.
    pub fn user_id(&self) -> String {
        self.spec
            .user_id
            .clone()
            .unwrap_or_else(|| self.spec.email.clone())
    }
}
